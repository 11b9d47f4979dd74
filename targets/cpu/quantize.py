"""Post-training INT8 quantization in ONNX space with ONNX Runtime's quantizer.

On x86 only one INT8 graph is reliably faster than FP32 in ONNX Runtime: QDQ with *asymmetric
uint8 activations* and *symmetric int8 per-channel weights* (U8S8). ORT's QDQ fuser turns its
Conv / Add / Gemm into QLinearConv / QLinearAdd / QGemm; a symmetric int8-activation graph (the
TensorRT style) leaves DequantizeLinear -> Relu -> QuantizeLinear chains unfused and runs slower
than FP32 (measured, see ../shared reference deployment.md). So this is the CPU target's scheme;
the Jetson target quantizes symmetrically for TensorRT instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgec.data import Dataset
from edgec.progress import NullProgress, Progress, Task

log = logging.getLogger(__name__)

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
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeMatMul",
)
FLOAT_COMPUTE_OPS = ("Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul", "Add")


def _calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[name]


class _Reader:
    """ORT ``CalibrationDataReader`` over an edgec Dataset (one sample per batch, as ORT expects)."""

    def __init__(
        self, data: Dataset, input_name: str, input_shape: tuple[int, ...], limit: int, task: Task
    ) -> None:
        self.samples: Iterator[tuple[np.ndarray, int | None]] = data.checked(input_shape, limit)
        self.input_name = input_name
        self.count = 0
        self.task = task

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self.samples, None)
        if item is None:
            return None
        self.count += 1
        self.task.advance()
        return {self.input_name: item[0][None].astype(np.float32)}

    def rewind(self) -> None:  # part of ORT's reader interface; our data is consumed once
        return None


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    data: Dataset,
    *,
    input_name: str,
    input_shape: tuple[int, ...],
    method: str = "minmax",
    samples: int = 128,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """U8S8 QDQ, per-channel weights, after ORT's pre-processing (shape inference, BN folding)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    progress = progress or NullProgress()
    with (
        tempfile.TemporaryDirectory() as tmp,
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),  # keep library chatter out of machine-readable output
        progress.task("calibrating", total=samples) as task,
    ):
        warnings.simplefilter("ignore")
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        reader = _Reader(data, input_name, input_shape, samples, task)
        quantize_static(
            str(pre),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=_calibration_method(method),
        )
    return {
        "scheme": "QDQ, uint8 asymmetric activations (per tensor), int8 symmetric weights (per channel)",
        "calibration_method": method,
        "calibration_samples": reader.count,
    }


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
