"""The typed result of a search, ``search.json``, and the end of a search (front, artifacts, reports).

``search.json`` (schema_version 1, written atomically after every batch and at the end) is built from the
Optuna study alone (the storage is the single source of truth):

* ``search``: model, targets, objectives, constraints, space, sampler, seed, trials asked for, and the
  layer groups' sensitivity ranking when the space has ``wide`` (:mod:`edgec.search.sensitivity`);
* ``trials``: every trial: number, parameters, recipes, T, seed, state (``complete`` / ``failed`` /
  ``interrupted`` / ``queued``: an interrupted trial's parameters waiting for the next run), reason,
  attempts, wall time, and per target: feasible, why-not reason and rows, accuracy (deployed),
  energy_uj (with its source and table), bytes, sops, artifact path;
* ``front``: per target, the numbers of the non-dominated feasible complete trials (every one of them);
* ``references``: the hand-picked recipes of ``--reference`` (:mod:`edgec.search.references`);
* ``execution`` and ``timing``: executor, wall time, the driver's own time (sampler, storage,
  bookkeeping) and its share of the wall time.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec.search.member import SEARCH_JSON
from edgec.search.objectives import pareto_front, values_for
from edgec.search.references import describe_references, marks
from edgec.search.trial import TRIALS_DIR, trial_dir, write_atomic

SCHEMA_VERSION = 1


@dataclass
class TrialResult:
    """One trial of a search: its parameters and, per target, what was measured."""

    number: int
    params: dict[str, Any]
    recipes: list[str]
    timesteps: int | None
    seed: int | None
    state: str  # complete | failed | interrupted | queued | running
    reason: str | None = None
    attempts: int | None = None
    wall_s: float | None = None
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    compressed: dict[str, Any] = field(default_factory=dict)
    reused_from: int | None = None  # proposed again: the record of that earlier trial (not run again)

    @classmethod
    def from_record(
        cls, number: int, params: dict[str, Any], spec: dict[str, Any], record: dict[str, Any] | None
    ) -> TrialResult:
        record = record or {}
        return cls(
            number=number,
            params=dict(params),
            recipes=list(spec.get("recipes", [])),
            timesteps=spec.get("timesteps"),
            seed=spec.get("seed"),
            state=record.get("state", "running"),
            reason=record.get("reason"),
            attempts=record.get("attempts"),
            wall_s=record.get("wall_s"),
            targets=dict(record.get("targets") or {}),
            compressed=dict(record.get("compressed") or {}),
            reused_from=record.get("reused_from"),
        )

    def feasible(self, target: str) -> bool:
        return self.state == "complete" and bool(self.targets.get(target, {}).get("feasible"))

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self)


@dataclass
class SearchResult:
    """What :func:`edgec.search` returns; the same as OUT/search.json."""

    path: Path
    trials: list[TrialResult]
    front: dict[str, list[int]]
    targets: list[str]
    objectives: list[str]
    timing: dict[str, Any] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)

    def front_trials(self, target: str) -> list[TrialResult]:
        by_number = {t.number: t for t in self.trials}
        return [by_number[n] for n in self.front.get(target, [])]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{t}: {len(v)}" for t, v in self.front.items())
        return f"SearchResult(path={self.path}, trials={len(self.trials)}, front {{{sizes}}})"


def collect_trials(study: Any) -> list[TrialResult]:
    """Every trial of the study, from its stored attributes."""
    out = []
    for t in study.get_trials(deepcopy=False):
        spec = t.user_attrs.get("spec", {})
        record = t.user_attrs.get("record")
        tr = TrialResult.from_record(t.number, dict(t.params), spec, record)
        if record is None:
            if t.user_attrs.get("interrupted"):
                tr.state = "interrupted"
                tr.reason = "the search stopped during this trial; its parameters are queued for the next run"
            else:  # queued for the next run (enqueue_trial), or running now
                tr.state = "queued" if t.state.name == "WAITING" else "running"
        out.append(tr)
    return out


def compute_front(
    trials: list[TrialResult], targets: list[str], objectives: list[str]
) -> dict[str, list[int]]:
    """Per target: the non-dominated trials among the complete ones feasible there (every one of them)."""
    front = {}
    for target in targets:
        points = []
        for t in trials:
            if not t.feasible(target):
                continue
            vals = values_for(t.targets[target], objectives)
            if vals is not None:
                points.append((t.number, vals))
        front[target] = pareto_front(points, objectives)
    return front


def build_document(
    study: Any, cfg: Any, plan: dict[str, Any], execution: dict[str, Any], timing: dict[str, Any]
) -> tuple[dict[str, Any], list[TrialResult], dict[str, list[int]]]:
    from edgec import __version__

    trials = collect_trials(study)
    front = compute_front(trials, plan["targets"], plan["objectives"])
    trial_s = sum(t.wall_s or 0.0 for t in trials)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "search",
        "edgec_version": __version__,
        "search": {
            "model": plan["model"],
            "model_kind": plan["kind"],
            "targets": plan["targets"],
            "objectives": plan["objectives"],
            "constraints": [str(c) for c in plan["constraints"]],
            "space": plan["space"].to_dict(),
            "sampler": cfg.sampler,
            "population": cfg.population,
            "fitness_weight": cfg.fitness_weight if cfg.sampler == "tpe" else None,
            "seed": cfg.seed,
            "trials": cfg.trials,
            "train": plan["train"],
            "data": cfg.data,
            "limit": cfg.limit,
            "epochs": cfg.epochs,
            "sensitivity": plan["sensitivity"].to_dict() if plan.get("sensitivity") else None,
        },
        "execution": execution,
        "timing": {**timing, "trials_compute_s": round(trial_s, 3)},
        "counts": {
            state: sum(1 for t in trials if t.state == state)
            for state in ("complete", "failed", "interrupted", "queued", "running")
        },
        "front": front,
        "references": (
            describe_references(
                plan["references"], plan["reference_records"], trials, front, plan.get("timesteps")
            )
            if plan.get("reference_records")
            else []
        ),
        "trials": [t.to_dict() for t in trials],
    }
    return doc, trials, front


def write_search_json(
    study: Any, out: Path, cfg: Any, plan: dict[str, Any], execution: dict[str, Any], timing: dict[str, Any]
) -> dict[str, Any]:
    doc, _, _ = build_document(study, cfg, plan, execution, timing)
    write_atomic(out / SEARCH_JSON, doc)
    return doc


def finish(
    study: Any, out: Path, cfg: Any, plan: dict[str, Any], execution: dict[str, Any], timing: dict[str, Any]
) -> SearchResult:
    """The end of a search: drop the artifacts of trials on no front (unless keep_all), write
    search.json, report.md and report.html, return the result."""
    from edgec.search.report import render_html, render_markdown

    doc, trials, front = build_document(study, cfg, plan, execution, timing)
    keep = {n for numbers in front.values() for n in numbers}
    if not cfg.keep_all:
        for t in trials:
            d = trial_dir(out, t.number)
            if t.number not in keep and d.is_dir() and d.parent == out / TRIALS_DIR:
                shutil.rmtree(d)  # a directory this search made for this trial
    for t in trials:
        if t.number not in keep and not cfg.keep_all:
            for row in t.targets.values():
                if "artifact" in row:
                    row["artifact"] = None  # removed above
    doc["trials"] = [t.to_dict() for t in trials]
    write_atomic(out / SEARCH_JSON, doc)
    (out / "report.md").write_text(render_markdown(doc))
    (out / "report.html").write_text(render_html(doc, marks(doc)))
    return SearchResult(
        path=out,
        trials=trials,
        front=front,
        targets=list(plan["targets"]),
        objectives=list(plan["objectives"]),
        timing=doc["timing"],
        document=doc,
    )
