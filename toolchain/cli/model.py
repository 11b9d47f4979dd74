"""Commands on a model: ``compile``, ``check``, ``report``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgec.cli.compress import pass_summary
from edgec.cli.shell import (
    ConfigOpt,
    JsonOpt,
    RichProgress,
    app,
    emit_json,
    err,
    handle_errors,
    json_stdout,
    out,
    print_violations,
    with_options,
    write_atomic,
)
from edgec.config import CompileConfig, ReportOptions
from edgec.errors import ConstraintViolation

ModelArg = Annotated[
    str,
    typer.Argument(help="model file (.pt2, TorchScript, state_dict with --arch) or zoo:NAME"),
]
TargetOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target-option",
        help="an option of the chosen target, KEY=VALUE (repeatable; see `edgec targets`)",
    ),
]


DlaOpt = Annotated[
    bool,
    typer.Option("--dla", help="the target's deep-learning accelerator: --target-option dla=true (jetson)"),
]


def compile_config(
    config: Path | None, options: dict[str, Any], target_option: list[str] | None, *, dla: bool = False
) -> CompileConfig:
    """The compile options: declared defaults, edgec.toml, then the flags given."""
    import dataclasses

    from edgec.options import build, parse_assignments

    cfg = build(CompileConfig, options, config=config, style="cli")
    if dla:  # shorthand of the generic --target-option (the target checks its own options)
        target_option = [*(target_option or []), "dla=true"]
    if target_option:
        given = parse_assignments(target_option, "--target-option")
        merged = {**cfg.target_options, cfg.target: {**cfg.target_options.get(cfg.target, {}), **given}}
        cfg = dataclasses.replace(cfg, target_options=merged)
    return cfg


@app.command("compile")
@handle_errors
@with_options(CompileConfig)
def compile_cmd(
    model: ModelArg,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="artifact directory to write")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="replace an existing output directory written by edgec compile")
    ] = False,
    target_option: TargetOptionOpt = None,
    dla: DlaOpt = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    options: dict[str, Any] | None = None,
) -> None:
    """Compile MODEL for a target into an artifact directory (model files, report.json, report.md)."""
    from edgec import api
    from edgec.target import get_target

    cfg = compile_config(config, options or {}, target_option, dla=dla)
    with json_stdout(as_json):
        artifact = api.compile(model, out=output, force=force, config=cfg, progress=RichProgress())
    if as_json:
        emit_json(artifact.report)
        return
    rep = artifact.report
    out.print(f"compiled {rep['program']['name']} for {rep['target']} -> {artifact.path}", highlight=False)
    for role, f in rep["files"].items():
        out.print(f"  {role:14s} {f['path']} ({f['bytes']:,} bytes)", highlight=False, markup=False)
    for line in get_target(artifact.target).summary(rep):
        out.print(f"  {line}", highlight=False, markup=False)
    for p in rep["passes"]:
        out.print(
            f"  pass {p['name']}: {pass_summary(p)} ({p['duration_s']} s)", highlight=False, markup=False
        )
    for warning in rep.get("warnings", []):
        err.print(f"warning: {warning}", highlight=False)


@app.command("check")
@handle_errors
@with_options(CompileConfig)
def check_cmd(
    model: ModelArg,
    target_option: TargetOptionOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    options: dict[str, Any] | None = None,
) -> None:
    """Say whether a target can take MODEL; a table of every layer it cannot take (exit code 4).

    Recipes (--recipe) are applied first without fine-tuning (pruning, bit widths, neuron changes), so
    the table shows what the compressed model will violate before any training.
    """
    from edgec import api

    cfg = compile_config(config, options or {}, target_option)
    with json_stdout(as_json):
        _, violations = api.check(model, config=cfg)
    if as_json:
        emit_json(
            {"target": cfg.target, "ok": not violations, "violations": [v.to_dict() for v in violations]}
        )
    elif violations:
        print_violations(violations, console=out)
    else:
        out.print(f"ok: target '{cfg.target}' can take {model}", highlight=False)
    if violations:
        raise typer.Exit(ConstraintViolation.exit_code)


@app.command("report")
@handle_errors
@with_options(CompileConfig, ReportOptions)
def report_cmd(
    model: Annotated[
        str,
        typer.Argument(help="model file or zoo:NAME (counted without compiling), or an artifact directory"),
    ],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write the report to")] = None,
    update: Annotated[
        bool, typer.Option("--update", help="rewrite the --baseline file with this report instead of failing")
    ] = False,
    target_option: TargetOptionOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    options: dict[str, Any] | None = None,
) -> None:
    """Energy report: MACs, synaptic operations, memory and energy per layer and in total.

    Works on a model without compiling it, or on an artifact directory. With --baseline, fails (exit
    code 6) when a count changed or the energy grew more than --max-increase, and lists each one;
    --update rewrites the baseline instead.
    """
    from edgec import api
    from edgec.energy.gate import compare, load_baseline
    from edgec.errors import RegressionGateFailed, UsageError
    from edgec.options import build, declared
    from edgec.report import format_for, render, render_terminal

    given = options or {}
    report_keys = {o.key for o in declared(ReportOptions)}  # the image options are in both groups
    cfg = compile_config(
        config, {k: v for k, v in given.items() if k not in report_keys - _IMAGE}, target_option
    )
    rep_opts = build(
        ReportOptions, {k: v for k, v in given.items() if k in report_keys}, config=config, style="cli"
    )
    fmt = format_for("json" if as_json and rep_opts.format is None else rep_opts.format, output)
    baseline = Path(rep_opts.baseline) if rep_opts.baseline is not None else None
    if update and baseline is None:
        raise UsageError("--update rewrites the baseline: pass --baseline FILE")
    new_baseline = update and baseline is not None and not baseline.exists()
    base = load_baseline(baseline) if baseline is not None and not new_baseline else None
    if output is not None and not output.parent.is_dir():
        raise UsageError(f"cannot write '{output}': '{output.parent}' is not a directory")
    with json_stdout(fmt != "table" and output is None):
        report = api.energy_report(model, config=cfg, report=rep_opts, progress=RichProgress())
    gate = None
    if base is not None:
        gate = compare(
            report.to_dict(), base, max_increase=rep_opts.max_increase, baseline_name=str(baseline)
        )
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


_IMAGE = {"image_resize", "image_normalize"}


def _print_regressions(gate: Any, *, console: Console) -> None:
    table = Table(title=f"failed metrics (counts exact, energy allowed +{gate.max_increase:.1%})")
    for col in ("metric", "baseline", "current", "change", "status"):
        table.add_column(col)
    for d in gate.failures:
        table.add_row(*d.cells(units=False), d.status)
    console.print(table)
