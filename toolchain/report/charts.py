"""Inline SVG bar charts of report.html (no script, no network).

Each chart is an ``<svg id=... class="chart">`` with one ``<rect class="bar">`` per bar, so tests
and users can inspect them:

* ``#chart-energy``: energy per layer in execution order, compute and memory stacked;
* ``#chart-rate``: firing rate per spiking neuron layer (SNN), or the measured fraction of
  non-zero outputs per activation layer (ANN: "activation density", labelled as such);
* ``#chart-compare``: energy per inference under every target's cost table, from the same counts.
"""

from __future__ import annotations

import html
from typing import Any

from edgec.report.rows import joules

COMPUTE = "#3b6fb6"
MEMORY = "#e08a2c"
RATE = "#4a9a5b"
COMPARE = "#7a4fb0"
CURRENT = "#c0392b"
MAX_BARS = 200

Segment = tuple[float, str, str]  # value, colour, tooltip
Bar = tuple[str, list[Segment], str]  # label, stacked segments, value text


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def hbar_chart(
    chart_id: str,
    title: str,
    bars: list[Bar],
    *,
    max_value: float | None = None,
    label_width: int = 260,
    width: int = 900,
) -> str:
    """Horizontal (stacked) bars, one row per bar."""
    bar_h, gap, top = 14, 4, 8
    plot_w = width - label_width - 110
    total_max = max_value or max((sum(v for v, _, _ in segs) for _, segs, _ in bars), default=0.0) or 1.0
    height = top + len(bars) * (bar_h + gap) + 8
    parts = [
        f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f'<line class="axis" x1="{label_width}" y1="{top - 4}" x2="{label_width}" y2="{height - 4}"/>',
    ]
    for i, (label, segs, text) in enumerate(bars):
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


def energy_chart(energy: dict[str, Any]) -> str:
    layers = [r for r in energy["layers"] if r["energy"]["total_pj"] > 0]
    bars: list[Bar] = []
    for r in layers[:MAX_BARS]:
        c, m = r["energy"]["compute_pj"], r["energy"]["memory_pj"]
        segs = [
            (c, COMPUTE, f"{r['name']} compute {joules(c * 1e-12)}"),
            (m, MEMORY, f"{r['name']} memory {joules(m * 1e-12)}"),
        ]
        bars.append((r["name"], segs, joules(r["energy"]["total_pj"] * 1e-12)))
    extra = layers[MAX_BARS:]
    if extra:
        c = sum(r["energy"]["compute_pj"] for r in extra)
        m = sum(r["energy"]["memory_pj"] for r in extra)
        bars.append(
            (
                f"({len(extra)} more layers)",
                [(c, COMPUTE, "compute"), (m, MEMORY, "memory")],
                joules((c + m) * 1e-12),
            )
        )
    if not bars:
        return "<p>No layer has a priced energy under this table.</p>"
    return hbar_chart("chart-energy", "energy per layer", bars)


def rate_chart(energy: dict[str, Any]) -> tuple[str, str]:
    """(section title, chart): firing rates of an SNN, activation densities of an ANN."""
    if energy["workload"]["kind"] == "snn":
        key, title = "firing_rate", "Firing rate per spiking layer (spikes / (neurons x T), measured)"
    else:
        key, title = (
            "output_density",
            "Activation density per layer (fraction of non-zero outputs, measured; "
            "an ANN has no spikes: this is its counterpart of a firing rate)",
        )
    src = [(r["name"], r[key]) for r in energy["layers"] if r.get(key) is not None]
    bars: list[Bar] = [(n, [(float(v), RATE, f"{n}: {v:.2%}")], f"{v:.1%}") for n, v in src[:MAX_BARS]]
    if not bars:
        return title, "<p>No spiking or activation layers were measured.</p>"
    return title, hbar_chart("chart-rate", title, bars, max_value=1.0)


def compare_chart(energy: dict[str, Any]) -> str:
    comp = energy.get("comparison") or []
    if not comp:
        return "<p>No other target declares a cost table.</p>"
    top = max((c["energy_j"] for c in comp if c["energy_j"] is not None), default=0.0) or 1.0
    bars: list[Bar] = []
    for c in comp:
        label = f"{c['label']} [{c['table']}]"
        if c["energy_j"] is None:
            bars.append((label, [(0.0, COMPARE, "not priced")], "not priced: " + ", ".join(c["unpriced"])))
        else:
            color = CURRENT if c.get("current") else COMPARE
            bars.append(
                (label, [(c["energy_j"], color, f"{label}: {joules(c['energy_j'])}")], joules(c["energy_j"]))
            )
    return hbar_chart("chart-compare", "energy per inference by target", bars, max_value=top, label_width=340)
