"""INT8 Q/DQ for ONNX graphs, with the quantization scheme as data.

A :class:`QdqScheme` says *how* to quantize; a :class:`TensorQuant` is *one tensor's* scale and
zero-point (per tensor, or per channel along an axis). :func:`write_qdq` is the one place that
writes QuantizeLinear / DequantizeLinear nodes: from calibrated ranges (post-training quantization,
:func:`calibrate`), from scales given as data (learned quantization: QAT scales are emitted as they
are, nothing is re-calibrated), or both. Placement (which inputs of which ops get Q/DQ, int32 bias,
fusion-friendly shared pairs) is ONNX Runtime's QDQ quantizer's, driven by the scheme: its rules are
maintained with ORT's kernels, which is what the CPU target's speed depends on.

Semantics (ONNX QuantizeLinear / DequantizeLinear, opset >= 13)::

    q = saturate(round_half_to_even(x / scale) + zero_point)      # to [qmin, qmax] of the dtype
    x' = (q - zero_point) * scale

Symmetric means ``zero_point = 0`` and ``scale = max(|lo|, |hi|) / qmax`` (int8: 127); asymmetric
uint8 ``scale = (hi - lo) / 255`` with the range widened to include 0 (ORT's ``compute_scale_zp``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import ModelError, UsageError, first_line
from edgec.onnxlib.params import WEIGHT_OPS, QType, TensorQuant
from edgec.onnxlib.util import quiet

log = logging.getLogger(__name__)

#: calibration methods of ORT's calibrator
CALIB_METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class QdqScheme:
    """How a graph is quantized: dtypes, symmetry, per-channel weights, bias, which ops."""

    name: str
    activation_dtype: QType
    activation_symmetric: bool
    weight_dtype: QType = "int8"
    weight_symmetric: bool = True
    per_channel: bool = True  # weights per output channel (axis: ``channel_axis`` or the op's rule)
    channel_axis: Mapping[str, int] = field(default_factory=dict)  # op type -> axis override
    quantize_bias: bool = True  # int32 bias DequantizeLinear (scale = input scale x weight scale)
    op_types: tuple[str, ...] | None = None  # None: every op ONNX Runtime's QDQ quantizer knows
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "activations": f"{self.activation_dtype}, "
            + ("symmetric (zero-point 0)" if self.activation_symmetric else "asymmetric")
            + ", per tensor",
            "weights": f"{self.weight_dtype}, "
            + ("symmetric" if self.weight_symmetric else "asymmetric")
            + (", per output channel" if self.per_channel else ", per tensor"),
            "bias": "int32" if self.quantize_bias else "float",
            "op_types": list(self.op_types) if self.op_types else "all ONNX Runtime quantizes",
            "format": "QDQ",
        }

    def summary(self) -> str:
        """One line for reports, e.g. "QDQ, uint8 asymmetric activations (per tensor), int8
        symmetric weights (per channel), int32 bias"."""
        act = "symmetric" if self.activation_symmetric else "asymmetric"
        wsym = "symmetric" if self.weight_symmetric else "asymmetric"
        per = "per channel" if self.per_channel else "per tensor"
        bias = "int32 bias" if self.quantize_bias else "float bias"
        return (
            f"QDQ, {self.activation_dtype} {act} activations (per tensor), "
            f"{self.weight_dtype} {wsym} weights ({per}), {bias}"
        )

    def _ort_args(self) -> dict[str, Any]:
        from onnxruntime.quantization import QuantType

        qt = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        return {
            "per_channel": self.per_channel,
            "reduce_range": False,
            "weight_qType": qt[self.weight_dtype],
            "activation_qType": qt[self.activation_dtype],
            "op_types_to_quantize": list(self.op_types or _all_ort_ops()),
            "extra_options": {
                "ActivationSymmetric": self.activation_symmetric,
                "WeightSymmetric": self.weight_symmetric,
                "QuantizeBias": self.quantize_bias,
                "QDQOpTypePerChannelSupportToAxis": dict(self.channel_axis),
            },
        }


#: ONNX Runtime on x86: uint8 asymmetric activations, int8 symmetric per-channel weights, int32
#: bias. ORT fuses it into QLinearConv / QGemm / QLinearMatMul (measured 2.3x faster than FP32 on
#: ResNet-18; the symmetric int8-activation graph left DQ -> Relu -> Q chains unfused and ran slower
#: than FP32: shared/reference/deployment.md).
U8S8 = QdqScheme(
    name="u8s8",
    activation_dtype="uint8",
    activation_symmetric=False,
    description="ONNX Runtime on x86 (QLinearConv / QGemm / QLinearMatMul)",
)
#: TensorRT explicit quantization: symmetric int8 everywhere (zero-point 0), per-channel weights on
#: the output-channel axis (0; ConvTranspose 1), Q/DQ on the inputs of weighted ops, no int32 bias
#: DequantizeLinear (TensorRT's ONNX parser rejects it: onnx-tensorrt 850, onnxruntime 17738).
S8S8 = QdqScheme(
    name="s8s8",
    activation_dtype="int8",
    activation_symmetric=True,
    quantize_bias=False,
    channel_axis={"Conv": 0, "ConvTranspose": 1},
    op_types=WEIGHT_OPS,
    description="TensorRT explicit quantization (symmetric int8, no int32 bias)",
)
#: U8S8 for attention models: the inputs of the weighted ops (Conv, Gemm, MatMul, including the
#: attention matmuls) and Softmax quantized; residual Adds and normalisation kept in float. Their
#: residual stream in uint8 loses accuracy (the scheme ablation of benchmarks/transformer_int8.py:
#: a small ViT's top-1 agreement with PyTorch with every op quantized versus this scheme). Softmax
#: is in because leaving it out let ORT's QDQ fusions (onnxruntime 1.31.1) turn a dynamo-exported
#: TransformerEncoder into a graph far from FP32. The matmuls, where the time goes, run as
#: QLinearMatMul / QGemm.
U8S8_ATTENTION = dataclasses.replace(
    U8S8,
    name="u8s8-attention",
    op_types=("Conv", "Gemm", "MatMul", "Softmax"),
    description="ONNX Runtime on x86, attention models (residual stream and norms in float)",
)
PRESETS: dict[str, QdqScheme] = {s.name: s for s in (U8S8, U8S8_ATTENTION, S8S8)}


@dataclass
class QdqStats:
    """What a Q/DQ write did (for the target's report)."""

    scheme: QdqScheme
    calibrated_tensors: int = 0  # ranges measured on calibration data
    learned_tensors: int = 0  # scales given as data (QAT), emitted unchanged
    quantize_linear: int = 0
    dequantize_linear: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme.summary(),
            "scheme_name": self.scheme.name,
            "scheme_detail": self.scheme.to_dict(),
            "calibrated_tensors": self.calibrated_tensors,
            "learned_tensors": self.learned_tensors,
            "quantize_linear": self.quantize_linear,
            "dequantize_linear": self.dequantize_linear,
            "notes": list(self.notes),
        }


def _all_ort_ops() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def preprocess(src: Path, dst: Path) -> list[str]:
    """ORT's pre-quantization step (shape inference, BN folding, constant folding); returns notes.

    ORT's symbolic shape inference gives up on some graphs (a GRU / attention with a dynamic
    batch: "Incomplete symbolic shape inference", or an assertion in its Reshape rule); ONNX's own
    shape inference is enough for the quantizer, so it is used alone then and the report says so.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    notes: list[str] = []
    src, dst = Path(src).resolve(), Path(dst).resolve()
    # in a scratch directory: on failure ORT's symbolic shape inference saves
    # "sym_shape_infer_temp.onnx" and its external data into the current directory
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch), quiet():
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
            return notes
        except Exception as exc:
            notes.append(
                f"ONNX Runtime's symbolic shape inference failed ({first_line(exc)}); "
                "ONNX shape inference used"
            )
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        except Exception as exc:
            raise ModelError(
                f"ONNX Runtime cannot pre-process the graph for quantization: {first_line(exc)}"
            ) from None
    return notes


class _Reader:
    """ORT ``CalibrationDataReader`` over feed dicts."""

    def __init__(self, batches: Iterable[Mapping[str, np.ndarray]]) -> None:
        self.it = iter(batches)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self.it, None)
        if item is None:
            return None
        self.count += 1
        return dict(item)

    def rewind(self) -> None:  # part of ORT's interface; the data is consumed once
        return None


def calibrate(
    model_path: Path,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    scheme: QdqScheme = U8S8,
    method: str = "minmax",
    op_types: Sequence[str] | None = None,
) -> dict[str, tuple[float, float]]:
    """Per-tensor activation ranges ``{tensor: (lo, hi)}`` measured by ORT's calibrator on ``batches``
    (feed dicts ``{input name: array}``), for the inputs and outputs of the scheme's ops (or of
    ``op_types``: a target that places Q/DQ itself names the ops it puts them before)."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise UsageError(f"unknown calibration method '{method}'", hint=f"choose from {', '.join(methods)}")
    reader = _Reader(batches)
    with tempfile.TemporaryDirectory() as tmp, quiet(fds=False):  # a progress bar may be drawing
        calibrator = create_calibrator(
            Path(model_path),
            list(op_types or scheme.op_types or _all_ort_ops()),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=methods[method],
            extra_options=_calibrator_options(method, scheme),
        )
        calibrator.collect_data(reader)
        data = calibrator.compute_data()
    if reader.count == 0:
        raise UsageError("no calibration samples were given")
    out: dict[str, tuple[float, float]] = {}
    for name in data:
        lo, hi = data[name].range_value
        out[name] = (float(np.asarray(lo).min()), float(np.asarray(hi).max()))
    return out


def _calibrator_options(method: str, scheme: QdqScheme) -> dict[str, Any]:
    """ORT calibrator settings. Entropy: 2048 histogram bins searched down to 128 quantized bins
    (Migacz, "8-bit Inference with TensorRT", GTC 2017); ORT's defaults (128 and 128) leave its KL
    search a single candidate, the full range, so entropy gave MinMax's ranges."""
    if method == "entropy":
        return {"symmetric": scheme.activation_symmetric, "num_bins": 2048, "num_quantized_bins": 128}
    if method == "percentile":
        return {"symmetric": scheme.activation_symmetric, "num_bins": 2048, "percentile": 99.999}
    return {}


def write_qdq(
    model_path: Path,
    out_path: Path,
    scheme: QdqScheme,
    *,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    params: Mapping[str, TensorQuant] | None = None,
    nodes: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> QdqStats:
    """Write the Q/DQ graph of ``model_path`` to ``out_path``: the one Q/DQ writer.

    ``ranges``: measured activation ranges (``calibrate``); the scheme turns them into scales.
    ``params``: scales and zero-points as data, by graph tensor name (``resolve_params`` maps layer
    names): emitted exactly, for activations and (per channel) weights. A tensor in both takes
    ``params``. With ``params`` only, just the nodes whose activation inputs all have parameters
    are quantized (``nodes`` overrides that; ``exclude`` names nodes left in float).
    """
    import onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    params = dict(params or {})
    ranges = dict(ranges or {})
    model = load_model_with_shape_infer(Path(model_path))
    initializers = {i.name for i in model.graph.initializer}
    check_params(scheme, params, initializers)
    unknown = [n for n in params if n not in initializers and not _is_graph_tensor(model, n)]
    if unknown:
        raise UsageError(
            f"quantization parameters for tensors the graph does not have: {', '.join(sorted(unknown)[:5])}",
            hint="name graph tensors, or layers through resolve_params()",
        )
    table = {n: (np.float32(lo), np.float32(hi)) for n, (lo, hi) in ranges.items()}
    for name, tq in params.items():
        if name not in initializers:
            lo, hi = tq.real_range()
            table[name] = (np.float32(lo), np.float32(hi))
    args = scheme._ort_args()
    args["extra_options"]["TensorQuantOverrides"] = {n: tq._ort_override() for n, tq in params.items()}
    if params:  # given weight scales are kept as they are, even where the int32 bias scale is tiny
        args["extra_options"]["QDQDisableWeightAdjustForInt32Bias"] = True
    if not ranges:
        # learned quantization only: Q/DQ where the model quantizes (the inputs and weights of the
        # nodes it gives scales for); their outputs stay float until a consumer quantizes them
        if nodes is None:
            nodes = _nodes_fed_by(model, set(params), initializers)
        chosen = set(nodes)
        args["extra_options"]["OpTypesToExcludeOutputQuantization"] = sorted(
            {n.op_type for n in model.graph.node if n.name in chosen}
        )
    tensors = TensorsData(
        CalibrationMethod.MinMax,
        {n: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for n, (lo, hi) in table.items()},
    )
    with quiet():
        quantizer = QDQQuantizer(
            model,
            args["per_channel"],
            args["reduce_range"],
            args["weight_qType"],
            args["activation_qType"],
            tensors,
            list(nodes or []),
            list(exclude),
            args["op_types_to_quantize"],
            args["extra_options"],
        )
        quantizer.quantize_model()
        quantizer.model.save_model_to_file(str(out_path), False)
    written = onnx.load(str(out_path), load_external_data=False)
    ops = [n.op_type for n in written.graph.node]
    return QdqStats(
        scheme=scheme,
        calibrated_tensors=len([n for n in ranges if n not in params]),
        learned_tensors=len(params),
        quantize_linear=ops.count("QuantizeLinear"),
        dequantize_linear=ops.count("DequantizeLinear"),
    )


def quantize_ptq(
    fp32_path: Path,
    out_path: Path,
    batches: Iterable[Mapping[str, np.ndarray]],
    scheme: QdqScheme,
    *,
    method: str = "minmax",
) -> QdqStats:
    """Post-training quantization: pre-process, calibrate on ``batches``, write the Q/DQ graph."""
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        notes = preprocess(Path(fp32_path), pre)
        ranges = calibrate(pre, batches, scheme=scheme, method=method)
        stats = write_qdq(pre, Path(out_path), scheme, ranges=ranges)
    stats.notes = notes + stats.notes
    return stats


def check_params(scheme: QdqScheme, params: Mapping[str, TensorQuant], initializers: set[str]) -> None:
    """Given scales must fit the scheme: its dtypes, and zero-point 0 where it is symmetric (a tensor
    in ``initializers`` is a weight, any other an activation). Raises UsageError."""
    for name, tq in params.items():
        weight = name in initializers
        dtype = scheme.weight_dtype if weight else scheme.activation_dtype
        symmetric = scheme.weight_symmetric if weight else scheme.activation_symmetric
        role = "weight" if weight else "activation"
        if tq.dtype != dtype:
            raise UsageError(
                f"{role} '{name}' is {tq.dtype}; scheme {scheme.name} quantizes {role}s to {dtype}"
            )
        if symmetric and dtype == "int8" and np.any(tq.zero_point != 0):
            raise UsageError(f"{role} '{name}' has a non-zero zero-point; scheme {scheme.name} is symmetric")
        if tq.axis is not None and not weight:
            raise UsageError(f"activation '{name}' has per-channel scales; activations are per tensor")


def _is_graph_tensor(model: Any, name: str) -> bool:
    g = model.graph
    return any(name in n.output or name in n.input for n in g.node) or any(i.name == name for i in g.input)


def _nodes_fed_by(model: Any, tensors: set[str], initializers: set[str]) -> list[str]:
    """Nodes whose every float activation input (not an initializer) has parameters."""
    chosen = []
    for node in model.graph.node:
        acts = [t for t in node.input if t and t not in initializers]
        if acts and all(t in tensors for t in acts):
            chosen.append(node.name)
    return chosen
