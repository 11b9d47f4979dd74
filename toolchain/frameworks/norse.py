"""Norse 1.1 -> edgec: edgec's own reader (``norse.torch.to_nir`` writes ``tau = dt * tau_inv``, so a
NIR reader that follows NIR's definition gets time constants off by ``dt^2 / tau^2``).

==============================================  ==================================================
Norse (one step, ``d = dt * tau_mem_inv``)      edgec
==============================================  ==================================================
``LIFBoxCell``: ``v += d (v_leak - v + x)``     ``LIF(dv = d)``, input scaled by ``d``, bias ``d v_leak``
``IAFCell``: ``v += x``                          ``IF``
``LIBoxCell`` (non-spiking)                     ``LI(dv = d)`` (CPU only: Loihi needs a spiking readout)
``nn.Linear`` / ``nn.Conv2d`` / ``nn.Flatten``  as for every framework
==============================================  ==================================================

Norse fires where ``v > v_th`` and resets to ``v_reset`` (must be 0). ``LIFCell`` (current-based) is
refused: Norse updates the voltage with the previous step's current and adds the input to the
current afterwards, so its voltage sees each input one step later than Loihi's CUBA neuron. The model
runs as Norse runs it: a ``SequentialState`` of cells, one call per step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgec.frameworks import Converted, as_array, leaves, standard_layer, unsupported
from edgec.nirmap import NetBuilder
from edgec.target import Violation


def _uniform(rows: list[Violation], name: str, what: str, value: object) -> float:
    a = as_array(value).reshape(-1)
    if a.size > 1 and not np.allclose(a, a[0]):
        rows.append(Violation(name, f"per-neuron-{what}", f"{what} differs between neurons", "one per layer"))
    return float(a[0])


def convert(module: nn.Module, shape: tuple[int, ...]) -> Converted:
    import norse.torch as norse

    b = NetBuilder(1.0)
    b.shape = tuple(shape)
    rows: list[Violation] = []
    for name, m in leaves(module):
        if standard_layer(b, name, m, rows):
            continue
        kind = type(m).__name__
        features = b.shape[0] if b.shape else 1
        p = getattr(m, "p", None)
        if isinstance(m, (norse.LIFBoxCell, norse.IAFCell)) and p is not None:
            if np.any(as_array(p.v_reset)):
                rows.append(
                    Violation(name, "nir-reset", f"v_reset {as_array(p.v_reset).max():g}", "v_reset = 0")
                )
            thr = np.broadcast_to(as_array(p.v_th).reshape(-1), (features,)).copy()
            if isinstance(m, norse.IAFCell):
                b.place_neuron(name, kind, None, 0.0, thr, np.zeros(features), np.ones(features))
                continue
            d = float(m.dt) * _uniform(rows, name, "tau_mem_inv", p.tau_mem_inv)
            if not 0 < d <= 1:
                rows.append(Violation(name, "decay-range", f"dt * tau_mem_inv = {d:g}", "0 < dt/tau <= 1"))
                continue
            bias = d * np.broadcast_to(as_array(p.v_leak).reshape(-1), (features,))
            b.place_neuron(name, kind, None, d, thr, bias, np.full(features, d))
        elif isinstance(m, norse.LIBoxCell) and p is not None:
            d = float(m.dt) * _uniform(rows, name, "tau_mem_inv", p.tau_mem_inv)
            bias = d * np.broadcast_to(as_array(p.v_leak).reshape(-1), (features,))
            b.place_neuron(name, kind, None, d, None, bias, np.full(features, d))
        elif isinstance(m, norse.LIFCell):
            rows.append(
                Violation(
                    name,
                    "framework-semantics",
                    "Norse's LIFCell adds its input to the current after the voltage step (the voltage "
                    "sees it one step later than on Loihi)",
                    "use LIFBoxCell (or an IAFCell) layers",
                    kind=kind,
                )
            )
        else:
            rows.append(
                Violation(
                    name,
                    "unsupported-layer",
                    f"{type(m).__module__}.{kind}",
                    "edgec reads LIFBoxCell, IAFCell, LIBoxCell, Linear, Conv2d, Flatten, AvgPool2d",
                    kind=kind,
                )
            )
    unsupported(rows, "Norse")
    return Converted(nn.Sequential(*b.layers), "reader", mappings=[r.to_dict(1.0) for r in b.mappings])


def run(module: nn.Module, spikes: torch.Tensor) -> torch.Tensor:
    """Norse's own forward over ``[T, B, ...]``: a SequentialState called once per step with its state."""
    module.eval()
    state = None
    outs = []
    for t in range(spikes.shape[0]):
        y = module(spikes[t], state) if state is not None else module(spikes[t])
        if isinstance(y, tuple):
            y, state = y
        outs.append(y)
    return torch.stack(outs)
