"""report.html: one self-contained file (inline CSS and SVG charts; no script, no network).

Charts (each an ``<svg class="chart">`` with one ``<rect class="bar">`` per bar, so tests and
users can inspect them):

* ``#chart-energy``: energy per layer in execution order, compute and memory stacked;
* ``#chart-rate``: firing rate per spiking neuron layer (SNN), or the measured fraction of
  non-zero outputs per activation layer (ANN: "activation density", labelled as such);
* ``#chart-compare``: energy per inference under every target's cost table, from the same counts.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from edgec.report import exact_int, fmt_bytes, headline_text, joules, layer_rows, pct, si, summary_rows

if TYPE_CHECKING:
    from edgec.energy.gate import GateResult

COMPUTE = "#3b6fb6"
MEMORY = "#e08a2c"
RATE = "#4a9a5b"
COMPARE = "#7a4fb0"
CURRENT = "#c0392b"
MAX_BARS = 200

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


def _hbar_chart(
    chart_id: str,
    title: str,
    rows: list[tuple[str, list[tuple[float, str, str]], str]],
    *,
    max_value: float | None = None,
    label_width: int = 260,
    width: int = 900,
) -> str:
    """Horizontal (stacked) bars: rows of (label, [(value, color, tooltip)], value text)."""
    bar_h, gap, top = 14, 4, 8
    plot_w = width - label_width - 110
    total_max = max_value or max((sum(v for v, _, _ in segs) for _, segs, _ in rows), default=0.0) or 1.0
    height = top + len(rows) * (bar_h + gap) + 8
    parts = [
        f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f'<line class="axis" x1="{label_width}" y1="{top - 4}" x2="{label_width}" y2="{height - 4}"/>',
    ]
    for i, (label, segs, text) in enumerate(rows):
        y = top + i * (bar_h + gap)
        shown = label if len(label) <= 40 else "…" + label[-39:]
        parts.append(
            f'<text x="{label_width - 6}" y="{y + bar_h - 3}" text-anchor="end">{_e(shown)}'
            f"<title>{_e(label)}</title></text>"
        )
        x = float(label_width)
        for value, color, tip in segs:
            w = max(plot_w * value / total_max, 0.0)
            if value > 0:
                w = max(w, 1.0)
            parts.append(
                f'<rect class="bar" x="{x:.2f}" y="{y}" width="{w:.2f}" height="{bar_h}" fill="{color}">'
                f"<title>{_e(tip)}</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 4:.2f}" y="{y + bar_h - 3}">{_e(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _energy_chart(energy: dict[str, Any]) -> str:
    layers = [r for r in energy["layers"] if r["energy"]["total_pj"] > 0]
    rows: list[tuple[str, list[tuple[float, str, str]], str]] = []
    extra = layers[MAX_BARS:]
    for r in layers[:MAX_BARS]:
        e = r["energy"]
        c, m = e["compute_pj"], e["memory_pj"]
        rows.append(
            (
                r["name"],
                [
                    (c, COMPUTE, f"{r['name']} compute {joules(c * 1e-12)}"),
                    (m, MEMORY, f"{r['name']} memory {joules(m * 1e-12)}"),
                ],
                joules(e["total_pj"] * 1e-12),
            )
        )
    if extra:
        c = sum(r["energy"]["compute_pj"] for r in extra)
        m = sum(r["energy"]["memory_pj"] for r in extra)
        rows.append(
            (
                f"({len(extra)} more layers)",
                [(c, COMPUTE, "compute"), (m, MEMORY, "memory")],
                joules((c + m) * 1e-12),
            )
        )
    if not rows:
        return "<p>No layer has a priced energy under this table.</p>"
    return _hbar_chart("chart-energy", "energy per layer", rows)


def _rate_chart(energy: dict[str, Any]) -> tuple[str, str]:
    spiking = energy["workload"]["kind"] == "snn"
    if spiking:
        src = [(r["name"], r["firing_rate"]) for r in energy["layers"] if r.get("firing_rate") is not None]
        title = "Firing rate per spiking layer (spikes / (neurons x T), measured)"
    else:
        src = [
            (r["name"], r["output_density"]) for r in energy["layers"] if r.get("output_density") is not None
        ]
        title = (
            "Activation density per layer (fraction of non-zero outputs, measured; "
            "an ANN has no spikes: this is its counterpart of a firing rate)"
        )
    rows = [(n, [(float(v), RATE, f"{n}: {v:.2%}")], f"{v:.1%}") for n, v in src[:MAX_BARS]]
    if not rows:
        return title, "<p>No spiking or activation layers were measured.</p>"
    return title, _hbar_chart("chart-rate", title, rows, max_value=1.0)


def _compare_chart(energy: dict[str, Any]) -> str:
    comp = energy.get("comparison") or []
    if not comp:
        return "<p>No other target declares a cost table.</p>"
    priced = [c["energy_j"] for c in comp if c["energy_j"] is not None]
    top = max(priced, default=0.0) or 1.0
    rows = []
    for c in comp:
        label = f"{c['label']} [{c['table']}]"
        if c["energy_j"] is None:
            rows.append((label, [(0.0, COMPARE, "not priced")], "not priced: " + ", ".join(c["unpriced"])))
        else:
            color = CURRENT if c.get("current") else COMPARE
            rows.append(
                (label, [(c["energy_j"], color, f"{label}: {joules(c['energy_j'])}")], joules(c["energy_j"]))
            )
    return _hbar_chart(
        "chart-compare", "energy per inference by target", rows, max_value=top, label_width=340
    )


def _table(headers: list[str], rows: list[list[Any]], left: int = 1, text: tuple[int, ...] = ()) -> str:
    """An HTML table; the first ``left`` columns and the ``text`` columns are left-aligned."""

    def cls(i: int) -> str:
        return "l" if i < left or i in text else ""

    head = "".join(f'<th class="{cls(i)}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="{cls(i)}">{_e(c)}</td>' for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _gate_html(gate: GateResult) -> str:
    status = '<span class="ok">PASSED</span>' if gate.passed else '<span class="fail">FAILED</span>'
    rows = [[*d.cells(), "regressed" if d.regressed else "ok"] for d in gate.deltas]
    notes = "".join(f"<li>{_e(n)}</li>" for n in gate.notes)
    return (
        f'<h2 id="gate">Regression gate: {status}</h2><p>{_e(gate.summary())}</p>'
        + _table(["metric", "baseline", "current", "change", "status"], rows)
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
    )


def render_html(report: dict[str, Any], *, gate: GateResult | None = None) -> str:
    prog = report["program"]
    energy = report.get("energy")
    title = f"edgec report: {prog['name']} -> {report['target']}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<div class="meta">{_e(prog["kind"])} · input {_e(prog["input_shape"])}'
        + (
            f" · T={_e(prog['timesteps'])} · encoder {_e(prog.get('encoder'))}"
            if prog["kind"] == "snn"
            else ""
        )
        + f" · edgec {_e(report['edgec_version'])} · schema_version {_e(report['schema_version'])}"
        + f" · {_e(report['created'])}</div>",
    ]
    if gate is not None:
        out.append(_gate_html(gate))
    if not energy:
        out.append(
            "<p>This report has no energy section (the target declares no cost table).</p></body></html>"
        )
        return "\n".join(out)
    source = energy["headline"]["source"]
    out.append(
        f'<div class="headline">{_e(headline_text(energy))}'
        f'<span class="badge {"measured" if source == "measured" else ""}">{_e(source)}</span></div>'
    )
    wl = energy["workload"]
    steps = ", all timesteps" if wl["kind"] == "snn" else ""
    out.append(
        f'<p class="meta">Per inference (one sample{steps}); activity '
        f"measured on {_e(wl['samples'])} sample(s) of {_e(wl['data'])}. Energy is an estimate: counts x the "
        f"per-operation prices of table <code>{_e(energy['table']['ref'])}</code> unless marked measured.</p>"
    )
    out.append('<h2 id="totals">Totals</h2>')
    out.append(_table(["metric", "value", "source"], [list(r) for r in summary_rows(energy)], text=(2,)))
    out.append('<h2 id="per-layer-energy">Energy per layer</h2>')
    out.append(
        f'<div class="legend"><span style="background:{COMPUTE}"></span>compute'
        f'<span style="background:{MEMORY}"></span>memory access</div>'
    )
    out.append(_energy_chart(energy))
    rate_title, rate_chart = _rate_chart(energy)
    out.append(f'<h2 id="firing-rate">{_e(rate_title)}</h2>')
    out.append(rate_chart)
    out.append('<h2 id="comparison">Comparison across targets (same counts, each target\'s cost table)</h2>')
    out.append(_compare_chart(energy))
    comp = energy.get("comparison") or []
    if comp:
        out.append(
            _table(
                ["target", "table", "energy / inference", "compute", "memory", "parameter memory", "note"],
                [
                    [
                        c["label"] + (" (this report)" if c.get("current") else ""),
                        c["table"],
                        joules(c["energy_j"]),
                        joules(c["compute_j"]),
                        joules(c["memory_j"]),
                        fmt_bytes(c["param_bytes"]),
                        "" if c["complete"] else "not priced: " + ", ".join(c["unpriced"]),
                    ]
                    for c in comp
                ],
            )
        )
    spiking = wl["kind"] == "snn"
    out.append('<h2 id="layers">Layers</h2><details open><summary>every layer, in execution order</summary>')
    headers = [
        "layer",
        "type",
        "MACs",
        "SOPs (exact)" if spiking else "density",
        "rate" if spiking else "",
        "params",
        "bits",
        "energy",
        "share",
    ]
    rows = [
        [
            r["name"],
            r["type"],
            exact_int(r["macs"]) if r["macs"] else "-",
            (exact_int(r["sops"]) if r["sops"] is not None else "-")
            if spiking
            else pct(r["density"])
            if r["density"] is not None
            else "-",
            (pct(r["rate"]) if r["rate"] is not None else "-") if spiking else "",
            si(r["params"]) if r["params"] else "-",
            r["bits"],
            joules(r["energy_pj"] * 1e-12),
            pct(r["share"]),
        ]
        for r in layer_rows(energy)
    ]
    out.append(_table(headers, rows, left=2) + "</details>")
    if spiking:
        s = energy["totals"]["sops"]
        out.append('<h2 id="sop-conventions">Synaptic operations under each convention</h2>')
        out.append(
            _table(
                ["convention", "SOPs / inference", "definition"],
                [
                    ["exact", exact_int(s["exact"]), energy["conventions"]["sops.exact"]],
                    [
                        "effective ACs",
                        exact_int(s["effective_acs"]),
                        "NeuroBench: exact count on binary input",
                    ],
                    [
                        "effective MACs",
                        exact_int(s["effective_macs"]),
                        "NeuroBench: exact count on graded input",
                    ],
                    ["dense", exact_int(s["dense"]), energy["conventions"]["sops.dense"]],
                    [
                        "rate x T x FLOPs",
                        exact_int(s["literature"]),
                        energy["conventions"]["sops.literature"],
                    ],
                ],
                text=(2,),
            )
        )
    table = energy["table"]
    out.append('<h2 id="sources">Sources, caveats and conventions</h2><ul class="notes">')
    out.append(f"<li>table <code>{_e(table['ref'])}</code>: {_e(table['title'])}</li>")
    for op, p in table["prices_pj"].items():
        how = f" ({p['derived']})" if p.get("derived") else ""
        out.append(f"<li><code>{_e(op)}</code> = {p['pj']:.4g} pJ{_e(how)}: {_e(p['source'])}</li>")
    for c in table["caveats"]:
        out.append(f"<li>caveat: {_e(c)}</li>")
    for n in energy.get("notes", []):
        out.append(f"<li>note: {_e(n)}</li>")
    for k, v in energy["conventions"].items():
        out.append(f"<li><b>{_e(k)}</b>: {_e(v)}</li>")
    out.append("</ul></body></html>")
    return "\n".join(out)
