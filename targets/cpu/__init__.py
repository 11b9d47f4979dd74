"""CPU target: ONNX Runtime, FP32 or INT8 (U8S8 QDQ, the graph that is actually fast on x86)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgec.errors import DataError, UsageError
from edgec.target import Lowered, Session, Target, Violation

if TYPE_CHECKING:
    from edgec.artifact import Artifact
    from edgec.config import CompileConfig
    from edgec.passes import PassContext
    from edgec.program import Program

MODEL_FILE = "model.onnx"


class CpuTarget(Target):
    name = "cpu"
    description = "x86 / ARM CPU through ONNX Runtime (FP32, or INT8 U8S8 QDQ)"
    requires = ("onnx", "onnxruntime")
    # energy: priced with Horowitz 2014 45 nm figures at the precision the artifact computes in
    cost_tables: ClassVar[dict[str, str]] = {"none": "cmos45-fp32", "int8": "cmos45-int8"}

    def check(self, program: Program, config: CompileConfig) -> list[Violation]:
        if program.kind == "snn":
            return [
                Violation(
                    layer="(model)",
                    rule="cpu-takes-ann",
                    detail="the CPU target compiles ANNs; this is a spiking network",
                    hint="compile it with --target loihi (its emulator runs on the CPU)",
                )
            ]
        return []

    def lower(self, program: Program, out_dir: Path, ctx: PassContext) -> Lowered:
        from edgec.targets.cpu.onnx_export import INPUT_NAME, export_onnx
        from edgec.targets.cpu.quantize import fusion_summary, optimized_op_counts, quantize_int8

        assert ctx.config is not None
        config = ctx.config
        report: dict[str, Any] = {"runtime": _ort_version(), "precision": "fp32"}
        final = out_dir / MODEL_FILE
        if config.quantize == "int8":
            if ctx.calib is None:
                raise UsageError(
                    "--quantize int8 needs calibration data", hint="pass --calib SRC (e.g. data.npz)"
                )
            fp32 = out_dir / ".model_fp32.onnx"
            report["export"] = export_onnx(program, fp32)
            report["fp32_bytes"] = fp32.stat().st_size
            report["quantization"] = quantize_int8(
                fp32,
                final,
                ctx.calib,
                input_name=INPUT_NAME,
                input_shape=program.input_shape,
                method=config.calib_method,
                samples=config.calib_samples,
                progress=ctx.progress,
            )
            fp32.unlink()
            report["precision"] = "int8"
        else:
            report["export"] = export_onnx(program, final)
            report["fp32_bytes"] = final.stat().st_size
        counts = optimized_op_counts(final)
        report["ort_optimized_ops"] = counts
        report["ort_fusion"] = fusion_summary(counts)
        report["size_ratio_vs_fp32"] = round(final.stat().st_size / report["fp32_bytes"], 4)
        return Lowered(files={"model": MODEL_FILE}, report=report)

    def session(
        self, artifact: Artifact, *, backend: str | None = None, threads: int | None = None
    ) -> Session:
        import onnxruntime as ort

        self.resolve_backend(backend)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(artifact.file("model")), so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        outputs = sess.get_outputs()
        declared = [o["name"] for o in artifact.report["program"].get("outputs") or []]
        names = declared if len(declared) == len(outputs) else [o.name for o in outputs]
        expected = [d if isinstance(d, int) else None for d in inp.shape[1:]]

        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.ndim != len(inp.shape) or any(
                e not in (None, d) for e, d in zip(expected, x.shape[1:], strict=True)
            ):
                raise DataError(
                    f"input of shape {tuple(x.shape)} does not fit the artifact (expects [N, "
                    f"{', '.join(str(d) for d in inp.shape[1:])}])"
                )
            return {n: np.asarray(v) for n, v in zip(names, sess.run(None, {inp.name: x}), strict=True)}

        return run


def _ort_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"
