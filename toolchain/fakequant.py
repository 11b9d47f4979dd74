"""Weight reparameterisations for training-time compression, as ``torch.nn.utils.parametrize`` modules.

A compression pass registers one of these on a synapse's ``weight``; the layer keeps its type
(``nn.Conv2d`` / ``nn.Linear``), so the targets' graph analysis, the energy counter's hooks and the
pruning surgery see the same network before and after. At the end of fine-tuning the pass bakes the
parametrization (``leave_parametrized=True``): the weights are then exactly on their grid, and
:meth:`WeightQuantizer.record` says which grid (:class:`edgec.quant.LayerQuant`).

Why not brevitas: its quantizers swap modules for ``QuantConv2d`` / ``QuantLinear`` and configure
scales through dependency injection; ReScaW's mean-normalised clamp grid, the soft-threshold
reparameterisation and the spiking passes' per-layer schedules are not brevitas quantizers, and a
parametrization keeps every module's type and name for the passes and targets that follow.

Gradients use the straight-through estimator: ``round`` passes gradients unchanged (Bengio et al.
2013); clamping stops them outside the clamp range.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgec.quant import LayerQuant


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def _per_channel(stat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-output-channel statistic ``[C]`` against ``w`` ``[C, ...]``."""
    return stat.reshape(-1, *([1] * (w.dim() - 1)))


class WeightQuantizer(nn.Module):
    """Base: ``forward(w)`` returns the fake-quantized weight; ``record(w)`` describes its grid."""

    bits: int

    def record(self, weight: torch.Tensor) -> LayerQuant:  # pragma: no cover - abstract
        raise NotImplementedError


class UniformWeight(WeightQuantizer):
    """Symmetric uniform quantization: ``W_q = s * clamp(round(W / s), -q, q)``, ``q = 2^(b-1) - 1``.

    ``s = max|W| / q`` per output channel (``per_channel``) or per tensor, recomputed from the current
    weight every step (detached) -- the plain baseline of the QP-SNN paper.
    """

    def __init__(self, bits: int, *, per_channel: bool = True) -> None:
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"uniform weight quantization takes 2..8 bits, got {bits}")
        self.bits = bits
        self.per_channel = per_channel
        self.q = (1 << (bits - 1)) - 1

    def scale(self, w: torch.Tensor) -> torch.Tensor:
        m = w.detach().abs().flatten(1).amax(1) if self.per_channel else w.detach().abs().max().reshape(1)
        return m.clamp_min(1e-12) / self.q

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = _per_channel(self.scale(w), w) if self.per_channel else self.scale(w)
        x = w / s
        # max-abs scaling clips nothing (the clamp only catches float rounding at the largest weight),
        # so the gradient is the identity everywhere
        return (x + (torch.clamp(torch.round(x), -self.q, self.q) - x).detach()) * s

    def record(self, weight: torch.Tensor) -> LayerQuant:
        s = self.scale(weight)
        return LayerQuant(
            weight_bits=self.bits,
            weight_scale=tuple(float(v) for v in s),
            per_channel=self.per_channel,
            method="uniform/maxabs",
        )


class ReScaW(WeightQuantizer):
    """QP-SNN's weight rescaling (ReScaW) quantizer.

    ``gamma = mean|W|`` per output channel (detached), ``W~ = clamp(W / gamma, -1, 1)``,
    ``W_q = gamma * (2/s * round(s/2 * (W~ + 1)) - 1)`` with ``s = 2^b - 1`` (QP-SNN, ICLR 2025; see
    ../shared/reference/methods.md). Normalising by the mean instead of the maximum spreads the
    weights over all ``2^b`` levels. The levels are ``gamma/s * (2k - s)``, ``k = 0..s``: odd integers
    times ``gamma/s``, so the grid has no zero (:attr:`LayerQuant.odd_levels`).
    """

    def __init__(
        self, bits: int, *, per_channel: bool = True, clip_gradient: bool = True, clip: float = 1.0
    ) -> None:
        super().__init__()
        if not 1 <= bits <= 8:
            raise ValueError(f"ReScaW takes 1..8 bits, got {bits}")
        if not clip > 0:
            raise ValueError(f"ReScaW's clip must be > 0, got {clip}")
        self.bits = bits
        # the clamp at clip * mean|W| (1: the paper's); a wider clamp is the ablation of
        # benchmarks/results/snn_compression.md, not part of the method
        self.clip = clip
        self.per_channel = per_channel
        # True: the clamp stops gradients outside [-gamma, gamma] (a clipped STE); False: the whole
        # quantizer is straight-through on W / gamma, so a clipped weight keeps learning
        self.clip_gradient = clip_gradient
        self.s = (1 << bits) - 1

    def gamma(self, w: torch.Tensor) -> torch.Tensor:
        g = w.detach().abs().flatten(1).mean(1) if self.per_channel else w.detach().abs().mean().reshape(1)
        return (self.clip * g).clamp_min(1e-12)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        g = _per_channel(self.gamma(w), w) if self.per_channel else self.gamma(w)
        x = w / g
        wt = torch.clamp(x, -1.0, 1.0)
        if not self.clip_gradient:
            wt = x + (wt - x).detach()
        return g * (2.0 / self.s * ste_round(self.s / 2.0 * (wt + 1.0)) - 1.0)

    def record(self, weight: torch.Tensor) -> LayerQuant:
        g = self.gamma(weight) / self.s
        return LayerQuant(
            weight_bits=self.bits,
            weight_scale=tuple(float(v) for v in g),
            per_channel=self.per_channel,
            odd_levels=True,
            method="qp-snn/rescaw",
        )


Schedule = Callable[[float], float]

SCHEDULES: dict[str, Schedule] = {
    # LATS / S-LATS (Chen et al., ICLR 2023): d(t) = D * (sin(pi x) / pi + x), x = t / T
    "sine": lambda x: math.sin(math.pi * x) / math.pi + x,
    "linear": lambda x: x,
    "cosine": lambda x: 0.5 * (1.0 - math.cos(math.pi * x)),
    "constant": lambda x: 1.0,
}


class SoftThreshold(nn.Module):
    """LATS soft-threshold reparameterisation ``W_eff = sign(W) * relu(|W| - d(t))``.

    ``d(t) = D * schedule(t / T)`` grows during fine-tuning (``progress`` in [0, 1] is set by the pass
    each epoch); weights below the threshold become exact zeros, which the synapse count and the
    Loihi artifact both see. The gradient is the identity through the threshold (as in LATS), so
    pruned weights can come back while ``d`` is small.
    """

    def __init__(self, final_threshold: float, schedule: str = "sine") -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        self.final_threshold = float(final_threshold)
        self.schedule = schedule
        self.progress = 0.0

    @property
    def threshold(self) -> float:
        return self.final_threshold * SCHEDULES[self.schedule](min(max(self.progress, 0.0), 1.0))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        soft = torch.sign(w) * torch.relu(w.abs() - self.threshold)
        return w + (soft - w).detach()


def weight_of(module: nn.Module, param: str = "weight") -> torch.Tensor:
    """The (effective, parametrized) tensor ``module.<param>``."""
    w = getattr(module, param)
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.{param} is not a tensor")
    return w


def original_weight(module: nn.Module, param: str = "weight") -> torch.Tensor:
    """The trainable tensor under ``module.<param>``'s parametrizations (the weight itself if none)."""
    if not parametrize.is_parametrized(module, param):
        return weight_of(module, param)
    w = getattr(module, "parametrizations")[param].original  # noqa: B009
    assert isinstance(w, torch.Tensor)  # is_parametrized: torch keeps the tensor as .original
    return w


def attach(module: nn.Module, param: str, parametrization: nn.Module) -> None:
    """Register ``parametrization`` on ``module.<param>`` (several stack in order)."""
    parametrize.register_parametrization(module, param, parametrization)


def quantizers_of(module: nn.Module, param: str = "weight") -> list[nn.Module]:
    """The parametrizations registered on ``module.<param>``, in application order."""
    if not parametrize.is_parametrized(module, param):
        return []
    return list(getattr(module, "parametrizations")[param])  # noqa: B009


def detach_all(module: nn.Module, param: str = "weight") -> None:
    """Remove ``module.<param>``'s parametrizations, keeping the trainable tensor under them."""
    if parametrize.is_parametrized(module, param):
        parametrize.remove_parametrizations(module, param, leave_parametrized=False)


def bake(module: nn.Module, param: str = "weight") -> LayerQuant | None:
    """Replace ``module.<param>`` by its parametrized value; return the grid of its quantizer (if any).

    The record is computed from the weight the quantizer sees (its input), before baking.
    """
    chain = quantizers_of(module, param)
    if not chain:
        return None
    record = None
    with torch.no_grad():
        w = getattr(module, "parametrizations")[param].original  # noqa: B009
        for p in chain:
            if isinstance(p, WeightQuantizer):
                record = p.record(w)
            w = p(w)
    parametrize.remove_parametrizations(module, param, leave_parametrized=True)
    return record
