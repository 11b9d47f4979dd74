"""INT8 Q/DQ in TensorRT's explicit-quantization form: where the Q/DQ go, and writing them.

Placement (TensorRT developer guide, "Q/DQ layer placement recommendations"; the same graph NVIDIA
Model Optimizer's ONNX PTQ writes, measured in ../shared reference deployment.md):

* every weighted op (Conv, ConvTranspose, Gemm, MatMul with a constant operand) gets a Q/DQ pair on
  its activation input and a DQ on its weight; TensorRT then runs it in INT8 and fuses the
  following BatchNorm / ReLU / Q into it;
* a residual Add is fed by its Conv *directly* and by a Q/DQ on the other (skip) branch: the pattern
  TensorRT fuses into one Conv+Add kernel (a Q/DQ on the Conv branch would block that fusion);
* nothing else: TensorRT propagates the scales through pooling, ReLU and reshapes itself.

Scales: symmetric int8, zero-point 0. Weights per output channel (``max |w_c| / 127``) stored as int8
initializers with a DequantizeLinear (no Q on constants: a quarter of the FP32 size); activations
per tensor, ``max(|lo|, |hi|) / 127`` of a calibrated range (or of a learned scale). Biases stay
float (TensorRT refuses int32 bias DQ).

Written by hand rather than with ONNX Runtime's ``quantize_static``: its symmetric QDQ mode puts Q/DQ
on every op output (blocking TensorRT's Conv+Add fusion) and int32 bias DQs by default; the ranges
still come from ONNX Runtime's calibrators (:func:`calibrate`).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.errors import DataError
from edgec.targets.jetson.rules import WEIGHTED_OPS, output_channel_axis

if TYPE_CHECKING:
    import onnx

    from edgec.data import Dataset
    from edgec.progress import Progress

INT8_MAX = 127.0
#: smallest scale written (a channel of all-zero weights or a constant-zero activation)
MIN_SCALE = 1e-8


@dataclass(frozen=True)
class ActPoint:
    """An activation tensor quantized for one consumer input."""

    tensor: str
    consumer: str  # node name
    index: int  # input index of the consumer


@dataclass(frozen=True)
class WeightPoint:
    initializer: str
    consumer: str
    index: int
    axis: int  # per-channel axis (the op's output-channel axis)


@dataclass
class Placement:
    activations: list[ActPoint] = field(default_factory=list)
    weights: list[WeightPoint] = field(default_factory=list)
    residual_adds: int = 0  # Adds given the Conv+Add fusion pattern

    @property
    def tensors(self) -> list[str]:
        """Activation tensors that need a scale, in graph order, once each."""
        return list(dict.fromkeys(p.tensor for p in self.activations))


def _ensure_names(model: onnx.ModelProto) -> None:
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def place(model: onnx.ModelProto) -> Placement:
    """Where TensorRT wants Q/DQ in the float graph ``model`` (names every node first)."""
    _ensure_names(model)
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    plan = Placement()
    for node in model.graph.node:
        if node.op_type in WEIGHTED_OPS and len(node.input) >= 2:
            w_idx = next((i for i in (1, 0) if node.input[i] in inits), None)
            if w_idx is None:
                continue  # activation x activation MatMul (attention): left in float
            if node.op_type != "MatMul" and w_idx != 1:
                continue
            rank = len(inits[node.input[w_idx]].dims)
            axis = output_channel_axis(node, rank) if w_idx == 1 else None
            if axis is None:  # MatMul with a constant left operand: per-tensor weight
                axis = -1
            plan.weights.append(WeightPoint(node.input[w_idx], node.name, w_idx, axis))
            plan.activations.append(ActPoint(node.input[1 - w_idx], node.name, 1 - w_idx))
        elif node.op_type == "Add" and len(node.input) == 2 and not any(i in inits for i in node.input):
            from_weighted = [
                producer.get(i) is not None and producer[i].op_type in WEIGHTED_OPS for i in node.input
            ]
            if any(from_weighted):
                # the Conv branch stays direct (fused); the other input is quantized. With two Conv
                # inputs (a downsampling block), the second one is quantized.
                skip = 1 if from_weighted[0] else 0
                plan.activations.append(ActPoint(node.input[skip], node.name, skip))
                plan.residual_adds += 1
    return plan


class _Reader:
    """ONNX Runtime's calibration reader over an edgec Dataset, one sample per call."""

    def __init__(self, batches: Iterator[np.ndarray], input_name: str) -> None:
        self.batches = batches
        self.input_name = input_name
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.batches, None)
        if x is None:
            return None
        self.count += 1
        return {self.input_name: x}

    def rewind(self) -> None:  # part of ORT's interface; the data is consumed once
        return None


def calibrate(
    fp32: Path,
    data: Dataset,
    *,
    input_name: str,
    input_shape: tuple[int, ...],
    tensors: list[str],
    method: str = "minmax",
    samples: int = 128,
    batch: int | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, float], int]:
    """Symmetric int8 scales (``max|range| / 127``) of ``tensors``, with ONNX Runtime's calibrators.

    ``batch`` feeds samples in groups of that size (a graph exported with a fixed batch).
    Returns the scales and the number of samples used.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from edgec.progress import NullProgress

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    progress = progress or NullProgress()

    def batches() -> Iterator[np.ndarray]:
        with progress.task("calibrating", total=samples) as task:
            group: list[np.ndarray] = []
            for x, _ in data.checked(input_shape, samples):
                group.append(x.astype(np.float32))
                task.advance()
                if len(group) == (batch or 1):
                    yield np.stack(group)
                    group = []

    with (
        tempfile.TemporaryDirectory() as tmp,
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        cal = create_calibrator(
            fp32,
            op_types_to_calibrate=None,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=methods[method],
            extra_options={"symmetric": True},
        )
        reader = _Reader(batches(), input_name)
        cal.collect_data(reader)
        ranges = cal.compute_data()
    if reader.count == 0:
        raise DataError("no calibration samples were read", hint="check --calib")
    scales: dict[str, float] = {}
    for t in tensors:
        if t not in ranges.data:
            raise DataError(f"calibration produced no range for tensor '{t}'")
        lo, hi = (float(np.asarray(v).max()) for v in _range(ranges.data[t]))
        scales[t] = max(max(abs(lo), abs(hi)) / INT8_MAX, MIN_SCALE)
    return scales, reader.count


def _range(item: Any) -> tuple[Any, Any]:
    value = getattr(item, "range_value", item)
    return value[0], value[1]


def weight_scales(w: np.ndarray, axis: int) -> np.ndarray:
    """Per-channel symmetric scales ``max |w_c| / 127`` on ``axis`` (per tensor when axis is -1)."""
    if axis == -1:
        return np.asarray(max(float(np.abs(w).max()) / INT8_MAX, MIN_SCALE), np.float32)
    red = tuple(i for i in range(w.ndim) if i != axis)
    return np.maximum(np.abs(w).max(axis=red) / INT8_MAX, MIN_SCALE).astype(np.float32)


def quantize_weight(w: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * w.ndim
    if scale.ndim:
        shape[axis] = -1
    return np.clip(np.round(w / scale.reshape(shape)), -128, 127).astype(np.int8)


def write_qdq(model: onnx.ModelProto, plan: Placement, act_scales: Mapping[str, float]) -> dict[str, int]:
    """Insert the Q/DQ of ``plan`` into ``model`` in place; returns counts for the report."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes = {n.name: n for n in g.node}
    zp = "edgec_zero_point_int8"
    g.initializer.append(numpy_helper.from_array(np.array(0, np.int8), zp))
    new_nodes: dict[str, list[onnx.NodeProto]] = defaultdict(list)  # inserted before the named node
    quantized: dict[str, str] = {}
    for p in plan.weights:
        w = numpy_helper.to_array(inits[p.initializer]).astype(np.float32)
        scale = weight_scales(w, p.axis)
        base = p.initializer
        if base not in quantized:
            q, s = f"{base}_int8", f"{base}_scale"
            g.initializer.extend(
                [
                    numpy_helper.from_array(quantize_weight(w, scale, p.axis), q),
                    numpy_helper.from_array(scale, s),
                ]
            )
            zname = zp
            if scale.ndim:
                zname = f"{base}_zero_point"
                g.initializer.append(numpy_helper.from_array(np.zeros(scale.shape, np.int8), zname))
            attrs: dict[str, Any] = {"axis": p.axis} if scale.ndim else {}
            dq = helper.make_node(
                "DequantizeLinear", [q, s, zname], [f"{base}_dq"], f"{base}_DequantizeLinear", **attrs
            )
            new_nodes[p.consumer].append(dq)
            quantized[base] = dq.output[0]
        nodes[p.consumer].input[p.index] = quantized[base]
    q_out: dict[str, str] = {}
    for a in plan.activations:
        s = f"{a.tensor}_scale"
        if a.tensor not in q_out:
            g.initializer.append(numpy_helper.from_array(np.asarray(act_scales[a.tensor], np.float32), s))
            q = helper.make_node(
                "QuantizeLinear", [a.tensor, s, zp], [f"{a.tensor}_q"], f"{a.tensor}_QuantizeLinear"
            )
            new_nodes[a.consumer].append(q)
            q_out[a.tensor] = q.output[0]
        dq_name = f"{a.tensor}_DequantizeLinear_{a.consumer}"
        dq = helper.make_node("DequantizeLinear", [q_out[a.tensor], s, zp], [f"{dq_name}_out"], dq_name)
        new_nodes[a.consumer].append(dq)
        nodes[a.consumer].input[a.index] = dq.output[0]
    ordered: list[onnx.NodeProto] = []
    for node in g.node:
        ordered.extend(new_nodes.get(node.name, []))
        ordered.append(node)
    used = {i for n in ordered for i in n.input}
    for unused in [i for i in g.initializer if i.name in quantized and i.name not in used]:
        g.initializer.remove(unused)  # the float weight, replaced by its int8 copy
    del g.node[:]
    g.node.extend(ordered)
    return {
        "quantize_linear": len(q_out),
        "dequantize_linear": len(plan.activations) + len(quantized),
        "quantized_weights": len(quantized),
        "residual_adds_fused_pattern": plan.residual_adds,
    }
