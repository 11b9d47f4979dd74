"""report.md and report.html of a search (from its search.json document).

The HTML is self-contained: one accuracy-versus-energy scatter per target as inline SVG (written by hand,
like :mod:`edgec.report.charts`: a few dozen points need no plotting library), the front highlighted,
``marks`` (hand-picked recipes of a benchmark table) drawn as crosses.
"""

from __future__ import annotations

import html
from typing import Any


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _num(v: Any, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _same(t: dict[str, Any]) -> str:
    return f" (= {t['reused_from']})" if t.get("reused_from") is not None else ""


def front_rows(doc: dict[str, Any], target: str) -> list[dict[str, Any]]:
    by_number = {t["number"]: t for t in doc["trials"]}
    rows = [by_number[n] for n in doc["front"].get(target, [])]
    return sorted(rows, key=lambda t: t["targets"][target].get("energy_uj") or 0.0)


def front_table(doc: dict[str, Any], target: str) -> list[str]:
    lines = [
        "| trial | recipes | T | deployed accuracy % | energy / inference (µJ) | bytes | SOPs |",
        "|---|---|---|---|---|---|---|",
    ]
    picked = {n for ref in doc.get("references") or [] for n in ref.get("same_as", [])}
    for t in front_rows(doc, target):
        r = t["targets"][target]
        mark = " (a reference's recipe)" if t["number"] in picked else ""
        lines.append(
            f"| {t['number']}{_same(t)}{mark} | `{' + '.join(t['recipes'])}` | {t['timesteps'] or '-'} "
            f"| {_pct(r.get('accuracy'))} "
            f"| {_num(r.get('energy_uj'), '{:.4f}')} | {_num(r.get('bytes'))} | {_num(r.get('sops'))} |"
        )
    return lines


def reference_table(doc: dict[str, Any]) -> list[str]:
    """The hand-picked recipes of --reference, measured by the same trial code, against the fronts."""
    refs = doc.get("references") or []
    if not refs:
        return []
    targets = doc["search"]["targets"]
    lines = [
        "",
        "## Hand-picked references",
        "",
        "Measured by the same trial code (same epochs, seed and data) after the trials; not sampled. "
        "'same as': trials with these recipes and T; 'front at least as good': front trials with accuracy "
        ">= and energy <= the reference's.",
        "",
        "| reference | T | "
        + " | ".join(f"{t} accuracy % | {t} µJ | {t}: front at least as good" for t in targets)
        + " | same as trials | note |",
        "|---|---|" + "---|---|---|" * len(targets) + "---|---|",
    ]
    for ref in refs:
        cells = []
        notes = [ref["reason"]] if ref.get("reason") else []
        for target in targets:
            r = ref["targets"].get(target) or {}
            if r and not r.get("feasible"):
                notes.append(f"{target}: {r.get('reason')}")
            matched = ref["matched_by"].get(target)
            shown = "-" if matched is None else (", ".join(map(str, matched)) or "none")
            cells += [_pct(r.get("accuracy")), _num(r.get("energy_uj"), "{:.4f}"), shown]
        same = ", ".join(map(str, ref["same_as"])) or "-"
        lines.append(
            f"| `{ref['label']}` | {ref['timesteps'] or '-'} | "
            + " | ".join(cells)
            + f" | {same} | {'; '.join(notes)} |"
        )
    return lines


def sensitivity_table(sens: dict[str, Any] | None) -> list[str]:
    """The layer groups a trial's ``wide`` keeps at 8 bits, most sensitive first, with their scores."""
    if not sens:
        return []
    lines = [
        "",
        "## Layer groups by quantization sensitivity",
        "",
        f"Each group's weights alone quantized to {sens['bits']} bits (symmetric max-abs per tensor), "
        f"the mean KL divergence of the model's outputs from the float outputs on {sens['samples']} "
        f"training samples (ZeroQ, Cai et al. CVPR 2020, eq. 4); a trial with wide=k keeps the first k "
        f"at {sens['wide_bits']} bits. Ranked once, in {sens['wall_s']:.2f} s.",
        "",
        "| rank | layer | score (KL, nats) |",
        "|---|---|---|",
    ]
    for i, g in enumerate(sens["groups"], 1):
        lines.append(f"| {i} | `{g['layer']}` | {g['score']:.6g} |")
    return lines


def render_markdown(doc: dict[str, Any]) -> str:
    s, timing, counts = doc["search"], doc["timing"], doc["counts"]
    lines = [
        f"# edgec search: {s['model']}",
        "",
        f"Targets {', '.join(s['targets'])}; objectives {', '.join(s['objectives'])} (the sampler follows "
        f"{s['targets'][0]}); sampler {s['sampler']} (seed {s['seed']}, population {s['population']}); "
        f"space `{s['space']['name']}`; {s['epochs']} fine-tuning epochs per trial on {s['train']}.",
        f"Trials: {counts['complete']} complete, {counts['failed']} failed, "
        f"{counts['interrupted']} interrupted. "
        f"Wall time {timing['wall_s']:.1f} s, the search's own time (sampler, storage, bookkeeping) "
        f"{timing['overhead_s']:.2f} s ({100 * (timing['overhead_share'] or 0):.2f} %).",
        "",
        "Accuracy: the deployed artifact on held-out data (the target's runtime); energy: the artifact's "
        "energy report (cost-table estimate unless measured); bytes: parameters at their bit width.",
    ]
    lines += sensitivity_table(s.get("sensitivity"))
    for target in s["targets"]:
        lines += ["", f"## Pareto front on {target}", ""]
        if doc["front"].get(target):
            lines += front_table(doc, target)
        else:
            reasons = sorted(
                {
                    (t["targets"].get(target) or {}).get("reason") or t.get("reason") or "not run"
                    for t in doc["trials"]
                }
            )
            lines.append(f"No feasible trial on {target}. Reasons: " + "; ".join(r for r in reasons if r))
    lines += reference_table(doc)
    lines += [
        "",
        "## All trials",
        "",
        "| trial | params | state | "
        + " | ".join(f"{t} accuracy % | {t} µJ" for t in s["targets"])
        + " | note |",
        "|---|---|---|" + "---|---|" * len(s["targets"]) + "---|",
    ]
    for t in doc["trials"]:
        cells = []
        notes = [t["reason"]] if t.get("reason") else []
        for target in s["targets"]:
            r = t["targets"].get(target) or {}
            if r and not r.get("feasible"):
                notes.append(f"{target}: {r.get('reason')}")
            cells += [_pct(r.get("accuracy")), _num(r.get("energy_uj"), "{:.4f}")]
        params = ", ".join(f"{k}={v}" for k, v in t["params"].items())
        lines.append(
            f"| {t['number']}{_same(t)} | {params} | {t['state']} | "
            + " | ".join(cells)
            + f" | {'; '.join(notes)} |"
        )
    return "\n".join(lines) + "\n"


def scatter_svg(
    doc: dict[str, Any],
    target: str,
    marks: list[dict[str, Any]] | None = None,
    width: int = 560,
    height: int = 360,
) -> str:
    """Accuracy (y) against energy per inference (x) of the trials feasible on ``target``."""
    pts = []
    front = set(doc["front"].get(target, []))
    for t in doc["trials"]:
        r = t["targets"].get(target) or {}
        if (
            t["state"] == "complete"
            and r.get("feasible")
            and r.get("accuracy") is not None
            and r.get("energy_uj")
        ):
            pts.append((r["energy_uj"], r["accuracy"], t["number"] in front, f"trial {t['number']}"))
    extra = [(m["energy_uj"], m["accuracy"], None, m["label"]) for m in marks or []]
    allp = pts + extra
    if not allp:
        return f"<p>No feasible trial on {html.escape(target)}.</p>"
    xs, ys = [p[0] for p in allp], [p[1] for p in allp]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 * 1.1 + 1e-9), (y1 if y1 > y0 else y0 + 0.01)
    pad = 48

    def sx(v: float) -> float:
        return pad + (v - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(v: float) -> float:
        return height - pad - (v - y0) / (y1 - y0) * (height - 2 * pad)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#444"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#444"/>',
        f'<text x="{width / 2}" y="{height - 10}" text-anchor="middle">energy per inference (µJ), '
        f"{html.escape(target)}</text>",
        f'<text x="12" y="{height / 2}" transform="rotate(-90 12 {height / 2})" text-anchor="middle">'
        "deployed accuracy</text>",
        f'<text x="{pad}" y="{height - pad + 14}" text-anchor="middle">{x0:.3g}</text>',
        f'<text x="{width - pad}" y="{height - pad + 14}" text-anchor="middle">{x1:.3g}</text>',
        f'<text x="{pad - 4}" y="{height - pad}" text-anchor="end">{100 * y0:.1f}%</text>',
        f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{100 * y1:.1f}%</text>',
    ]
    fr = sorted((p for p in pts if p[2]), key=lambda p: p[0])
    if len(fr) > 1:
        path = " ".join(f"{sx(p[0]):.1f},{sy(p[1]):.1f}" for p in fr)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#c0392b" stroke-dasharray="4 3"/>')
    for x, y, on_front, label in allp:
        cx, cy = sx(x), sy(y)
        tip = f"<title>{html.escape(label)}: {100 * y:.2f} %, {x:.4g} µJ</title>"
        if on_front is None:
            parts.append(
                f'<g stroke="#2c3e50" stroke-width="2">'
                f'<line x1="{cx - 5:.1f}" y1="{cy - 5:.1f}" x2="{cx + 5:.1f}" y2="{cy + 5:.1f}"/>'
                f'<line x1="{cx - 5:.1f}" y1="{cy + 5:.1f}" x2="{cx + 5:.1f}" y2="{cy - 5:.1f}"/>'
                f"{tip}</g>"
            )
            parts.append(f'<text x="{cx + 7:.1f}" y="{cy - 6:.1f}">{html.escape(label)}</text>')
        else:
            color = "#c0392b" if on_front else "#95a5a6"
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{5 if on_front else 3.5}" fill="{color}">'
                f"{tip}</circle>"
            )
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(doc: dict[str, Any], marks: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """report.html: the Markdown facts and one scatter per target (front in red, marks as crosses)."""
    s = doc["search"]
    body = [f"<h1>edgec search: {html.escape(s['model'])}</h1>"]
    body.append(
        f"<p>{doc['counts']['complete']} complete, {doc['counts']['failed']} failed trials; sampler "
        f"{html.escape(s['sampler'])}, seed {s['seed']}. Red: the Pareto front; grey: other feasible trials; "
        "crosses: hand-picked recipes.</p>"
    )
    for target in s["targets"]:
        body.append(f"<h2>{html.escape(target)}</h2>")
        body.append(scatter_svg(doc, target, (marks or {}).get(target)))
    md = html.escape(render_markdown(doc))
    body.append(f"<h2>Details</h2><pre>{md}</pre>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>edgec search</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{white-space:pre-wrap}</style>"
        "</head><body>" + "\n".join(body) + "</body></html>\n"
    )
