"""Spiking networks of other PyTorch frameworks, read into edgec's layers (:mod:`edgec.snn`).

A model built from snnTorch, SpikingJelly, Norse or Sinabs layers -- from a state_dict with
``--arch package.module:Factory``, a pickled module (``--trust-pickle``) or a module in Python -- is
turned into an ``nn.Sequential`` of edgec layers when it is loaded, one way per framework (table
below, :data:`FRAMEWORKS`): through the framework's own NIR export where it computes what the module
computes, through edgec's reader of the framework's layers where it does not. Either way the result
is checked against the framework's own forward pass on rate-coded inputs, spike for spike; a model
that edgec's layers (and Loihi) cannot reproduce gets a table of why-not rows (exit 4), never a
silently different network.

=============  ==================================================================================
framework      road into edgec
=============  ==================================================================================
snnTorch 1.0   edgec's reader (``snntorch.export_nir`` fails against nir 1.0.8 on a Leaky MLP)
Norse 1.1      edgec's reader (``norse.torch.to_nir`` writes ``tau = dt * tau_inv``, not ``dt / tau_inv``)
SpikingJelly   its NIR export (``nir_exchange.export_to_nir``, dt = 1e-4) -> :mod:`edgec.nirgraph`
Sinabs 2.0     its NIR export (``sinabs.to_nir``; time in steps: dt = 1) -> :mod:`edgec.nirgraph`
=============  ==================================================================================

None of these packages is needed to import edgec; each is imported only for a model that uses it
(``pip install edgec[frameworks]``).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.errors import ConstraintViolation, ModelError
from edgec.target import Violation

if TYPE_CHECKING:
    from torch import nn

    from edgec.program import Program

log = logging.getLogger(__name__)

# top-level package of a layer's class -> edgec's module for that framework
FRAMEWORKS: dict[str, str] = {
    "snntorch": "edgec.frameworks.snntorch",
    "norse": "edgec.frameworks.norse",
    "spikingjelly": "edgec.frameworks.spikingjelly",
    "sinabs": "edgec.frameworks.sinabs",
}
#: samples (rate-coded uniform noise) on which the converted network must match the framework's own
CHECK_SAMPLES = 16
#: share of output neuron-steps that must agree (float rounding can flip a spike at the threshold)
CHECK_AGREEMENT = 0.995


@dataclass
class Converted:
    """What a framework module became: the edgec network, how, and what was noted on the way."""

    module: nn.Sequential
    route: str  # "nir" | "reader"
    dt: float | None = None
    mappings: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def framework_of(module: nn.Module) -> str | None:
    """The framework whose layers ``module`` uses (None: none of them)."""
    for m in module.modules():
        top = type(m).__module__.split(".")[0]
        if top in FRAMEWORKS:
            return top
    return None


def runtime_state(module: nn.Module) -> set[str]:
    """state_dict keys that hold a framework's run-time neuron state, not weights: Sinabs registers its
    membrane potentials as buffers whose shape follows the last batch (a state_dict saved after
    training has them at that batch size), so they are neither loaded nor required."""
    keys: set[str] = set()
    for name, m in module.named_modules():
        if type(m).__module__.split(".")[0] != "sinabs" or not hasattr(m, "reset_states"):
            continue
        prefix = f"{name}." if name else ""
        keys.update(prefix + b for b, _ in m.named_buffers(recurse=False))
    return keys


def adapter(name: str) -> Any:
    return importlib.import_module(FRAMEWORKS[name])


def import_foreign(program: Program) -> Program:
    """``program`` with a framework module replaced by its edgec network (others unchanged)."""
    if program.source.format in ("export", "torchscript", "program", "nir"):
        return program
    name = framework_of(program.module)
    if name is None:
        return program
    from edgec.netspec import spec_of
    from edgec.snn import snn_defaults

    fw = adapter(name)
    shape = program.input_shape
    converted: Converted = fw.convert(program.module, shape)
    defaults = snn_defaults(program.module)
    timesteps, encoder = defaults["timesteps"], defaults["encoder"]
    agreement = check_equivalent(name, fw, program.module, converted.module, shape, timesteps, encoder)
    report = {
        "from": name,
        "route": converted.route,
        "dt": converted.dt,
        "layers": converted.mappings,
        "notes": converted.notes,
        "check": f"output spikes equal to {name}'s own forward on {CHECK_SAMPLES} rate-coded samples: "
        f"{agreement:.2%} of neuron-steps",
    }
    log.info("read the %s model into edgec layers via %s", name, converted.route)
    return program.replace(
        module=converted.module.eval(),
        kind="snn",
        timesteps=timesteps,
        encoder=encoder,
        metadata={**program.metadata, "import": report, "arch_spec": spec_of(converted.module)},
    )


def check_equivalent(
    name: str,
    fw: Any,
    foreign: nn.Module,
    ours: nn.Module,
    shape: tuple[int, ...],
    timesteps: int,
    encoder: dict[str, Any],
) -> float:
    """Share of output neuron-steps where edgec's network equals the framework's own forward pass."""
    import torch

    from edgec.snn import encode

    x = torch.rand((CHECK_SAMPLES, *shape), generator=torch.Generator().manual_seed(0))
    spikes = encode(x, timesteps, encoder)
    with torch.no_grad():
        want = fw.run(foreign, spikes)
        got = ours.eval()(spikes)
    if tuple(want.shape) != tuple(got.shape):
        raise ModelError(
            f"edgec's reading of the {name} model gives outputs {tuple(got.shape)}, the model "
            f"{tuple(want.shape)} (time-major [T, B, ...])",
            hint="edgec reads sequential models (nn.Sequential, or modules whose layers run in the order "
            "they are defined)",
        )
    agree = float((want.float() == got.float()).float().mean())
    if agree < CHECK_AGREEMENT:
        raise ConstraintViolation(
            f"edgec's reading of the {name} model differs from the model itself on "
            f"{1 - agree:.1%} of output neuron-steps",
            [
                Violation(
                    "(model)",
                    "framework-semantics",
                    f"{agree:.2%} of output spikes agree with {name}'s forward on rate-coded samples",
                    "build the model from layers in docs/frameworks.md with the settings listed there "
                    "(reset to zero, single spikes, sequential layers)",
                )
            ],
        )
    return agree


def as_array(v: Any) -> np.ndarray:
    import torch

    if isinstance(v, torch.Tensor):
        return v.detach().cpu().double().numpy()
    return np.asarray(v, dtype=np.float64)


def leaves(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers of a sequential model in order: containers are opened, leaves kept."""
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, m: nn.Module) -> None:
        children = list(m.named_children())
        if not children or _is_layer(m):
            out.append((prefix or type(m).__name__, m))
            return
        for n, c in children:
            walk(f"{prefix}.{n}" if prefix else n, c)

    walk("", module)
    return out


def _is_layer(m: nn.Module) -> bool:
    from torch import nn

    if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Flatten)):
        return True
    return type(m).__module__.split(".")[0] in FRAMEWORKS and not isinstance(m, nn.Sequential)


def unsupported(rows: list[Violation], name: str) -> None:
    if rows:
        raise ConstraintViolation(
            f"the {name} model has {len(rows)} layer(s) edgec and Loihi cannot run as they are: "
            + "; ".join(f"{r.layer}: {r.detail}" for r in rows[:3]),
            rows,
        )


def standard_layer(b: Any, name: str, m: nn.Module, rows: list[Violation]) -> bool:
    """Add a torch layer (synapse, flatten, pass-through) to the builder; False if ``m`` is not one."""
    import copy

    import torch
    from torch import nn

    from edgec.snn import TimeDistributed

    if isinstance(m, (nn.Identity, nn.Dropout)):
        return True
    if isinstance(m, nn.Linear):
        b.flat(name, m.in_features)
        b.add(copy.deepcopy(m), synapse=True)
        return True
    if isinstance(m, (nn.Conv2d, nn.Conv1d)):
        b.add(TimeDistributed(copy.deepcopy(m)), synapse=True)
        return True
    if isinstance(m, nn.Flatten):
        if len(b.shape) > 1:
            b.add(nn.Flatten(start_dim=2))
        return True
    if isinstance(m, (nn.AvgPool2d,)) and len(b.shape) == 3:
        k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
        stride = m.stride if m.stride is not None else k
        c = b.shape[0]
        pool = nn.Conv2d(c, c, k, stride=stride, padding=m.padding, groups=c, bias=False)
        with torch.no_grad():
            pool.weight.fill_(1.0 / (k[0] * k[1]))
        b.add(TimeDistributed(pool), synapse=True)
        return True
    return False
