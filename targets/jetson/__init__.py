"""Jetson target: TensorRT explicit-quantization ONNX graphs, checked on CPU; engines built on the device.

Everything the target decides (the graph, its rule check, builder settings, buffers) is produced and
tested on CPU; only the engine build, timing and power sampling run on a Jetson (docs/jetson.md).

Files: :mod:`.graph` (export through :mod:`edgec.onnxlib`, FP16 / INT8 / INT4 graphs), :mod:`.qdq`
(TensorRT's Q/DQ placement), :mod:`.rules` (what TensorRT 10.3 and the DLA accept), :mod:`.settings`
(builder settings and I/O buffers as data), :mod:`.engine` (the TensorRT calls), :mod:`.power` and
:mod:`.measure` (rail power, energy per inference).

Options (``[target.jetson]`` in edgec.toml): ``dla`` (compile for the DLA: static batch, DLA rules),
``gpu_fallback`` (what the DLA cannot take runs on the GPU), ``batch`` (fixed batch of the graph;
1 with ``dla``), ``int4_block`` (rows per INT4 block, 128), ``rail`` (power rail to integrate, e.g.
``VDD_IN``), ``idle_s`` (idle baseline seconds before a measured benchmark).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgec.errors import ConstraintViolation, DataError, UsageError
from edgec.target import Lowered, Session, Target, Violation

if TYPE_CHECKING:
    from edgec.artifact import Artifact
    from edgec.config import CompileConfig
    from edgec.passes import PassContext
    from edgec.program import Program

log = logging.getLogger(__name__)
MODEL_FILE = "model.onnx"
ENGINE_FILE = "model.plan"
OPTIONS: dict[str, type] = {
    "dla": bool,
    "gpu_fallback": bool,
    "batch": int,
    "int4_block": int,
    "rail": str,
    "idle_s": float,
}


def options(config: CompileConfig) -> dict[str, Any]:
    """``[target.jetson]`` options, type-checked; ``batch`` defaults to 1 under ``dla``."""
    opts = config.options_for_target()
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise UsageError(
            f"unknown [target.jetson] option(s): {', '.join(unknown)}", hint=f"known: {', '.join(OPTIONS)}"
        )
    for key, value in opts.items():
        kind = OPTIONS[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise UsageError(f"[target.jetson] {key} must be {kind.__name__}, got {value!r}")
    out = {"dla": False, "gpu_fallback": False, "batch": None, "int4_block": 128, **opts}
    if out["dla"] and out["batch"] is None:
        out["batch"] = 1
    if out["batch"] is not None and out["batch"] < 1:
        raise UsageError(f"[target.jetson] batch must be >= 1, got {out['batch']}")
    return out


class JetsonTarget(Target):
    name = "jetson"
    description = "NVIDIA Jetson (Orin) through TensorRT 10 / 11: FP16, INT8 explicit Q/DQ, INT4 weight-only"
    requires = ("onnx", "onnxruntime")
    optional: ClassVar[dict[str, str]] = {"engine build / backend tensorrt": "tensorrt"}
    backends = ("onnxruntime", "tensorrt")
    precisions: ClassVar[dict[str, str]] = {
        "none": "FP32 graph (TensorRT runs it in FP32 / TF32)",
        "fp16": "FP16 graph, inputs and outputs kept FP32 (strongly typed: no builder precision flag)",
        "int8": "INT8 explicit Q/DQ: symmetric int8, per-channel weights, per-tensor activations "
        "(needs --calib, or the scales a QAT recipe learned)",
        "int4-weights": "INT4 weight-only blocks on MatMul / Gemm weights, activations in float "
        "(transformers)",
    }
    # energy: Jetson Orin Nano 8 GB, module power at peak over peak throughput (an estimate until measured);
    # int4 weight-only computes with float activations, priced as FP16 tensor-core MACs
    cost_tables: ClassVar[dict[str, str]] = {
        "none": "orin-nano-fp32",
        "fp16": "orin-nano-fp16",
        "int8": "orin-nano-int8",
        "int4-weights": "orin-nano-fp16",
    }

    def check(self, program: Program, config: CompileConfig) -> list[Violation]:
        """Program-level rules, then the graph rules that hold before quantization (opset, ops, DLA)."""
        import onnx

        from edgec.onnxlib import OnnxExportError
        from edgec.targets.jetson.graph import export_fp32
        from edgec.targets.jetson.rules import check_export

        if program.kind == "snn" and config.quantize not in ("none", "fp16"):
            return [
                Violation(
                    "(model)",
                    "snn-precision",
                    f"--quantize {config.quantize} of a spiking network: the Jetson target runs SNNs as "
                    "their float graph (encoder and time loop unrolled) in FP32 or FP16",
                    "compile with --quantize none or fp16, or for spiking hardware with --target loihi",
                )
            ]
        opts = options(config)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fp32.onnx"
            try:
                export_fp32(program, path, batch=opts["batch"])
            except OnnxExportError as exc:
                layer = ", ".join(exc.ops) or "(model)"
                return [Violation(layer, "onnx-export", exc.message, exc.hint or "")]
            model = onnx.load(str(path))
        return check_export(
            model, precision=config.quantize, dla=opts["dla"], gpu_fallback=opts["gpu_fallback"]
        )

    def lower(self, program: Program, out_dir: Path, ctx: PassContext) -> Lowered:
        import onnx

        from edgec.targets.jetson.dla import dla_layers
        from edgec.targets.jetson.graph import build_graph
        from edgec.targets.jetson.rules import check_graph

        config = ctx.config
        if config is None:
            raise UsageError("the jetson target needs a compile configuration")
        opts = options(config)
        path = out_dir / MODEL_FILE
        report = build_graph(
            program,
            path,
            precision=config.quantize,
            calib=ctx.calib,
            calib_method=config.calib_method,
            calib_samples=config.calib_samples,
            batch=opts["batch"],
            int4_block=opts["int4_block"],
            fp16_io=opts["dla"],
            progress=ctx.progress,
        )
        model = onnx.load(str(path))
        rows = check_graph(
            model, precision=config.quantize, dla=opts["dla"], gpu_fallback=opts["gpu_fallback"]
        )
        if rows:
            raise ConstraintViolation(
                f"the {config.quantize} graph breaks {len(rows)} TensorRT rule(s)", rows, hint="see the table"
            )
        report["rules"] = "TensorRT 10.3 explicit-quantization and operator rules: passed" + (
            "; Orin DLA rules: passed" if opts["dla"] else ""
        )
        if opts["dla"]:
            on_dla, on_gpu = dla_layers(model)
            report["dla"] = {"layers_on_dla": len(on_dla), "gpu_fallback_layers": on_gpu}
        report["options"] = {k: v for k, v in opts.items() if v is not None}
        # out_dir is the writer's temporary directory here, renamed when compile succeeds: no name
        report["engine"] = {"built": False, "how": "on the device: edgec build-engine ARTIFACT_DIR"}
        report["verified_here"] = "graph rules and ONNX Runtime (CPU) numerics; the engine needs the device"
        return Lowered(files={"model": MODEL_FILE}, report=report)

    def session(
        self, artifact: Artifact, *, backend: str | None = None, threads: int | None = None
    ) -> Session:
        backend = self.resolve_backend(backend)
        if backend == "tensorrt":
            return self._engine_session(artifact)
        return _ort_session(artifact, threads)

    def energy_probe(self, artifact: Artifact, *, backend: str) -> Any:
        """Rail power during ``bench --backend tensorrt`` on a Jetson (INA3221 sysfs, else tegrastats)."""
        if backend != "tensorrt":
            return None
        from edgec.errors import MissingDependency
        from edgec.targets.jetson.measure import RailProbe, default_sampler

        try:
            sampler = default_sampler()
        except MissingDependency as exc:
            log.warning("energy is not measured: %s", exc)
            return None
        opts = artifact.report["target_report"].get("options", {})
        return RailProbe(sampler, rail=opts.get("rail"), idle_s=float(opts.get("idle_s", 2.0)))

    def build_engine(
        self, artifact: Artifact, *, workspace_mb: int, dla_core: int | None, max_batch: int
    ) -> dict[str, Any]:
        """Build the TensorRT engine of ``artifact`` here (on the device) and record it in the artifact."""
        from edgec.targets.jetson.engine import build_engine, tensorrt_version

        settings = engine_settings(
            artifact, tensorrt_version(), workspace_mb=workspace_mb, dla_core=dla_core, max_batch=max_batch
        )
        plan = build_engine(artifact.file("model"), settings)
        return record_engine(artifact, plan, settings)

    def _engine_session(self, artifact: Artifact) -> Session:
        from edgec.targets.jetson.engine import engine_session, import_tensorrt

        import_tensorrt()  # exit 7 with a clear message where TensorRT is missing
        files = artifact.report["files"]
        if "engine" not in files:
            raise UsageError(
                f"artifact '{artifact.path}' has no TensorRT engine yet",
                hint=f"build it on the device: edgec build-engine {artifact.path}",
            )
        eng = artifact.report["target_report"].get("engine", {})
        run = engine_session(
            artifact.file("engine"), max_batch=eng.get("max_batch"), fixed_batch=eng.get("fixed_batch")
        )

        def named(x: np.ndarray) -> dict[str, np.ndarray]:
            outs = run(x)
            return dict(zip(_output_names(artifact, list(outs)), outs.values(), strict=True))

        return named


def engine_settings(
    artifact: Artifact, trt_version: str, *, workspace_mb: int, dla_core: int | None, max_batch: int
) -> Any:
    """The builder settings for ``artifact`` on TensorRT ``trt_version`` (plain data, no TensorRT)."""
    from edgec.onnxlib import INPUT_NAME
    from edgec.targets.jetson.settings import builder_settings

    rep = artifact.report
    tr = rep["target_report"]
    fixed = tr["export"]["batch"] if tr["export"]["batch"] != "dynamic" else None
    shape = (fixed or 1, *rep["program"]["input_shape"])
    return builder_settings(
        tensorrt_version=trt_version,
        precision=tr["precision"],
        input_name=INPUT_NAME,
        input_shape=shape,
        dynamic_batch=fixed is None,
        workspace_mb=workspace_mb,
        dla_core=dla_core,
        gpu_fallback=bool(tr.get("options", {}).get("gpu_fallback", True)),
        max_batch=max_batch,
    )


def record_engine(artifact: Artifact, plan: bytes, settings: Any) -> dict[str, Any]:
    """Write the engine next to the graph and record it (files, settings) in report.json / report.md."""
    from edgec.artifact import REPORT_JSON, REPORT_MD
    from edgec.program import sha256_of
    from edgec.report import Report, render_html, render_markdown

    tmp = artifact.path / (ENGINE_FILE + ".tmp")
    tmp.write_bytes(plan)
    tmp.replace(artifact.path / ENGINE_FILE)
    report = dict(artifact.report)
    path = artifact.path / ENGINE_FILE
    report["files"] = {
        **report["files"],
        "engine": {"path": ENGINE_FILE, "bytes": path.stat().st_size, "sha256": sha256_of(path)},
    }
    lo, _, hi = next(iter(settings.profile.values()))
    engine = {
        "built": True,
        "settings": settings.to_dict(),
        "max_batch": hi[0],
        "fixed_batch": hi[0] if lo == hi else None,
    }
    report["target_report"] = {**report["target_report"], "engine": engine}
    doc = Report.from_dict(report)
    (artifact.path / REPORT_JSON).write_text(doc.to_json())
    (artifact.path / REPORT_MD).write_text(render_markdown(doc))
    if doc.energy is not None:
        (artifact.path / "report.html").write_text(render_html(doc))
    artifact.report.update(report)
    return engine


def _output_names(artifact: Artifact, found: list[str]) -> list[str]:
    declared = [o["name"] for o in artifact.report["program"].get("outputs") or []]
    return declared if len(declared) == len(found) else found


def _ort_session(artifact: Artifact, threads: int | None) -> Session:
    """The artifact's graph on ONNX Runtime's CPU kernels (Q/DQ computed in float: the reference)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(artifact.file("model")), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    names = _output_names(artifact, [o.name for o in sess.get_outputs()])
    expected = [d if isinstance(d, int) else None for d in inp.shape]
    fixed = expected[0]  # a graph compiled with a fixed batch (the DLA's) runs in chunks of it
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32  # a DLA FP16 graph takes FP16

    def once(x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(v, dtype=np.float32) for v in sess.run(None, {inp.name: x})]

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != len(expected) or any(
            e not in (None, d) for e, d in zip(expected[1:], x.shape[1:], strict=True)
        ):
            raise DataError(f"input of shape {tuple(x.shape)} does not fit the graph (expects {inp.shape})")
        x = x.astype(dtype)
        if fixed is None:
            return dict(zip(names, once(x), strict=True))
        parts: list[list[np.ndarray]] = []
        for i in range(0, len(x), fixed):
            chunk = x[i : i + fixed]
            pad = fixed - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), dtype)])
            parts.append([v[: fixed - pad] for v in once(chunk)])
        return {n: np.concatenate([p[k] for p in parts]) for k, n in enumerate(names)}

    return run
