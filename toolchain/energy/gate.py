"""CI regression gate: compare a report with a baseline report, metric by metric.

``edgec report MODEL --baseline OLD.json --max-increase 5%`` fails (exit code 6,
:class:`~edgec.errors.RegressionGateFailed`) and lists each failing metric when

* a deterministic count changed in **either direction**: dense MACs, other ops, exact SOPs, SOPs on
  non-binary input, spikes, neuron updates, parameters, parameter and peak activation bytes. For a
  fixed model and data these are exact, so any change is a change of the model or of the counter
  ("baseline changed: run with --update if intended"), never noise;
* the energy per inference grew by more than the allowed fraction:

    (current - baseline) / baseline > max_increase       (baseline > 0)
    current > 0                                          (baseline == 0)

Energy is compared only when both reports were priced with the same cost table (``name@version``)
or both are measured; otherwise it is skipped with a note, and the counts are still gated.
``edgec report MODEL --baseline OLD.json --update`` rewrites the baseline (atomically) instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgec.errors import UsageError

#: gated metrics: name -> (path in the report's energy section, unit, description)
METRICS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "energy_j": (("headline", "energy_j"), "J", "energy per inference (headline)"),
    "macs": (("totals", "macs"), "MAC", "dense MACs"),
    "other_ops": (("totals", "other_ops"), "op", "bias / norm / activation / pooling / element-wise ops"),
    "sops_exact": (("totals", "sops", "exact"), "SOP", "exact synaptic operations"),
    "sops_effective_macs": (("totals", "sops", "effective_macs"), "MAC", "synaptic ops on non-binary input"),
    "spikes": (("totals", "spikes"), "spike", "spikes"),
    "neuron_updates": (("totals", "neuron_updates"), "update", "neuron updates"),
    "params": (("totals", "params"), "param", "parameters"),
    "param_bytes": (("totals", "param_bytes"), "B", "parameter memory"),
    "peak_activation_bytes": (("totals", "peak_activation_bytes"), "B", "peak activation memory"),
}
#: metrics held exactly: deterministic for a fixed model and data (everything but energy)
EXACT = frozenset(METRICS) - {"energy_j"}
CHANGED = "baseline changed: run with --update if intended"


@dataclass
class MetricDelta:
    metric: str
    description: str
    unit: str
    baseline: float
    current: float
    change: float | None  # relative change; None when the baseline is 0
    regressed: bool  # energy: grew more than allowed
    exact: bool = False  # a deterministic count, held exactly
    changed: bool = False  # an exact count that differs from the baseline (either direction)

    @property
    def failed(self) -> bool:
        return self.regressed or self.changed

    @property
    def status(self) -> str:
        return "changed" if self.changed else "regressed" if self.regressed else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}

    def cells(self, *, units: bool = True) -> list[str]:
        """metric, baseline, current, relative change: one table row for every renderer."""
        unit = f" {self.unit}" if units else ""
        change = "new" if self.change is None else f"{self.change:+.2%}"
        fmt = _full if self.exact else _g
        return [self.metric, f"{fmt(self.baseline)}{unit}", f"{fmt(self.current)}{unit}", change]


@dataclass
class GateResult:
    baseline: str
    max_increase: float
    deltas: list[MetricDelta]
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricDelta]:
        """Metrics that grew more than allowed (energy)."""
        return [d for d in self.deltas if d.regressed]

    @property
    def changes(self) -> list[MetricDelta]:
        """Exact counts that differ from the baseline."""
        return [d for d in self.deltas if d.changed]

    @property
    def failures(self) -> list[MetricDelta]:
        return [d for d in self.deltas if d.failed]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "max_increase": self.max_increase,
            "passed": self.passed,
            "regressions": [d.metric for d in self.regressions],
            "changed": [d.metric for d in self.changes],
            "deltas": [d.to_dict() for d in self.deltas],
            "notes": self.notes,
        }

    def summary(self) -> str:
        """One line naming every failing metric (the CLI's error message)."""
        if self.passed:
            return f"every count equals {self.baseline} and no energy grew more than {self.max_increase:.1%}"

        def part(d: MetricDelta) -> str:
            fmt = _full if d.exact else _g
            return f"{d.metric} {_pct(d.change)} ({fmt(d.baseline)} -> {fmt(d.current)} {d.unit})"

        out = []
        if self.changes:
            out.append(f"{CHANGED} ({'; '.join(part(d) for d in self.changes)})")
        if self.regressions:
            out.append(
                f"{len(self.regressions)} metric(s) grew more than {self.max_increase:.1%} over "
                f"{self.baseline}: " + "; ".join(part(d) for d in self.regressions)
            )
        return "; ".join(out)


def _pct(change: float | None) -> str:
    return "new (baseline 0)" if change is None else f"{change:+.2%}"


def _full(x: float) -> str:
    """An exact count in full: every digit that can change (a mean over samples keeps its fraction)."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,}"


def _g(x: float) -> str:
    """Counts in full (a change of one MAC must show), other values to 4 significant digits."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:.4g}"


def parse_max_increase(text: str) -> float:
    """``"5%"`` or ``"5"`` -> 0.05 (the value is in percent, the sign optional)."""
    s = text.strip().removesuffix("%").strip()
    try:
        value = float(s)
    except ValueError:
        raise UsageError(
            f"--max-increase '{text}' is not a percentage", hint="e.g. --max-increase 5%"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(
            f"--max-increase must be a percentage >= 0, got '{text}'", hint="e.g. --max-increase 5%"
        )
    return value / 100.0


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read a baseline report (``edgec report --format json`` output, or an artifact's report.json)."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.is_file():
        raise UsageError(
            f"baseline '{path}' does not exist",
            hint="write one with `edgec report MODEL --baseline FILE --update`",
        )
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"baseline '{p}' is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise UsageError(f"baseline '{p}' is not an edgec report (no schema_version)")
    if not isinstance(doc.get("energy"), dict):
        raise UsageError(
            f"baseline '{p}' has no energy section",
            hint="regenerate it with `edgec report MODEL --baseline FILE --update`",
        )
    return doc


def _get(section: dict[str, Any], path: tuple[str, ...]) -> float | None:
    cur: Any = section
    for key in path:
        if not isinstance(cur, dict) or cur.get(key) is None:
            return None
        cur = cur[key]
    return float(cur) if isinstance(cur, (int, float)) else None


def compare(
    current: dict[str, Any], baseline: dict[str, Any], *, max_increase: float, baseline_name: str = "baseline"
) -> GateResult:
    """Gate ``current`` against ``baseline`` (both whole reports)."""
    if current.get("schema_version") != baseline.get("schema_version"):
        raise UsageError(
            f"baseline {baseline_name} has schema_version {baseline.get('schema_version')}, "
            f"this report {current.get('schema_version')}",
            hint="regenerate the baseline with this version of edgec",
        )
    if current.get("target") != baseline.get("target"):
        raise UsageError(
            f"baseline {baseline_name} is a report for target '{baseline.get('target')}', "
            f"this one for '{current.get('target')}'",
            hint="compare reports of the same target",
        )
    cur, base = current["energy"], baseline["energy"]
    notes: list[str] = []
    cur_name = current.get("program", {}).get("name")
    base_name = baseline.get("program", {}).get("name")
    if cur_name != base_name:
        notes.append(f"the baseline is for model '{base_name}', this report for '{cur_name}'")
    ch, bh = cur.get("headline", {}), base.get("headline", {})
    same_basis = (ch.get("source"), ch.get("table")) == (bh.get("source"), bh.get("table"))
    deltas: list[MetricDelta] = []
    for metric, (path, unit, desc) in METRICS.items():
        c, b = _get(cur, path), _get(base, path)
        if c is None or b is None:
            continue
        if metric == "energy_j" and not same_basis:
            b_basis = f"{bh.get('source')} ({bh.get('table') or bh.get('method')})"
            c_basis = f"{ch.get('source')} ({ch.get('table') or ch.get('method')})"
            notes.append(f"energy not compared: baseline is {b_basis}, this report {c_basis}")
            continue
        change: float | None = (c - b) / b if b else (None if c else 0.0)
        if metric in EXACT:
            deltas.append(MetricDelta(metric, desc, unit, b, c, change, False, exact=True, changed=c != b))
            continue
        grew = change is not None and change > max_increase * (1 + 1e-9) + 1e-12
        regressed = grew if b > 0 else c > 0
        deltas.append(MetricDelta(metric, desc, unit, b, c, change, regressed))
    cw, bw = cur.get("workload", {}), base.get("workload", {})
    if (cw.get("data"), cw.get("samples")) != (bw.get("data"), bw.get("samples")):
        notes.append(
            f"the baseline measured activity on {bw.get('samples')} sample(s) of {bw.get('data')}, this "
            f"report on {cw.get('samples')} of {cw.get('data')}: data-dependent counts cannot be equal"
        )
    return GateResult(baseline_name, max_increase, deltas, notes)
