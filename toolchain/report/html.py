"""report.html: one self-contained file (inline CSS and SVG charts from :mod:`edgec.report.charts`)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from edgec.report import charts
from edgec.report import rows as R

if TYPE_CHECKING:
    from edgec.energy.gate import GateResult
    from edgec.report.document import Report

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#1d232b;
background:#fff}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d9dee5}
.meta{color:#5b6573;font-size:13px}
.headline{font-size:20px;margin:14px 0;padding:10px 14px;background:#f2f5f9;border-left:4px solid #3b6fb6}
.badge{font-size:12px;padding:2px 6px;border-radius:4px;background:#fde7c7;color:#7a4a00;margin-left:6px}
.badge.measured{background:#d4f0da;color:#1d5e2c}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:3px 8px;border-bottom:1px solid #e6e9ee;text-align:right}
th{background:#f6f8fa}td.l,th.l{text-align:left}code{font-size:12px}
.chart text{font-size:11px;fill:#1d232b}.chart .axis{stroke:#9aa4b1}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
.fail{color:#b3261e;font-weight:600}.ok{color:#1d7a36}
.notes li{font-size:13px;margin:2px 0}details{margin:8px 0}
"""


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _table(headers: list[str], rows: list[list[str]], left: int = 1, text: tuple[int, ...] = ()) -> str:
    """An HTML table; the first ``left`` columns and the ``text`` columns are left-aligned."""

    def cls(i: int) -> str:
        return "l" if i < left or i in text else ""

    head = "".join(f'<th class="{cls(i)}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="{cls(i)}">{_e(c)}</td>' for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _gate(gate: GateResult) -> str:
    status = '<span class="ok">PASSED</span>' if gate.passed else '<span class="fail">FAILED</span>'
    notes = "".join(f"<li>{_e(n)}</li>" for n in gate.notes)
    return (
        f'<h2 id="gate">Regression gate: {status}</h2><p>{_e(gate.summary())}</p>'
        + _table(R.GATE_HEADERS, [cells for _, cells in R.gate_rows(gate)])
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
    )


def render_html(report: Report, *, gate: GateResult | None = None) -> str:
    prog = report.program
    title = f"edgec report: {prog['name']} -> {report.target}"
    snn = f" · T={_e(prog['timesteps'])} · encoder {_e(prog.get('encoder'))}" if report.spiking else ""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<div class="meta">{_e(prog["kind"])} · input {_e(prog["input_shape"])}{snn}'
        f" · edgec {_e(report.edgec_version)} · schema_version {_e(report.schema_version)}"
        f" · {_e(report.created)}</div>",
    ]
    if gate is not None:
        out.append(_gate(gate))
    if report.energy:
        out += _energy(report.energy, spiking=report.spiking)
    else:
        out.append("<p>This report has no energy section (the target declares no cost table).</p>")
    out.append("</body></html>")
    return "\n".join(out)


def _energy(energy: dict[str, Any], *, spiking: bool) -> list[str]:
    source = energy["headline"]["source"]
    out = [
        f'<div class="headline">{_e(R.headline_text(energy))}'
        f'<span class="badge {"measured" if source == "measured" else ""}">{_e(source)}</span></div>',
        f'<p class="meta">{_e(R.workload_text(energy))} Energy is an estimate: counts x the per-operation '
        f"prices of table <code>{_e(energy['table']['ref'])}</code> unless marked measured.</p>",
        '<h2 id="totals">Totals</h2>',
        _table(R.SUMMARY_HEADERS, R.summary_rows(energy), text=(2,)),
        '<h2 id="per-layer-energy">Energy per layer</h2>',
        f'<div class="legend"><span style="background:{charts.COMPUTE}"></span>compute'
        f'<span style="background:{charts.MEMORY}"></span>memory access</div>',
        charts.energy_chart(energy),
    ]
    rate_title, rate_chart = charts.rate_chart(energy)
    out += [f'<h2 id="firing-rate">{_e(rate_title)}</h2>', rate_chart]
    out.append('<h2 id="comparison">Comparison across targets (same counts, each target\'s cost table)</h2>')
    out.append(charts.compare_chart(energy))
    comparison = R.comparison_rows(energy)
    if comparison:
        rows = [[c[0] + (" (this report)" if cur else ""), *c[1:]] for cur, c in comparison]
        out.append(_table(R.COMPARISON_HEADERS, rows))
    layers = [R.layer_cells(r, spiking=spiking, exact=True) for r in R.layer_rows(energy)]
    out.append('<h2 id="layers">Layers</h2><details open><summary>every layer, in execution order</summary>')
    out.append(_table(R.layer_headers(spiking), layers, left=2) + "</details>")
    sops = R.sop_rows(energy)
    if sops:
        out.append('<h2 id="sop-conventions">Synaptic operations under each convention</h2>')
        out.append(_table(R.SOP_HEADERS, sops, text=(2,)))
    out.append('<h2 id="sources">Sources, caveats and conventions</h2><ul class="notes">')
    out += [f"<li>{_e(line)}</li>" for line in R.source_lines(energy, prices=True)]
    out += [f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in energy["conventions"].items()]
    out.append("</ul>")
    return out
