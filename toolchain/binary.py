"""One-bit weights and activations: sign estimators, binarizers, input quantizers, packed storage.

Binarization maps a tensor to two values. Forward, everywhere in edgec::

    b(x) = +1 if x >= 0 else -1        (never 0: a binary tensor packs into bits)

Backward, the derivative of ``sign`` is zero almost everywhere, so training uses an *estimator*
``g(x)`` in its place (:func:`sign_gradient`):

* ``ste``, clipped straight-through (Hubara et al. 2016, BinaryConnect / BNN): ``g = 1`` for
  ``|x| <= 1``, else 0;
* ``reste``, the rectified straight-through estimator (Wu et al., ICCV 2023; the formula of the
  official code, ../shared/reference/methods.md), a power function with exponent ``1 / o`` and
  threshold ``t`` (1.5)::

      g = (1 / o) |x|^((1 - o) / o)      for 0.1 < |x| <= t
      g = 0.1^(1 / o) / 0.1              for |x| <= 0.1       (the secant of |x|^(1/o) on [0, 0.1])
      g = 0                              for |x| > t

  ``o`` grows from 1 (the STE clipped at ``t``) during training (:mod:`edgec.passes.binarize`);
* ``bireal``, the piecewise polynomial of Bi-Real Net (Liu et al., ECCV 2018):
  ``g = 2 - 2|x|`` for ``|x| < 1``, else 0.

What is binarized:

* weights, :class:`BinaryWeight` (a :mod:`edgec.fakequant` parametrization):
  ``W_b = alpha_c * b(W)`` with ``alpha_c = mean |W_c|`` per output channel (XNOR-Net; detached);
  its record is a 1-bit :class:`~edgec.quant.LayerQuant` whose scale is ``alpha``;
* the input of a layer, :class:`BinaryActivation`: ``b(x - beta)`` with a learnable threshold
  ``beta`` per input channel (ReActNet's RSign, Liu et al., ECCV 2020), initialised from data, so a
  layer fed by a ReLU (all inputs >= 0) still gets both signs;
* a tensor inside an attention block (Bi-ViT), :class:`LearnedBinary`: per attention head a
  learnable scale ``alpha`` and zero-point ``z`` (LSQ-style, Esser et al. 2020)::

      x_b = b(clamp(x / alpha + round(z), -1, 1)),   out = (x_b - round(z)) * alpha

  with the gradients of ``alpha`` and ``z`` scaled by ``1 / sqrt(n)`` (``n``: elements per sample).

An input quantizer is a child module ``input_quantizer`` of the layer it feeds, run by a forward
pre-hook: the layer keeps its type and name (targets, the energy counter and the record key on
both), the quantizer's parameters are in the state dict, and the program store rebuilds it from a
plain-data edit (``binarize-input``: :func:`input_quantizer_edit`, :func:`apply_input_edit`); the
same convention as LSQ's input quantizers (:mod:`edgec.lsq`). Models mark tensors that are not the
input of a layer (q, k, v, the attention map) with a :class:`Tap`, an :class:`edgec.lsq.QuantPoint`
that says which tensor it is.

Packed storage (:func:`write_packed`, :func:`read_packed`): the ``edgec-1bit`` file, see
docs/binarization.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgec.fakequant import WeightQuantizer, _per_channel
from edgec.lsq import INPUT_QUANTIZER, QuantPoint
from edgec.quant import LayerQuant

ESTIMATORS = ("ste", "reste", "bireal")
#: ReSTE's gradient threshold t and the half-width of its constant region around 0 (official code)
RESTE_T = 1.5
RESTE_INTERVAL = 0.1


def binarize(x: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``x >= 0``, ``-1`` elsewhere (the forward of every binarizer; exported to ONNX as
    ``GreaterOrEqual`` + ``Where`` with two constants)."""
    out = torch.where(x >= 0, 1.0, -1.0)
    return out if out.dtype == x.dtype else out.to(x.dtype)


def sign_gradient(kind: str, x: torch.Tensor, o: float = 1.0, t: float = RESTE_T) -> torch.Tensor:
    """The estimator's stand-in for ``d sign(x) / dx`` (module docstring)."""
    a = x.abs()
    if kind == "ste":
        return (a <= 1.0).to(x.dtype)
    if kind == "bireal":
        return torch.clamp(2.0 - 2.0 * a, min=0.0)
    if kind == "reste":
        inner = (a > RESTE_INTERVAL) & (a <= t)
        power = (1.0 / o) * a.clamp_min(RESTE_INTERVAL).pow((1.0 - o) / o)
        flat = math.pow(RESTE_INTERVAL, 1.0 / o) / RESTE_INTERVAL
        return torch.where(inner, power, torch.where(a <= RESTE_INTERVAL, flat, 0.0)).to(x.dtype)
    raise ValueError(f"unknown estimator {kind!r}; choose one of {', '.join(ESTIMATORS)}")


class _Sign(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kind: str, o: float, t: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.kind, ctx.o, ctx.t = kind, o, t
        return binarize(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        return grad * sign_gradient(ctx.kind, x, ctx.o, ctx.t), None, None, None


def binary_sign(x: torch.Tensor, estimator: str = "ste", o: float = 1.0, t: float = RESTE_T) -> torch.Tensor:
    """:func:`binarize` forward, the ``estimator``'s gradient backward."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    out: torch.Tensor = _Sign.apply(x, estimator, float(o), float(t))
    return out


def _grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` forward, gradient times ``scale`` backward (LSQ)."""
    return (x - x * scale).detach() + x * scale


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


# ---- weights ------------------------------------------------------------------------------------------
class BinaryWeight(WeightQuantizer):
    """``W_b = alpha * b(W)``, ``alpha = mean|W|`` per output channel (or per tensor), detached.

    The estimator sees the weight itself, as in the official ReSTE code. ``bireal`` is an activation
    estimator: weights under it use the clipped STE (as Bi-Real Net's and Bi-ViT's code do).
    """

    def __init__(self, estimator: str = "ste", *, per_channel: bool = True, t: float = RESTE_T) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        self.bits = 1
        self.estimator = estimator
        self.per_channel = per_channel
        self.t = float(t)
        self.o = 1.0  # ReSTE's power, set by the schedule

    def scale(self, w: torch.Tensor) -> torch.Tensor:
        a = w.detach().abs().flatten(1).mean(1) if self.per_channel else w.detach().abs().mean().reshape(1)
        return a.clamp_min(1e-12)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        a = _per_channel(self.scale(w), w) if self.per_channel else self.scale(w)
        kind = "ste" if self.estimator == "bireal" else self.estimator
        return a * binary_sign(w, kind, self.o, self.t)

    def record(self, weight: torch.Tensor) -> LayerQuant:
        return LayerQuant(
            method=f"binarize/{self.estimator}",
            weight_bits=1,
            weight_scale=tuple(float(v) for v in self.scale(weight)),
            per_channel=self.per_channel,
        )


# ---- activations --------------------------------------------------------------------------------------
class BinaryActivation(nn.Module):
    """``b(x - beta)``, ``beta`` a learnable threshold per channel (``dim``: 1 for conv inputs, -1 for
    linear ones); the output is ``+-1``."""

    kind = "sign"

    def __init__(
        self,
        channels: int,
        *,
        dim: int = 1,
        estimator: str = "ste",
        t: float = RESTE_T,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        self.shift = nn.Parameter(torch.zeros(channels), requires_grad=learnable)
        self.dim = dim
        self.estimator = estimator
        self.t = float(t)
        self.o = 1.0

    def _shaped(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[self.dim] = -1
        return self.shift.reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binary_sign(x - self._shaped(x), self.estimator, self.o, self.t)

    def init_from(self, x: torch.Tensor) -> None:
        """Thresholds at the per-channel mean of ``x`` (sample inputs of the layer)."""
        dims = [d for d in range(x.dim()) if d != self.dim % x.dim()]
        with torch.no_grad():
            self.shift.copy_(x.float().mean(dim=dims))

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "channels": int(self.shift.numel()),
            "dim": self.dim,
            "estimator": self.estimator,
            "learnable": bool(self.shift.requires_grad),
        }

    def extra_repr(self) -> str:
        return f"channels={self.shift.numel()}, dim={self.dim}, estimator={self.estimator}"


class LearnedBinary(nn.Module):
    """Bi-ViT's binarizer with a learnable scale and zero-point per attention head (module docstring).

    Takes ``[B, H, ...]`` tensors (q, k, v ``[B, H, N, d]``, the attention map ``[B, H, N, N]``).
    ``learnable=False`` keeps the data-initialised ``alpha`` and ``z`` fixed (the ablation).
    """

    kind = "lsq-binary"

    def __init__(self, heads: int, *, estimator: str = "bireal", learnable: bool = True) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        self.alpha = nn.Parameter(torch.ones(heads), requires_grad=learnable)
        self.zero_point = nn.Parameter(torch.zeros(heads), requires_grad=learnable)
        self.estimator = estimator
        self.o = 1.0

    def _shaped(self, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return p.reshape(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] != self.alpha.numel():
            raise ValueError(
                f"LearnedBinary has {self.alpha.numel()} heads; got a tensor of shape {tuple(x.shape)}"
            )
        g = 1.0 / math.sqrt(max(1, x[0].numel()))  # LSQ: Qp = 1
        a = self._shaped(_grad_scale(self.alpha, g), x).abs().clamp_min(1e-8)
        z = self._shaped(_round_ste(_grad_scale(self.zero_point, g)), x)
        xb = binary_sign(torch.clamp(x / a + z, -1.0, 1.0), self.estimator, self.o)
        return (xb - z) * a

    def init_from(self, x: torch.Tensor) -> None:
        """Per head: ``alpha = 2 mean|x|`` (LSQ's init with Qp = 1); ``z = -1`` where the head's values
        are all non-negative (an attention map: binarized to ``{0, 2 alpha}``), else 0 (``+-alpha``)."""
        dims = [d for d in range(x.dim()) if d != 1]
        with torch.no_grad():
            self.alpha.copy_((2.0 * x.abs().mean(dim=dims)).clamp_min(1e-6))
            lowest = x.transpose(0, 1).reshape(x.shape[1], -1).min(dim=1).values
            self.zero_point.copy_(torch.where(lowest >= 0.0, -1.0, 0.0))

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "heads": int(self.alpha.numel()),
            "estimator": self.estimator,
            "learnable": bool(self.alpha.requires_grad),
        }

    def extra_repr(self) -> str:
        return f"heads={self.alpha.numel()}, estimator={self.estimator}"


class Tap(QuantPoint):
    """A :class:`edgec.lsq.QuantPoint` (an identity marking a tensor a compression pass may quantize)
    that also says what the tensor is (``role``: q, k, v, attn) and its layout (``heads`` on dim 1).

    A model built with taps (the zoo's digits ViT) computes exactly what it computes without them;
    the Bi-ViT pass attaches a :class:`LearnedBinary` to each (an input quantizer of the tap), the
    LSQ passes an LSQ quantizer (they see every quant point).
    """

    def __init__(self, role: str, heads: int = 1) -> None:
        super().__init__()
        self.role = role
        self.heads = heads

    def extra_repr(self) -> str:
        return f"role={self.role}, heads={self.heads}"


QUANTIZERS: dict[str, type[nn.Module]] = {"sign": BinaryActivation, "lsq-binary": LearnedBinary}


# ---- input quantizers on layers -----------------------------------------------------------------------
def _quantize_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    q = getattr(module, INPUT_QUANTIZER)
    return (q(args[0]), *args[1:])


def attach_input_quantizer(module: nn.Module, quantizer: nn.Module) -> None:
    """Make ``quantizer`` transform ``module``'s first input on every call (module docstring)."""
    if input_quantizer_of(module) is not None:
        raise ValueError(f"{type(module).__name__} already has an input quantizer")
    module.add_module(INPUT_QUANTIZER, quantizer)
    module.register_forward_pre_hook(_quantize_input)


def input_quantizer_of(module: nn.Module) -> nn.Module | None:
    q = getattr(module, INPUT_QUANTIZER, None)
    return q if isinstance(q, nn.Module) else None


def input_quantizer_edit(layer: str, quantizer: nn.Module) -> dict[str, Any]:
    """The program-store edit that rebuilds ``quantizer`` on ``layer`` (plain data)."""
    return {"op": "binarize-input", "layer": layer, "quantizer": quantizer.spec()}  # type: ignore[operator]


def apply_input_edit(module: nn.Module, edit: Mapping[str, Any]) -> None:
    """Replay a ``binarize-input`` edit on ``module`` (the whole model); its state comes with the weights."""
    spec = dict(edit["quantizer"])
    kind = spec.pop("kind")
    if kind not in QUANTIZERS:
        raise ValueError(f"unknown input quantizer {kind!r}")
    if kind == "sign":
        q: nn.Module = BinaryActivation(
            int(spec["channels"]),
            dim=int(spec["dim"]),
            estimator=str(spec["estimator"]),
            learnable=bool(spec["learnable"]),
        )
    else:
        q = LearnedBinary(
            int(spec["heads"]), estimator=str(spec["estimator"]), learnable=bool(spec["learnable"])
        )
    attach_input_quantizer(module.get_submodule(str(edit["layer"])), q)


# ---- packed 1-bit storage -----------------------------------------------------------------------------
PACKED_FORMAT = "edgec-1bit"
PACKED_VERSION = "1"


def pack_signs(weight: np.ndarray) -> np.ndarray:
    """``[C, ...]`` weights -> ``[C, ceil(n / 8)]`` bytes: bit 1 for ``w >= 0`` (+1), 0 for -1, in
    row-major order of each output channel, most significant bit first, each row padded with 0 bits."""
    w = np.asarray(weight).reshape(weight.shape[0], -1)
    return np.packbits(w >= 0, axis=1, bitorder="big")


def unpack_signs(bits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_signs`: ``+-1`` as float32 of ``shape``."""
    n = int(np.prod(shape[1:]))
    b = np.unpackbits(np.asarray(bits, np.uint8), axis=1, count=n, bitorder="big")
    return (b.astype(np.float32) * 2.0 - 1.0).reshape(shape)


def write_packed(path: Path, layers: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Write the ``edgec-1bit`` file: per layer ``(weight, scale)`` with ``weight == scale[c] * +-1``.

    A safetensors file (a JSON header and raw little-endian tensors; nothing executes on load)
    holding ``<layer>.bits`` (uint8 ``[C, ceil(n / 8)]``, :func:`pack_signs`) and ``<layer>.scale``
    (float32 ``[C]``); its metadata names the format, its version and each layer's weight shape.
    Returns a description for the report.
    """
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    shapes: dict[str, list[int]] = {}
    for name, (weight, scale) in layers.items():
        w = np.asarray(weight, np.float32)
        s = np.asarray(scale, np.float32).reshape(-1)
        expect = s.reshape(-1, *([1] * (w.ndim - 1))) * np.where(w >= 0, 1.0, -1.0)
        if s.size != w.shape[0] or not np.array_equal(expect.astype(np.float32), w):
            raise ValueError(f"the weights of '{name}' are not scale[c] * +-1")
        tensors[f"{name}.bits"] = pack_signs(w)
        tensors[f"{name}.scale"] = s
        shapes[name] = [int(d) for d in w.shape]
    meta = {"format": PACKED_FORMAT, "version": PACKED_VERSION, "shapes": json.dumps(shapes)}
    save_file(tensors, str(path), metadata=meta)
    fp32 = sum(4 * int(np.prod(s)) for s in shapes.values())
    size = path.stat().st_size
    return {
        "format": f"{PACKED_FORMAT} v{PACKED_VERSION} (safetensors; docs/binarization.md)",
        "layers": sorted(shapes),
        "bytes": size,
        "fp32_bytes_of_those_layers": fp32,
        "ratio_vs_fp32": round(size / fp32, 5) if fp32 else None,
    }


def read_packed(path: Path) -> dict[str, np.ndarray]:
    """The weights of every layer in an ``edgec-1bit`` file, ``scale[c] * +-1`` as float32."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if meta.get("format") != PACKED_FORMAT:
            raise ValueError(f"'{path}' is not an {PACKED_FORMAT} file")
        shapes = {k: tuple(v) for k, v in json.loads(meta["shapes"]).items()}
        out = {}
        for name, shape in shapes.items():
            signs = unpack_signs(f.get_tensor(f"{name}.bits"), shape)
            scale = f.get_tensor(f"{name}.scale").astype(np.float32)
            out[name] = signs * scale.reshape(-1, *([1] * (len(shape) - 1)))
    return out
