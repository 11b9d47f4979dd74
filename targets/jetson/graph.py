"""The ONNX graph a Jetson engine is built from: FP32, FP16, INT8 (explicit Q/DQ) or INT4 weight-only.

``build_graph`` exports the program, then writes one of:

``none``          the FP32 graph (TensorRT runs it in FP32 / TF32).
``fp16``          every float tensor in FP16, the model's inputs and outputs kept FP32 (Casts at the
                  edges), with ONNX Runtime's float16 converter; a strongly typed network then runs
                  FP16 kernels without any builder precision flag.
``int8``          symmetric int8 Q/DQ placed the way TensorRT fuses them (:mod:`.qdq`); scales from
                  calibration data, or the scales a QAT pass learned when the program's
                  quantization record (``Program.quant``) carries them (:func:`learned_act_scales`);
                  the numbers from :mod:`edgec.onnxlib` (the S8S8 scheme, calibrate, TensorQuant).
``int4-weights``  the constant weights of MatMuls (transformer projections and MLPs) as int4 blocks
                  along the reduction axis (scale ``max|w| / 7`` per block of ``block_size`` rows,
                  zero-point 0), activations in float: TensorRT's weight-only INT4. Written by hand
                  because ONNX Runtime's int4 QDQ quantizer emits negative scales, which TensorRT
                  refuses (scales must be positive).

Every graph records its precision and the weighted ops it keeps in float in its metadata, which the
rule checker (:mod:`.rules`) reads.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.errors import DataError, UsageError
from edgec.onnxlib import INPUT_NAME, S8S8, TensorQuant
from edgec.progress import NullProgress
from edgec.targets.jetson.qdq import Placement, act_quant, place, write_qdq
from edgec.targets.jetson.rules import FLOAT_OPS_KEY, OPSET_INT4

if TYPE_CHECKING:
    import onnx

    from edgec.data import Dataset
    from edgec.onnxlib import ExportInfo
    from edgec.program import Program
    from edgec.progress import Progress

log = logging.getLogger(__name__)
__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "build_graph", "export_fp32"]
#: the graph's output name for a model returning one tensor (several: dict keys or ``output_0``..,
#: as :func:`edgec.snn.named_outputs` names them); the input is :data:`edgec.onnxlib.INPUT_NAME`
OUTPUT_NAME = "output"
#: asked of both exporters: within TensorRT 10's documented range [9, 20]
OPSET = 17
PRECISION_KEY = "edgec.jetson.precision"
INT4_MAX = 7.0
PRECISIONS = ("none", "fp16", "int8", "int4-weights")


def export_fp32(program: Program, path: Path, *, batch: int | None = None) -> ExportInfo:
    """Export ``program`` to ``path`` through :func:`edgec.onnxlib.export_program` at :data:`OPSET`.

    ``batch`` fixes the batch dimension (the DLA needs static shapes); None asks for a dynamic one,
    which onnxlib checks in ONNX Runtime (a graph that traced its batch is exported fixed, and
    ``ExportInfo.batch`` says so). Outputs are named as on every target (``output``, dict keys,
    ``output_0``..); a spiking program goes through its encoder (:class:`edgec.snn.EncodedSNN`).
    """
    from edgec.onnxlib import export_program

    return export_program(program, path, opset=OPSET, batch=batch)


def learned_act_scales(program: Program, plan: Placement, fp32: Path) -> dict[str, TensorQuant] | None:
    """Activation quantization from the program's quantization record (``Program.quant``), or None.

    The hook for models compressed by edgec's QAT passes: a layer whose record has an 8-bit,
    zero-point-0 input quantizer keeps its learned ``act_scale`` instead of being re-calibrated. The
    layers are found in the graph by onnxlib's params path (:func:`edgec.onnxlib.resolve_params`:
    ``"<layer>:input"`` -> the graph tensor). None when the record gives no usable activation scale
    for some quantized input (then every scale is calibrated, so the graph stays consistent).
    """
    from edgec.onnxlib import layer_tensors, resolve_params

    quant = getattr(program, "quant", None) or {}
    if not quant:
        return None
    layers = layer_tensors(fp32)
    params = {
        f"{name}:input": TensorQuant.per_tensor(float(rec.act_scale), 0, "int8")
        for name, rec in quant.items()
        if name in layers
        and rec.act_scale is not None
        and rec.act_bits == 8
        and rec.act_zero_point in (None, 0)
    }
    by_tensor = resolve_params(fp32, params)
    consumers = {layers[name]["node"] for name in (k.rpartition(":")[0] for k in params)}
    if any(p.consumer not in consumers or p.tensor not in by_tensor for p in plan.activations):
        return None
    return {t: by_tensor[t] for t in plan.tensors}


def build_graph(
    program: Program,
    out: Path,
    *,
    precision: str,
    calib: Dataset | None,
    calib_method: str = "minmax",
    calib_samples: int = 128,
    batch: int | None = None,
    int4_block: int = 128,
    fp16_io: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the graph for ``precision`` to ``out``; returns the facts for the report."""
    import onnx

    if precision not in PRECISIONS:
        raise UsageError(f"the jetson target has no precision '{precision}'", hint=f"choose {PRECISIONS}")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        info = export_fp32(program, fp32, batch=batch)
        report: dict[str, Any] = {"export": info.to_dict()}
        report["fp32_bytes"] = fp32.stat().st_size
        model = onnx.load(str(fp32))
        kept_float: list[str] = []
        if precision == "int8":
            report["quantization"] = _int8(
                program, model, fp32, calib, calib_method, calib_samples, info.batch, progress
            )
        elif precision == "fp16":
            model = _fp16(model, keep_io=not fp16_io)
            io = (
                "FP16 inputs and outputs (no Casts: the DLA takes none)"
                if fp16_io
                else "FP32 inputs and outputs"
            )
            report["quantization"] = {"scheme": f"FP16 tensors, {io}"}
        elif precision == "int4-weights":
            model, report["quantization"], kept_float = _int4(model, int4_block)
    _set_meta(model, {PRECISION_KEY: precision, FLOAT_OPS_KEY: ",".join(kept_float)})
    onnx.save(model, str(out))
    report["precision"] = precision
    report["opset"] = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    report["size_ratio_vs_fp32"] = round(out.stat().st_size / report["fp32_bytes"], 4)
    return report


def _set_meta(model: onnx.ModelProto, values: dict[str, str]) -> None:
    for key, value in values.items():
        for p in model.metadata_props:
            if p.key == key:
                p.value = value
                break
        else:
            model.metadata_props.add(key=key, value=value)


def _int8(
    program: Program,
    model: onnx.ModelProto,
    fp32: Path,
    calib: Dataset | None,
    method: str,
    samples: int,
    batch: int | None,
    progress: Progress | None,
) -> dict[str, Any]:
    from edgec.onnxlib import Feeds, calibrate

    plan = place(model)
    acts = learned_act_scales(program, plan, fp32)
    if acts is not None:
        source, used = "learned (the program's quantization record)", 0
    else:
        if calib is None:
            raise UsageError(
                "--quantize int8 needs calibration data", hint="pass --calib SRC (e.g. data.npz)"
            )
        feeds = Feeds(calib, program.input_shape, batch, samples, progress or NullProgress())
        # the tensors before every op the placement quantizes (weighted ops, residual Adds)
        ranges = calibrate(fp32, feeds, scheme=S8S8, method=method, op_types=plan.op_types(model))
        if feeds.count == 0:
            raise DataError("no calibration samples were read", hint="check --calib")
        acts, source, used = act_quant(ranges, plan.tensors), f"calibrated ({method})", feeds.count
    from edgec.onnxlib.learned import learned_weight_params

    learned, account = learned_weight_params(fp32, program)  # a QAT pass's grids, kept as they are
    counts = write_qdq(model, plan, acts, S8S8, learned=learned)
    return {
        "scheme": f"{S8S8.summary()}; explicit Q/DQ where TensorRT fuses them: weighted ops' inputs, "
        "residual Adds fed by their Conv directly",
        "scheme_name": S8S8.name,
        "activation_scales": source,
        "calibration_samples": used,
        **({"learned_weights": account} if account else {}),
        **counts,
    }


def _fp16(model: onnx.ModelProto, *, keep_io: bool) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values clamped to FP16's range are reported by verify
        return convert_float_to_float16(model, keep_io_types=keep_io)


def _int4(model: onnx.ModelProto, block: int) -> tuple[onnx.ModelProto, dict[str, Any], list[str]]:
    """Constant MatMul weights [K, N] as int4 blocks of ``block`` rows along K (opset 21 DQ)."""
    from onnx import TensorProto, helper, numpy_helper, version_converter

    if block < 2 or block & (block - 1):
        raise UsageError(f"int4 block size must be a power of two >= 2, got {block}")
    model = version_converter.convert_version(model, OPSET_INT4)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    done: dict[str, str] = {}
    skipped: list[str] = []
    skipped_k: set[int] = set()  # reduction sizes of constant weights left out: not whole blocks
    new_nodes: list[onnx.NodeProto] = []
    for node in g.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        k = w.shape[0] if w.ndim == 2 else 0
        if w.ndim != 2 or k % block or w.shape[1] % 2:
            skipped.append(node.name or node.output[0])  # TensorRT: even last dim, whole blocks
            if w.ndim == 2:
                skipped_k.add(int(w.shape[0]))
            continue
        name = node.input[1]
        if name not in done:
            blocks = w.reshape(k // block, block, w.shape[1])
            scale = np.maximum(np.abs(blocks).max(axis=1) / INT4_MAX, 1e-8).astype(np.float32)
            q = np.clip(np.round(blocks / scale[:, None, :]), -8, 7).astype(np.int8).reshape(w.shape)
            qname, sname = f"{name}_int4", f"{name}_scale"
            g.initializer.append(
                helper.make_tensor(qname, TensorProto.INT4, list(w.shape), q.flatten().tolist())
            )
            g.initializer.append(numpy_helper.from_array(scale, sname))
            dq = helper.make_node(
                "DequantizeLinear",
                [qname, sname],
                [f"{name}_dq"],
                f"{name}_DequantizeLinear",
                axis=0,
                block_size=block,
            )
            new_nodes.append(dq)
            done[name] = dq.output[0]
        node.input[1] = done[name]
    if not done and skipped_k:
        fits = max(b for b in (2, 4, 8, 16, 32, 64, 128) if all(k % b == 0 for k in skipped_k))
        raise UsageError(
            f"--quantize int4-weights: none of the {len(skipped)} constant MatMul weights has a "
            f"reduction size (K = {', '.join(map(str, sorted(skipped_k)))}) of whole {block}-row blocks",
            hint=f"use a smaller block: --target-option int4_block={fits}",
        )
    if not done:
        raise UsageError(
            "--quantize int4-weights found no MatMul with a constant weight to quantize",
            hint="int4 weight-only is for transformer projections / MLPs; use int8 or fp16 for CNNs",
        )
    nodes = [*new_nodes, *g.node]
    used = {i for n in nodes for i in n.input}
    for init in [i for i in g.initializer if i.name in done and i.name not in used]:
        g.initializer.remove(init)
    del g.node[:]
    g.node.extend(nodes)
    model.ir_version = max(model.ir_version, 10)  # int4 tensors need IR 10
    return (
        model,
        {
            "scheme": f"int4 weight-only: MatMul weights in blocks of {block} along the reduction axis, "
            "symmetric (zero-point 0), activations float",
            "int4_matmuls": len(done),
            "float_matmuls": skipped,
        },
        skipped,
    )
