"""The rows of every report table, formatted once: each view (Markdown, HTML, terminal) lays them out.

One function per table gives its headers and its cells as text; a view decides only how a row is
marked (the current target's comparison row is bold in Markdown, starred in the terminal) and how
cells are escaped. Numbers are formatted here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgec.energy.gate import GateResult


# ---- numbers ----------------------------------------------------------------------------------------
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
    """``2048 -> '2.00 KiB'`` (binary units)."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} GiB"


def exact_int(x: float | None) -> str:
    """``1814073344 -> '1,814,073,344'``; a mean over samples keeps one decimal."""
    if x is None:
        return "n/a"
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def short(v: Any, limit: int = 120) -> str:
    """A value for a key / value table, cut at ``limit`` characters."""
    s = f"{v:.4g}" if isinstance(v, float) else str(v)
    return s if len(s) < limit else s[: limit - 3] + "..."


# ---- the energy section ------------------------------------------------------------------------------
def headline_text(energy: dict[str, Any]) -> str:
    h = energy["headline"]
    if h["source"] == "measured":
        return f"{joules(h['energy_j'])} per inference, measured ({h.get('method')}, {h.get('device')})"
    if h.get("energy_j") is None:
        missing = [
            *energy["estimate"]["unpriced"],
            *(u["layer"] for u in energy["totals"].get("uncounted", [])),
        ]
        return f"n/a: table {h['table']} leaves out {', '.join(missing)} (see notes)"
    return f"{joules(h['energy_j'])} per inference, estimate (table {h['table']})"


def workload_text(energy: dict[str, Any]) -> str:
    wl = energy["workload"]
    steps = ", all timesteps" if wl["kind"] == "snn" else ""
    return (
        f"Every figure is per inference (one sample{steps}). "
        f"Activity measured on {wl['samples']} sample(s) of {wl['data']}."
    )


SUMMARY_HEADERS = ["metric", "value", "source"]


def summary_rows(energy: dict[str, Any]) -> list[list[str]]:
    """(metric, value, where it comes from) rows of the totals."""
    t = energy["totals"]
    est = energy["estimate"]
    table = energy["table"]["ref"]
    rows = [
        ["energy per inference", headline_text(energy), energy["headline"]["source"]],
        ["  compute", joules(est["compute_j"]), f"estimate, {table}"],
        [
            "  memory access",
            joules(est["memory_j"]),
            f"estimate, {table} ({energy['table']['memory_model']})",
        ],
        ["dense MACs", f"{exact_int(t['macs'])} ({si(t['macs'])})", "analytic count"],
        ["other ops", f"{exact_int(t['other_ops'])} ({si(t['other_ops'])})", "analytic count"],
    ]
    if t.get("sops"):
        s = t["sops"]
        rows += [
            ["SOPs exact", f"{exact_int(s['exact'])} ({si(s['exact'])})", "measured"],
            ["  effective ACs", exact_int(s["effective_acs"]), "measured (NeuroBench convention)"],
            ["  effective MACs", exact_int(s["effective_macs"]), "measured (NeuroBench convention)"],
            ["  dense", exact_int(s["dense"]), "analytic (all in-bounds pairs)"],
            ["  rate x T x FLOPs", exact_int(s["literature"]), "literature shortcut, for comparison only"],
            ["spikes", exact_int(t["spikes"]), "measured"],
            ["firing rate", pct(t["firing_rate"]), "measured"],
            ["neuron updates", exact_int(t["neuron_updates"]), "count (neurons x T)"],
        ]
    rows += [
        ["parameters", f"{exact_int(t['params'])} ({si(t['params'])})", "count"],
        [
            "parameter memory",
            f"{fmt_bytes(t['param_bytes'])} ({weight_widths(energy)}, packed)",
            "count x bit width",
        ],
        [
            "peak activation memory",
            f"{fmt_bytes(t['peak_activation_bytes'])} (at {t['peak_activation_at']})",
            "estimate (tensor liveness)",
        ],
    ]
    for u in t.get("uncounted", []):
        rows.append(["uncounted", f"{u['layer']} ({u['type']}): {', '.join(u['ops'])}", "not counted"])
    return rows


COMPARISON_HEADERS = [
    "target",
    "table",
    "energy / inference",
    "compute",
    "memory",
    "parameter memory",
    "note",
]


def comparison_rows(energy: dict[str, Any]) -> list[tuple[bool, list[str]]]:
    """(is this report's own row, cells) for every target's cost table."""
    return [
        (
            bool(c.get("current")),
            [
                c["label"],
                c["table"],
                joules(c["energy_j"]),
                joules(c["compute_j"]),
                joules(c["memory_j"]),
                fmt_bytes(c["param_bytes"]),
                "" if c["complete"] else "not priced: " + ", ".join(c["unpriced"]),
            ],
        )
        for c in energy.get("comparison") or []
    ]


@dataclass(frozen=True)
class LayerRow:
    """One layer as the views show it: its counts and its share of the total energy."""

    name: str
    type: str
    macs: int
    sops: float | None
    rate: float | None
    density: float | None
    params: int
    bits: str
    energy_pj: float
    share: float


def layer_rows(energy: dict[str, Any]) -> list[LayerRow]:
    """Per-layer rows with a share of the total energy, in execution order."""
    total = energy["estimate"]["total_j"] / 1e-12
    out = []
    for r in energy["layers"]:
        e = r["energy"]["total_pj"]
        bits = "/".join(str(b) for b in (r.get("weight_bits"), r.get("other_bits")) if b is not None)
        out.append(
            LayerRow(
                name=r["name"],
                type=r["type"],
                macs=r["macs"],
                sops=r["sops"]["exact"] if r.get("sops") else None,
                rate=r.get("firing_rate") if r.get("firing_rate") is not None else r.get("input_rate"),
                density=r.get("output_density"),
                params=r["params"],
                bits=bits or "-",
                energy_pj=e,
                share=e / total if total else 0.0,
            )
        )
    return out


def layer_headers(spiking: bool) -> list[str]:
    activity = ["SOPs (exact)", "rate"] if spiking else ["density"]
    return ["layer", "type", "MACs", *activity, "params", "bits", "energy", "share"]


def layer_cells(r: LayerRow, *, spiking: bool, exact: bool = False) -> list[str]:
    """One layer's cells; ``exact`` writes counts in full (``1,814,073,344``) instead of ``1.81 G``."""
    num = exact_int if exact else si

    def opt(v: float | None, fmt: Any) -> str:
        return "-" if v is None else fmt(v)

    activity = [opt(r.sops, num), opt(r.rate, pct)] if spiking else [opt(r.density, pct)]
    return [
        r.name,
        r.type,
        num(r.macs) if r.macs else "-",
        *activity,
        si(r.params) if r.params else "-",
        r.bits,
        joules(r.energy_pj * 1e-12),
        pct(r.share),
    ]


SOP_HEADERS = ["convention", "SOPs / inference", "definition"]


def sop_rows(energy: dict[str, Any]) -> list[list[str]]:
    """The synaptic operations of an SNN under each convention (empty for an ANN)."""
    s = energy["totals"].get("sops")
    if not s:
        return []
    conv = energy["conventions"]
    return [
        ["exact", exact_int(s["exact"]), conv["sops.exact"]],
        ["effective ACs", exact_int(s["effective_acs"]), "NeuroBench: exact count on binary input"],
        ["effective MACs", exact_int(s["effective_macs"]), "NeuroBench: exact count on graded input"],
        ["dense", exact_int(s["dense"]), conv["sops.dense"]],
        ["rate x T x FLOPs", exact_int(s["literature"]), conv["sops.literature"]],
    ]


GATE_HEADERS = ["metric", "baseline", "current", "change", "status"]


def gate_rows(gate: GateResult, *, units: bool = True) -> list[tuple[bool, list[str]]]:
    """(failed, cells) for every compared metric of the regression gate."""
    return [(d.failed, [*d.cells(units=units), d.status]) for d in gate.deltas]


def source_lines(energy: dict[str, Any], *, prices: bool = False) -> list[str]:
    """Where the figures come from: the table, its citations and caveats, the report's notes."""
    table = energy["table"]
    out = [f"table {table['ref']}: {table['title']}"]
    if prices:
        for op, p in table["prices_pj"].items():
            how = f" ({p['derived']})" if p.get("derived") else ""
            out.append(f"{op} = {p['pj']:.4g} pJ{how}: {p['source']}")
    else:
        out += list(table["citations"])
    out += [f"caveat: {c}" for c in table["caveats"]]
    out += [f"note: {n}" for n in energy.get("notes", [])]
    return out


def weight_widths(energy: dict[str, Any]) -> str:
    """The weights' storage widths: ``8-bit weights``, or per layer when a pass recorded its own
    (``weights 4-bit in 3 layers, 8-bit in 2 layers``)."""
    default = energy["bits"]["weight_bits"]
    widths = [r.get("weight_bits") for r in energy.get("layers", []) if r.get("weight_params")]
    counts: dict[int, int] = {}
    for b in widths:
        counts[b if b is not None else default] = counts.get(b if b is not None else default, 0) + 1
    if len(counts) <= 1:
        return f"{next(iter(counts), default)}-bit weights"
    parts = [f"{b}-bit in {n} layer{'s' if n > 1 else ''}" for b, n in sorted(counts.items())]
    return "weights " + ", ".join(parts)
