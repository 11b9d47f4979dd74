"""What TensorRT (10.3, JetPack 6) and the Orin DLA accept in an ONNX graph, checked on CPU.

:func:`check_graph` returns :class:`~edgec.target.Violation` rows (the why-not table, exit 4).
The rules and where each comes from:

Explicit quantization (TensorRT's ONNX parser, onnx-tensorrt 10.1 ``QuantDequantLinearHelper`` in
onnxOpImporters.cpp, and docs/operators.md; TensorRT developer guide "Explicit Quantization"):

``qdq-dtype``        Q/DQ are int8 (int4 only for weights, weight-only); uint8 is refused (asymmetric
                     activations are the ONNX Runtime CPU scheme); fp8 needs Ada / Hopper, not Orin.
``int32-bias-dq``    an int32 DequantizeLinear (a quantized bias) is refused by the parser
                     (onnx-tensorrt 850, TensorRT 3360): biases stay in float.
``qdq-zero-point``   zero-points must be all zero (symmetric only).
``qdq-scale``        scales float, finite and strictly positive.
``qdq-scale-shape``  activations per tensor (scalar scale); per-channel weight scales 1-D with one
                     scale per channel; a scale of the input's rank (blocks) only for int4 weights,
                     one blocked axis.
``qdq-axis``         per-channel weight scales on the output-channel axis: 0 for Conv and Gemm
                     (transB=1), 1 for ConvTranspose and Gemm (transB=0), the last axis of MatMul.
``qdq-pair``         a QuantizeLinear feeds DequantizeLinear nodes only, with the same scale and
                     zero-point (a bare int8 tensor cannot enter a float op in a strongly typed network).
``qdq-missing``      in an INT8 graph, both the activation and the weight of every weighted op (Conv,
                     ConvTranspose, Gemm, MatMul with a constant operand) come through a DQ, except ops
                     the graph's own metadata lists as kept in float.
``int4-weight-only`` int4 appears only on constant weights of MatMul / Gemm.

Operators and opset (onnx-tensorrt 10.1 docs/operators.md: "opset 9 to opset 20"):

``onnx-opset``       the default-domain opset must be in [9, 20]; int4 weight-only graphs are written
                     at opset 21 (blocked DequantizeLinear needs it in ONNX); TensorRT's parser only
                     checks opset >= 7 (ModelImporter.cpp) and infers blocks from the scale's shape.
``trt-unsupported-op``  an operator TensorRT 10 does not import (not in the operator table, or a
                     non-standard domain such as ONNX Runtime's com.microsoft ops).

The DLA's rules are in :mod:`edgec.targets.jetson.dla`; the graph view both read is
:mod:`edgec.targets.jetson.graphview`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.target import Violation
from edgec.targets.jetson.dla import dla_rules
from edgec.targets.jetson.graphview import (
    QDQ_OPS,
    GraphView,
    node_attr,
    node_name,
    op_names,
    weight_value,
)

if TYPE_CHECKING:
    import onnx


#: ONNX operators TensorRT 10 imports (onnx-tensorrt 10.1 docs/operators.md, rows marked Y)
TRT10_OPS = op_names(
    """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
    CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
    DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
    Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
    GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish
    Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu
    Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
    RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
    Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
    Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor"""
)
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
OPSET_RANGE = (9, 20)
OPSET_INT4 = 21
INT8, UINT8, INT32, INT4, UINT4 = 3, 2, 6, 22, 21  # onnx.TensorProto data types
FP8_TYPES = frozenset({17, 18, 19, 20})
FLOAT_TYPES = frozenset({1, 10, 16})  # float32, float16, bfloat16
#: metadata key listing weighted ops the graph keeps in float on purpose (comma-separated names)
FLOAT_OPS_KEY = "edgec.jetson.float_ops"
TRT_SOURCE = "onnx-tensorrt 10.1 (QuantDequantLinearHelper, docs/operators.md)"


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def output_channel_axis(node: Any, weight_rank: int) -> int | None:
    """The axis of a weighted op's weight that indexes its output channels (None if not a weight op)."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        return 0 if node_attr(node, "transB", 0) else 1
    if node.op_type == "MatMul":
        return weight_rank - 1
    return None


def float_ops(model: onnx.ModelProto) -> set[str]:
    for p in model.metadata_props:
        if p.key == FLOAT_OPS_KEY:
            return {s for s in p.value.split(",") if s}
    return set()


def check_graph(
    model: onnx.ModelProto, *, precision: str, dla: bool = False, gpu_fallback: bool = False
) -> list[Violation]:
    """Every rule above, as rows: what TensorRT (and the DLA, with ``dla``) cannot take in ``model``."""
    g = GraphView(model)
    rows: list[Violation] = []
    rows += _opset_rules(model, precision)
    rows += _op_rules(model)
    rows += _qdq_rules(g, precision)
    if precision == "int8":
        rows += _placement_rules(g, float_ops(model))
    if dla:
        rows += dla_rules(g, precision, gpu_fallback=gpu_fallback)
    return rows


def check_export(
    model: onnx.ModelProto, *, precision: str, dla: bool = False, gpu_fallback: bool = False
) -> list[Violation]:
    """The rules that hold before quantization (``edgec check``): opset, operators, the DLA's."""
    rows = _opset_rules(model, "none") + _op_rules(model)
    if dla:
        rows += dla_rules(GraphView(model), precision, gpu_fallback=gpu_fallback)
    return rows


def _opset_rules(model: onnx.ModelProto, precision: str) -> list[Violation]:
    opset = opset_of(model)
    lo, hi = OPSET_RANGE
    if lo <= opset <= hi or (precision == "int4-weights" and opset == OPSET_INT4):
        return []
    return [
        Violation(
            "(graph)",
            "onnx-opset",
            f"opset {opset} is outside TensorRT 10's documented range [{lo}, {hi}] ({TRT_SOURCE})",
            f"export at an opset in [{lo}, {hi}] (edgec writes {hi - 1})",
        )
    ]


def _op_rules(model: onnx.ModelProto) -> list[Violation]:
    rows = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            rows.append(
                Violation(
                    node_name(node),
                    "trt-unsupported-op",
                    f"{node.domain}::{node.op_type} is not a standard ONNX operator; TensorRT imports none",
                    "export without runtime-specific fusions (no ONNX Runtime optimized graph)",
                )
            )
        elif node.op_type not in TRT10_OPS:
            rows.append(
                Violation(
                    node_name(node),
                    "trt-unsupported-op",
                    f"{node.op_type} is not in TensorRT 10's ONNX operator table ({TRT_SOURCE})",
                    "replace the operator in the model, or implement it as a TensorRT plugin",
                )
            )
    return rows


def _dtype_name(t: int | None) -> str:
    from onnx import TensorProto

    return "unknown" if t is None else TensorProto.DataType.Name(t).lower()


def _qdq_rules(g: GraphView, precision: str) -> list[Violation]:
    rows: list[Violation] = []
    for node in g.model.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        is_dq = node.op_type == "DequantizeLinear"
        name = node_name(node)
        x, scale_name = node.input[0], node.input[1]
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        weight = g.is_constant(x)
        qtype = _dq_type(g, node) if is_dq else _q_type(g, node)
        if qtype == INT32:
            rows.append(
                Violation(
                    name,
                    "int32-bias-dq",
                    f"DequantizeLinear of the int32 tensor '{x}' (a quantized bias): TensorRT's parser "
                    "refuses it (onnx-tensorrt 850, TensorRT 3360)",
                    "keep biases in float (ONNX Runtime: extra_options QuantizeBias=False)",
                )
            )
            continue
        if qtype in (UINT8, UINT4):
            rows.append(
                Violation(
                    name,
                    "qdq-dtype",
                    f"{node.op_type} on '{x}' is {_dtype_name(qtype)}: TensorRT quantizes symmetrically to "
                    "int8 only (uint8 asymmetric activations are the ONNX Runtime CPU scheme)",
                    "quantize with signed int8, zero-point 0 (edgec's jetson target does)",
                )
            )
        elif qtype in FP8_TYPES:
            rows.append(
                Violation(
                    name, "qdq-dtype", "FP8 quantization needs Ada or Hopper GPUs; Orin (Ampere) has none", ""
                )
            )
        elif qtype == INT4 and (not weight or precision != "int4-weights"):
            rows.append(
                Violation(
                    name,
                    "int4-weight-only",
                    f"int4 {node.op_type} on '{x}', which is "
                    + ("an activation" if not weight else f"a weight in a {precision} graph")
                    + ": TensorRT's INT4 is weight-only (block-quantized MatMul / Gemm weights)",
                    "compile with --quantize int4-weights, or keep activations in int8 / float",
                )
            )
        elif qtype not in (INT8, INT4, None):
            rows.append(
                Violation(name, "qdq-dtype", f"{node.op_type} of type {_dtype_name(qtype)}", "use int8")
            )
        rows += _zero_point_rule(g, node, zp_name)
        rows += _scale_rules(g, node, scale_name, weight=weight, int4=qtype == INT4)
        if not is_dq:
            rows += _pair_rule(g, node)
    return rows


def _q_type(g: GraphView, q: Any) -> int | None:
    """The type a QuantizeLinear produces: its zero-point's, ``output_dtype``, else ONNX's default uint8."""
    if len(q.input) > 2 and q.input[2]:
        return g.dtype(q.input[2])
    return int(node_attr(q, "output_dtype", 0)) or UINT8


def _dq_type(g: GraphView, dq: Any) -> int | None:
    """The type a DequantizeLinear reads: its constant input's, its Q's, or its zero-point's."""
    x = dq.input[0]
    if x in g.const_types:
        return g.const_types[x]
    producer = g.producer.get(x)
    if producer is not None and producer.op_type == "QuantizeLinear":
        return _q_type(g, producer)
    if len(dq.input) > 2 and dq.input[2]:
        return g.dtype(dq.input[2])
    return g.dtype(x)


def _zero_point_rule(g: GraphView, node: Any, zp_name: str | None) -> list[Violation]:
    if zp_name is None:
        return []
    zp = g.const(zp_name)
    if zp is None:
        return [
            Violation(
                node_name(node),
                "qdq-zero-point",
                f"zero-point '{zp_name}' is not a constant: TensorRT must see it is zero",
                "store zero-points as initializers",
            )
        ]
    if np.any(zp.astype(np.int64) != 0):
        nz = np.unique(zp[zp != 0])[:4].tolist()
        return [
            Violation(
                node_name(node),
                "qdq-zero-point",
                f"zero-point {nz} is not 0: TensorRT supports symmetric quantization only ({TRT_SOURCE})",
                "quantize symmetrically (zero-point 0) with signed int8",
            )
        ]
    return []


def _scale_rules(g: GraphView, node: Any, scale_name: str, *, weight: bool, int4: bool) -> list[Violation]:
    name = node_name(node)
    scale = g.const(scale_name)
    if scale is None:
        return [
            Violation(
                name, "qdq-scale", f"scale '{scale_name}' is not a constant", "store scales as initializers"
            )
        ]
    rows = []
    if g.dtype(scale_name) not in FLOAT_TYPES:
        rows.append(Violation(name, "qdq-scale", f"scale of type {_dtype_name(g.dtype(scale_name))}", ""))
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        rows.append(
            Violation(
                name,
                "qdq-scale",
                f"scale '{scale_name}' has values that are not strictly positive and finite "
                f"(min {float(np.min(scale)):.3g})",
                "a channel with all-zero weights needs a small positive scale, not 0",
            )
        )
    if scale.size == 1:
        return rows
    data = node.input[0]
    if not weight:
        rows.append(
            Violation(
                name,
                "qdq-scale-shape",
                f"activation '{data}' has {scale.size} scales (shape {list(scale.shape)}): TensorRT "
                "quantizes activations per tensor",
                "use one scale per activation tensor",
            )
        )
        return rows
    w = weight_value(g, data)
    if w is None:
        return rows
    if scale.ndim == 1:
        axis = node_attr(node, "axis", 1)
        axis = axis + w.ndim if axis < 0 else axis
        if axis >= w.ndim or w.shape[axis] != scale.size:
            rows.append(
                Violation(
                    name,
                    "qdq-scale-shape",
                    f"{scale.size} scales for weight '{data}' of shape {list(w.shape)} on axis {axis}",
                    "one scale per output channel",
                )
            )
        else:
            rows += _axis_rule(g, node, axis, w.ndim)
    elif scale.ndim == w.ndim and int4:
        blocked = [i for i in range(w.ndim) if scale.shape[i] != w.shape[i]]
        if len(blocked) != 1 or w.shape[blocked[0]] % scale.shape[blocked[0]]:
            rows.append(
                Violation(
                    name,
                    "qdq-scale-shape",
                    f"block scales {list(scale.shape)} for weight {list(w.shape)}: TensorRT needs exactly "
                    "one blocked axis whose size the block divides",
                    "block along one axis (the reduction axis of the MatMul)",
                )
            )
    else:
        rows.append(
            Violation(
                name,
                "qdq-scale-shape",
                f"scale of shape {list(scale.shape)} for weight {list(w.shape)}: only per-tensor, "
                "per-channel (1-D) or int4 block scales are accepted",
                "use per-channel scales on the output-channel axis",
            )
        )
    return rows


def _axis_rule(g: GraphView, node: Any, axis: int, rank: int) -> list[Violation]:
    """Per-channel weight scales must lie on the consuming op's output-channel axis."""
    rows = []
    outs = [node.output[0]]
    if node.op_type == "QuantizeLinear":  # a Q on a float weight: its DQ feeds the op
        outs = [d.output[0] for d in g.consumers.get(node.output[0], []) if d.op_type == "DequantizeLinear"]
    for out in outs:
        for op in g.consumers.get(out, []):
            want = output_channel_axis(op, rank)
            if want is not None and op.input[1] == out and axis != want:
                rows.append(
                    Violation(
                        node_name(node),
                        "qdq-axis",
                        f"per-channel scales of the {op.op_type} weight lie on axis {axis}; TensorRT "
                        f"expects the output-channel axis {want}",
                        f"quantize the weight per channel on axis {want}",
                        verified=op.op_type != "MatMul",
                    )
                )
    return rows


def _pair_rule(g: GraphView, q: Any) -> list[Violation]:
    rows = []
    zp = g.const(q.input[2]) if len(q.input) > 2 and q.input[2] else None
    scale = g.const(q.input[1])
    for c in g.consumers.get(q.output[0], []):
        if c.op_type != "DequantizeLinear":
            rows.append(
                Violation(
                    node_name(q),
                    "qdq-pair",
                    f"QuantizeLinear output feeds {c.op_type} '{node_name(c)}' directly: an int8 tensor "
                    "cannot enter a float op",
                    "follow every QuantizeLinear by a DequantizeLinear",
                )
            )
            continue
        c_scale = g.const(c.input[1])
        c_zp = g.const(c.input[2]) if len(c.input) > 2 and c.input[2] else None
        same_scale = scale is not None and c_scale is not None and np.array_equal(scale, c_scale)
        same_zp = (zp is None and c_zp is None) or (
            zp is not None and c_zp is not None and np.array_equal(zp, c_zp)
        )
        if not (same_scale and same_zp):
            rows.append(
                Violation(
                    node_name(q),
                    "qdq-pair",
                    f"the Q/DQ pair '{node_name(q)}' -> '{node_name(c)}' uses different scales or "
                    "zero-points",
                    "a DequantizeLinear must undo its QuantizeLinear exactly",
                )
            )
    return rows


def _from_dq(g: GraphView, name: str) -> bool:
    node = g.producer.get(name)
    return node is not None and node.op_type == "DequantizeLinear"


def _placement_rules(g: GraphView, kept_float: set[str]) -> list[Violation]:
    rows = []
    for node in g.model.graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2:
            continue
        if node.op_type == "MatMul" and not (g.is_constant(node.input[0]) or g.is_constant(node.input[1])):
            continue  # activation x activation (attention): no weight to quantize
        if node.name in kept_float:
            continue
        missing = [
            f"input {i} '{node.input[i]}' ({'weight' if g.is_constant(node.input[i]) else 'activation'})"
            for i in (0, 1)
            if not _from_dq(g, node.input[i])
        ]
        if missing:
            rows.append(
                Violation(
                    node_name(node),
                    "qdq-missing",
                    f"{node.op_type} without Q/DQ on {', '.join(missing)}: in an INT8 graph TensorRT "
                    "runs a weighted op in INT8 only when all of its inputs are quantized",
                    "quantize every input of the op (or list it in the graph's "
                    f"'{FLOAT_OPS_KEY}' metadata to keep it in float)",
                )
            )
    return rows
