"""Quantization parameters as data: one tensor's scale and zero-point, and the graph tensors of a layer.

The hand-off from learned quantization (QAT scales of edgec's compression passes) to a Q/DQ graph:
build :class:`TensorQuant` values per layer input / weight, map them to graph tensors with
:func:`resolve_params`, and give them to :func:`edgec.onnxlib.qdq.write_qdq`, which emits them as
they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgec.errors import UsageError

QType = Literal["uint8", "int8"]
QRANGE: dict[str, tuple[int, int]] = {"uint8": (0, 255), "int8": (-128, 127)}
#: weight ops whose weights are quantized per output channel (ORT's default axes are those:
#: Conv 0, ConvTranspose 1, Gemm 0 / 1 by transB, MatMul 1)
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True, eq=False)
class TensorQuant:
    """One tensor's quantization as data: scale and zero-point, per tensor or per channel (``axis``)."""

    scale: np.ndarray  # float32, shape () or (C,)
    zero_point: np.ndarray  # integer, same shape as scale
    dtype: QType = "int8"
    axis: int | None = None

    def __post_init__(self) -> None:
        scale = np.asarray(self.scale, dtype=np.float32)
        zp = np.asarray(self.zero_point, dtype=np.int64)
        if scale.shape != zp.shape:
            raise ValueError(f"scale shape {scale.shape} != zero-point shape {zp.shape}")
        if scale.ndim > 1 or (scale.ndim == 1 and self.axis is None):
            raise ValueError("a per-channel TensorQuant needs a 1-D scale and an axis")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("scales must be finite and > 0")
        lo, hi = QRANGE[self.dtype]
        if np.any(zp < lo) or np.any(zp > hi):
            raise ValueError(f"zero-points outside the {self.dtype} range [{lo}, {hi}]")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zp)

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int = 0, dtype: QType = "int8") -> TensorQuant:
        return cls(np.asarray(scale, np.float32), np.asarray(zero_point, np.int64), dtype)

    @classmethod
    def per_channel(
        cls,
        scales: Sequence[float] | np.ndarray,
        zero_points: Sequence[int] | np.ndarray | None = None,
        *,
        axis: int = 0,
        dtype: QType = "int8",
    ) -> TensorQuant:
        s = np.asarray(scales, dtype=np.float32).reshape(-1)
        zp = np.zeros(s.shape, np.int64) if zero_points is None else np.asarray(zero_points).reshape(-1)
        return cls(s, zp, dtype, axis)

    @classmethod
    def from_range(cls, lo: float, hi: float, dtype: QType, *, symmetric: bool) -> TensorQuant:
        """Scale and zero-point covering ``[lo, hi]`` (widened to include 0), as ORT computes them."""
        qmin, qmax = QRANGE[dtype]
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if symmetric:
            bound = max(abs(lo), abs(hi))
            scale = bound / qmax if bound > 0 else 1.0
            zp = 0 if dtype == "int8" else (qmin + qmax + 1) // 2
        else:
            scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
            zp = round(qmin - lo / scale)
        return cls.per_tensor(scale, zp, dtype)

    @classmethod
    def symmetric_for(cls, w: np.ndarray, axis: int | None, dtype: QType = "int8") -> TensorQuant:
        """Symmetric scales covering the constant ``w`` (``max |w| / qmax``, zero-point 0): per
        channel along ``axis``, per tensor when ``axis`` is None; an all-zero channel gets scale 1."""
        a = np.abs(np.asarray(w, dtype=np.float32))
        qmax = QRANGE[dtype][1]
        if axis is None:
            bound = float(a.max()) if a.size else 0.0
            return cls.per_tensor(bound / qmax if bound > 0 else 1.0, 0, dtype)
        red = tuple(i for i in range(a.ndim) if i != axis % a.ndim)
        bound = a.max(axis=red)
        return cls.per_channel(np.where(bound > 0, bound / qmax, 1.0), axis=axis % a.ndim, dtype=dtype)

    @property
    def qrange(self) -> tuple[int, int]:
        return QRANGE[self.dtype]

    def real_range(self) -> tuple[float, float]:
        """The real values the quantized range represents (per-tensor; widest over channels)."""
        qmin, qmax = self.qrange
        lo = (qmin - self.zero_point) * self.scale
        hi = (qmax - self.zero_point) * self.scale
        return float(np.min(lo)), float(np.max(hi))

    def _broadcast(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        shape = [1] * ndim
        if self.axis is not None:
            shape[self.axis] = -1
        s = self.scale.reshape(shape) if self.scale.ndim else self.scale
        zp = self.zero_point.reshape(shape) if self.zero_point.ndim else self.zero_point
        return s, zp

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """QuantizeLinear in NumPy: the integers of ``x``, in this tensor's dtype."""
        x = np.asarray(x, dtype=np.float32)
        s, zp = self._broadcast(x.ndim)
        qmin, qmax = self.qrange
        q = np.clip(np.round(x / s) + zp, qmin, qmax)  # np.round is round-half-to-even, as ONNX
        return q.astype(np.uint8 if self.dtype == "uint8" else np.int8)

    def fake_quantize(self, x: np.ndarray) -> np.ndarray:
        """QuantizeLinear then DequantizeLinear in NumPy (the reference for tests)."""
        q = self.quantize(x).astype(np.float32)
        s, zp = self._broadcast(q.ndim)
        return ((q - zp) * s).astype(np.float32)

    def _ort_override(self) -> list[dict[str, Any]]:
        from onnxruntime.quantization import QuantType

        qt = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[self.dtype]
        npdt = np.uint8 if self.dtype == "uint8" else np.int8
        # ORT wants NumPy arrays (0-d) for scale and zero-point
        if self.axis is None:
            return [
                {
                    "scale": np.array(self.scale, np.float32),
                    "zero_point": np.array(self.zero_point, npdt),
                    "quant_type": qt,
                }
            ]
        return [
            {
                "scale": np.array(s, np.float32),
                "zero_point": np.array(z, npdt),
                "quant_type": qt,
                "axis": self.axis,
            }
            for s, z in zip(self.scale, self.zero_point, strict=True)
        ]


def layer_tensors(model_path: Path) -> dict[str, dict[str, str]]:
    """Graph tensors by layer: ``{"conv1": {"node": "/conv1/Conv", "input": ..., "weight": ...,
    "output": ...}}`` for the weighted ops. The layer name is the PyTorch module path the exporters
    write into node names (``/features/features.0/features.0.0/Conv`` -> ``features.0.0``)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    init = {i.name for i in model.graph.initializer}
    out: dict[str, dict[str, str]] = {}
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        layer = _module_path(node.name)
        entry = {"node": node.name, "op": node.op_type, "input": node.input[0], "output": node.output[0]}
        if len(node.input) > 1 and node.input[1] in init:
            entry["weight"] = node.input[1]
        out.setdefault(layer, entry)
    return out


def _module_path(node_name: str) -> str:
    """The module path in a node name's scopes. The exporter names a scope by the module's path from its
    nearest ancestor that is not a container: a Sequential's child repeats its parent's scope as a
    prefix (``/features/features.0/features.0.0/Conv`` -> ``features.0.0``; ``/blocks/blocks.0/mlp/
    mlp.0/MatMul`` -> ``blocks.0.mlp.0``), an attribute is its name (``/blocks/blocks.0/attn/qkv/MatMul``
    -> ``blocks.0.attn.qkv``)."""
    scopes = [p for p in node_name.split("/") if p][:-1]
    if not scopes:
        return node_name
    path, prev = "", ""
    for s in scopes:
        if prev and s.startswith(prev + "."):
            path = path[: len(path) - len(prev)] + s  # the parent's scope repeated: replace it
        else:
            path = f"{path}.{s}" if path else s
        prev = s
    return path


def resolve_params(model_path: Path, params: Mapping[str, TensorQuant]) -> dict[str, TensorQuant]:
    """Keys ``"layer:input"`` / ``"layer:weight"`` / ``"layer:output"`` (or graph tensor names) ->
    graph tensor names, for :func:`write_qdq`."""
    layers = layer_tensors(model_path)
    out: dict[str, TensorQuant] = {}
    for key, tq in params.items():
        layer, sep, role = key.rpartition(":")
        if not sep:
            out[key] = tq
            continue
        if layer not in layers or role not in layers[layer]:
            raise UsageError(
                f"no tensor '{role}' of layer '{layer}' in the graph",
                hint=f"layers with weights: {', '.join(sorted(layers)[:12])}",
            )
        out[layers[layer][role]] = tq
    return out
