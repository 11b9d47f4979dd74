"""SpikingJelly 2.0 -> edgec through its own NIR export (``nir_exchange.export_to_nir``, dt = 1e-4).

SpikingJelly's LIF (``decay_input=True``): ``v += (x - (v - v_reset)) / tau``, exported as NIR ``LIF``
with ``tau = tau_steps * dt`` and ``r = 1``; ``IFNode`` as ``IF`` with ``r = 1 / dt``: both are one
Euler step of NIR's equations, so :mod:`edgec.nirgraph` reads them back exactly. SpikingJelly fires
where ``v >= v_threshold`` (Loihi: ``>``; equal only on a measure-zero set of float inputs). Soft reset
(``v_reset=None``) is refused: Loihi resets to 0. The model runs in multi-step mode
(``functional.set_step_mode(net, "m")``: time-major ``[T, B, ...]``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgec.frameworks import Converted, unsupported
from edgec.target import Violation

DT = 1e-4


def convert(module: nn.Module, shape: tuple[int, ...]) -> Converted:
    from spikingjelly.activation_based import functional, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    from edgec.errors import ModelError, first_line
    from edgec.nirgraph import module_from_nir

    rows = []
    for name, m in module.named_modules():
        if isinstance(m, neuron.BaseNode) and getattr(m, "v_reset", 0.0) is None:
            rows.append(
                Violation(
                    name, "reset-mechanism", f"{type(m).__name__}(v_reset=None): soft reset", "v_reset=0."
                )
            )
    unsupported(rows, "SpikingJelly")
    net = copy.deepcopy(module).eval()
    functional.set_step_mode(net, "m")
    functional.reset_net(net)
    try:
        graph = export_to_nir(net, torch.zeros(2, 1, *shape), dt=DT)
    except Exception as exc:
        raise ModelError(f"SpikingJelly's NIR export failed: {first_line(exc)}") from None
    imp = module_from_nir(graph, dt=DT, input_shape=tuple(shape))
    return Converted(imp.module, "nir", dt=DT, mappings=imp.report()["layers"])


def run(module: nn.Module, spikes: torch.Tensor) -> torch.Tensor:
    """SpikingJelly's own forward over ``[T, B, ...]``: the module is set to multi-step mode and reset
    (in place, so a training loop can call this too)."""
    from spikingjelly.activation_based import functional

    functional.set_step_mode(module, "m")
    functional.reset_net(module)
    out: torch.Tensor = module(spikes)
    return out
