"""The TensorRT / DLA rule checker on hand-built ONNX graphs: a correct explicit-quantization graph
passes, and each way of breaking it is refused with the right rule.

The reference graph is a small residual CNN in TensorRT's recommended Q/DQ form (int8, zero-point 0,
per-channel weight scales on axis 0, per-tensor activations, the residual Add fed by its Conv
directly and by a DQ on the skip branch, float biases). It is run in ONNX Runtime to prove it is a
valid, executable graph before the checker sees it.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.targets.jetson.dla import dla_layers
from edgec.targets.jetson.rules import FLOAT_OPS_KEY, check_graph

RNG = np.random.default_rng(0)


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr, name)


def _qweight(name: str, w: np.ndarray, axis: int = 0) -> tuple[list[onnx.TensorProto], np.ndarray]:
    """int8 symmetric per-channel weight on ``axis``: initializers (int8 values, scales, zero-points)."""
    red = tuple(i for i in range(w.ndim) if i != axis)
    scale = (np.abs(w).max(axis=red) / 127.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -128, 127).astype(np.int8)
    return [
        _init(f"{name}_q", q),
        _init(f"{name}_scale", scale),
        _init(f"{name}_zp", np.zeros(scale.shape, np.int8)),
    ], q


def build(
    *,
    zp_dtype: np.dtype = np.int8,
    zp_value: int = 0,
    w2_axis: int = 0,
    drop_conv2_input_dq: bool = False,
    int32_bias: bool = False,
    act_per_channel: bool = False,
    opset: int = 19,
    batch: int | str = "N",
) -> onnx.ModelProto:
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def act_qdq(x: str, scale: float, tag: str) -> str:
        s = np.full((4,), scale, np.float32) if act_per_channel and tag == "r1" else np.float32(scale)
        zp = np.full(np.shape(s), zp_value, zp_dtype)
        inits.extend([_init(f"{tag}_s", np.asarray(s)), _init(f"{tag}_zp", np.asarray(zp))])
        axis = {"axis": 1} if np.ndim(s) else {}
        nodes.append(
            helper.make_node("QuantizeLinear", [x, f"{tag}_s", f"{tag}_zp"], [f"{tag}_q"], f"Q_{tag}", **axis)
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [f"{tag}_q", f"{tag}_s", f"{tag}_zp"], [f"{tag}_dq"], f"DQ_{tag}", **axis
            )
        )
        return f"{tag}_dq"

    def weight_dq(tag: str, w: np.ndarray, axis: int) -> str:
        tensors, _ = _qweight(tag, w, axis)
        inits.extend(tensors)
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{tag}_q", f"{tag}_scale", f"{tag}_zp"],
                [f"{tag}_w"],
                f"DQ_{tag}",
                axis=axis,
            )
        )
        return f"{tag}_w"

    x = act_qdq("input", 0.02, "in")
    w1 = weight_dq("w1", RNG.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32), 0)
    inits.append(_init("b1", RNG.normal(0, 0.1, 4).astype(np.float32)))
    nodes.append(helper.make_node("Conv", [x, w1, "b1"], ["c1"], "conv1", pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"], "relu1"))
    r1 = "r1" if drop_conv2_input_dq else act_qdq("r1", 0.05, "r1")
    w2 = weight_dq("w2", RNG.normal(0, 0.2, (4, 4, 3, 3)).astype(np.float32), w2_axis)
    if int32_bias:
        inits.extend(
            [
                _init("b2_q", RNG.integers(-500, 500, 4).astype(np.int32)),
                _init("b2_s", np.float32(0.001)),
            ]
        )
        nodes.append(helper.make_node("DequantizeLinear", ["b2_q", "b2_s"], ["b2"], "DQ_b2"))
    else:
        inits.append(_init("b2", RNG.normal(0, 0.1, 4).astype(np.float32)))
    nodes.append(helper.make_node("Conv", [r1, w2, "b2"], ["c2"], "conv2", pads=[1, 1, 1, 1]))
    # residual Add: the conv branch direct, the skip branch through its DQ (TensorRT's Conv+Add fusion)
    nodes.append(helper.make_node("Add", ["c2", r1], ["a"], "add"))
    nodes.append(helper.make_node("Relu", ["a"], ["r2"], "relu2"))
    r2 = act_qdq("r2", 0.05, "r2")
    nodes.append(helper.make_node("GlobalAveragePool", [r2], ["gap"], "gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], "flatten"))
    f = act_qdq("flat", 0.05, "flat")
    w3 = weight_dq("w3", RNG.normal(0, 0.3, (10, 4)).astype(np.float32), 0)
    inits.append(_init("b3", np.zeros(10, np.float32)))
    nodes.append(helper.make_node("Gemm", [f, w3, "b3"], ["output"], "fc", transB=1))
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _rules(model: onnx.ModelProto, **kw) -> list[tuple[str, str]]:
    return sorted((v.rule, v.layer) for v in check_graph(model, **{"precision": "int8", **kw}))


def test_reference_graph_is_valid_and_accepted():
    model = build()
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": RNG.random((3, 1, 8, 8), dtype=np.float32)})[0]
    assert y.shape == (3, 10) and np.isfinite(y).all()
    assert check_graph(model, precision="int8") == []


def test_asymmetric_zero_point_is_refused():
    rows = _rules(build(zp_value=3))
    assert ("qdq-zero-point", "Q_in") in rows and ("qdq-zero-point", "DQ_in") in rows
    assert {r for r, _ in rows} == {"qdq-zero-point"}


def test_uint8_activations_are_refused():
    rows = check_graph(build(zp_dtype=np.uint8, zp_value=128), precision="int8")
    assert {v.rule for v in rows} == {"qdq-dtype", "qdq-zero-point"}
    dtype_rows = [v for v in rows if v.rule == "qdq-dtype"]
    # every activation Q and DQ (4 pairs), none of the int8 weights
    assert sorted(v.layer for v in dtype_rows) == sorted(
        f"{k}_{t}" for k in ("Q", "DQ") for t in ("in", "r1", "r2", "flat")
    )
    assert "uint8" in dtype_rows[0].detail


def test_wrong_scale_axis_is_refused():
    rows = check_graph(build(w2_axis=1), precision="int8")
    assert [(v.rule, v.layer) for v in rows] == [("qdq-axis", "DQ_w2")]
    assert "axis 1" in rows[0].detail and "output-channel axis 0" in rows[0].detail


def test_missing_qdq_before_weighted_op_is_refused():
    rows = check_graph(build(drop_conv2_input_dq=True), precision="int8")
    assert [(v.rule, v.layer) for v in rows] == [("qdq-missing", "conv2")]
    assert "input 0 'r1' (activation)" in rows[0].detail


def test_kept_float_op_is_accepted_when_declared():
    model = build(drop_conv2_input_dq=True)
    model.metadata_props.add(key=FLOAT_OPS_KEY, value="conv2")
    assert check_graph(model, precision="int8") == []


def test_int32_bias_dq_is_refused():
    rows = check_graph(build(int32_bias=True), precision="int8")
    assert [(v.rule, v.layer) for v in rows] == [("int32-bias-dq", "DQ_b2")]


def test_per_channel_activation_scale_is_refused():
    rows = _rules(build(act_per_channel=True))
    assert rows == [("qdq-scale-shape", "DQ_r1"), ("qdq-scale-shape", "Q_r1")]


def test_broken_pair_and_bad_scale():
    model = build()
    # the DQ after Q_in reads another scale than its Q wrote
    dq = next(n for n in model.graph.node if n.name == "DQ_in")
    model.graph.initializer.append(_init("other_s", np.float32(0.5)))
    dq.input[1] = "other_s"
    # a zero scale on the fc weight channel 0
    for init in model.graph.initializer:
        if init.name == "w3_scale":
            s = numpy_helper.to_array(init).copy()
            s[0] = 0.0
            init.CopyFrom(_init("w3_scale", s))
    assert _rules(model) == [("qdq-pair", "Q_in"), ("qdq-scale", "DQ_w3")]


def test_q_feeding_a_float_op_is_refused():
    model = build()
    conv1 = next(n for n in model.graph.node if n.name == "conv1")
    conv1.input[0] = "in_q"  # the raw int8 tensor
    rows = _rules(model)
    assert ("qdq-pair", "Q_in") in rows and ("qdq-missing", "conv1") in rows


def test_opset_and_unsupported_ops():
    assert _rules(build(opset=21)) == [("onnx-opset", "(graph)")]
    assert check_graph(build(opset=21), precision="int4-weights") == []
    model = build()
    model.graph.node.append(helper.make_node("FusedConv", ["input"], ["z"], "ms", domain="com.microsoft"))
    model.graph.node.append(helper.make_node("MatMulInteger", ["w3_q", "w3_q"], ["z2"], "mmi"))
    assert _rules(model) == [("trt-unsupported-op", "mmi"), ("trt-unsupported-op", "ms")]


def test_dla_rules():
    # dynamic batch and GlobalAveragePool (not on the Orin DLA through TensorRT)
    assert _rules(build(), dla=True) == [("dla-dynamic-shape", "input"), ("dla-unsupported-op", "gap")]
    static = build(batch=1)
    assert _rules(static, dla=True) == [("dla-unsupported-op", "gap")]
    assert check_graph(static, precision="int8", dla=True, gpu_fallback=True) == []
    on_dla, on_gpu = dla_layers(static)
    assert on_gpu == ["gap"] and "conv1" in on_dla and "fc" in on_dla
    assert ("dla-precision", "(graph)") in sorted(
        (v.rule, v.layer) for v in check_graph(static, precision="none", dla=True, gpu_fallback=True)
    )


def test_dla_layer_limits_are_marked_unverified():
    model = build(batch=1)
    conv1 = next(n for n in model.graph.node if n.name == "conv1")
    conv1.attribute.append(helper.make_attribute("strides", [9, 9]))
    rows = [v for v in check_graph(model, precision="int8", dla=True) if v.rule == "dla-conv-limit"]
    assert len(rows) == 1 and not rows[0].verified and "stride [9, 9]" in rows[0].detail


@pytest.mark.parametrize("precision", ["int8", "int4-weights"])
def test_int4_is_weight_only(precision):
    model = build()
    # the fc weight as int4 blocks (opset 21 blocked DQ): legal only in an int4-weights graph
    w = RNG.integers(-8, 8, (10, 4)).astype(np.int8)
    for i, init in enumerate(model.graph.initializer):
        if init.name == "w3_q":
            model.graph.initializer[i].CopyFrom(
                helper.make_tensor("w3_q", TensorProto.INT4, [10, 4], w.flatten())
            )
        if init.name == "w3_zp":
            model.graph.initializer[i].CopyFrom(helper.make_tensor("w3_zp", TensorProto.INT4, [10], [0] * 10))
    rows = _rules(model, precision=precision)
    assert rows == ([("int4-weight-only", "DQ_w3")] if precision == "int8" else [])
