"""Hand-picked recipes beside a search's trials: ``--reference RECIPE[;RECIPE...][@T]`` (repeatable).

A reference (e.g. the ``qp-snn:bits=4,prune=0.5`` row of a benchmark table) is measured by the same trial
code on the same executor after the search's trials (:func:`edgec.search.trial.run_trial`: compress with
the search's epochs, seed and data, compile for every target, deployed accuracy and energy), in
``OUT/trials/reference-N/`` (kept; a resumed search reuses a finished one with the same spec). It is no
Optuna trial: the sampler never sees it. search.json ``references`` holds each one's measurements, the
trials whose recipes and T equal it (``same_as``), and per target the front trials at least as good in
accuracy and energy (``matched_by``); report.md lists them and report.html draws them as crosses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgec.errors import UsageError
from edgec.search.trial import RESULT, SPEC, TRIALS_DIR


def parse_reference(text: str) -> dict[str, Any]:
    """``"qp-snn:bits=4,prune=0.5@8"`` -> label, recipes, timesteps; the recipes are parsed (usage error)."""
    from edgec.recipes import parse_recipes

    body, at, t = text.strip().rpartition("@") if "@" in text else (text.strip(), "", "")
    recipes = [r.strip() for r in body.split(";") if r.strip()]
    if not recipes:
        raise UsageError(f"--reference '{text}' names no recipe", hint="e.g. --reference qp-snn:bits=4@8")
    timesteps = None
    if at:
        if not t.strip().isdigit() or int(t) < 1:
            raise UsageError(
                f"--reference '{text}': time steps '{t}' is not a positive whole number",
                hint="write RECIPE[;RECIPE...][@T], e.g. qp-snn:bits=4,prune=0.5@8",
            )
        timesteps = int(t)
    try:
        parse_recipes(recipes)
    except UsageError as exc:
        raise UsageError(f"--reference '{text}': {exc.message}", hint=exc.hint) from None
    return {"label": text.strip(), "recipes": recipes, "timesteps": timesteps}


def _canonical(recipes: list[str]) -> list[tuple[str, str]]:
    """Recipes as (pass, typed options with defaults filled): ``prune=0`` equals ``prune=0.0``."""
    from edgec.recipes import parse_recipes

    return [(p.name, json.dumps(p.config(), sort_keys=True, default=str)) for p in parse_recipes(recipes)]


def reference_dir(out: Path, index: int) -> Path:
    return out / TRIALS_DIR / f"reference-{index}"


def run_references(
    executor: Any, out: Path, refs: list[dict[str, Any]], base_spec: dict[str, Any]
) -> list[dict[str, Any]]:
    """Measure every reference not measured yet (same spec) on ``executor``; the records, in order."""
    specs, records = [], {}
    for i, ref in enumerate(refs):
        d = reference_dir(out, i).resolve()
        spec = {
            **base_spec,
            "number": f"reference-{i}",
            "dir": str(d),
            "params": {},
            "recipes": ref["recipes"],
            "timesteps": ref["timesteps"],
        }
        if (d / RESULT).is_file() and (d / SPEC).is_file():
            old = json.loads((d / SPEC).read_text())
            if {k: v for k, v in old.items() if k != "threads"} == spec:
                records[i] = json.loads((d / RESULT).read_text())
                continue
        specs.append((i, spec))
    ran = executor.run_batch([s for _, s in specs]) if specs else []
    for (i, _), record in zip(specs, ran, strict=True):
        records[i] = record
    return [records[i] for i in range(len(refs))]


def describe_references(
    refs: list[dict[str, Any]],
    records: list[dict[str, Any]],
    trials: list[Any],
    front: dict[str, list[int]],
    model_timesteps: int | None = None,
) -> list[dict[str, Any]]:
    """search.json ``references``: each reference's measurements, the trials equal to it and, per target,
    the front trials at least as good in accuracy and energy."""
    by_number = {t.number: t for t in trials}
    out = []
    for ref, record in zip(refs, records, strict=True):
        key = _canonical(ref["recipes"])
        same = [
            t.number
            for t in trials
            if t.state == "complete"
            and (t.timesteps or model_timesteps) == (ref["timesteps"] or model_timesteps)
            and _canonical(t.recipes) == key
        ]
        matched: dict[str, list[int]] = {}
        for target, numbers in front.items():
            r = (record.get("targets") or {}).get(target) or {}
            if record.get("state") != "complete" or not r.get("feasible") or r.get("accuracy") is None:
                continue
            matched[target] = [
                n for n in numbers if _at_least_as_good(by_number[n].targets.get(target) or {}, r)
            ]
        out.append(
            {
                **ref,
                "state": record.get("state"),
                "reason": record.get("reason"),
                "wall_s": record.get("wall_s"),
                "targets": record.get("targets") or {},
                "same_as": same,
                "matched_by": matched,
            }
        )
    return out


def _at_least_as_good(trial: dict[str, Any], ref: dict[str, Any]) -> bool:
    a, e = trial.get("accuracy"), trial.get("energy_uj")
    if a is None or e is None or ref.get("energy_uj") is None:
        return False
    return bool(a >= ref["accuracy"] and e <= ref["energy_uj"])


def marks(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The references as crosses on each target's scatter (report.html)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for ref in doc.get("references") or []:
        for target, r in (ref.get("targets") or {}).items():
            if r.get("feasible") and r.get("accuracy") is not None and r.get("energy_uj"):
                out.setdefault(target, []).append(
                    {"label": ref["label"], "accuracy": r["accuracy"], "energy_uj": r["energy_uj"]}
                )
    return out
