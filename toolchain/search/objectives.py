"""Objectives, constraints, the scalar fitness and the Pareto front of a search.

Metrics of a trial on a target (what :mod:`edgec.search.trial` measures):

============ ======== ===========================================================================
metric       better   what
============ ======== ===========================================================================
accuracy     higher   top-1 accuracy of the deployed artifact on held-out data (emulator / runtime)
energy_uj    lower    energy per inference from the target's cost table (measured where it measures)
bytes        lower    parameter bytes at each layer's bit width
sops         lower    synaptic operations (SNN) per inference, measured
============ ======== ===========================================================================

Objective names on the command line: ``accuracy``, ``energy`` (= ``energy_uj``), ``bytes``, ``sops``.

The scalar fitness of the ``tpe`` sampler, in the spirit of Auto-Spikformer's accuracy-and-energy balanced
fitness F_AEB (arXiv:2306.00807; its abstract gives no formula) in the soft-constraint form of MnasNet's
reward (Tan et al., CVPR 2019, eq. 2, ``ACC(m) x [LAT(m) / T]^w`` with ``w = -0.07``)::

    F = accuracy * (1 uJ / energy_uj) ^ w          (w = --fitness-weight, 0.07)

A 2x lower energy is worth a factor 2^w (about 5 %) in accuracy. The reference energy (1 uJ) scales F by a
constant, so it does not change which trial is better.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edgec.errors import UsageError

#: metric -> direction
METRICS: dict[str, str] = {
    "accuracy": "maximize",
    "energy_uj": "minimize",
    "bytes": "minimize",
    "sops": "minimize",
}
ALIASES = {"energy": "energy_uj", "accuracy": "accuracy", "bytes": "bytes", "sops": "sops"}
#: what a user may ask for that no target of edgec measures yet
UNPRICED = {"latency": "no target measures latency during a search yet (use `edgec bench` on a front member)"}


def parse_objectives(text: str) -> list[str]:
    """``"accuracy,energy"`` -> metric names, checked."""
    out: list[str] = []
    for raw in filter(None, (p.strip() for p in text.split(","))):
        if raw in UNPRICED:
            raise UsageError(f"objective '{raw}' cannot be priced by any chosen target: {UNPRICED[raw]}")
        name = ALIASES.get(raw)
        if name is None:
            raise UsageError(f"unknown objective '{raw}'", hint=f"choose from: {', '.join(ALIASES)}")
        if name in out:
            raise UsageError(f"objective '{raw}' is named twice")
        out.append(name)
    if not out:
        raise UsageError("no objective given", hint="e.g. --objectives accuracy,energy")
    return out


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # "<=" or ">="
    bound: float

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def violation(self, value: float | None) -> float:
        """How far ``value`` is past the bound (<= 0: satisfied), as Optuna's constraints want."""
        if value is None:
            return math.inf
        return value - self.bound if self.op == "<=" else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"


_CONSTRAINT = re.compile(r"^\s*([a-z_]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


def parse_constraint(text: str) -> Constraint:
    m = _CONSTRAINT.match(text)
    if m is None:
        raise UsageError(
            f"constraint '{text}' is not METRIC<=NUMBER or METRIC>=NUMBER", hint="e.g. energy_uj<=0.5"
        )
    metric = ALIASES.get(m.group(1), m.group(1))
    if metric not in METRICS:
        raise UsageError(
            f"constraint '{text}' names unknown metric '{m.group(1)}'", hint=f"metrics: {', '.join(METRICS)}"
        )
    try:
        bound = float(m.group(3))
    except ValueError:
        raise UsageError(f"constraint '{text}': '{m.group(3)}' is not a number") from None
    return Constraint(metric, m.group(2), bound)


def fitness(accuracy: float, energy_uj: float, weight: float) -> float:
    """F = accuracy * (1 uJ / energy_uj) ^ weight (see the module docstring)."""
    return accuracy * (1.0 / energy_uj) ** weight


def values_for(metrics: dict[str, Any], objectives: Sequence[str]) -> list[float] | None:
    """The objective values of a target's metrics, or None when one is missing (not priced, not run)."""
    vals = [metrics.get(o) for o in objectives]
    if any(v is None or not math.isfinite(float(v)) for v in vals):
        return None
    return [float(v) for v in vals]  # type: ignore[arg-type]


def dominates(a: Sequence[float], b: Sequence[float], objectives: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    better = False
    for x, y, o in zip(a, b, objectives, strict=True):
        if METRICS[o] == "minimize":
            x, y = -x, -y
        if x < y:
            return False
        better = better or x > y
    return better


def pareto_front(points: Iterable[tuple[int, Sequence[float]]], objectives: Sequence[str]) -> list[int]:
    """Ids of the non-dominated points (every one of them, ties included), in the order given.

    Written out (O(n^2)) rather than taken from Optuna: the front here is per target over the trials'
    recorded metrics, including trials the sampler saw only as failed on its first target."""
    pts = list(points)
    return [i for i, v in pts if not any(dominates(w, v, objectives) for j, w in pts if j != i)]
