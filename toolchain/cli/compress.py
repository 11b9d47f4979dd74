"""Commands of training-time compression: ``compress`` and ``recipes``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edgec.cli.shell import (
    ConfigOpt,
    JsonOpt,
    RichProgress,
    app,
    emit_json,
    handle_errors,
    json_stdout,
    out,
    with_options,
)
from edgec.config import CompileConfig

#: compile options that mean nothing to `compress` (it writes a model, not a target's artifact)
_NOT_FOR_COMPRESS = ("target", "quantize", "calib", "calib_method", "calib_samples")


def _fmt(value: Any) -> str:
    """A pass statistic in words: numbers with separators, ``before -> after``, groups in parentheses."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        if set(value) == {"before", "after"}:
            return f"{_fmt(value['before'])} -> {_fmt(value['after'])}"
        if set(value) == {"channels", "kept"}:  # a pruned layer
            return f"{_fmt(value['channels'])} -> {_fmt(value['kept'])}"
        return ", ".join(_entry(str(k), v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) and "layer" in v for v in value):  # one row per layer
            return ", ".join(_layer_row(v) for v in value)
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _layer_row(row: dict[str, Any]) -> str:
    """``name (key value, ...)``: a per-layer statistic, its empty fields left out."""
    rest = [_entry(str(k), v) for k, v in row.items() if k != "layer" and v not in ("", None, [], {})]
    return f"{row['layer']} ({', '.join(rest)})" if rest else str(row["layer"])


def _entry(key: str, value: Any) -> str:
    """``key (group)``, ``key: text`` or ``key 1,234``."""
    key = key.replace("_", " ")
    if _group(value):
        return f"{key} ({_fmt(value)})"
    return f"{key}: {value}" if isinstance(value, str) else f"{key} {_fmt(value)}"


def _group(value: Any) -> bool:
    """A nested dict shown in parentheses (a before / after pair reads without)."""
    return isinstance(value, dict) and set(value) not in ({"before", "after"}, {"channels", "kept"})


def _widths(layers: dict[str, Any]) -> str:
    """Per-layer bit widths grouped by width: the names when few, a count per width when many."""
    by: dict[Any, list[str]] = {}
    for name, bits in layers.items():
        by.setdefault(bits, []).append(name)
    order = sorted(by, key=lambda b: (not isinstance(b, int), b if isinstance(b, int) else 0, str(b)))
    if len(layers) > 8:
        return ", ".join(f"{len(by[b])} layers at {b} bits" for b in order)
    return ", ".join(f"{b} ({', '.join(by[b])})" for b in order)


def pass_summary(p: dict[str, Any]) -> str:
    """A pass of a report in words: a training pass's validation metric, then its statistics."""
    metric = (p["stats"].get("finetune") or {}).get("metric", "accuracy")
    stats = {k: v for k, v in p["stats"].items() if k not in ("finetune", "quantized_training")}
    parts: list[str] = []
    if "accuracy_after" in stats:

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.2%}"

        before, after, best = (
            stats.pop("accuracy_before"),
            stats.pop("accuracy_after"),
            stats.pop("best_epoch", None),
        )
        parts.append(f"validation {metric} {pct(before)} -> {pct(after)} (best epoch {best})")
    for key, value in stats.items():
        if key in ("weight_bits", "activation_bits") and isinstance(value, dict):
            parts.append(f"{key.replace('_', ' ')}: {_widths(value)}")
        else:
            parts.append(f"{key.replace('_', ' ')}: {_fmt(value)}")
    return "; ".join(parts) if parts else "done"


@app.command("compress")
@handle_errors
@with_options(CompileConfig, skip=_NOT_FOR_COMPRESS)
def compress_cmd(
    model: Annotated[str, typer.Argument(help="model file, zoo:NAME, or a compressed program directory")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="directory for the compressed program")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="evaluation data of the before / after comparison (default: the model's holdout)"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="replace an existing output directory written by edgec")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    options: dict[str, Any] | None = None,
) -> None:
    """Compress MODEL with recipes and fine-tuning; write the compressed program (no pickle) and its report.

    The output directory is itself a MODEL for `edgec compile`, `edgec check` and `edgec report`.
    """
    from edgec.compression import compress
    from edgec.options import build

    cfg = build(CompileConfig, options or {}, config=config, style="cli")
    stem = model[4:] if model.startswith("zoo:") else Path(model).stem
    out_dir = output or Path("edgec-out") / f"{stem}-compressed"
    with json_stdout(as_json):
        result = compress(
            model,
            data=data,
            out=out_dir,
            force=force,
            config=cfg,
            progress=None if as_json else RichProgress(),
        )
    if as_json:
        emit_json(result.report)
        return
    rep = result.report
    b, a = rep["before"], rep["after"]
    out.print(f"compressed {rep['program']['name']} -> {result.path}", highlight=False)
    for p in rep["passes"]:
        out.print(
            f"  pass {p['name']}: {pass_summary(p)} ({p['duration_s']} s)", highlight=False, markup=False
        )
    table = Table(title=f"before / after on {rep['accuracy']['data'] or '(no evaluation data)'}")
    for col in ("", "source", "compressed"):
        table.add_column(col, justify="right" if col else "left")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2%}"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    table.add_row(rep["accuracy"].get("metric", "top-1 accuracy"), pct(b["accuracy"]), pct(a["accuracy"]))
    table.add_row("parameters", num(b["parameters"]), num(a["parameters"]))
    table.add_row("bytes at bit width", num(b["param_bytes"]), num(a["param_bytes"]))
    table.add_row("MACs / inference", num(b["macs"]), num(a["macs"]))
    if b.get("bops") or a.get("bops"):  # a binarized program: its 1-bit x 1-bit MACs
        table.add_row("of which binary ops (BOPs)", num(b.get("bops")), num(a.get("bops")))
        table.add_row("BOPs / 64 + FLOPs", num(b.get("ops_bop64")), num(a.get("ops_bop64")))
    table.add_row("synaptic ops / inference", num(b["sops"]), num(a["sops"]))
    out.print(table)
    out.print(f"  next: edgec compile {result.path} --target loihi|cpu   (report: {result.path}/report.md)")


@app.command("recipes")
@handle_errors
def recipes_cmd(as_json: JsonOpt = False) -> None:
    """List the compression recipes (passes) with their options, defaults and descriptions."""
    from edgec.recipes import all_recipes

    infos = all_recipes()
    if as_json:
        emit_json([r.to_dict() for r in infos])
        return
    out.print("recipes: --recipe NAME[:key=value,...] (repeatable, applied in order; alias --pass)")
    for r in infos:
        kind = {"snn": "spiking networks", "ann": "non-spiking networks"}.get(r.model_kind or "", "any model")
        out.print(f"\n[bold]{r.name}[/]  ({kind}{', fine-tunes' if r.trains else ''})", highlight=False)
        out.print(f"  {r.description}", highlight=False, markup=False)
        for o in r.options:
            out.print(f"    {o.name}={o.default}  {o.type}: {o.help}", highlight=False, markup=False)
