"""The ``edgec`` command line: a thin typer shell over :mod:`edgec.api`.

Results go to stdout (``--json`` prints only JSON there); progress, warnings and errors go to
stderr. Every :class:`~edgec.errors.EdgecError` becomes a one-line ``error:`` message and its
documented exit code (see ``edgec.errors``). Heavy libraries are imported inside commands, so
``edgec --help`` answers quickly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgec.errors import EXIT_CODES, ConstraintViolation, EdgecError

if TYPE_CHECKING:
    from edgec.target import Violation

app = typer.Typer(
    name="edgec",
    help="Compile trained PyTorch ANNs and SNNs for edge hardware, with an energy report per target.\n\n"
    "Exit codes: " + ", ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + ".",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)  # results
err = Console(stderr=True, soft_wrap=True)  # progress, warnings, errors (one line each)
F = TypeVar("F", bound=Callable[..., Any])


def _handle_errors(fn: F) -> F:
    """Turn EdgecErrors into one-line messages with their exit codes; keep tracebacks for bugs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConstraintViolation as exc:
            _print_violations(exc.violations, console=err)
            _fail(exc)
        except EdgecError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except typer.Exit:  # a command's own exit code (e.g. `check`: 4), not a bug
            raise
        except Exception as exc:
            if os.environ.get("EDGEC_DEBUG"):
                raise
            err.print(
                f"[red]error:[/] internal error ({type(exc).__name__}: {escape(str(exc))}); "
                "rerun with EDGEC_DEBUG=1 for the traceback and report it",
                markup=True,
                highlight=False,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _fail(exc: EdgecError) -> None:
    # one line: what is wrong, then what to do about it
    hint = f"; {exc.hint}" if exc.hint else ""
    err.print(f"[red]error:[/] {escape(exc.message)}{escape(hint)}", markup=True, highlight=False)
    raise typer.Exit(exc.exit_code)


class _RichProgress:
    """edgec.progress.Progress on a rich progress bar (stderr)."""

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            tid = bar.add_task(description, total=total)

            class _Task:
                def advance(self, n: int = 1) -> None:
                    bar.advance(tid, n)

            yield _Task()


def _print_violations(violations: list[Violation], *, console: Console) -> None:
    table = Table(title="why not: what the target cannot take", show_lines=False)
    for col in ("layer", "rule", "detail", "hint"):
        table.add_column(col, overflow="fold")
    for v in violations:
        table.add_row(v.layer, v.rule + ("" if v.verified else " (unverified limit)"), v.detail, v.hint)
    console.print(table)


@contextlib.contextmanager
def _quiet_stdout(enabled: bool) -> Iterator[None]:
    """In --json mode, anything a library prints goes to stderr, keeping stdout pure JSON."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ---- options shared by compile / check -------------------------------------------------------
TargetOpt = Annotated[
    str | None, typer.Option("--target", "-t", help="target name, see `edgec targets` (default: cpu)")
]
CalibOpt = Annotated[
    str | None,
    typer.Option(
        help="calibration data: .npz/.npy, an image folder, builtin:digits, or package.module:function"
    ),
]
ShapeOpt = Annotated[str | None, typer.Option(help="input shape with batch, e.g. 1,3,32,32")]
ArchOpt = Annotated[
    str | None, typer.Option(help="zoo architecture of a state_dict file (see `edgec models`)")
]
TrustOpt = Annotated[
    bool, typer.Option("--trust-pickle", help="allow unpickling a whole module (runs its code)")
]
TimestepsOpt = Annotated[int | None, typer.Option(help="SNN timesteps (default: the model's own)")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="edgec.toml to read (default: ./edgec.toml if present)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout")]


def _load_cfg(config: Path | None, **overrides: Any) -> Any:
    from edgec.config import load_config, parse_shape

    if overrides.get("input_shape") is not None:
        overrides["input_shape"] = parse_shape(overrides["input_shape"])
    return load_config(config, **overrides)


@app.command("compile")
@_handle_errors
def compile_cmd(
    model: Annotated[
        str, typer.Argument(help="model file (.pt2, TorchScript, state_dict with --arch) or zoo:NAME")
    ],
    target: TargetOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="artifact directory to write")] = None,
    quantize: Annotated[
        str | None, typer.Option(help="none | int8 | fp16 | int4-weights (what the target takes)")
    ] = None,
    calib: CalibOpt = None,
    calib_method: Annotated[str | None, typer.Option(help="minmax | percentile | entropy")] = None,
    calib_samples: Annotated[int | None, typer.Option(help="calibration samples to use")] = None,
    timesteps: TimestepsOpt = None,
    input_shape: ShapeOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    passes: Annotated[list[str] | None, typer.Option("--pass", help="extra pass to run (repeatable)")] = None,
    train_data: Annotated[
        str | None, typer.Option(help="labelled data for training-time passes (same forms as --calib)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing output directory")] = False,
    dla: Annotated[
        bool, typer.Option("--dla", help="compile for the target's deep-learning accelerator (jetson)")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compile MODEL for a target into an artifact directory (model files, report.json, report.md)."""
    from edgec import api

    cfg = _load_cfg(
        config,
        target=target,
        quantize=quantize,
        calib=calib,
        calib_method=calib_method,
        calib_samples=calib_samples,
        timesteps=timesteps,
        input_shape=input_shape,
        arch=arch,
        trust_pickle=trust_pickle or None,
        passes=passes,
        train_data=train_data,
    )
    if dla:  # a target option (see the target's docs), passed through like [target.NAME] in edgec.toml
        cfg.target_options.setdefault(cfg.target, {})["dla"] = True
    with _quiet_stdout(as_json):
        artifact = api.compile(model, out=output, force=force, config=cfg, progress=_RichProgress())
    if as_json:
        _emit_json(artifact.report)
        return
    rep = artifact.report
    out.print(f"compiled {rep['program']['name']} for {rep['target']} -> {artifact.path}")
    for role, f in rep["files"].items():
        out.print(f"  {role:14s} {f['path']} ({f['bytes']:,} bytes)")
    for p in rep["passes"]:
        out.print(f"  pass {p['name']}: {p['stats']} ({p['duration_s']} s)")


@app.command("check")
@_handle_errors
def check_cmd(
    model: Annotated[str, typer.Argument(help="model file or zoo:NAME")],
    target: TargetOpt = None,
    calib: CalibOpt = None,
    timesteps: TimestepsOpt = None,
    input_shape: ShapeOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Say whether TARGET can take MODEL; a table of every layer it cannot take (exit code 4)."""
    from edgec import api

    cfg = _load_cfg(
        config,
        target=target,
        calib=calib,
        timesteps=timesteps,
        input_shape=input_shape,
        arch=arch,
        trust_pickle=trust_pickle or None,
    )
    with _quiet_stdout(as_json):
        _, violations = api.check(model, config=cfg)
    if as_json:
        _emit_json(
            {"target": cfg.target, "ok": not violations, "violations": [v.to_dict() for v in violations]}
        )
    elif violations:
        _print_violations(violations, console=out)
    else:
        out.print(f"ok: target '{cfg.target}' can take {model}")
    if violations:
        raise typer.Exit(ConstraintViolation.exit_code)


@app.command("verify")
@_handle_errors
def verify_cmd(
    artifact: Annotated[Path, typer.Argument(help="artifact directory written by `edgec compile`")],
    data: Annotated[
        str | None, typer.Option(help="evaluation data (default: the model's own, e.g. digits holdout)")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="execution backend of the target (e.g. lava | emulator)")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="use at most this many samples")] = None,
    min_agreement: Annotated[float, typer.Option(help="minimum top-1 agreement to pass")] = 0.98,
    trust_pickle: TrustOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Check an artifact against its source model: max-abs error, top-1 agreement, accuracy."""
    from edgec import api

    with _quiet_stdout(as_json):
        result = api.verify(
            artifact,
            data=data,
            backend=backend,
            limit=limit,
            min_agreement=min_agreement,
            trust_pickle=trust_pickle,
        )
    if as_json:
        _emit_json(result.to_dict())
        return
    out.print(f"verified: {result.summary}")
    for k, v in result.metrics.items():
        out.print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")


@app.command("run")
@_handle_errors
def run_cmd(
    artifact: Annotated[Path, typer.Argument(help="artifact directory")],
    input: Annotated[Path, typer.Option("--input", "-i", help=".npy file of inputs [N, ...] or one sample")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help=".npy file for the output (.npz: one array per output, for several)"
        ),
    ],
    backend: Annotated[str | None, typer.Option(help="execution backend of the target")] = None,
) -> None:
    """Run an artifact on inputs from a .npy file and save its outputs (.npy, or .npz by output name)."""
    import numpy as np

    from edgec import api
    from edgec.artifact import Artifact
    from edgec.errors import DataError, UsageError

    if not input.is_file():
        raise UsageError(f"input file '{input}' does not exist")
    art = Artifact.open(artifact)
    names = [o["name"] for o in art.report["program"].get("outputs") or [{"name": "output"}]]
    if output.suffix not in (".npy", ".npz"):
        raise UsageError(f"--output '{output}' must end in .npy (one output) or .npz (by output name)")
    if output.suffix == ".npy" and len(names) > 1:
        raise UsageError(
            f"the model has {len(names)} outputs ({', '.join(names)}); a .npy file holds one",
            hint=f"give --output {output.with_suffix('.npz')} (one array per output name)",
        )
    if not output.parent.is_dir():
        raise UsageError(f"cannot write '{output}': '{output.parent}' is not a directory")
    try:
        x = np.load(input, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read '{input}' as a .npy array: {exc}") from None
    ys = api.run(art, x, backend=backend)
    tmp = output.with_name(f".{output.name}.tmp{output.suffix}")
    if output.suffix == ".npy":
        np.save(tmp, next(iter(ys.values())))
    else:
        np.savez(tmp, **ys)
    tmp.replace(output)
    shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in ys.items())
    out.print(f"wrote {output}: {shapes}", highlight=False)


@app.command("bench")
@_handle_errors
def bench_cmd(
    artifact: Annotated[Path, typer.Argument(help="artifact directory")],
    batch_size: Annotated[int, typer.Option(help="inputs per call")] = 1,
    iterations: Annotated[int, typer.Option(help="timed calls")] = 100,
    warmup: Annotated[int, typer.Option(help="untimed calls first")] = 10,
    threads: Annotated[int | None, typer.Option(help="intra-op threads (default: the runtime's)")] = None,
    backend: Annotated[str | None, typer.Option(help="execution backend of the target")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure an artifact's latency (p50 / p90) and throughput on random inputs."""
    from edgec import api

    with _quiet_stdout(as_json):
        res = api.bench(
            artifact,
            batch_size=batch_size,
            iterations=iterations,
            warmup=warmup,
            threads=threads,
            backend=backend,
            progress=None if as_json else _RichProgress(),
        )
    if as_json:
        _emit_json(res.to_dict())
        return
    out.print(
        f"batch {res.batch_size}, {res.iterations} runs ({res.backend}): p50 {res.p50_ms:.3f} ms, "
        f"p90 {res.p90_ms:.3f} ms, throughput {res.throughput_per_s:,.1f} samples/s"
    )


@app.command("build-engine")
@_handle_errors
def build_engine_cmd(
    artifact: Annotated[Path, typer.Argument(help="artifact directory compiled with --target jetson")],
    workspace: Annotated[int, typer.Option(help="builder workspace in MB")] = 1024,
    dla: Annotated[int | None, typer.Option(help="DLA core to build for (AGX Orin / Orin NX)")] = None,
    max_batch: Annotated[int, typer.Option(help="largest batch of a dynamic-batch engine")] = 64,
    as_json: JsonOpt = False,
) -> None:
    """Build the TensorRT engine of a jetson artifact, on the device (needs TensorRT: exit 7 without)."""
    from edgec import api

    with _quiet_stdout(as_json):
        engine = api.build_engine(artifact, workspace_mb=workspace, dla=dla, max_batch=max_batch)
    if as_json:
        _emit_json(engine)
        return
    s = engine["settings"]
    out.print(
        f"built {artifact}/model.plan with TensorRT {s['tensorrt_version']} on the {s['device']} "
        f"(flags: {', '.join(s['network_flags'] + s['builder_flags'])}); settings in report.json"
    )


@app.command("report")
@_handle_errors
def report_cmd(
    model: Annotated[
        str,
        typer.Argument(help="model file or zoo:NAME (counted without compiling), or an artifact directory"),
    ],
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="target whose cost table prices it")
    ] = None,
    quantize: Annotated[
        str | None, typer.Option(help="none | int8 (the precision the target would run)")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", help="table | json | md | html (default: from -o, else table)"),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write the report to")] = None,
    data: Annotated[
        str | None, typer.Option(help="inputs for activity counts (default: the model's own dataset)")
    ] = None,
    samples: Annotated[
        int | None, typer.Option(help="samples the activity counts average over (default 32)")
    ] = None,
    weight_bits: Annotated[
        int | None, typer.Option(help="weight storage width to assume, e.g. 4 or 1")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="baseline report.json to gate against (exit code 6 on regression)")
    ] = None,
    max_increase: Annotated[str, typer.Option(help="allowed increase over the baseline, e.g. 5%")] = "5%",
    update: Annotated[
        bool, typer.Option("--update", help="rewrite the --baseline file with this report instead of failing")
    ] = False,
    timesteps: TimestepsOpt = None,
    input_shape: ShapeOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Energy report: MACs, synaptic operations, memory and energy per layer and in total.

    Works on a model without compiling it, or on an artifact directory. With --baseline, fails (exit
    code 6) when a count changed or the energy grew more than --max-increase, and lists each one;
    --update rewrites the baseline instead.
    """
    from edgec import api
    from edgec.energy.gate import compare, load_baseline, parse_max_increase
    from edgec.errors import RegressionGateFailed, UsageError
    from edgec.report import format_for, render, render_terminal, write_atomic

    fmt = format_for("json" if as_json and fmt is None else fmt, output)
    allowed = parse_max_increase(max_increase)
    if update and baseline is None:
        raise UsageError("--update rewrites the baseline: pass --baseline FILE")
    new_baseline = update and baseline is not None and not baseline.exists()
    base = load_baseline(baseline) if baseline is not None and not new_baseline else None
    if output is not None and not output.parent.is_dir():
        raise UsageError(f"cannot write '{output}': '{output.parent}' is not a directory")
    cfg = _load_cfg(
        config,
        target=target,
        quantize=quantize,
        timesteps=timesteps,
        input_shape=input_shape,
        arch=arch,
        trust_pickle=trust_pickle or None,
    )
    with _quiet_stdout(fmt != "table" and output is None):
        report = api.energy_report(
            model, config=cfg, data=data, samples=samples, weight_bits=weight_bits, progress=_RichProgress()
        )
    gate = None
    if base is not None:
        gate = compare(report.to_dict(), base, max_increase=allowed, baseline_name=str(baseline))
    if fmt == "table":
        render_terminal(report, out, gate=gate)
    else:
        text = render(report, fmt, gate=gate)
        if output is None:
            sys.stdout.write(text)
        else:
            write_atomic(output, text)
            err.print(f"wrote {output} ({fmt})", highlight=False)
    if update and baseline is not None:
        write_atomic(baseline, report.to_json())
        err.print(f"updated baseline {baseline}", highlight=False)
    elif gate is not None and not gate.passed:
        if fmt != "table":
            _print_regressions(gate, console=err)
        raise RegressionGateFailed(
            f"energy regression gate failed: {gate.summary()}", gate.failures, hint="see the table above"
        )


def _print_regressions(gate: Any, *, console: Console) -> None:
    table = Table(title=f"failed metrics (counts exact, energy allowed +{gate.max_increase:.1%})")
    for col in ("metric", "baseline", "current", "change", "status"):
        table.add_column(col)
    for d in gate.failures:
        table.add_row(*d.cells(units=False), d.status)
    console.print(table)


@app.command("targets")
@_handle_errors
def targets_cmd(as_json: JsonOpt = False) -> None:
    """List the targets, whether each is usable here, and what is missing."""
    from edgec.target import get_target, target_names

    rows: list[dict[str, Any]] = []
    for name in target_names():
        t = get_target(name)
        av = t.availability()
        rows.append(
            {
                "name": name,
                "usable": av.usable,
                "missing": list(av.missing),
                "note": av.note,
                "description": t.description,
                "backends": list(t.backends),
            }
        )
    if as_json:
        _emit_json(rows)
        return
    table = Table(title="targets")
    for col in ("target", "usable here", "description", "missing / notes"):
        table.add_column(col, overflow="fold")
    for r in rows:
        notes = ", ".join(r["missing"]) + ("; " if r["missing"] and r["note"] else "") + r["note"]
        table.add_row(r["name"], "yes" if r["usable"] else "no", r["description"], notes or "-")
    out.print(table)


@app.command("models")
@_handle_errors
def models_cmd(as_json: JsonOpt = False) -> None:
    """List the built-in zoo (use as zoo:NAME, or --arch NAME for a state_dict)."""
    from edgec.loading import zoo

    entries = zoo()
    if as_json:
        _emit_json(
            [
                {
                    "name": e.name,
                    "kind": e.kind,
                    "input_shape": list(e.input_shape),
                    "trained": e.weights is not None,
                    "dataset": e.dataset,
                    "description": e.description,
                }
                for e in entries.values()
            ]
        )
        return
    table = Table(title="zoo models")
    for col in ("name", "kind", "input shape", "weights", "description"):
        table.add_column(col)
    for e in entries.values():
        table.add_row(
            e.name,
            e.kind + (f" (T={e.timesteps})" if e.kind == "snn" else ""),
            "x".join(map(str, e.input_shape)),
            "trained" if e.weights else "random init",
            e.description,
        )
    out.print(table)


@app.command("demo")
@_handle_errors
def demo_cmd(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="where the demo writes its artifacts")
    ] = Path("edgec-out/demo"),
) -> None:
    """The main job on the built-in defaults: digits CNN -> CPU INT8, and the spiking MLP -> Loihi 2."""
    from edgec import api

    progress = _RichProgress()
    fp32_dir, int8_dir = output / "digits-cnn-cpu-fp32", output / "digits-cnn-cpu-int8"
    out.rule("1. compile zoo:digits-cnn for the CPU (FP32 and INT8, calibrated on builtin:digits)")
    api.compile("zoo:digits-cnn", target="cpu", out=fp32_dir, force=True, progress=progress)
    art = api.compile(
        "zoo:digits-cnn",
        target="cpu",
        quantize="int8",
        calib="builtin:digits",
        out=int8_dir,
        force=True,
        progress=progress,
    )
    tr = art.report["target_report"]
    out.print(
        f"  {int8_dir}/model.onnx: {art.report['files']['model']['bytes']:,} bytes "
        f"({tr['size_ratio_vs_fp32']:.2f}x FP32), ORT fused {tr['ort_fusion']['fused_quantized_ops']} "
        f"quantized ops, {tr['ort_fusion']['float_compute_ops']} float compute ops left"
    )
    out.rule("2. verify both against the PyTorch model on the digits holdout")
    res = {}
    for label, d in (("FP32", fp32_dir), ("INT8", int8_dir)):
        res[label] = api.verify(d)
        m = res[label].metrics
        out.print(
            f"  {label}: top-1 {m['accuracy_artifact']:.2%} (PyTorch {m['accuracy_source']:.2%}), "
            f"agreement {m['top1_agreement']:.2%}, max abs error {m['max_abs_error']:.3g}"
        )
    drop = (res["FP32"].metrics["accuracy_artifact"] - res["INT8"].metrics["accuracy_artifact"]) * 100
    out.print(
        f"  INT8 vs FP32 top-1: {-drop + 0.0:+.2f} points on {res['INT8'].metrics['samples']} holdout digits"
    )
    out.rule("3. latency (ONNX Runtime, batch 1)")
    for label, d in (("FP32", fp32_dir), ("INT8", int8_dir)):
        b = api.bench(d, iterations=200, warmup=20)
        out.print(f"  {label}: p50 {b.p50_ms:.3f} ms, p90 {b.p90_ms:.3f} ms")
    _demo_loihi(output, progress)
    out.print(f"\nartifacts and reports under {output}/ (report.md, report.json in each)")


def _demo_loihi(output: Path, progress: _RichProgress) -> None:
    """Demo step 4: the bundled spiking MLP for Loihi 2 (check, compile, verify on the emulator)."""
    from collections import Counter

    from edgec import api

    snn_dir = output / "digits-snn-mlp-loihi"
    out.rule("4. the bundled spiking MLP for Loihi 2: check, compile to netx + NIR, verify")
    _, rows = api.check("zoo:digits-cnn", target="loihi")
    rules = ", ".join(f"{rule} x{n}" for rule, n in Counter(r.rule for r in rows).items())
    out.print(f"  check zoo:digits-cnn (an ANN) for loihi: {len(rows)} violations ({rules})")
    _, rows = api.check("zoo:digits-snn-mlp", target="loihi")
    out.print(f"  check zoo:digits-snn-mlp for loihi: {'ok' if not rows else f'{len(rows)} violations'}")
    art = api.compile("zoo:digits-snn-mlp", target="loihi", out=snn_dir, force=True, progress=progress)
    tr = art.report["target_report"]
    for row in tr["layers"]:
        out.print(
            f"  {row['layer']}: {row['type']} {row['in_shape']}->{row['out_shape']}, "
            f"{row['effective_weight_bits']}-bit weights ({row['grid']}), vThMant {row['vThMant']}, "
            f"iDecay {row['iDecay']}, vDecay {row['vDecay']}, weight error {row['weight_rel_rms_error']:.2%}"
        )
    files = ", ".join(f"{f['path']} ({f['bytes']:,} bytes)" for f in art.report["files"].values())
    out.print(f"  {snn_dir}: {files}; T = {tr['timesteps']}, input {tr['encoder']['kind']}-coded spikes")
    m = api.verify(snn_dir).metrics
    out.print(
        f"  digits holdout ({m['samples']}): float SNN {m['accuracy_source']:.2%}, deployed network "
        f"(emulator, bit-exact with Lava fixed_pt) {m['accuracy_artifact']:.2%}, "
        f"top-1 agreement {m['top1_agreement']:.2%}"
    )
    out.print(f"  spike-for-spike in real Lava: edgec verify {snn_dir} --backend lava")


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("EDGEC_LOG", "WARNING").upper(),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    app()
