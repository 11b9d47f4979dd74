"""What ONNX Runtime really runs: operator counts of its optimized graph, fused quantized ops.

An INT8 artifact is only faster than FP32 where ORT's QDQ fuser turned Q/DQ + float op into an
integer kernel (QLinearConv, QGemm, QLinearMatMul, ...). Counting the ops of the graph ORT writes
after its optimizations (``SessionOptions.optimized_model_filepath``) is a cheap check of that, and
the compute ops left in float name what has no INT8 kernel (shared/reference/deployment.md).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

#: operators of ORT's optimized graph that run in integer arithmetic
FUSED_QUANT_OPS = (
    "QLinearConv",
    "QLinearAdd",
    "QLinearMul",
    "QGemm",
    "QLinearMatMul",
    "QLinearGlobalAveragePool",
    "QLinearAveragePool",
    "QLinearConcat",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearSoftmax",
    "QAttention",
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "ConvInteger",
    "DynamicQuantizeMatMul",
)
#: compute-heavy operators; in an INT8 graph, those left are what ran in float
FLOAT_COMPUTE_OPS = (
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "FusedConv",
    "FusedGemm",
    "FusedMatMul",
    "Add",
    "GRU",
    "LSTM",
    "RNN",
    "Attention",
    "MultiHeadAttention",
)


def optimized_op_counts(model_path: Path) -> dict[str, int]:
    """Operator counts of the graph ONNX Runtime actually runs (after its QDQ fusions)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "optimized.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(opt)
        so.log_severity_level = 3
        ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        counts = Counter(n.op_type for n in onnx.load(str(opt)).graph.node)
    return dict(sorted(counts.items()))


def fusion_summary(counts: dict[str, int]) -> dict[str, int]:
    """How many compute ops ORT runs in integer arithmetic versus still in float."""
    return {
        "fused_quantized_ops": sum(v for k, v in counts.items() if k in FUSED_QUANT_OPS),
        "float_compute_ops": sum(v for k, v in counts.items() if k in FLOAT_COMPUTE_OPS),
        "quantize_linear": counts.get("QuantizeLinear", 0),
        "dequantize_linear": counts.get("DequantizeLinear", 0),
    }


def float_ops(counts: dict[str, int]) -> dict[str, int]:
    """The compute operators ORT still runs in float, by type."""
    return {k: v for k, v in counts.items() if k in FLOAT_COMPUTE_OPS}
