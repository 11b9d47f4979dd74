"""snnTorch 1.0 -> edgec: edgec's own reader (snnTorch's NIR export fails against nir 1.0.8).

=====================================  =======================================================
snnTorch                               edgec (per step, Loihi's order)
=====================================  =======================================================
``Leaky(beta, threshold)``             ``LIF(dv = 1 - beta, threshold)``: ``v = beta v + x``
``Synaptic(alpha, beta, threshold)``   ``CubaLIF(du = 1 - alpha, dv = 1 - beta, threshold)``
``nn.Linear`` / ``nn.Conv2d``          ``nn.Linear`` / ``TimeDistributed(nn.Conv2d)``
``nn.Flatten``                         ``nn.Flatten(start_dim=2)``
=====================================  =======================================================

snnTorch fires where ``mem > threshold``, as Loihi. What Loihi cannot take is a why-not row:
``reset_mechanism="subtract"`` (snnTorch's default; Loihi resets to 0: use ``"zero"``), ``"none"``,
``Synaptic`` with ``reset_delay=True`` (snnTorch then zeroes the next step's whole voltage, current
included), ``inhibition``, ``state_quant``, graded spikes, ``RLeaky`` / ``RSynaptic`` (recurrent),
per-neuron ``beta`` / ``alpha``. A ``Leaky`` with reset to zero gives Loihi's spikes with either
``reset_delay``. The model runs as snnTorch runs it: an ``nn.Sequential`` of ``init_hidden=True``
neurons called once per step, or a module whose ``forward`` takes ``[T, B, ...]`` and returns the
output spikes ``[T, B, ...]`` (or a tuple starting with them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from edgec.frameworks import Converted, as_array, leaves, standard_layer, unsupported
from edgec.nirmap import NetBuilder
from edgec.target import Violation


def _decay(rows: list[Violation], name: str, what: str, value: Any) -> float:
    a = np.clip(as_array(value).reshape(-1), 0.0, 1.0)
    if a.size > 1 and not np.allclose(a, a[0]):
        rows.append(
            Violation(name, f"per-neuron-{what}", f"{what} differs between neurons", "one value per layer")
        )
    return float(a[0])


def _check(m: Any, name: str, rows: list[Violation], *, synaptic: bool) -> None:
    kind = type(m).__name__
    reset = getattr(m, "reset_mechanism", "subtract")
    if reset != "zero":
        rows.append(
            Violation(
                name,
                "reset-mechanism",
                f"{kind}(reset_mechanism='{reset}')",
                "Loihi resets the voltage to 0 after a spike: train with reset_mechanism='zero'",
                kind=kind,
            )
        )
    elif synaptic and getattr(m, "reset_delay", True):
        rows.append(
            Violation(
                name,
                "reset-delay",
                "Synaptic(reset_delay=True) zeroes the whole next-step voltage, current included",
                "train with reset_delay=False (Loihi zeroes the voltage at the spike)",
                kind=kind,
            )
        )
    for attr, what in (("inhibition", "inhibition"), ("state_quant", "state quantization")):
        if getattr(m, attr, False):
            rows.append(
                Violation(name, "unsupported-neuron", f"{kind} with {what}", "not on Loihi", kind=kind)
            )
    factor = as_array(getattr(m, "graded_spikes_factor", 1.0)).reshape(-1)
    if not np.allclose(factor, 1.0):
        rows.append(Violation(name, "graded-spikes", f"graded_spikes_factor {factor[0]:g}", "binary spikes"))


def convert(module: nn.Module, shape: tuple[int, ...]) -> Converted:
    import snntorch as snn

    b = NetBuilder(1.0)
    b.shape = tuple(shape)
    rows: list[Violation] = []
    for name, m in leaves(module):
        if standard_layer(b, name, m, rows):
            continue
        kind = type(m).__name__
        features = b.shape[0] if b.shape else 1
        if isinstance(m, (getattr(snn, "RLeaky", ()), getattr(snn, "RSynaptic", ()))):
            rows.append(
                Violation(
                    name, "recurrent", f"{kind} (recurrent weights)", "edgec lowers feed-forward layers"
                )
            )
        elif isinstance(m, snn.Synaptic):
            _check(m, name, rows, synaptic=True)
            du = 1.0 - _decay(rows, name, "alpha", m.alpha)
            dv = 1.0 - _decay(rows, name, "beta", m.beta)
            thr = np.broadcast_to(as_array(m.threshold).reshape(-1), (features,)).copy()
            b.place_neuron(name, kind, du, dv, thr, np.zeros(features), np.ones(features))
        elif isinstance(m, snn.Leaky):
            _check(m, name, rows, synaptic=False)
            dv = 1.0 - _decay(rows, name, "beta", m.beta)
            thr = np.broadcast_to(as_array(m.threshold).reshape(-1), (features,)).copy()
            b.place_neuron(name, kind, None, dv, thr, np.zeros(features), np.ones(features))
        else:
            rows.append(
                Violation(
                    name,
                    "unsupported-layer",
                    f"{type(m).__module__}.{kind}",
                    "edgec reads Leaky, Synaptic, Linear, Conv2d, Flatten, AvgPool2d",
                    kind=kind,
                )
            )
    unsupported(rows, "snnTorch")
    return Converted(nn.Sequential(*b.layers), "reader", mappings=[r.to_dict(1.0) for r in b.mappings])


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        for attr in ("mem", "syn"):
            if isinstance(getattr(m, attr, None), torch.Tensor):
                setattr(m, attr, torch.zeros(0))


def run(module: nn.Module, spikes: torch.Tensor) -> torch.Tensor:
    """snnTorch's own forward over time-major spikes ``[T, B, ...]`` -> output spikes ``[T, B, ...]``."""
    import snntorch as snn

    _reset(module)
    neurons = [m for m in module.modules() if isinstance(m, snn.SpikingNeuron)]
    module.eval()
    if neurons and all(getattr(m, "init_hidden", False) for m in neurons):
        outs = []
        for t in range(spikes.shape[0]):
            y = module(spikes[t])
            outs.append(y[0] if isinstance(y, tuple) else y)
        return torch.stack(outs)
    y = module(spikes)
    return y[0] if isinstance(y, tuple) else y
