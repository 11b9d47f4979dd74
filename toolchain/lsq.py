"""Learned step size quantization (LSQ; Esser et al., ICLR 2020) of weights and activations.

Weights (a ``parametrize`` module, :class:`LsqWeight`)::

    W_q = s_c * round(clamp(W / s_c, -Q, Q)),   Q = 2^(b-1) - 1,   one step s_c per output channel

Activations (the *input* of a layer, :class:`InputQuantizer`, a forward pre-hook)::

    x_q = s * round(clamp(x / s, -Qn, Qp))     signed: Qn = 2^(b-1), Qp = 2^(b-1) - 1
                                               unsigned (inputs that are never negative): Qn = 0, Qp = 2^b - 1

The steps ``s`` are trained with the network: rounding passes gradients straight through, and the
gradient of ``s`` is scaled by ``g = 1 / sqrt(N * Qp)`` (N: elements per step: a weight channel's, or
one activation tensor's) as LSQ prescribes. Initial steps: ``2 * mean|W| / sqrt(Q)`` per channel for
weights, ``2 * mean|x| / sqrt(Qp)`` over a calibration batch for activations (LSQ's initialisation);
whether an input is signed is read from the same batch.

Where they attach: :class:`LsqWeight` on a synapse's ``weight``; :class:`InputQuantizer` as a
child module ``input_quantizer`` of the layer whose input it quantizes, applied by a forward pre-hook.
:class:`QuantPoint` marks, in a model's code, a tensor that is no layer's input but should be
quantizable -- the inputs of an activation x activation matmul (attention's ``q``, ``k``, ``v`` and
softmax output): it is an identity with a name. A compressed program records its input quantizers as
an edit (``{"op": "quantize-inputs", "layers": {name: [bits, signed]}}``) that :mod:`edgec.store`
replays before loading the weights (the steps are in the state dict).

Exported graphs show each input quantizer as ``Div(x, s) -> Clip(-Qn, Qp) -> Round -> Mul(s)``: the
CPU target turns that into Q/DQ with the learned step (:func:`edgec.lsq.onnx_points`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from edgec.fakequant import WeightQuantizer, _per_channel, ste_round
from edgec.quant import LayerQuant

INPUT_QUANTIZER = "input_quantizer"


def grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """``x`` forward, gradient times ``g`` backward (LSQ's step-size gradient scale)."""
    return (x - x * g).detach() + x * g


class QuantPoint(nn.Identity):
    """A named identity in a model's code: where an activation quantizer may attach (see the module
    docstring). It computes nothing."""


class LsqWeight(WeightQuantizer):
    """LSQ weight quantizer with a learned step per output channel (see the module docstring)."""

    def __init__(self, bits: int, weight: torch.Tensor) -> None:
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"LSQ weights take 2..8 bits, got {bits}")
        self.bits = bits
        self.q = (1 << (bits - 1)) - 1
        init = 2 * weight.detach().abs().flatten(1).mean(1) / math.sqrt(self.q)
        self.step = nn.Parameter(init.clamp_min(1e-8))
        self.g = 1.0 / math.sqrt(weight[0].numel() * self.q)

    def steps(self) -> torch.Tensor:
        return self.step.abs().clamp_min(1e-8)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = _per_channel(grad_scale(self.steps(), self.g), w)
        return ste_round(torch.clamp(w / s, -self.q, self.q)) * s

    def record(self, weight: torch.Tensor) -> LayerQuant:
        return LayerQuant(
            weight_bits=self.bits,
            weight_scale=tuple(float(v) for v in self.steps().detach()),
            per_channel=True,
            method="lsq",
        )


class InputQuantizer(nn.Module):
    """LSQ quantizer of a layer's input tensor (see the module docstring).

    Before training it *observes* (``observe()``: the next forward records ``mean|x|`` and the
    sign of the input and sets the initial step), then quantizes."""

    def __init__(self, bits: int, signed: bool = True) -> None:
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"LSQ activations take 2..8 bits, got {bits}")
        self.bits = bits
        self.signed = bool(signed)
        self.step = nn.Parameter(torch.tensor(1.0))
        self.observing = False

    @property
    def qn(self) -> int:
        return (1 << (self.bits - 1)) if self.signed else 0

    @property
    def qp(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def observe(self) -> None:
        self.observing = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            with torch.no_grad():
                self.signed = bool((x < 0).any())
                self.step.fill_(float(2 * x.abs().mean() / math.sqrt(self.qp)) or 1e-3)
            self.observing = False
            return x
        if self.training and torch.is_grad_enabled():
            s = grad_scale(self.step.abs().clamp_min(1e-8), 1.0 / math.sqrt(x.numel() * self.qp))
            return ste_round(torch.clamp(x / s, -self.qn, self.qp)) * s
        # inference (and export): the step is a constant (folded by ONNX pre-processing), the graph
        # Div -> Clip -> Round -> Mul is the pattern the CPU target turns into Q/DQ
        step = self.step.detach().abs().clamp_min(1e-8)
        return torch.round(torch.clamp(x / step, -self.qn, self.qp)) * step

    def scale(self) -> float:
        """The step as a number (positive)."""
        return max(float(self.step.detach().abs()), 1e-8)

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self(args[0]), *args[1:])

    def fields(self) -> dict[str, Any]:
        """The ``act_*`` fields of this layer's :class:`LayerQuant`."""
        return {
            "act_bits": self.bits,
            "act_scale": self.scale(),
            "act_zero_point": 0,
            "act_signed": self.signed,
        }


def attach_input_quantizer(module: nn.Module, bits: int, signed: bool = True) -> InputQuantizer:
    """Quantize ``module``'s (first) input: a child ``input_quantizer`` and a forward pre-hook."""
    if hasattr(module, INPUT_QUANTIZER):
        raise ValueError(f"{type(module).__name__} already has an input quantizer")
    q = InputQuantizer(bits, signed)
    module.add_module(INPUT_QUANTIZER, q)
    module.register_forward_pre_hook(q.pre_hook)
    return q


def attach_input_quantizers(root: nn.Module, layers: Mapping[str, Any]) -> dict[str, InputQuantizer]:
    """``{name: [bits, signed]}`` (the ``quantize-inputs`` edit) -> the quantizers attached."""
    out = {}
    for name, spec in layers.items():
        bits, signed = (spec, True) if isinstance(spec, int) else (int(spec[0]), bool(spec[1]))
        out[name] = attach_input_quantizer(root.get_submodule(name), bits, signed)
    return out


def quant_points(root: nn.Module) -> list[str]:
    """Names of the :class:`QuantPoint` modules of ``root`` (registration order)."""
    return [n for n, m in root.named_modules() if isinstance(m, QuantPoint)]


def input_quantizers(root: nn.Module) -> dict[str, InputQuantizer]:
    """Every attached input quantizer, by the name of the layer whose input it quantizes."""
    out = {}
    for name, m in root.named_modules():
        q = getattr(m, INPUT_QUANTIZER, None)
        if isinstance(q, InputQuantizer):
            out[name] = q
    return out


def observe(quantizers: Iterable[InputQuantizer]) -> None:
    for q in quantizers:
        q.observe()
