"""INT8 Q/DQ in TensorRT's explicit-quantization form: where the Q/DQ go, and writing them.

Placement (TensorRT developer guide, "Q/DQ layer placement recommendations"; the same graph NVIDIA
Model Optimizer's ONNX PTQ writes, measured in ../shared reference deployment.md):

* every weighted op (Conv, ConvTranspose, Gemm, MatMul with a constant operand) gets a Q/DQ pair on
  its activation input and a DQ on its weight; TensorRT then runs it in INT8 and fuses the
  following BatchNorm / ReLU / Q into it;
* a residual Add is fed by its Conv *directly* and by a Q/DQ on the other (skip) branch: the pattern
  TensorRT fuses into one Conv+Add kernel (a Q/DQ on the Conv branch would block that fusion);
* nothing else: TensorRT propagates the scales through pooling, ReLU and reshapes itself.

The numbers come from :mod:`edgec.onnxlib`, shared with the CPU target: the scheme is its
:data:`~edgec.onnxlib.S8S8` preset (symmetric int8, zero-point 0, weights per output channel, float
bias), activation ranges are measured by :func:`edgec.onnxlib.calibrate` (ONNX Runtime's calibrators)
and every scale is a :class:`~edgec.onnxlib.TensorQuant`: activations per tensor from a range
(``max(|lo|, |hi|) / 127``) or from a QAT pass's learned scale, weights per channel
(``max |w_c| / 127``) stored as int8 initializers with a DequantizeLinear (no Q on constants: a
quarter of the FP32 size), checked against the scheme by :func:`edgec.onnxlib.check_params`.

Only the *placement* is this target's own, and written here rather than by
:func:`edgec.onnxlib.write_qdq`: that writer is ONNX Runtime's QDQ quantizer, whose placement rules
are ORT's kernels' (Q/DQ on the outputs of quantized ops too, which on a Conv feeding a residual
Add blocks TensorRT's Conv+Add fusion; no rule for quantizing only an Add's skip branch). TensorRT's
recommendation is a different graph, so it is placed and written by hand from the same numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.errors import DataError
from edgec.onnxlib import S8S8, QdqScheme, TensorQuant, check_params
from edgec.targets.jetson.rules import WEIGHTED_OPS, output_channel_axis

if TYPE_CHECKING:
    import onnx


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

    def op_types(self, model: onnx.ModelProto) -> list[str]:
        """The op types the activations are quantized before (what calibration must measure)."""
        kind = {n.name: n.op_type for n in model.graph.node}
        return sorted({kind[p.consumer] for p in self.activations})


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


def act_quant(ranges: Mapping[str, tuple[float, float]], tensors: list[str]) -> dict[str, TensorQuant]:
    """The S8S8 activation quantization of ``tensors`` from measured ranges (``onnxlib.calibrate``)."""
    missing = [t for t in tensors if t not in ranges]
    if missing:
        raise DataError(f"calibration produced no range for tensor '{missing[0]}'")
    return {
        t: TensorQuant.from_range(*ranges[t], S8S8.activation_dtype, symmetric=S8S8.activation_symmetric)
        for t in tensors
    }


def write_qdq(
    model: onnx.ModelProto,
    plan: Placement,
    acts: Mapping[str, TensorQuant],
    scheme: QdqScheme = S8S8,
    learned: Mapping[str, TensorQuant] | None = None,
) -> dict[str, Any]:
    """Insert the Q/DQ of ``plan`` into ``model`` in place, activations quantized as ``acts`` and
    weights symmetric per channel in the scheme's dtype: a weight in ``learned`` (a compression pass's
    grid, :func:`edgec.onnxlib.learned.learned_weight_params`) keeps its scales when they are on the
    placement's channel axis, the others get ``max|w_c| / 127``; returns counts for the report."""
    from onnx import helper, numpy_helper

    if not (scheme.activation_symmetric and scheme.weight_symmetric) or scheme.quantize_bias:
        raise ValueError(f"TensorRT's placement takes a symmetric scheme with float bias, not {scheme.name}")
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes = {n.name: n for n in g.node}
    weights: dict[str, TensorQuant] = {}
    for p in plan.weights:
        if p.initializer not in weights:
            w = numpy_helper.to_array(inits[p.initializer])
            axis = p.axis if scheme.per_channel and p.axis != -1 else None
            kept = (learned or {}).get(p.initializer)
            if kept is not None and kept.axis == axis:
                weights[p.initializer] = kept
            else:
                weights[p.initializer] = TensorQuant.symmetric_for(w, axis, scheme.weight_dtype)
    check_params(scheme, {**{a.tensor: acts[a.tensor] for a in plan.activations}, **weights}, set(inits))
    zp = "edgec_zero_point_int8"
    g.initializer.append(numpy_helper.from_array(np.array(0, np.int8), zp))
    new_nodes: dict[str, list[onnx.NodeProto]] = defaultdict(list)  # inserted before the named node
    quantized: dict[str, str] = {}
    for p in plan.weights:
        base = p.initializer
        if base not in quantized:
            tq = weights[base]
            w = numpy_helper.to_array(inits[base])
            q, s = f"{base}_int8", f"{base}_scale"
            g.initializer.extend(
                [numpy_helper.from_array(tq.quantize(w), q), numpy_helper.from_array(tq.scale, s)]
            )
            zname = zp
            if tq.axis is not None:
                zname = f"{base}_zero_point"
                g.initializer.append(numpy_helper.from_array(tq.zero_point.astype(np.int8), zname))
            attrs: dict[str, Any] = {"axis": tq.axis} if tq.axis is not None else {}
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
            g.initializer.append(numpy_helper.from_array(acts[a.tensor].scale, s))
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
