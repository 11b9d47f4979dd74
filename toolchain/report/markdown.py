"""report.md: what CI posts on a pull request (GitHub renders it; ``<details>`` holds the long table)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgec.report import rows as R

if TYPE_CHECKING:
    from edgec.energy.gate import GateResult
    from edgec.report.document import Report


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _bold(cells: list[str]) -> list[str]:
    return [f"**{cells[0]}**", *cells[1:]]


def render_markdown(report: Report, *, gate: GateResult | None = None, top: int = 15) -> str:
    """Energy and the gate first, then files, passes, the target's section and verification."""
    prog = report.program
    src = prog["source"]
    where = src.get("path") or (f"zoo:{src['arch']}" if src["format"] == "zoo" else src["format"])
    digest = f", sha256 {src['sha256'][:12]}" if src.get("sha256") else ""
    snn = f", {prog['timesteps']} timesteps, encoder {prog.get('encoder')}" if report.spiking else ""
    out = [
        f"# edgec report: {prog['name']} -> {report.target}",
        "",
        f"- source: `{where}` ({src['format']}{digest})",
        f"- kind: {prog['kind']}, input shape {prog['input_shape']}{snn}",
        f"- edgec {report.edgec_version}, schema_version {report.schema_version}, created {report.created}"
        + ("" if report.compiled else " (report only, not compiled)"),
    ]
    if gate is not None:
        out += ["", *_gate(gate)]
    if report.energy:
        out += ["", *_energy(report.energy, spiking=report.spiking, top=top)]
    if report.files:
        out += ["", "## Files", ""]
        out += _table(
            ["role", "file", "size", "sha256"],
            [[r, f["path"], R.fmt_bytes(f["bytes"]), f["sha256"][:12]] for r, f in report.files.items()],
        )
    if report.passes:
        out += ["", "## Passes", ""]
        out += _table(
            ["pass", "modified", "duration (s)", "stats"],
            [[p["name"], str(p["modified"]), str(p["duration_s"]), str(p["stats"])] for p in report.passes],
        )
    if report.target_report:
        out += ["", "## Target", "", *_key_values(report.target_report)]
    if report.verify:
        v = report.verify
        out += ["", "## Verification", "", f"{'PASSED' if v['passed'] else 'FAILED'}: {v['summary']}"]
    out.append("")
    return "\n".join(out)


def _key_values(section: dict[str, Any]) -> list[str]:
    """Scalars as one key / value table; each flat sub-dictionary as its own."""
    out = _table(
        ["key", "value"], [[k, R.short(v)] for k, v in section.items() if not isinstance(v, (dict, list))]
    )
    for key, value in section.items():
        if isinstance(value, dict) and value and all(not isinstance(v, (dict, list)) for v in value.values()):
            out += ["", f"### {key}", ""]
            out += _table(["key", "value"], [[k, R.short(v)] for k, v in value.items()])
    return out


def _gate(gate: GateResult) -> list[str]:
    out = [
        f"## Regression gate: {'PASSED' if gate.passed else 'FAILED'}",
        "",
        f"Baseline `{gate.baseline}`, allowed increase {gate.max_increase:.1%}. {gate.summary()}.",
        "",
    ]
    out += _table(
        R.GATE_HEADERS,
        [[*cells[:-1], f"**{cells[-1]}**" if failed else cells[-1]] for failed, cells in R.gate_rows(gate)],
    )
    for n in gate.notes:
        out += ["", f"> {n}"]
    return out


def _energy(energy: dict[str, Any], *, spiking: bool, top: int) -> list[str]:
    out = [f"## Energy: {R.headline_text(energy)}", "", R.workload_text(energy), ""]
    out += _table(R.SUMMARY_HEADERS, R.summary_rows(energy))
    comparison = R.comparison_rows(energy)
    if comparison:
        out += ["", "### Comparison across targets (same counts, each target's cost table)", ""]
        out += _table(R.COMPARISON_HEADERS, [_bold(c) if cur else c for cur, c in comparison])
    low = energy.get("low_bit_ops")
    if low:
        out += [
            "",
            "### Low-bit operations (theoretical estimate, BOPs convention)",
            "",
            f"{low['low_bit_macs']:,} of {low['macs']:,} MACs at low bit width ({low['bops']:,} BOPs); "
            f"OPs {low['ops']:,.0f}: theoretical speed-up **{low['theoretical_speedup']:.2f}x** over full "
            f"precision. {low['convention']}",
        ]
    layers = R.layer_rows(energy)
    headers = R.layer_headers(spiking)

    def cells(r: R.LayerRow) -> list[str]:
        c = R.layer_cells(r, spiking=spiking)
        return [f"`{c[0]}`", *c[1:]]

    ranked = sorted(layers, key=lambda r: -r.energy_pj)[:top]
    out += ["", f"### Top {len(ranked)} layers by energy (of {len(layers)})", ""]
    out += _table(headers, [cells(r) for r in ranked])
    out += ["", "<details><summary>All layers, in execution order</summary>", ""]
    out += _table(headers, [cells(r) for r in layers])
    out += ["", "</details>", "", "### Sources and caveats", ""]
    out += [f"- {line}" for line in R.source_lines(energy)]
    out.append("- conventions: see report.json `energy.conventions` and docs/report-schema.md")
    return out
