"""Sinabs 2.0 -> edgec through its own NIR export (``sinabs.to_nir``), read with ``dt = 1``.

Sinabs counts time in steps: ``IAF`` (``v += x``) is exported as NIR ``IF`` with ``r = 1``, one Euler
step of ``dv/dt = r I`` when ``dt = 1``. Loihi needs single spikes and reset to zero:
``IAF(spike_fn=SingleSpike, reset_fn=MembraneReset())``; sinabs' defaults (``MultiSpike``,
``MembraneSubtract``) and ``min_v_mem`` are refused. Sinabs' ``LIF`` decays by ``exp(-1/tau_mem)``
and scales its input by ``1 - exp(-1/tau_mem)``, which its NIR export writes as Euler's ``1/tau``:
refused too (edgec's check against sinabs' own forward would otherwise find the drift). Sinabs fires
where ``v >= threshold`` (Loihi: ``>``). Its layers take batch-major ``[B, T, ...]``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgec.frameworks import Converted, unsupported
from edgec.target import Violation

DT = 1.0


def convert(module: nn.Module, shape: tuple[int, ...]) -> Converted:
    import sinabs
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, SingleSpike

    from edgec.errors import ModelError, first_line
    from edgec.nirgraph import module_from_nir

    rows = []
    for name, m in module.named_modules():
        kind = type(m).__name__
        if isinstance(m, sl.IAF):
            if getattr(m, "spike_fn", None) is not SingleSpike:
                rows.append(
                    Violation(
                        name, "multi-spike", f"{kind} with {m.spike_fn.__name__}", "spike_fn=SingleSpike"
                    )
                )
            reset = getattr(m, "reset_fn", None)
            if not isinstance(reset, MembraneReset) or float(reset.reset_value) != 0.0:
                rows.append(
                    Violation(
                        name,
                        "reset-mechanism",
                        f"{kind} with {type(reset).__name__}",
                        "reset_fn=MembraneReset()",
                    )
                )
            if getattr(m, "min_v_mem", None) is not None:
                rows.append(Violation(name, "unsupported-neuron", f"{kind} with min_v_mem", "min_v_mem=None"))
        elif isinstance(m, sl.LIF):
            rows.append(
                Violation(
                    name,
                    "framework-semantics",
                    "sinabs LIF decays by exp(-1/tau_mem); its NIR export writes Euler's 1/tau",
                    "use IAF layers (or train in a framework whose LIF is an Euler step)",
                    kind=kind,
                )
            )
    unsupported(rows, "Sinabs")
    net = copy.deepcopy(module).eval()
    try:
        graph = sinabs.to_nir(net, torch.zeros(1, 2, *shape))
    except Exception as exc:
        raise ModelError(f"Sinabs' NIR export failed: {first_line(exc)}") from None
    imp = module_from_nir(graph, dt=DT, input_shape=tuple(shape))
    return Converted(imp.module, "nir", dt=DT, mappings=imp.report()["layers"])


def run(module: nn.Module, spikes: torch.Tensor) -> torch.Tensor:
    """Sinabs' own forward over time-major ``[T, B, ...]`` (its layers take ``[B, T, ...]``), states reset."""
    for m in module.modules():
        if hasattr(m, "reset_states"):
            m.reset_states()  # type: ignore[operator]
    out: torch.Tensor = module(spikes.transpose(0, 1).contiguous()).transpose(0, 1)
    return out
