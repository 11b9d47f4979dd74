"""CPU target: ONNX Runtime, FP32 or INT8 (U8S8 QDQ, the graph that is actually fast on x86).

A thin user of :mod:`edgec.onnxlib`: the export (named outputs, a checked batch dimension) and the
Q/DQ writer live there, shared with the Jetson target; this target picks the U8S8 scheme, feeds
calibration data, and reports what ONNX Runtime fused.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgec.errors import ConstraintViolation, DataError, UsageError
from edgec.target import Lowered, NoOptions, Session, Target, Violation

if TYPE_CHECKING:
    from edgec.artifact import Artifact
    from edgec.config import CompileConfig
    from edgec.onnxlib import ExportInfo
    from edgec.passes import PassContext
    from edgec.program import Program

MODEL_FILE = "model.onnx"


class CpuTarget(Target):
    name = "cpu"
    description = "x86 / ARM CPU through ONNX Runtime (FP32, or INT8 U8S8 QDQ)"
    requires = ("onnx", "onnxruntime")
    backends = ("onnxruntime",)
    options: ClassVar[type | None] = NoOptions
    # energy: priced with Horowitz 2014 45 nm figures at the precision the artifact computes in
    cost_tables: ClassVar[dict[str, str]] = {"none": "cmos45-fp32", "int8": "cmos45-int8"}
    precisions: ClassVar[dict[str, str]] = {
        "none": "FP32",
        "int8": "INT8: uint8 activations, int8 per-channel weights, QDQ fused by ONNX Runtime "
        "(needs --calib; a program with learned steps (lsq, q-detr) keeps them, its low-bit grids carried "
        "in int8)",
    }

    def __init__(self) -> None:
        # the export that check() ran, reused by lower() for the same program: (module, shape, bytes, info)
        self._exported: tuple[Any, tuple[int, ...], bytes, ExportInfo] | None = None

    def check(self, program: Program, config: CompileConfig) -> list[Violation]:
        """The CPU takes ANNs that export to ONNX: the export compile runs is run here (and kept)."""
        if program.kind == "snn":
            return [
                Violation(
                    layer="(model)",
                    rule="cpu-takes-ann",
                    detail="the CPU target compiles ANNs; this is a spiking network",
                    hint="compile it with --target loihi (its emulator runs on the CPU)",
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
            "runtime": _ort_version(),
            "precision": "fp32",
            "export": info.to_dict(),
            "fp32_bytes": len(data),
        }
        final = out_dir / MODEL_FILE
        from edgec.targets.cpu.learned import has_learned_activations, quantize_learned

        if config.quantize == "int8" and has_learned_activations(program):
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
        return Lowered(files={"model": MODEL_FILE}, report=report)

    def summary(self, report: dict[str, Any]) -> list[str]:
        tr = report.get("target_report", {})
        fusion = tr.get("ort_fusion", {})
        return [
            f"{tr.get('precision', '?').upper()} ONNX, "
            f"{tr.get('size_ratio_vs_fp32', 1.0):.2f}x the FP32 size; "
            f"ONNX Runtime runs {fusion.get('fused_quantized_ops', 0)} compute ops in integer arithmetic, "
            f"{fusion.get('float_compute_ops', 0)} in float"
        ]

    def session(
        self, artifact: Artifact, *, backend: str | None = None, threads: int | None = None
    ) -> Session:
        """ORT on ``[N, *input_shape]``, any N: a graph with a fixed batch (report.json
        ``target_report.export.batch``) gets the samples in pieces of that size."""
        import onnxruntime as ort

        from edgec.targets.cpu.session import run_batched

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
        fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None

        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.ndim != len(inp.shape) or any(
                e not in (None, d) for e, d in zip(expected, x.shape[1:], strict=True)
            ):
                raise DataError(
                    f"input of shape {tuple(x.shape)} does not fit the artifact (expects [N, "
                    f"{', '.join(str(d) for d in inp.shape[1:])}])"
                )
            return dict(zip(names, run_batched(sess, inp.name, x, fixed), strict=True))

        return run


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


def _ort_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"
