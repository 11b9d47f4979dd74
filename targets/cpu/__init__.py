"""CPU target: FP32 or INT8 (U8S8 QDQ, the graph that is actually fast on x86) on ONNX Runtime or
OpenVINO.

A thin user of :mod:`edgec.onnxlib`: the export (named outputs, a checked batch dimension) and the
Q/DQ writer live there, shared with the Jetson target; this target picks the U8S8 scheme, feeds
calibration data, reports what the runtime fused, and picks the runtime (``choice``): one portable
model.onnx, plus OpenVINO's IR (model.xml / model.bin) when OpenVINO is the artifact's runtime.
Backends: ``onnxruntime_backend``, ``openvino_backend`` (an optional extra); options: ``options``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgec.errors import ConstraintViolation, UsageError
from edgec.target import Lowered, Session, Target, VerifyResult, Violation, compare_spikes
from edgec.targets.cpu import onnxruntime_backend as ort_backend
from edgec.targets.cpu import openvino_backend as ov_backend
from edgec.targets.cpu.options import CpuOptions

if TYPE_CHECKING:
    from edgec.artifact import Artifact
    from edgec.config import CompileConfig
    from edgec.data import Dataset
    from edgec.onnxlib import ExportInfo
    from edgec.passes import PassContext
    from edgec.program import Program

log = logging.getLogger(__name__)
MODEL_FILE = "model.onnx"
IR_FILE, IR_WEIGHTS = "model.xml", "model.bin"
#: f32 level: an f32 run of an FP32 artifact stays within this share of the source's output range
#: (f32 runs measured ~1e-6 of it on ResNet-18, a bf16 run ~4e-3); verify reports it as ``f32_level``
F32_TOLERANCE = 1e-3


class CpuTarget(Target):
    name = "cpu"
    description = "x86 / ARM CPU through ONNX Runtime or OpenVINO (FP32, or INT8 U8S8 QDQ)"
    requires = ("onnx", "onnxruntime")
    optional: ClassVar[dict[str, str]] = {"backend openvino (also Intel GPU / NPU)": "openvino"}
    #: run / verify / bench backends; an artifact's default is the one compile chose (``choice``)
    backends = ("onnxruntime", "openvino")
    backend_at_compile = True
    options: ClassVar[type | None] = CpuOptions
    # energy: priced with Horowitz 2014 45 nm figures at the precision the artifact computes in
    cost_tables: ClassVar[dict[str, str]] = {"none": "cmos45-fp32", "int8": "cmos45-int8"}
    precisions: ClassVar[dict[str, str]] = {
        "none": "FP32 (computed in f32 unless --target-option precision=bf16|f16)",
        "int8": "INT8: uint8 activations, int8 per-channel weights, QDQ fused by the runtime "
        "(needs --calib; a program with learned steps (lsq, q-detr) keeps them, its low-bit grids carried "
        "in int8)",
    }

    def __init__(self) -> None:
        # the export that check() ran, reused by lower() for the same program: (module, shape, bytes, info)
        self._exported: tuple[Any, tuple[int, ...], bytes, ExportInfo] | None = None

    def check(self, program: Program, config: CompileConfig) -> list[Violation]:
        """The CPU takes models that export to ONNX: the export compile runs is run here (and kept).
        A spiking network runs as its float graph (encoder and time loop unrolled), in FP32."""
        if program.kind == "snn" and config.quantize != "none":
            return [
                Violation(
                    layer="(model)",
                    rule="snn-precision",
                    detail=f"--quantize {config.quantize} of a spiking network: the CPU target runs SNNs in "
                    "FP32 (their spikes are 0 / 1 already; a compressed SNN keeps its low-bit weight values)",
                    hint="compile without --quantize; compress the weights with a recipe (edgec recipes)",
                )
            ]
        from edgec.onnxlib import OnnxExportError

        try:
            self._export(program)
        except OnnxExportError as exc:
            return [
                Violation(
                    layer=", ".join(exc.ops) or "(model)",
                    rule="onnx-export",
                    detail=exc.message,
                    hint=exc.hint or "",
                )
            ]
        return []

    def _export(self, program: Program) -> tuple[bytes, ExportInfo]:
        """Export ``program`` to ONNX once; a second call for the same program reuses the bytes."""
        from edgec.onnxlib import export_program

        shape = tuple(program.example_input.shape)
        cached = self._exported
        if cached is not None and cached[0] is program.module and cached[1] == shape:
            return cached[2], cached[3]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / MODEL_FILE
            info = export_program(program, path)
            data = path.read_bytes()
        self._exported = (program.module, shape, data, info)
        return data, info

    def lower(self, program: Program, out_dir: Path, ctx: PassContext) -> Lowered:
        from edgec.targets.cpu.fusion import float_ops, fusion_summary, optimized_op_counts

        config = ctx.config
        if config is None:
            raise UsageError("the CPU target needs a compile configuration")
        data, info = self._export(program)
        report: dict[str, Any] = {
            "precision": "fp32",
            "export": info.to_dict(),
            "fp32_bytes": len(data),
        }
        final = out_dir / MODEL_FILE
        files = {"model": MODEL_FILE}
        from edgec.targets.cpu.binary import binary_layers, lower_binary
        from edgec.targets.cpu.learned import has_learned_activations, quantize_learned

        if binary_layers(program):
            # binarized (binarize, bi-vit): +-1 weights as int8 with their scales, and bit-packed
            fp32 = out_dir / ".model_fp32.onnx"
            fp32.write_bytes(data)
            report["quantization"], extra = lower_binary(
                program, fp32, final, out_dir, ctx, config, info.batch
            )
            fp32.unlink()
            files.update(extra)
            report["precision"] = report["quantization"]["precision"]
        elif config.quantize == "int8" and has_learned_activations(program):
            # a compression pass learned the steps (lsq, q-detr): Q/DQ from them, nothing calibrated
            fp32 = out_dir / ".model_fp32.onnx"
            fp32.write_bytes(data)
            report["quantization"] = quantize_learned(fp32, final, program)
            fp32.unlink()
            report["precision"] = "int8"
        elif config.quantize == "int8":
            if ctx.calib is None:
                raise UsageError(
                    "--quantize int8 needs calibration data", hint="pass --calib SRC (e.g. data.npz)"
                )
            from edgec.targets.cpu.int8 import quantize

            fp32 = out_dir / ".model_fp32.onnx"
            fp32.write_bytes(data)
            report["quantization"] = quantize(
                fp32,
                final,
                ctx.calib,
                program.input_shape,
                info.batch,
                method=config.calib_method,
                limit=config.calib_samples,
                progress=ctx.progress,
                program=program,
            )
            fp32.unlink()
            report["precision"] = "int8"
        else:
            final.write_bytes(data)
        counts = optimized_op_counts(final)
        report["ort_optimized_ops"] = counts
        report["ort_fusion"] = fusion_summary(counts)
        if config.quantize == "int8":
            report["float_ops"] = float_ops(counts)
            _refuse_if_nothing_fused(report)
        report["size_ratio_vs_fp32"] = round(final.stat().st_size / len(data), 4)
        opts: CpuOptions = self.target_options(config)
        backend, choice = self._choose(config.backend, opts, final, program, info.batch)
        if backend == ov_backend.NAME:
            report["openvino"] = {
                "device": opts.device,
                "ir": IR_FILE,
                **ov_backend.write_ir(final, out_dir / IR_FILE, opts),
            }
            files.update(openvino=IR_FILE, openvino_weights=IR_WEIGHTS)
        runtime = ov_backend if backend == ov_backend.NAME else ort_backend
        report.update(
            backend=backend,
            runtime=f"{backend} {runtime.version()}",
            runtimes={
                ort_backend.NAME: ort_backend.version(),
                ov_backend.NAME: ov_backend.version() if ov_backend.available() else "not installed",
            },
            inference_precision=opts.precision,
            options=opts.to_dict(),
            backend_choice=choice,
        )
        return Lowered(files=files, report=report)

    def _choose(
        self, asked: str | None, opts: CpuOptions, model: Path, program: Program, batch: Any
    ) -> tuple[str, dict[str, Any]]:
        """The artifact's runtime: asked, forced by an option only OpenVINO has, or timed (``choice``)."""
        if asked == ort_backend.NAME:
            ort_backend.check_options(opts)
            return ort_backend.NAME, {"how": "asked (--backend onnxruntime)", "chosen": ort_backend.NAME}
        needs = [f"{k} {v}" for k, v in (("precision", opts.precision), ("device", opts.device))
                 if v != CpuOptions.__dataclass_fields__[k].default]  # fmt: skip
        if asked == ov_backend.NAME or needs:
            ov_backend.require("--backend openvino" if asked else " and ".join(needs))
            how = "asked (--backend openvino)" if asked else f"{', '.join(needs)}: OpenVINO only"
            if opts.device == "CPU":
                self._openvino_session(model, opts)  # it loads here, or compile fails now
            return ov_backend.NAME, {"how": how, "chosen": ov_backend.NAME}
        if not ov_backend.available():
            return ort_backend.NAME, {
                "how": "the only runtime installed (OpenVINO is not: pip install 'edgec[openvino]')",
                "chosen": ort_backend.NAME,
            }
        from edgec.targets.cpu.choice import choose

        try:
            ov_session = ov_backend.open_session(model, opts, threads=None, declared=[])
        except Exception as exc:  # OpenVINO cannot load it: ONNX Runtime runs it
            return ort_backend.NAME, {
                "how": f"OpenVINO could not load the model ({str(exc).splitlines()[0][:200]})",
                "chosen": ort_backend.NAME,
            }
        sessions: dict[str, Session] = {
            ort_backend.NAME: ort_backend.open_session(model, opts, threads=None, declared=[]),
            ov_backend.NAME: ov_session,
        }
        n = batch if isinstance(batch, int) else 1
        x = np.random.default_rng(0).random((n, *program.input_shape), dtype=np.float32)
        return choose(sessions, x, threads=None)

    def _openvino_session(self, model: Path, opts: CpuOptions) -> None:
        try:
            ov_backend.open_session(model, opts, threads=None, declared=[])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ConstraintViolation(
                "OpenVINO cannot run this model",
                [
                    Violation(
                        layer="(model)",
                        rule="openvino-load",
                        detail=f"OpenVINO {ov_backend.version()} failed to load model.onnx: {first}",
                        hint="compile with --backend onnxruntime",
                    )
                ],
                hint="compile with --backend onnxruntime",
            ) from None

    def summary(self, report: dict[str, Any]) -> list[str]:
        tr = report.get("target_report", {})
        fusion = tr.get("ort_fusion", {})
        lines = [
            f"{tr.get('precision', '?').upper()} ONNX, "
            f"{tr.get('size_ratio_vs_fp32', 1.0):.2f}x the FP32 size; "
            f"ONNX Runtime runs {fusion.get('fused_quantized_ops', 0)} compute ops in integer arithmetic, "
            f"{fusion.get('float_compute_ops', 0)} in float"
        ]
        still_float = tr.get("float_ops") or {}
        if tr.get("precision") == "int8" and still_float:
            # an INT8 compile names the operators ONNX Runtime has no integer kernel for (they stay float)
            lines[0] += " (" + ", ".join(f"{op} x{n}" for op, n in still_float.items()) + ")"
        choice = tr.get("backend_choice") or {}
        if tr.get("backend"):
            how = choice.get("how", "")
            ratio = (choice.get("ratio") or {}).get("openvino_to_onnxruntime")
            timed = f": OpenVINO at {ratio:.2f}x ONNX Runtime's latency" if ratio is not None else ""
            lines.append(
                f"runs on {tr.get('runtime')} at {tr.get('inference_precision', 'f32')} by default "
                f"({how}{timed}); --backend onnxruntime|openvino picks another"
            )
        return lines

    def default_backend(self, artifact: Artifact | None = None) -> str:
        """The runtime the artifact was compiled for (report.json ``target_report.backend``); where that is
        OpenVINO and it is not installed, model.onnx runs on ONNX Runtime (with a warning)."""
        if artifact is None:
            return self.backends[0]
        recorded = str(artifact.report.get("target_report", {}).get("backend") or ort_backend.NAME)
        if recorded == ov_backend.NAME and not ov_backend.available():
            log.warning(
                "artifact '%s' was compiled to run on OpenVINO, which is not installed here: running its "
                "model.onnx on ONNX Runtime (%s)",
                artifact.path,
                ov_backend.INSTALL_HINT.split(", or")[0],
            )
            return ort_backend.NAME
        return recorded

    def session(
        self, artifact: Artifact, *, backend: str | None = None, threads: int | None = None
    ) -> Session:
        """The artifact on ``backend`` (default: the one compile chose) for ``[N, *input_shape]``, any N:
        a graph with a fixed batch (report.json ``target_report.export.batch``) gets the samples in
        pieces of that size. The session's ``runtime`` says what ran (version, precision, threads)."""
        backend = self.resolve_backend(backend, artifact)
        opts = CpuOptions.from_report(artifact.report)
        declared = [o["name"] for o in artifact.report["program"].get("outputs") or []]
        if backend == ov_backend.NAME:
            ov_backend.require("--backend openvino")
            role = "openvino" if "openvino" in artifact.report.get("files", {}) else "model"
            sess = ov_backend.open_session(artifact.file(role), opts, threads=threads, declared=declared)
        else:
            sess = ort_backend.open_session(artifact.file("model"), opts, threads=threads, declared=declared)
        return sess

    def verify(
        self,
        artifact: Artifact,
        program: Program,
        data: Dataset,
        *,
        backend: str | None = None,
        limit: int | None = None,
        min_agreement: float = 0.98,
        batch_size: int = 64,
    ) -> VerifyResult:
        """The core's comparison with the source model as the program's task makes it (top-1 / max-abs
        error, or a detector's mAP on the data's boxes: :mod:`edgec.tasks`), plus the precision that ran
        (:func:`check_precision`): an artifact compiled for f32 fails when the runtime ran lower.

        A spiking network's class is the output neuron with the most spikes, so top-1 agreement and
        accuracy compare spike counts, and the share of identical output spikes is reported (float
        rounding in the runtime may flip a spike at the threshold)."""
        from edgec.tasks import task_for

        task = task_for(program)
        x, y = task.inputs(data, limit)
        run = self.session(artifact, backend=backend)
        outs: list[dict[str, np.ndarray]] = []
        refs: list[dict[str, np.ndarray]] = []
        for i in range(0, len(x), batch_size):
            outs.append(run(x[i : i + batch_size]))
            refs.append(self.reference(program, x[i : i + batch_size]))
        out = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        ref = {k: np.concatenate([r[k] for r in refs]) for k in refs[0]}
        if program.kind == "snn":  # [N, T, ...] spikes: compared by count per output neuron
            result = compare_spikes(out, ref, y, min_agreement=min_agreement)
        else:
            result = task.compare(out, ref, y, min_agreement=min_agreement)
        return check_precision(result, getattr(run, "runtime", {}), artifact.report, out, ref)


def _refuse_if_nothing_fused(report: dict[str, Any]) -> None:
    """An INT8 artifact in which ORT runs no integer kernel is FP32 with extra conversions: refuse it."""
    if report["ort_fusion"]["fused_quantized_ops"] > 0:
        return
    ops = report["float_ops"] or {"(none)": 0}
    rows = [
        Violation(
            layer=op,
            rule="int8-no-kernel",
            detail=f"ONNX Runtime has no INT8 kernel for {op} ({n} in the graph); after quantization "
            "every compute op still runs in float",
            hint="compile without --quantize int8 (FP32), or replace the op with one ORT quantizes "
            "(Conv, Gemm / Linear, MatMul)",
        )
        for op, n in ops.items()
    ]
    raise ConstraintViolation(
        f"INT8 would not be faster on ONNX Runtime: no operator of this model has an INT8 kernel "
        f"({', '.join(ops)})",
        rows,
        hint="compile it in FP32 (without --quantize int8)",
    )


def check_precision(
    result: VerifyResult,
    runtime: dict[str, Any],
    report: dict[str, Any],
    out: dict[str, np.ndarray],
    ref: dict[str, np.ndarray],
) -> VerifyResult:
    """``result`` with what ran (``metrics["runtime"]``) and the precision that ran checked: an artifact
    compiled for f32 fails when the runtime computed a float operation in another precision (read
    back from the compiled model, not taken from the setting). An FP32 artifact run at f32 also gets
    ``f32_level``: its worst output's max-abs error over :data:`F32_TOLERANCE` of that output's range
    (at least 1); above 1 the summary says so (``--min-agreement`` still decides pass or fail)."""
    asked = CpuOptions.from_report(report).precision
    metrics = {**result.metrics, "runtime": runtime}
    ran = ov_backend.float_precisions(runtime) if runtime.get("backend") == ov_backend.NAME else {"f32"}
    summary = result.summary
    fp32 = report.get("target_report", {}).get("precision") == "fp32"
    if fp32 and ran == {"f32"} and out.keys() == ref.keys():
        worst = 0.0
        for name, r in ref.items():
            if out[name].shape == r.shape and r.size:
                err = float(np.abs(out[name].astype(np.float64) - r.astype(np.float64)).max())
                worst = max(worst, err / (F32_TOLERANCE * max(float(np.abs(r).max()), 1.0)))
        metrics["f32_level"] = round(worst, 4)
        if worst > 1.0:
            summary += f"; max abs error {worst:.1f}x above f32 level"
    if asked == "f32" and ran != {"f32"}:
        why = f"{runtime.get('runtime')} computed in {', '.join(sorted(ran))}, not in the f32 the artifact "
        return VerifyResult(False, metrics, f"{summary}; {why}was compiled for")
    return VerifyResult(result.passed, metrics, summary)
