"""Spiking-network vocabulary shared by the core, the zoo and the targets.

Time-major convention: a spiking module maps ``[T, B, *features] -> [T, B, *out]``. Raw input
``[B, *features]`` becomes that tensor through an *encoder* recorded in the program (and in every
artifact), so the host-side encoding that Loihi needs is explicit:

* ``direct``  : the real-valued input repeated for T steps (CPU only, or graded spikes);
* ``rate``    : Bernoulli spikes with probability ``clip(gain * x, 0, 1)``, seeded (reproducible);
* ``latency`` : one spike per input at step ``round((1 - x) * (T - 1))`` for ``x > threshold``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from edgec.program import Program

ENCODERS = ("direct", "rate", "latency")


def encode(x: torch.Tensor, timesteps: int, encoder: dict[str, Any] | None) -> torch.Tensor:
    """Raw input ``[B, ...]`` -> ``[T, B, ...]`` following ``encoder`` (see the module docstring)."""
    import torch

    spec = encoder or {"kind": "direct"}
    kind = spec.get("kind", "direct")
    if kind == "direct":
        return x.unsqueeze(0).expand(timesteps, *x.shape).clone()
    if kind == "rate":
        gen = torch.Generator().manual_seed(int(spec.get("seed", 0)))
        p = (float(spec.get("gain", 1.0)) * x).clamp(0.0, 1.0)
        u = torch.rand((timesteps, *x.shape), generator=gen)
        return (u < p.unsqueeze(0)).to(x.dtype)
    if kind == "latency":
        thr = float(spec.get("threshold", 0.0))
        step = torch.round((1.0 - x.clamp(0.0, 1.0)) * (timesteps - 1)).long()
        t = torch.arange(timesteps).reshape(timesteps, *([1] * x.dim()))
        return ((t == step.unsqueeze(0)) & (x.unsqueeze(0) > thr)).to(x.dtype)
    raise ValueError(f"unknown encoder kind {kind!r}; expected one of {ENCODERS}")


def run_model(program: Program, x: torch.Tensor) -> torch.Tensor:
    """The program's own output for raw input ``x`` (an SNN's is ``[T, B, ...]``)."""
    if program.kind == "snn":
        return program.module(encode(x, program.timesteps, program.encoder))
    return program.module(x)


def predict(program: Program, x: torch.Tensor) -> torch.Tensor:
    """Class scores ``[B, C]``: an ANN's output, or an SNN's output spikes summed over time."""
    out = run_model(program, x)
    return out.sum(0) if program.kind == "snn" else out
