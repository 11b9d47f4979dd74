"""Activity measured on real inputs: synaptic operations, spikes, firing rates, neuron updates.

Forward hooks see every call of every synapse (``nn.Linear``, ``nn.ConvNd``, ``nn.ConvTransposeNd``)
and every spiking neuron layer while the program runs on N real samples. Per call, with ``x`` the
synapse's input and ``w`` its weight:

``exact``      ``sum(conv((x != 0), (w != 0)))`` with the layer's own stride, padding, dilation and
               groups (for ``Linear``: ``sum_i nnz(x[..., i]) * nnz(w[:, i])``): every
               (non-zero input, non-zero weight) pair that produces a contribution. Boundary-aware
               (a corner input reaches fewer outputs), stride-, group- and pruning-aware.
``effective``  the same number, filed as ACs when every input value lies in {-1, 0, 1} (a spike)
               and as MACs otherwise (NeuroBench 2.3 ``SynapticOperations``).
``dense``      ``sum(conv(1, 1))``: every in-bounds (input, weight) pair, whatever the activity and
               the weights (NeuroBench's ``Dense``), from the closed form
               ``B * C_out * (C_in/groups) * prod_d sum_o valid_taps_d(o)``.
``literature`` ``rate * FLOPs`` over the run, ``rate = nnz(x) / numel(x)`` and FLOPs the
               padding-unaware dense MACs (``numel(y) * C_in/groups * prod(k)``), i.e. the
               literature's ``firing rate x T x FLOPs``. It ignores padding and pruning.

An encoding layer fed real-valued (direct) input is charged on every call, i.e. T times per
inference, as it executes in PyTorch and as NeuroBench counts it.

A neuron layer's calls give ``spikes = nnz(output)``, ``neuron updates = numel(output)``
(neurons x T) and ``active updates = nnz(input)``: neuron-steps that received synaptic input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgec.energy.graphs import CallTracker, GraphProgram, Layer
from edgec.energy.rules import ACTIVATION_NAMES, ACTIVATIONS, CONVT, is_synapse


@dataclass
class SynapseStats:
    calls: int = 0
    exact: int = 0
    acs: int = 0
    macs: int = 0
    dense: int = 0
    flops: int = 0  # padding-unaware dense MACs over the run
    nnz: int = 0
    numel: int = 0


@dataclass
class NeuronStats:
    calls: int = 0
    spikes: int = 0
    updates: int = 0
    active: int = 0


@dataclass
class DensityStats:
    nnz: int = 0
    numel: int = 0


@dataclass
class Activity:
    samples: int
    synapses: dict[str, SynapseStats]
    neurons: dict[str, NeuronStats]
    density: dict[str, DensityStats]


def _pair(v: Any, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _valid_taps_sum(size: int, k: int, stride: int, pad: int, dilation: int, out: int) -> int:
    """``sum over outputs o`` of the kernel taps ``j`` whose input ``o*s - p + j*d`` is in bounds."""
    total = 0
    for o in range(out):
        start = o * stride - pad
        total += sum(1 for j in range(k) if 0 <= start + j * dilation < size)
    return total


def _same_pad(k: int, d: int) -> int:
    return (d * (k - 1)) // 2  # torch pads 'same' with the smaller half on the left


def conv_counts(m: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int, int]:
    """(exact, dense, padding-unaware dense) counts of one call of a conv / conv-transpose layer."""
    nd = len(m.kernel_size)
    w = m.weight
    transposed = isinstance(m, CONVT)
    batched = x.dim() == nd + 2
    xb = (x != 0).to(torch.float32)
    wb = (w != 0).to(torch.float32)
    if not batched:
        xb = xb.unsqueeze(0)
    padding: Any = m.padding
    if not transposed and m.padding_mode != "zeros":
        xb = F.pad(xb, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        padding = 0
    if transposed:
        conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
        out = conv_t(xb, wb, None, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
    else:
        conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
        out = conv(xb, wb, None, m.stride, padding, m.dilation, m.groups)
    exact = int(out.round().sum(dtype=torch.float64).item())
    batch = xb.shape[0]
    cin_g = m.in_channels // m.groups
    if transposed:
        # padding crops the output of a transposed conv: count the in-bounds pairs on all-ones
        ones = conv_t(
            torch.ones_like(xb),
            torch.ones_like(wb),
            None,
            m.stride,
            m.padding,
            m.output_padding,
            m.groups,
            m.dilation,
        )
        dense = int(ones.round().sum(dtype=torch.float64).item())
        flops = int(x.numel()) * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    else:
        in_sizes = xb.shape[2:]
        out_sizes = y.shape[-nd:]
        ks, ss, ds = _pair(m.kernel_size, nd), _pair(m.stride, nd), _pair(m.dilation, nd)
        if isinstance(padding, str):
            ps = tuple(_same_pad(k, d) if padding == "same" else 0 for k, d in zip(ks, ds, strict=True))
        else:
            ps = _pair(padding, nd)
        taps = 1
        for size, k, s, p, d, o in zip(in_sizes, ks, ss, ps, ds, out_sizes, strict=True):
            taps *= _valid_taps_sum(int(size), k, s, p, d, int(o))
        dense = batch * m.out_channels * cin_g * taps
        flops = int(y.numel()) * cin_g * math.prod(ks)
    return exact, dense, flops


def linear_counts(m: nn.Linear, x: torch.Tensor) -> tuple[int, int, int]:
    """(exact, dense, dense) counts of one call of ``nn.Linear``: ``sum_i nnz(x[.., i]) * nnz(w[:, i])``."""
    active_per_input = (x != 0).reshape(-1, m.in_features).sum(0, dtype=torch.int64)
    nonzero_per_column = (m.weight != 0).sum(0, dtype=torch.int64)
    exact = int((active_per_input * nonzero_per_column).sum().item())
    rows = x.numel() // m.in_features
    dense = rows * m.in_features * m.out_features
    return exact, dense, dense


def _is_spike_like(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1) | (x == -1)).all().item())


def measure_activity(
    module: nn.Module,
    batches: Iterable[torch.Tensor],
    run: Callable[[torch.Tensor], Any],
    *,
    neuron_types: tuple[type[nn.Module], ...] = (),
    synapses_too: bool = True,
) -> Activity:
    """Run ``run(batch)`` on every batch with counting hooks; return the summed activity.

    ``synapses_too=False`` skips the synaptic-operation counts (an ANN's report needs only the
    activation density of its activation layers).
    """
    synapses: dict[str, SynapseStats] = {}
    neurons: dict[str, NeuronStats] = {}
    density: dict[str, DensityStats] = {}
    handles = []

    def synapse_hook(name: str) -> Callable[..., None]:
        def hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if not args or not isinstance(args[0], torch.Tensor) or not isinstance(out, torch.Tensor):
                return
            x = args[0].detach()
            st = synapses.setdefault(name, SynapseStats())
            if isinstance(m, nn.Linear):
                exact, dense, flops = linear_counts(m, x)
            else:
                exact, dense, flops = conv_counts(m, x, out)
            st.calls += 1
            st.exact += exact
            if _is_spike_like(x):
                st.acs += exact
            else:
                st.macs += exact
            st.dense += dense
            st.flops += flops
            st.nnz += int((x != 0).sum().item())
            st.numel += int(x.numel())

        return hook

    def neuron_hook(name: str) -> Callable[..., None]:
        def hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            y = out[0] if isinstance(out, (tuple, list)) else out
            if not isinstance(y, torch.Tensor):
                return
            st = neurons.setdefault(name, NeuronStats())
            st.calls += 1
            st.spikes += int((y != 0).sum().item())
            st.updates += int(y.numel())
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            st.active += (
                int((x != 0).sum().item()) if x is not None and x.shape == y.shape else int(y.numel())
            )

        return hook

    def density_hook(name: str) -> Callable[..., None]:
        def hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if isinstance(out, torch.Tensor):
                st = density.setdefault(name, DensityStats())
                st.nnz += int((out != 0).sum().item())
                st.numel += int(out.numel())

        return hook

    for name, m in module.named_modules():
        if neuron_types and isinstance(m, neuron_types):
            handles.append(m.register_forward_hook(neuron_hook(name or "(model)")))
        elif synapses_too and is_synapse(m):
            handles.append(m.register_forward_hook(synapse_hook(name or "(model)")))
        elif isinstance(m, ACTIVATIONS):
            handles.append(m.register_forward_hook(density_hook(name or "(model)")))
    samples = 0
    try:
        with torch.no_grad():
            for xb in batches:
                run(xb)
                samples += int(xb.shape[0])
    finally:
        for h in handles:
            h.remove()
    return Activity(samples, synapses, neurons, density)


class _GraphDensity(CallTracker):
    """Fraction of non-zero outputs of every activation layer of a graph, call by call."""

    def __init__(self) -> None:
        super().__init__()
        self.density: dict[str, DensityStats] = {}

    def call(self, layer: Layer, output: torch.Tensor | None) -> None:
        if layer.type in ACTIVATION_NAMES and output is not None:
            st = self.density.setdefault(layer.name or "(model)", DensityStats())
            st.nnz += int((output != 0).sum().item())
            st.numel += int(output.numel())


def measure_graph_density(graph: GraphProgram, batches: Iterable[torch.Tensor]) -> Activity:
    """An ANN graph's activation densities on every sample of ``batches``.

    The graph runs one sample at a time: a program exported at batch 1 may have its batch size
    written into its operators (a ``view(1, ...)``), and densities add up sample by sample.
    """
    listener = _GraphDensity()
    samples = 0
    with torch.no_grad():
        for xb in batches:
            for i in range(int(xb.shape[0])):
                graph.run(xb[i : i + 1], listener)
                listener.finish()
                samples += 1
    return Activity(samples, {}, {}, listener.density)
