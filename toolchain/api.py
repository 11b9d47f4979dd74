"""The public verbs, one per user task, with keyword-only options. The CLI is a thin shell over these.

``compile``  load -> validate -> target passes -> check -> lower -> report (atomic artifact dir)
``check``    what the target cannot take, as :class:`~edgec.target.Violation` rows
``verify``   an artifact against its source model on data
``run``      an artifact on an input array
``bench``    an artifact's latency percentiles and throughput
``energy_report``  MACs, synaptic operations, memory and energy of a model or artifact, per target
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgec.artifact import REPORT_JSON, REPORT_MD, Artifact, ArtifactWriter, check_output_dir
from edgec.config import BenchOptions, CompileConfig, DataOptions, ReportOptions, RunOptions, VerifyOptions
from edgec.data import Dataset, open_dataset
from edgec.errors import ConstraintViolation, DataError, UsageError, VerificationFailed
from edgec.loading import load_program
from edgec.options import build, merge, split, takes
from edgec.passes import Pass, PassContext, PassManager, get_pass
from edgec.program import Program
from edgec.progress import NullProgress, Progress
from edgec.provenance import (
    COMPRESSED_DIR,
    compiled_program,
    describe_files,
    original_accuracy,
    record_source,
    source_paths,
)
from edgec.report import Report, artifact_report, build_report, stored_config
from edgec.target import Target, VerifyResult, Violation, get_target

log = logging.getLogger(__name__)


def _config(config: CompileConfig | None, options: dict[str, Any]) -> CompileConfig:
    """``config`` (or defaults + edgec.toml) with the keyword options applied, each one checked.

    ``target_options={...}`` is the keyword of ``--target-option NAME=VALUE``: options of the chosen
    target, over those of ``[target.NAME]`` in edgec.toml; the target checks names and values."""
    options = dict(options)
    target_opts = options.pop("target_options", None)
    cfg = build(CompileConfig, options) if config is None else merge(config, options)
    if target_opts:
        if not isinstance(target_opts, dict):
            raise UsageError(
                f"target_options must be a dict of the target's options, got {type(target_opts).__name__}",
                hint="e.g. target_options={'int4_block': 32}; `edgec targets` lists each target's options",
            )
        merged = {**cfg.target_options.get(cfg.target, {}), **target_opts}
        cfg = dataclasses.replace(cfg, target_options={**cfg.target_options, cfg.target: merged})
    return cfg


def _prepare(model: Any, cfg: CompileConfig) -> tuple[Target, Program, CompileConfig]:
    target = get_target(cfg.target)
    target.require_usable()
    cfg = target.resolve_config(cfg)
    program = load_program(
        model,
        arch=cfg.arch,
        input_shape=cfg.input_shape,
        trust_pickle=cfg.trust_pickle,
        timesteps=cfg.timesteps,
        dt=cfg.dt,
    )
    return target, program, cfg


def _open_data(
    spec: str | None, program: Program, purpose: str, images: DataOptions | None = None
) -> Dataset | None:
    spec = spec or program.metadata.get("dataset")
    if spec is None:
        return None
    image_options = (images or DataOptions()).image_options()
    data = open_dataset(spec, purpose=purpose, input_shape=program.input_shape, images=image_options)  # type: ignore[arg-type]
    fixed = program.source.format == "export"  # the graph fixes its input shape: --input-shape cannot help
    hint = (
        f"the model was exported for inputs of shape {program.input_shape}: give data of that shape "
        "(image folders: --image-resize fit or crop)"
        if fixed
        else None
    )
    data.check_input_shape(program.input_shape, hint)
    return data


def pipeline(tgt: Target, program: Program, cfg: CompileConfig) -> list[Pass]:
    """The passes a compile runs, in order: the recipe's passes that must see the model before the
    target prepares it (``Pass.before_target``), the target's preparation passes, then the rest of
    the recipe in its order. A pass may appear several times with different options."""
    recipe = [
        s.instance
        if s.instance is not None
        else get_pass(s.name, **{**cfg.pass_options.get(s.name, {}), **s.options})
        for s in cfg.passes
    ]
    early = [p for p in recipe if p.before_target]
    late = [p for p in recipe if not p.before_target]
    return [*early, *tgt.prepare_passes(program, cfg), *late]


@takes(CompileConfig)
def check(
    model: Any,
    *,
    config: CompileConfig | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> tuple[Program, list[Violation]]:
    """Run the passes a compile would run and return what the target cannot take (empty: it can)."""
    tgt, program, cfg = _prepare(model, _config(config, options))
    passes = pipeline(tgt, program, cfg)
    # training passes run without fine-tuning here: the structure and widths they give are what is checked
    ctx = _context(cfg, program, tgt, passes, progress, epochs=0)
    program = PassManager(passes).run(program, ctx)
    return program, tgt.check(program, cfg)


def _context(
    cfg: CompileConfig,
    program: Program,
    tgt: Target,
    passes: list[Pass],
    progress: Progress | None,
    *,
    epochs: int | None = None,
) -> PassContext:
    """Calibration data always (the model's own dataset by default); labelled training data when a pass
    needs it (``--train-data``, else the model's own dataset), split into a training part and a
    validation part on which the fine-tuning loop picks its best epoch. ``epochs`` overrides
    ``--epochs`` (``edgec check`` applies training passes with 0)."""
    import dataclasses

    from edgec.finetune import FinetuneOptions

    wants_training = cfg.train_data is not None or any("training" in p.needs for p in passes)
    calib = _open_data(cfg.calib, program, "calibration", cfg)
    train = holdout = None
    if wants_training:
        spec = cfg.train_data or program.metadata.get("dataset")
        if spec is None and epochs != 0:
            trainers = ", ".join(p.name for p in passes if "training" in p.needs)
            raise UsageError(
                f"{trainers} fine-tunes the model and needs labelled training data",
                hint="pass --train-data SRC (e.g. builtin:digits, or an .npz with x and y)",
            )
        if spec is not None:
            from edgec.compression import split_data

            data = _open_data(spec, program, "training", cfg)
            assert data is not None  # spec is not None
            parts = split_data(program, data, None, cfg.validation, cfg.seed)
            train, holdout = parts.train, parts.validation
        else:  # `edgec check` with training passes and no training data: structure only
            train = calib
    training = {
        f.name: getattr(cfg, f.name) for f in dataclasses.fields(FinetuneOptions) if hasattr(cfg, f.name)
    }
    if epochs is not None:
        training["epochs"] = epochs
    return PassContext(
        config=cfg,
        calib=calib,
        train=train,
        target=tgt,
        progress=progress or NullProgress(),
        seed=cfg.seed,
        holdout=holdout,
        finetune=FinetuneOptions(**training),
    )


@takes(CompileConfig)
def compile(
    model: Any,
    *,
    out: str | Path | None = None,
    force: bool = False,
    config: CompileConfig | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Artifact:
    """Compile ``model`` for a target into the artifact directory ``out``; returns the artifact.

    ``model`` is a file path, ``zoo:NAME``, an ``nn.Module`` (with ``input_shape``), a
    ``torch.export`` ExportedProgram or a Program. Raises
    :class:`~edgec.errors.ConstraintViolation` (with the violation rows) when the target cannot
    take the model; nothing is written then.
    """
    started = time.perf_counter()
    cfg = _config(config, options)
    progress = progress or NullProgress()
    out_dir = Path(out) if out is not None else Path("edgec-out") / f"{_model_stem(model)}-{cfg.target}"
    protect = source_paths(model)
    check_output_dir(out_dir, force=force, protect=protect)  # fail before any work
    tgt, program, cfg = _prepare(model, cfg)
    source = program
    passes = pipeline(tgt, program, cfg)
    ctx = _context(cfg, program, tgt, passes, progress)
    calib_data = ctx.calib
    program = PassManager(passes).run(program, ctx)
    violations = tgt.check(program, cfg)
    if violations:
        raise ConstraintViolation(
            f"target '{tgt.name}' cannot take this model: {len(violations)} violation(s)",
            violations,
            hint="see the table; `edgec check` prints it without compiling",
        )
    with ArtifactWriter(out_dir, force=force, protect=protect) as tmp:
        stage_start = time.perf_counter()
        lowered = tgt.lower(program, tmp, ctx)
        lower_s = time.perf_counter() - stage_start
        energy = tgt.estimate_energy(program, calib_data, cfg)
        source_files = record_source(source, tmp)
        if any(getattr(p, "changes_function", False) for p in passes):
            # the compressed model is what was lowered: verify and report compare with it, not the source
            from edgec.store import save_program

            (tmp / COMPRESSED_DIR).mkdir()
            saved = save_program(program, tmp / COMPRESSED_DIR)
            source_files.update({f"compressed_{k}": f"{COMPRESSED_DIR}/{v}" for k, v in saved.items()})
        report = build_report(
            program,
            target=tgt.name,
            config=cfg,
            energy=energy,
            files=describe_files(tmp, {**lowered.files, **source_files}),
            target_report=lowered.report,
            stages={"lower_s": round(lower_s, 3), "total_s": round(time.perf_counter() - started, 3)},
        )
        _write_reports(tmp, report)
    art = Artifact.open(out_dir)
    art.source = source  # verify in this session compares with the very model compiled
    return art


@takes(CompileConfig, ReportOptions)
def energy_report(
    model: Any,
    *,
    config: CompileConfig | None = None,
    report: ReportOptions | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Report:
    """The energy report of ``model`` for a target without compiling (or of an artifact directory).

    A model is counted as the target would lower it (the passes of a compile run first, as in
    ``edgec check``). An artifact's stored report is returned; its energy is recounted from its
    source model only when ``data``, ``samples`` or ``weight_bits`` ask for other figures (or it
    has none). Render the result with :mod:`edgec.report`.
    """
    compile_opts, report_opts = split(options, CompileConfig, ReportOptions)
    cfg = _config(config, compile_opts)
    rep = merge(report, report_opts) if report is not None else build(ReportOptions, report_opts)
    data, samples, weight_bits = rep.data, rep.samples, rep.weight_bits
    from edgec.store import is_program_dir

    if isinstance(model, (str, Path)) and Path(model).is_dir() and not is_program_dir(model):
        art = Artifact.open(model)
        energy = None
        if (
            art.report.get("energy") is None
            or data is not None
            or samples is not None
            or weight_bits is not None
        ):
            stored = stored_config(Report.from_dict(art.report))
            program = compiled_program(art, trust_pickle=cfg.trust_pickle)
            dataset = _activity_data(data or stored.calib, program, samples, rep)
            energy = get_target(art.target).estimate_energy(
                program, dataset, stored, samples=samples, weight_bits=weight_bits
            )
        return artifact_report(art, energy=energy)
    program, violations = check(model, config=cfg, progress=progress)  # what the target would lower
    tgt = get_target(cfg.target)
    cfg = tgt.resolve_config(cfg)
    dataset = _activity_data(data or cfg.calib, program, samples, rep)
    energy = tgt.estimate_energy(program, dataset, cfg, samples=samples, weight_bits=weight_bits)
    if energy is None:
        raise UsageError(
            f"target '{tgt.name}' has no energy cost table yet",
            hint="see `edgec targets`; a target declares its tables in Target.cost_tables",
        )
    return build_report(program, target=tgt.name, config=cfg, energy=energy, violations=violations)


def _activity_data(
    spec: str | None, program: Program, samples: int | None, images: DataOptions
) -> Dataset | None:
    """Inputs for the activity counts: ``spec``, else the model's own dataset; ``samples`` needs some."""
    dataset = _open_data(spec, program, "calibration", images)
    if dataset is None and samples is not None:
        raise UsageError(
            f"--samples {samples} needs inputs to measure activity on, and this model has no dataset",
            hint="pass --data SRC (.npz / .npy, an image folder, builtin:NAME, module:function)",
        )
    return dataset


def _write_reports(out: Path, report: Report) -> None:
    """report.json, report.md and (with an energy section) report.html of an artifact."""
    from edgec.report import render_html, render_markdown

    (out / REPORT_JSON).write_text(report.to_json())
    (out / REPORT_MD).write_text(render_markdown(report))
    if report.energy is not None:
        (out / "report.html").write_text(render_html(report))


def _model_stem(model: Any) -> str:
    if isinstance(model, str) and model.startswith("zoo:"):
        return model[4:]
    if isinstance(model, (str, Path)):
        return Path(model).stem
    return "model"


@takes(VerifyOptions)
def verify(
    artifact: str | Path | Artifact,
    *,
    config: VerifyOptions | None = None,
    **options: Any,
) -> VerifyResult:
    """Compare an artifact with its source model; raises VerificationFailed if it disagrees."""
    opts = merge(config, options) if config is not None else build(VerifyOptions, options)
    art = artifact if isinstance(artifact, Artifact) else Artifact.open(artifact)
    tgt = get_target(art.target)
    program = compiled_program(art, trust_pickle=opts.trust_pickle)
    dataset = _open_data(opts.data, program, "evaluation", opts)
    if dataset is None:
        dataset = _random_data(program, n=64)
    result = tgt.verify(
        art, program, dataset, backend=opts.backend, limit=opts.limit, min_agreement=opts.min_agreement
    )
    result.metrics["data"] = dataset.name
    original_accuracy(art, program, dataset, result.metrics, trust_pickle=opts.trust_pickle)
    if not result.passed:
        raise VerificationFailed(f"artifact '{art.path}' disagrees with its source model: {result.summary}")
    return result


def _random_data(program: Program, n: int) -> Dataset:
    from edgec.data import from_arrays

    rng = np.random.default_rng(0)
    x = rng.random((n, *program.input_shape), dtype=np.float32)
    return from_arrays(x, name="uniform random inputs (no --data given)")


@takes(RunOptions)
def run(artifact: str | Path | Artifact, x: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
    """The artifact's outputs for inputs ``x`` (``[N, *input_shape]`` or one sample), by output name,
    batch first, in report.json ``program.outputs`` order (see :data:`edgec.target.Session`)."""
    opts = build(RunOptions, options)
    art = artifact if isinstance(artifact, Artifact) else Artifact.open(artifact)
    shape = tuple(art.report["program"]["input_shape"])
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"input has dtype {x.dtype}; the artifact takes floating-point input")
    if tuple(x.shape) == shape:
        x = x[None]
    if tuple(x.shape[1:]) != shape:
        raise DataError(
            f"input has shape {tuple(x.shape)}; the artifact takes [N, {', '.join(map(str, shape))}]"
        )
    return get_target(art.target).session(art, backend=opts.backend)(x.astype(np.float32))


@dataclass
class BenchResult:
    batch_size: int
    iterations: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    throughput_per_s: float
    threads: int | None
    backend: str
    energy: dict[str, Any] | None = None  # measured energy per inference, where the target measures
    runtime: dict[str, Any] | None = None  # what ran: the session's ``runtime`` (version, precision, ...)

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self)


@takes(BenchOptions)
def bench(
    artifact: str | Path | Artifact,
    *,
    config: BenchOptions | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> BenchResult:
    """Latency percentiles of the artifact on random inputs of its shape (after ``warmup`` runs)."""
    opts = merge(config, options) if config is not None else build(BenchOptions, options)
    batch_size, iterations, warmup, threads = opts.batch_size, opts.iterations, opts.warmup, opts.threads
    art = artifact if isinstance(artifact, Artifact) else Artifact.open(artifact)
    tgt = get_target(art.target)
    backend = tgt.resolve_backend(opts.backend, art)
    fn = tgt.session(art, backend=backend, threads=threads)
    shape = tuple(art.report["program"]["input_shape"])
    x = np.random.default_rng(0).random((batch_size, *shape), dtype=np.float32)
    progress = progress or NullProgress()
    probe = tgt.energy_probe(art, backend=backend)
    energy: dict[str, Any] | None = None
    if probe is not None:  # the target samples power during the timed run (e.g. Jetson rails)
        times, measurement = probe.measure(
            lambda: fn(x), iterations=iterations, warmup=warmup, batch_size=batch_size
        )
        energy = measurement.to_dict()
        _attach_measurement(art, measurement)
    else:
        for _ in range(warmup):
            fn(x)
        times = []
        with progress.task("benchmarking", total=iterations) as task:
            for _ in range(iterations):
                t0 = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t0)
                task.advance()
    times_ms = sorted(t * 1000 for t in times)
    p50 = statistics.median(times_ms)
    p90 = times_ms[min(len(times_ms) - 1, round(0.9 * (len(times_ms) - 1)))]
    mean = statistics.fmean(times_ms)
    return BenchResult(
        batch_size,
        iterations,
        _sig(p50),
        _sig(p90),
        _sig(mean),
        _sig(batch_size * 1000 / mean),  # six significant digits each: a fast run's ms keep their precision
        threads,
        backend,
        energy,
        getattr(fn, "runtime", None),
    )


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def _attach_measurement(art: Artifact, measurement: Any) -> None:
    """The measured energy becomes the artifact report's headline (report.json and report.md)."""
    from edgec.energy.measured import attach_measurement

    report = dict(art.report)
    if report.get("energy") is None:
        log.warning(
            "artifact '%s' has no energy section; the measurement is kept in the bench result", art.path
        )
        return
    report["energy"] = attach_measurement(report["energy"], measurement)
    _write_reports(art.path, Report.from_dict(report))
    art.report.update(report)


def build_engine(
    artifact: str | Path | Artifact,
    *,
    workspace_mb: int = 1024,
    dla: int | None = None,
    max_batch: int = 64,
) -> dict[str, Any]:
    """Build the device engine of an artifact on this machine (a target that has one: jetson)."""
    art = artifact if isinstance(artifact, Artifact) else Artifact.open(artifact)
    tgt = get_target(art.target)
    build = getattr(tgt, "build_engine", None)
    if build is None:
        raise UsageError(
            f"target '{art.target}' has no device engine to build",
            hint="build-engine is for artifacts compiled with --target jetson",
        )
    result: dict[str, Any] = build(art, workspace_mb=workspace_mb, dla_core=dla, max_batch=max_batch)
    return result
