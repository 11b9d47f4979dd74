"""Reports: build one for a model without compiling, and render any report as Markdown, HTML or a table.

A report is the ``report.json`` document (docs/report-schema.md): ``schema_version``, ``target``,
``program``, and the ``energy`` section (per-layer counts and energy, totals, comparison across
targets); a compiled artifact's report adds its files, passes and target section.

``render_markdown``  report.md, for CI comments (GitHub renders it; ``<details>`` holds the long table)
``render_html``      report.html, self-contained (inline SVG charts, no network)
``render_terminal``  rich tables for the terminal
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from edgec.config import CompileConfig
    from edgec.energy.gate import GateResult
    from edgec.progress import Progress

FORMATS = ("table", "json", "md", "html")
_SUFFIX_FORMATS = {".json": "json", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


# ---- building ------------------------------------------------------------------------------------
def build_report(
    model: Any,
    *,
    config: CompileConfig,
    data: str | None = None,
    samples: int | None = None,
    weight_bits: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The report of ``model`` for ``config.target`` without compiling it.

    ``model`` is anything ``edgec compile`` takes, or an artifact directory (its report.json is
    read; an energy section is computed from its source model if the artifact has none).
    The target's preparation passes run first (as in ``edgec check``), so the counts are those of
    the program the target would lower.
    """
    from edgec import api
    from edgec.artifact import Artifact
    from edgec.target import get_target

    if isinstance(model, (str, Path)) and Path(model).is_dir():
        art = Artifact.open(model)
        report = dict(art.report)
        if report.get("energy") is None or data is not None or samples is not None or weight_bits is not None:
            from edgec.config import CompileConfig as _Cfg

            tgt = get_target(art.target)
            program = api.source_program(art)
            stored = {k: v for k, v in report.get("config", {}).items() if k in _Cfg.__dataclass_fields__}
            if stored.get("input_shape") is not None:
                stored["input_shape"] = tuple(stored["input_shape"])
            cfg = _Cfg(**stored)
            dataset = api._open_data(data or cfg.calib, program, "calibration")
            report["energy"] = tgt.estimate_energy(
                program, dataset, cfg, samples=samples, weight_bits=weight_bits
            )
        report["artifact"] = str(art.path)
        return report

    tgt = get_target(config.target)
    program, violations = api.check(model, config=config, progress=progress)  # what the target would lower
    dataset = api._open_data(data or config.calib, program, "calibration")
    energy = tgt.estimate_energy(program, dataset, config, samples=samples, weight_bits=weight_bits)
    if energy is None:
        raise UsageError(
            f"target '{tgt.name}' has no energy cost table yet",
            hint="see `edgec targets`; a target declares its tables in Target.cost_tables",
        )
    if violations:
        energy["notes"].append(
            f"target '{tgt.name}' cannot compile this model as it is ({len(violations)} violation(s), "
            f"e.g. {violations[0].layer}: {violations[0].rule}); `edgec check` lists them"
        )
    from edgec import __version__
    from edgec.artifact import SCHEMA_VERSION

    return {
        "schema_version": SCHEMA_VERSION,
        "edgec_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "target": tgt.name,
        "compiled": False,
        "program": program.describe(),
        "config": config.to_dict(),
        "passes": [r.to_dict() for r in program.history],
        "check": {"ok": not violations, "violations": [v.to_dict() for v in violations]},
        "energy": energy,
    }


def format_for(fmt: str | None, output: Path | None) -> str:
    """The output format: ``fmt`` if given, else from ``output``'s suffix, else the terminal table."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown --format '{fmt}'", hint=f"choose one of: {', '.join(FORMATS)}")
        return fmt
    if output is None:
        return "table"
    suffix_fmt = _SUFFIX_FORMATS.get(output.suffix.lower())
    if suffix_fmt is None:
        raise UsageError(
            f"cannot tell the format of '{output}' from its suffix", hint="pass --format json|md|html"
        )
    return suffix_fmt


def render(report: dict[str, Any], fmt: str, gate: GateResult | None = None) -> str:
    if fmt == "json":
        doc = dict(report)
        if gate is not None:
            doc["gate"] = gate.to_dict()
        return json.dumps(doc, indent=2, default=_json_default) + "\n"
    if fmt == "md":
        return render_markdown(report, gate=gate)
    if fmt == "html":
        from edgec.energy.html import render_html

        return render_html(report, gate=gate)
    raise UsageError(f"format '{fmt}' is not a text format")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


# ---- number formatting -----------------------------------------------------------------------------
def si(x: float | None, unit: str = "") -> str:
    """``1814073344 -> '1.81 G'`` (counts, bytes in decimal units)."""
    if x is None:
        return "n/a"
    ax = abs(x)
    for div, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ax >= div:
            return f"{x / div:.3g} {prefix}{unit}".rstrip()
    if float(x).is_integer():
        return f"{int(x)} {unit}".rstrip()
    return f"{x:.3g} {unit}".rstrip()


def joules(x: float | None) -> str:
    """``0.00123 -> '1.23 mJ'``."""
    if x is None:
        return "n/a"
    ax = abs(x)
    for mult, unit in ((1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ"), (1e-12, "pJ")):
        if ax >= mult:
            return f"{x / mult:.3g} {unit}"
    return f"{x / 1e-12:.3g} pJ" if x else "0 J"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} GiB"


def exact_int(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


# ---- shared views of the energy section ----------------------------------------------------------------
def headline_text(energy: dict[str, Any]) -> str:
    h = energy["headline"]
    if h["source"] == "measured":
        return f"{joules(h['energy_j'])} per inference, measured ({h.get('method')}, {h.get('device')})"
    if h.get("energy_j") is None:
        missing = ", ".join(energy["estimate"]["unpriced"])
        return f"n/a: table {h['table']} prices no {missing} (see notes)"
    return f"{joules(h['energy_j'])} per inference, estimate (table {h['table']})"


def summary_rows(energy: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, where it comes from) rows of the totals."""
    t = energy["totals"]
    est = energy["estimate"]
    table = energy["table"]["ref"]
    rows = [
        ("energy per inference", headline_text(energy), energy["headline"]["source"]),
        ("  compute", joules(est["compute_j"]), f"estimate, {table}"),
        (
            "  memory access",
            joules(est["memory_j"]),
            f"estimate, {table} ({energy['table']['memory_model']})",
        ),
        ("dense MACs", f"{exact_int(t['macs'])} ({si(t['macs'])})", "analytic count"),
        ("other ops", f"{exact_int(t['other_ops'])} ({si(t['other_ops'])})", "analytic count"),
    ]
    if t.get("sops"):
        s = t["sops"]
        rows += [
            ("SOPs exact", f"{exact_int(s['exact'])} ({si(s['exact'])})", "measured"),
            ("  effective ACs", f"{exact_int(s['effective_acs'])}", "measured (NeuroBench convention)"),
            ("  effective MACs", f"{exact_int(s['effective_macs'])}", "measured (NeuroBench convention)"),
            ("  dense", f"{exact_int(s['dense'])}", "analytic (all in-bounds pairs)"),
            (
                "  rate x T x FLOPs",
                f"{exact_int(s['literature'])}",
                "literature shortcut, for comparison only",
            ),
            ("spikes", f"{exact_int(t['spikes'])}", "measured"),
            ("firing rate", pct(t["firing_rate"]), "measured"),
            ("neuron updates", f"{exact_int(t['neuron_updates'])}", "count (neurons x T)"),
        ]
    wb = energy["bits"]["weight_bits"]
    rows += [
        ("parameters", f"{exact_int(t['params'])} ({si(t['params'])})", "count"),
        (
            "parameter memory",
            f"{fmt_bytes(t['param_bytes'])} ({wb}-bit weights, packed)",
            "count x bit width",
        ),
        (
            "peak activation memory",
            f"{fmt_bytes(t['peak_activation_bytes'])} (at {t['peak_activation_at']})",
            "estimate (tensor liveness)",
        ),
    ]
    return rows


def layer_rows(energy: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-layer rows with a share of the total energy, in execution order."""
    total = energy["estimate"]["total_j"] / 1e-12 or 1.0
    out = []
    for r in energy["layers"]:
        e = r["energy"]["total_pj"]
        sops = r["sops"]["exact"] if r.get("sops") else None
        bits = "/".join(str(b) for b in (r.get("weight_bits"), r.get("other_bits")) if b is not None) or "-"
        out.append(
            {
                "name": r["name"],
                "type": r["type"],
                "macs": r["macs"],
                "sops": sops,
                "rate": r.get("firing_rate") if r.get("firing_rate") is not None else r.get("input_rate"),
                "density": r.get("output_density"),
                "params": r["params"],
                "bits": bits,
                "energy_pj": e,
                "share": e / total if total else 0.0,
                "unpriced": r["energy"]["unpriced"],
            }
        )
    return out


# ---- Markdown ---------------------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _short(v: Any) -> str:
    s = f"{v:.4g}" if isinstance(v, float) else str(v)
    return s if len(s) < 120 else s[:117] + "..."


def render_markdown(report: dict[str, Any], *, gate: GateResult | None = None, top: int = 15) -> str:
    """report.md: what CI posts as a comment. Energy and the gate first, then files and passes."""
    prog = report["program"]
    src = prog["source"]
    where = src.get("path") or (f"zoo:{src['arch']}" if src["format"] == "zoo" else src["format"])
    digest = f", sha256 {src['sha256'][:12]}" if src.get("sha256") else ""
    out = [
        f"# edgec report: {prog['name']} -> {report['target']}",
        "",
        f"- source: `{where}` ({src['format']}{digest})",
        f"- kind: {prog['kind']}, input shape {prog['input_shape']}"
        + (
            f", {prog['timesteps']} timesteps, encoder {prog.get('encoder')}" if prog["kind"] == "snn" else ""
        ),
        f"- edgec {report['edgec_version']}, schema_version {report['schema_version']}, "
        f"created {report['created']}"
        + ("" if report.get("compiled", True) else " (report only, not compiled)"),
    ]
    energy = report.get("energy")
    if gate is not None:
        out += ["", *_gate_markdown(gate)]
    if energy:
        out += ["", *_energy_markdown(energy, top=top)]
    if report.get("files"):
        out += ["", "## Files", ""]
        out += _table(
            ["role", "file", "size", "sha256"],
            [[r, f["path"], fmt_bytes(f["bytes"]), f["sha256"][:12]] for r, f in report["files"].items()],
        )
    if report.get("passes"):
        out += ["", "## Passes", ""]
        out += _table(
            ["pass", "modified", "duration (s)", "stats"],
            [[p["name"], p["modified"], p["duration_s"], p["stats"]] for p in report["passes"]],
        )
    tr = report.get("target_report") or {}
    if tr:
        out += ["", "## Target", ""]
        out += _table(
            ["key", "value"], [[k, _short(v)] for k, v in tr.items() if not isinstance(v, (dict, list))]
        )
        for key, value in tr.items():
            if (
                isinstance(value, dict)
                and value
                and all(not isinstance(v, (dict, list)) for v in value.values())
            ):
                out += ["", f"### {key}", ""]
                out += _table(["key", "value"], [[k, _short(v)] for k, v in value.items()])
    if report.get("verify"):
        v = report["verify"]
        out += ["", "## Verification", "", f"{'PASSED' if v['passed'] else 'FAILED'}: {v['summary']}"]
    out.append("")
    return "\n".join(out)


def _gate_markdown(gate: GateResult) -> list[str]:
    status = "PASSED" if gate.passed else "FAILED"
    out = [
        f"## Regression gate: {status}",
        "",
        f"Baseline `{gate.baseline}`, allowed increase {gate.max_increase:.1%}. {gate.summary()}.",
        "",
    ]
    out += _table(
        ["metric", "baseline", "current", "change", ""],
        [[*d.cells(), "**regressed**" if d.regressed else "ok"] for d in gate.deltas],
    )
    for n in gate.notes:
        out += ["", f"> {n}"]
    return out


def _energy_markdown(energy: dict[str, Any], *, top: int) -> list[str]:
    table = energy["table"]
    wl = energy["workload"]
    out = [
        f"## Energy: {headline_text(energy)}",
        "",
        "Every figure is per inference (one sample"
        + (", all timesteps" if wl["kind"] == "snn" else "")
        + f"). Activity measured on {wl['samples']} sample(s) of {wl['data']}.",
        "",
    ]
    out += _table(["metric", "value", "source"], [list(r) for r in summary_rows(energy)])
    comp = energy.get("comparison") or []
    if comp:
        out += ["", "### Comparison across targets (same counts, each target's cost table)", ""]
        out += _table(
            ["target", "table", "energy / inference", "compute", "memory", "parameter memory", "note"],
            [
                [
                    ("**" + c["label"] + "**") if c.get("current") else c["label"],
                    f"`{c['table']}`",
                    joules(c["energy_j"]),
                    joules(c["compute_j"]),
                    joules(c["memory_j"]),
                    fmt_bytes(c["param_bytes"]),
                    "" if c["complete"] else "not priced: " + ", ".join(c["unpriced"]),
                ]
                for c in comp
            ],
        )
    rows = layer_rows(energy)
    spiking = energy["workload"]["kind"] == "snn"
    headers = ["layer", "type", "MACs", "SOPs" if spiking else "density", "params", "bits", "energy", "share"]

    def md_row(r: dict[str, Any]) -> list[Any]:
        return [
            f"`{r['name']}`",
            r["type"],
            si(r["macs"]) if r["macs"] else "-",
            (si(r["sops"]) if r["sops"] is not None else "-")
            if spiking
            else pct(r["density"])
            if r["density"] is not None
            else "-",
            si(r["params"]) if r["params"] else "-",
            r["bits"],
            joules(r["energy_pj"] * 1e-12),
            pct(r["share"]),
        ]

    ranked = sorted(rows, key=lambda r: -r["energy_pj"])[:top]
    out += ["", f"### Top {len(ranked)} layers by energy (of {len(rows)})", ""]
    out += _table(headers, [md_row(r) for r in ranked])
    out += ["", "<details><summary>All layers, in execution order</summary>", ""]
    out += _table(headers, [md_row(r) for r in rows])
    out += ["", "</details>", "", "### Sources and caveats", ""]
    out.append(f"- table `{table['ref']}`: {table['title']}")
    for c in table["citations"]:
        out.append(f"  - {c}")
    for c in table["caveats"]:
        out.append(f"  - caveat: {c}")
    for n in energy.get("notes", []):
        out.append(f"- note: {n}")
    out.append("- conventions: see report.json `energy.conventions` and docs/report-schema.md")
    return out


# ---- terminal ---------------------------------------------------------------------------------------
def render_terminal(
    report: dict[str, Any], console: Console, *, gate: GateResult | None = None, top: int = 25
) -> None:
    """Rich tables: totals, the comparison across targets, the most expensive layers, the gate."""
    from rich.table import Table

    energy = report.get("energy")
    prog = report["program"]
    console.print(
        f"[bold]{prog['name']}[/] ({prog['kind']}, input {prog['input_shape']}) -> target "
        f"[bold]{report['target']}[/]",
        highlight=False,
    )
    if not energy:
        console.print("no energy section in this report (the target declares no cost table)")
        return
    totals = Table(title="per inference", title_justify="left")
    for col in ("metric", "value", "source"):
        totals.add_column(col)
    for metric, value, source in summary_rows(energy):
        totals.add_row(metric, value, source)
    console.print(totals)
    comp = energy.get("comparison") or []
    if comp:
        ct = Table(title="comparison across targets (same counts)", title_justify="left")
        for col in ("target", "table", "energy", "param memory", "note"):
            ct.add_column(col)
        for c in comp:
            ct.add_row(
                ("* " if c.get("current") else "") + c["label"],
                c["table"],
                joules(c["energy_j"]),
                fmt_bytes(c["param_bytes"]),
                "" if c["complete"] else "not priced: " + ", ".join(c["unpriced"]),
            )
        console.print(ct)
    spiking = energy["workload"]["kind"] == "snn"
    rows = layer_rows(energy)
    lt = Table(title=f"top {min(top, len(rows))} of {len(rows)} layers by energy", title_justify="left")
    cols = [
        "layer",
        "type",
        "MACs",
        *(["SOPs", "rate"] if spiking else ["density"]),
        "params",
        "bits",
        "energy",
        "share",
    ]
    for col in cols:
        if col == "layer":
            lt.add_column(col, overflow="fold", ratio=3, min_width=20)
        elif col == "type":
            lt.add_column(col, overflow="ellipsis", no_wrap=True, ratio=1, max_width=12)
        else:
            lt.add_column(col, justify="right", no_wrap=True)
    for r in sorted(rows, key=lambda r: -r["energy_pj"])[:top]:
        activity = (
            [
                si(r["sops"]) if r["sops"] is not None else "-",
                pct(r["rate"]) if r["rate"] is not None else "-",
            ]
            if spiking
            else [pct(r["density"]) if r["density"] is not None else "-"]
        )
        lt.add_row(
            r["name"],
            r["type"],
            si(r["macs"]) if r["macs"] else "-",
            *activity,
            si(r["params"]) if r["params"] else "-",
            r["bits"],
            joules(r["energy_pj"] * 1e-12),
            pct(r["share"]),
        )
    console.print(lt)
    console.print(
        f"table {energy['table']['ref']}: {energy['table']['title']}. Estimates are counts x cited prices; "
        "`--format md|html|json` for sources, caveats and every layer.",
        highlight=False,
    )
    if gate is not None:
        gt = Table(
            title=f"regression gate vs {gate.baseline} (max +{gate.max_increase:.1%})", title_justify="left"
        )
        for col in ("metric", "baseline", "current", "change", "status"):
            gt.add_column(col)
        for d in gate.deltas:
            gt.add_row(*d.cells(units=False), "[red]regressed[/]" if d.regressed else "ok")
        console.print(gt)
        for n in gate.notes:
            console.print(f"note: {n}", highlight=False)
