"""What netx / Loihi can take, as data: the operator vocabularies the graph walk (:mod:`.graph`)
classifies nodes with, the hint for each rule, and the whole-model rules (delays, chip capacity)."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
from torch import nn

from edgec.layers import ACTIVATION_OPS, ACTIVATIONS, BATCHNORM_OPS, POOLS, SOFTMAX, SOFTMAX_OPS
from edgec.target import Violation

_FOREIGN_SNN_PACKAGES = ("snntorch", "norse", "spikingjelly", "sinabs", "lava", "rockpool", "spyx")
_POOL = POOLS
_ACT = (*ACTIVATIONS, *SOFTMAX)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)
_PASS = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_POOL_FN = {
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "max_pool2d_with_indices",
    "lp_pool2d",
}
# ATen names from the core vocabulary (edgec.layers), in-place variants too
_ACT_FN = {*ACTIVATION_OPS, *SOFTMAX_OPS, *(f"{n}_" for n in ACTIVATION_OPS)}
_MERGE_FN = {operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul}
_MERGE_NAMES = {"add", "add_", "sub", "mul", "mul_", "iadd"}
_CAT_NAMES = {"cat", "concat", "concatenate", "stack", "hstack", "vstack"}
_PASS_NAMES = {
    "dropout",
    "identity",
    "contiguous",
    "clone",
    "detach",
    "alias",
    "_assert_tensor_metadata",
    "sym_size",
    "sym_numel",
    "_check",
    "_check_is_size",
}
# dense compute of an ANN (conv / linear written as functions, e.g. in a torch.export graph): these are
# synapses, not violations; the ANN's activations, norms and pooling around them are reported
_SYNAPSE_FN = {"conv2d", "convolution", "linear", "addmm", "mm", "matmul", "conv1d", "conv3d"}
_BN_FN = BATCHNORM_OPS
_SHAPE_FN = {"view", "reshape", "permute", "transpose", "t", "expand", "squeeze", "unsqueeze", "size", "dim"}

HINTS = {
    "exported-snn": "compile the spiking model itself, not its export: the module in Python "
    "(edgec.compile(model, input_shape=...)), or its state_dict with --arch NAME or "
    "--arch package.module:Factory (a function that builds the model)",
    "not-spiking": "convert a trained ReLU network with --recipe ann2snn (rate coding, threshold balancing), "
    "or build it from edgec.snn layers (a CubaLIF after every nn.Linear / nn.Conv2d) and train it",
    "avgpool": "use a strided Conv2d (stride = pool size, weights 1/k^2) or a pooling synapse: lava-dl "
    "slayer's Pool block (AvgPool + neuron), which netx cannot load yet",
    "maxpool": "max pooling has no spiking equivalent on Loihi: downsample with a strided Conv2d",
    "residual-add": "netx connects blocks strictly in sequence: remove the skip connection (or build the "
    "Lava process graph by hand)",
    "concat": "netx has no concat block: use a single path",
    "activation": "replace it with edgec.snn.CubaLIF (spiking neurons) and retrain",
    "batchnorm": "fold it into the preceding conv weights before training the SNN (a folded bias belongs on "
    "the neuron: CubaLIF(bias=True))",
    "unsupported-layer": "netx implements dense, conv (2-D) and flatten layers only",
    "unsupported-neuron": "use edgec.snn.CubaLIF (Loihi's CUBA LIF); netx loads CUBA, SDNN and RF neurons",
    "synapse-without-neuron": "end every nn.Linear / nn.Conv2d with a CubaLIF; read the class from output "
    "spike counts instead of a non-spiking readout",
    "neuron-without-synapse": "encode the input on the host (rate / latency spikes) instead of an input "
    "neuron layer",
    "dense-input-shape": "flatten first: nn.Flatten(start_dim=2) on time-major [T, B, C, H, W]",
    "synapse-bias": "use bias=False on the synapse and CubaLIF(features, bias=True): Loihi adds the bias to "
    "the voltage every step",
    "conv-options": "use zero padding with explicit integer padding",
    "flatten": "flatten the feature dimensions only: nn.Flatten(start_dim=2) on [T, B, ...]",
    "input-encoding": "record a rate or latency encoder (binary spikes) with the model; real-valued input "
    "needs graded spikes, which edgec does not lower yet",
    "graph-capture": "give the eager nn.Module (zoo, --trust-pickle, or the Python API) with a "
    "trace-friendly forward (a plain sequence of modules, e.g. nn.Sequential)",
    "delay": "remove the delays: edgec does not lower synaptic delays yet",
    "membrane-quantization": "compress without the low-bit membrane (e.g. q-snn:state_bits=16, or qp-snn), "
    "or deploy it with 24-bit state anyway (--target-option full_precision_state=true) and measure the "
    "difference with edgec verify",
}


def check_delays(module: nn.Module, w: Any) -> None:
    for name, m in module.named_modules():
        for attr in ("delay", "delays", "axonal_delay"):
            value = getattr(m, attr, None)
            if value is None or callable(value) or isinstance(value, nn.Module):
                continue
            try:
                arr = np.asarray(
                    value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value, dtype=float
                )
            except (TypeError, ValueError):
                continue
            if arr.size == 0 or not np.any(arr):
                continue
            top = float(np.max(arr))
            if top > 62:
                w.add(
                    name or "(model)",
                    "delay-range",
                    f"{attr} up to {top:g} steps; netx clamps delays to 62 "
                    "(lava-dl netx/hdf5.py) and Loihi 1 synapses carry 6-bit delays",
                    "delay",
                )
            else:
                w.add(name or "(model)", "delay", f"{attr} up to {top:g} steps")


# Loihi 2 chip figures: Intel's Loihi 2 brief (2021) as transcribed in secondary sources; not
# verified against a primary document, so rows carry verified=False.
LOIHI2_NEURONS_PER_CHIP = 1_048_576
LOIHI2_SYNAPSES_PER_CHIP = 120_000_000


def check_resources(layers: list[Any], w: Any) -> None:
    """Chip capacity of ``layers`` (graph.FloatLayer; Loihi 2, secondary source: rows are labelled
    unverified), reported through the graph walker ``w``."""
    neurons, synapses = resource_counts(layers)
    if neurons > LOIHI2_NEURONS_PER_CHIP:
        w.rows.append(
            Violation(
                "(model)",
                "chip-neurons",
                f"{neurons:,} neurons > {LOIHI2_NEURONS_PER_CHIP:,} per Loihi 2 chip",
                "shrink the network, or partition it over several chips by hand",
                False,
            )
        )
    if synapses > LOIHI2_SYNAPSES_PER_CHIP:
        w.rows.append(
            Violation(
                "(model)",
                "chip-synapses",
                f"{synapses:,} synapses > {LOIHI2_SYNAPSES_PER_CHIP:,} per Loihi 2 chip",
                "prune or shrink the network, or partition it over several chips",
                False,
            )
        )


def resource_counts(layers: list[Any]) -> tuple[int, int]:
    """Neurons and stored synapses (non-zero weights; a conv kernel unrolled over its output positions)."""
    neurons = synapses = 0
    for la in layers:
        if la.kind == "flatten" or la.weight is None:
            continue
        neurons += int(np.prod(la.out_shape))
        if la.kind == "dense":
            synapses += int(np.count_nonzero(la.weight))
        else:
            per_channel = np.count_nonzero(la.weight.reshape(la.weight.shape[0], -1), axis=1)
            positions = int(np.prod(la.out_shape[1:])) if len(la.out_shape) > 1 else 1
            synapses += int(per_channel.sum()) * positions
    return neurons, synapses
