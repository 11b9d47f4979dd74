"""Mutation testing of the modules whose bugs users would feel most, with cosmic-ray (not part of CI).

    nice -n 10 .venv/bin/python benchmarks/mutation.py --label after [--rev HEAD] [--sample 24] [--seed 0]
        [--module NAME ...] [--keep]

For each module in MODULES: clone ``--rev`` of this repository into a temporary folder, build there the
same ``edgec`` link tree the strict editable install builds (pyproject's package-dir, symlinks), so that
the files cosmic-ray mutates in place are the ones the tests import (``PYTHONPATH`` puts the link tree
before the installed one); ``cosmic-ray init`` lists every mutant of the module (optionally only those
inside the named functions), a seeded sample of ``--sample`` of them is kept (the rest are marked
skipped: a full run of ~3,000 mutants does not fit 2 shared cores), the module's test selection is run
once unmutated (it must pass; its time sets the per-mutant timeout), then ``cosmic-ray exec`` runs the
selection against each sampled mutant (``pytest -x``: the first failing test kills it).

Results: ``benchmarks/results/mutation.json`` keeps every labelled run (score per module, the commit,
the sample and seed, every survivor with its diff); ``benchmarks/results/mutation.md`` is rendered from
it (before / after side by side, survivors listed). The one-by-one look at the survivors (real bug ->
test added, or why it is equivalent) is written by hand in benchmarks/results/mutation-survivors.md.

Needs cosmic-ray (``.venv/bin/pip install -c constraints.txt cosmic-ray``; the ``mutation`` extra).
"""

from __future__ import annotations

import argparse
import ast
import fcntl
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Module:
    name: str
    path: str  # the file mutated, relative to the repository root
    functions: tuple[str, ...]  # only mutants inside these functions / classes (empty: the whole file)
    tests: tuple[str, ...]  # the pytest selection that covers it (node ids or files, then -k if any)
    keyword: str = ""


# The per-module test selection keeps a mutant's run to seconds; it must cover the module (a test that
# covers it but is left out here only makes the score pessimistic, never optimistic).
SURVIVORS = "tests/test_mutation_survivors.py"  # tests written for earlier survivors (filtered by -k too)
PROMISES = "tests/test_readme_promises.py"
MODULES = [
    Module(
        "energy counting",
        "toolchain/energy/counter.py",
        (),
        ("tests/test_energy_counts.py", SURVIVORS),
        "not vit",
    ),
    Module("energy activity", "toolchain/energy/activity.py", (), ("tests/test_energy_sops.py", SURVIVORS)),
    Module("energy gate", "toolchain/energy/gate.py", (), ("tests/test_report.py", SURVIVORS), "gate"),
    Module(
        "artifact writing + source check",
        "toolchain/artifact.py",
        (),
        ("tests/test_bad_input.py", "tests/test_loading.py", "tests/test_smoke.py", SURVIVORS),
    ),
    Module(
        "loading",
        "toolchain/loading.py",
        (),
        (
            "tests/test_loading.py",
            "tests/test_bad_input.py",
            f"{PROMISES}::test_verify_works_after_the_original_model_moved",
            f"{SURVIVORS}::test_a_trusted_pickle_whose_class_cannot_be_imported_names_the_module",
            f"{SURVIVORS}::test_dropout_exported_in_eval_mode_compiles_and_in_training_mode_is_refused",
        ),
    ),
    Module(
        "verify comparison",
        "toolchain/target.py",
        ("compare_outputs",),
        ("tests/test_loading.py", "tests/test_smoke.py", "tests/test_cli.py", PROMISES, SURVIVORS),
        "verify or accurate or outputs",
    ),
    Module(
        "loihi lowering",
        "targets/loihi/lowering.py",
        (),
        ("tests/test_loihi.py", SURVIVORS),
        "weight or grid or lower or pruned or quantization or within or threshold",
    ),
    Module(
        "loihi emulator",
        "targets/loihi/emulator.py",
        (),
        ("tests/test_loihi.py", SURVIVORS),
        "emulat or kernel or netx or convolution or batch or wrap",
    ),
    Module(
        "cpu session",
        "targets/cpu/__init__.py",
        ("session",),
        (
            "tests/test_smoke.py",
            "tests/test_loading.py",
            "tests/test_cli.py",
            "tests/test_cpu_backends.py",  # since the OpenVINO backend (77d9cb1)
            PROMISES,
            SURVIVORS,
        ),
        "run or matches or verify or bench",
    ),
    # moved into toolchain/target.py after the "after" run: how verify compares a spiking network's outputs
    Module(
        "verify spike comparison",
        "toolchain/target.py",
        ("compare_spikes",),
        (
            "tests/test_nir_in.py::test_nir_graph_compiles_for_the_cpu_and_computes_the_nir_equations",
            "tests/test_loihi.py::test_cli_compile_run_and_verify",
            SURVIVORS,
        ),
    ),
    # since 77d9cb1 (OpenVINO beside ONNX Runtime) `session` above only picks the runtime: what runs the
    # artifact on any batch (a fixed-batch graph in pieces) and checks the input is here
    Module(
        "cpu session runner",
        "targets/cpu/session.py",
        (),
        (
            "tests/test_cpu_models.py",
            "tests/test_smoke.py",
            "tests/test_cli.py",
            "tests/test_cpu_backends.py",
            PROMISES,
            SURVIVORS,
        ),
        "stft or batch1 or fixed_batch or matches or verify or bench or shape or outputs",
    ),
]


def _link_tree(repo: Path, dest: Path) -> None:
    """pyproject's package-dir as symlinks (what setuptools' strict editable install builds)."""
    tool = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = tool["package-dir"]
    for package in tool["packages"]:
        parent = max((p for p in mapping if package == p or package.startswith(p + ".")), key=len)
        src = repo / mapping[parent] / Path(*package.split(".")[len(parent.split(".")) :])
        out = dest / Path(*package.split("."))
        out.mkdir(parents=True, exist_ok=True)
        for entry in src.iterdir():
            if entry.name == "__pycache__" or (entry.is_dir() and (entry / "__init__.py").exists()):
                continue
            (out / entry.name).symlink_to(entry)


def _function_lines(path: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    tree = ast.parse(path.read_text())
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name in names:
            spans.append((node.lineno, node.end_lineno or node.lineno))
    if not spans:
        raise SystemExit(f"{path}: none of {names} found")
    return spans


def _sample(
    db_path: Path,
    module_file: Path,
    functions: tuple[str, ...],
    n: int,
    seed: int,
    only: set[tuple[str, int]] | None = None,
) -> tuple[int, int]:
    """Keep a seeded sample of ``n`` mutants (inside ``functions`` if given); mark the rest skipped.
    ``only``: of the sample, run only these (operator, line) mutants (the survivors of an earlier run)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = _function_lines(module_file, functions) if functions else None
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        items = sorted(db.pending_work_items, key=lambda w: w.job_id)
        eligible = [
            w for w in items if spans is None or any(a <= w.mutations[0].start_pos[0] <= b for a, b in spans)
        ]
        # order by what the mutant is, not by its random job id, so a seed picks the same mutants again
        eligible.sort(
            key=lambda w: (w.mutations[0].start_pos, w.mutations[0].operator_name, w.mutations[0].occurrence)
        )
        chosen = random.Random(seed).sample(eligible, min(n, len(eligible)))
        if only is not None:
            chosen = eligible
            chosen = [
                w for w in chosen if (w.mutations[0].operator_name, w.mutations[0].start_pos[0]) in only
            ]
        keep = {w.job_id for w in chosen}
        for w in items:
            if w.job_id not in keep:
                db.set_result(
                    w.job_id, WorkResult(output="not sampled", worker_outcome=WorkerOutcome.SKIPPED)
                )
    return len(eligible), len(keep)


def _annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where annotations are, if the module never evaluates them (``from __future__ import annotations``)."""
    tree = ast.parse(source)
    lazy = any(
        isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    if not lazy:
        return []
    nodes: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            nodes.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            nodes.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            nodes.append(node.annotation)
    return [((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0)) for a in nodes]


def equivalent_reason(source: str, line: int, diff: str) -> str | None:
    """A survivor that is equivalent by construction: a mutated annotation that is never evaluated."""
    removed = [ln[1:] for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    added = [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    if len(removed) != 1 or len(added) != 1:
        return None
    a, b = removed[0], added[0]
    col = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    for start, end in _annotation_spans(source):
        if start <= (line, col) < end:
            return "annotation (never evaluated: from __future__ import annotations)"
    return None


def _change(diff: str) -> tuple[str, str]:
    """(removed line, added line) of a one-line mutant's diff, whitespace-stripped."""
    removed = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    added = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return " / ".join(removed), " / ".join(added)


def _results(db_path: Path, wanted: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Outcomes of the mutants run; ``wanted``: count only mutants making one of these changes."""
    from cosmic_ray.work_db import WorkDB, use_db

    killed = survived = incompetent = timeouts = 0
    survivors = []
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == "skipped":
                continue
            if wanted is not None and _change(result.diff or "") not in wanted:
                continue
            if result.worker_outcome != "normal" or result.test_outcome == "incompetent":
                incompetent += 1
                continue
            if result.test_outcome == "killed":
                killed += 1
                timeouts += result.output == "timeout"
            else:
                survived += 1
                m = item.mutations[0]
                survivors.append({"line": m.start_pos[0], "operator": m.operator_name, "diff": result.diff})
    return {
        "killed": killed,
        "survived": survived,
        "incompetent": incompetent,
        "timeouts": timeouts,
        "survivors": sorted(survivors, key=lambda s: s["line"]),
    }


def classify(res: dict[str, Any], source: str) -> dict[str, Any]:
    """Mark survivors equivalent by construction; score = killed / (killed + non-equivalent survivors)."""
    for s in res["survivors"]:
        s["equivalent"] = equivalent_reason(source, s["line"], s["diff"])
    equivalent = sum(1 for s in res["survivors"] if s["equivalent"])
    killed = res["killed"] + res.get("carried_killed", 0)
    run = killed + res["survived"] - equivalent
    res["equivalent"] = equivalent
    res["score"] = round(killed / run, 3) if run else None
    return res


def run_module(
    mod: Module,
    repo: Path,
    env: dict[str, str],
    work: Path,
    n: int,
    seed: int,
    earlier: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One module. ``earlier``: that module's result of an earlier run on the same source and sample:
    only its survivors run again, its killed mutants are carried (tests were only added since)."""
    tests = [t for t in mod.tests if (repo / t.split("::")[0]).exists()]
    # the tests written for survivors first: a mutant they kill fails fast (-x)
    tests.sort(key=lambda t: t.split("::")[0] not in (SURVIVORS, PROMISES))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    if mod.keyword:
        cmd += ["-k", mod.keyword]
    t0 = time.perf_counter()
    base = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=1800)
    baseline_s = time.perf_counter() - t0
    if base.returncode != 0:
        print(f"[{mod.name}] the unmutated tests fail, module skipped:\n{base.stdout[-3000:]}", flush=True)
        return {
            "error": "unmutated tests fail",
            "module": mod.path,
            "functions": list(mod.functions),
            "tests": " ".join(tests),
            "mutants": 0,
            "baseline_s": round(baseline_s, 1),
            "survivors": [],
        }
    timeout = max(60.0, 3 * baseline_s)
    slug = mod.path.replace("/", "_").removesuffix(".py")
    config = work / f"{slug}.toml"
    test_command = " ".join(f'"{c}"' if " " in c else c for c in cmd)
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{repo / mod.path}"\n'
        f"timeout = {timeout:.0f}\n"
        "excluded-modules = []\n"
        f"test-command = '''{test_command}'''\n"
        '[cosmic-ray.distributor]\nname = "local"\n'
    )
    db = work / f"{slug}.sqlite"
    subprocess.run(["cosmic-ray", "init", str(config), str(db), "--force"], cwd=repo, env=env, check=True)
    only = wanted = None
    gone = 0
    if earlier is not None:
        # the earlier run's survivors that are not equivalent, found again by their line's text (the
        # file may have changed around them); a survivor whose line is gone is dropped
        lines = [ln.strip() for ln in (repo / mod.path).read_text().splitlines()]
        only, wanted = set(), set()
        for x in earlier["survivors"]:
            if x.get("equivalent"):
                continue
            before, after = _change(x["diff"])
            found = [i + 1 for i, ln in enumerate(lines) if ln == before]
            gone += not found
            only |= {(x["operator"], i) for i in found}
            wanted.add((before, after))
    total, kept = _sample(db, repo / mod.path, mod.functions, n, seed, only)
    print(f"[{mod.name}] {total} mutants, {kept} sampled, tests {baseline_s:.0f} s unmutated", flush=True)
    t0 = time.perf_counter()
    subprocess.run(["cosmic-ray", "exec", str(config), str(db)], cwd=repo, env=env, check=True)
    res = _results(db, wanted)
    if earlier is not None:
        res["carried_killed"] = earlier["killed"] + earlier.get("carried_killed", 0)
        res["gone"] = gone
        res["equivalent_before"] = sum(1 for x in earlier["survivors"] if x.get("equivalent"))
        kept = earlier["sampled"]
    classify(res, (repo / mod.path).read_text())
    res.update(
        module=mod.path,
        functions=list(mod.functions),
        tests=" ".join(tests) + (f" -k '{mod.keyword}'" if mod.keyword else ""),
        mutants=total,
        sampled=kept,
        baseline_s=round(baseline_s, 1),
        wall_s=round(time.perf_counter() - t0),
    )
    print(
        f"[{mod.name}] score {res['score']} ({res['killed']} killed, {res['survived']} survived)", flush=True
    )
    return res


def _reclassify(runs: dict[str, Any]) -> None:
    """Results written before equivalence was classified: classify them from the commit's source."""
    for r in runs.values():
        for m in r["modules"].values():
            if "error" in m or ("equivalent" in m and all("equivalent" in x for x in m["survivors"])):
                continue
            source = subprocess.run(
                ["git", "show", f"{r['commit']}:{m['module']}"], cwd=ROOT, capture_output=True, text=True
            ).stdout
            classify(m, source)


def _survivor_line(name: str, s: dict[str, Any]) -> str:
    diff = [ln for ln in s["diff"].splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    text = " / ".join(ln.strip() for ln in diff).replace("`", "'")
    note = f" *equivalent: {s['equivalent']}*" if s.get("equivalent") else ""
    return f"- {name}, line {s['line']} ({s['operator'].split('/')[-1]}): `{text}`{note}"


def render(runs: dict[str, Any]) -> str:
    _reclassify(runs)
    labels = list(runs)
    lines = [
        "# Mutation score per module",
        "",
        "Written by `benchmarks/mutation.py` (cosmic-ray 8.7 in a clone of the named commit; command,",
        "sample and seed below). Each module's mutants are listed by `cosmic-ray init`; a seeded sample is",
        "run against the module's test selection (`pytest -x`: the first failing test kills a mutant).",
        "Score = killed / (killed + survivors not equivalent by construction); a mutated annotation in a",
        "module with `from __future__ import annotations` is never evaluated and is counted as",
        "equivalent (listed below). A sample of n gives the score to about +-1/sqrt(n). Where a module's",
        "source did not change between two runs, the later run reruns only the earlier survivors (tests",
        "were only added: the earlier killed stay killed). The look at each survivor, one by one:",
        "[mutation-survivors.md](mutation-survivors.md).",
        "",
    ]
    for label in labels:
        r = runs[label]
        for command in r.get("commands", [r["command"]]):
            lines.append(f"- **{label}**: commit `{r['commit']}`{r.get('commit_note', '')}, `{command}`")
    head = " | ".join(f"{lb}: killed / scored (score)" for lb in labels)
    lines += ["", f"| module | mutants | {head} |", "|---|---:|" + "---:|" * len(labels)]
    names = list(dict.fromkeys(n for r in runs.values() for n in r["modules"]))
    for name in names:
        first = next(r["modules"][name] for r in runs.values() if name in r["modules"])
        where = first["module"] + (f" ({', '.join(first['functions'])})" if first["functions"] else "")
        row = [f"{name}: `{where}`", str(first["mutants"])]
        for label in labels:
            m = runs[label]["modules"].get(name)
            if m is None or "error" in m:
                row.append("-" if m is None else m["error"])
                continue
            killed = m["killed"] + m.get("carried_killed", 0)
            scored = killed + m["survived"] - m["equivalent"]
            equivalent = m["equivalent"] + m.get("equivalent_before", 0)
            extra = [f"{equivalent} equivalent"] if equivalent else []
            # a fresh sample of code changed since the first run: its own count of the module's mutants
            fresh = not m.get("rerun_of") and m["mutants"] != first["mutants"]
            extra += [f"of {m['mutants']} mutants"] if fresh else []
            extra += [f"{m['gone']} line gone"] if m.get("gone") else []
            extra += [f"{m['incompetent']} incompetent"] if m["incompetent"] else []
            extra += [f"{m['carried_killed']} carried"] if m.get("carried_killed") else []
            note = f" [{', '.join(extra)}]" if extra else ""
            row.append(f"{killed} / {scored} ({m['score']:.0%}){note}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Test selection per module (the latest run of each)", ""]
    latest = {n: m for r in runs.values() for n, m in r["modules"].items()}
    for name, m in latest.items():
        lines.append(f"- {name}: `{m['tests']}` ({m['baseline_s']} s unmutated)")
    for label in labels:
        lines += ["", f"## Survivors, {label}", ""]
        for name, m in runs[label]["modules"].items():
            lines += [_survivor_line(name, x) for x in m["survivors"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", required=True, help="name of this run in the results (e.g. before, after)")
    ap.add_argument("--rev", default="HEAD", help="commit to test (cloned; the work tree is never mutated)")
    ap.add_argument("--sample", type=int, default=24, help="mutants per module (seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--module", action="append", help="only these modules (names as in MODULES)")
    ap.add_argument("--keep", action="store_true", help="keep the clone and the cosmic-ray databases")
    ap.add_argument(
        "--rerun-survivors-of",
        metavar="LABEL",
        help="rerun only the survivors of run LABEL (found by their line's text), carry its killed",
    )
    ap.add_argument("--render-only", action="store_true", help="rewrite mutation.md from mutation.json")
    args = ap.parse_args()
    if args.render_only:
        runs = json.loads((RESULTS / "mutation.json").read_text())
        (RESULTS / "mutation.md").write_text(render(runs))
        return
    if shutil.which("cosmic-ray") is None and not (Path(sys.executable).parent / "cosmic-ray").exists():
        raise SystemExit("cosmic-ray is not installed: .venv/bin/pip install -c constraints.txt cosmic-ray")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", args.rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="edgec-mutation-"))
    repo = work / "repo"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(repo)], check=True)
    subprocess.run(["git", "checkout", "-q", commit], cwd=repo, check=True)
    _link_tree(repo, work / "link")
    env = {
        **os.environ,
        "PYTHONPATH": str(work / "link"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "EDGEC_CACHE": str(work / "cache"),
    }
    check = subprocess.run(
        [sys.executable, "-c", "import edgec; print(edgec.__file__)"], env=env, capture_output=True, text=True
    )
    if not check.stdout.startswith(str(work / "link")):
        raise SystemExit(f"edgec is not imported from the clone: {check.stdout}{check.stderr}")
    chosen = [m for m in MODULES if not args.module or m.name in args.module]
    command = "nice -n 10 .venv/bin/python benchmarks/mutation.py " + shlex.join(sys.argv[1:])
    out = RESULTS / "mutation.json"
    try:
        for mod in chosen:
            earlier = None
            if args.rerun_survivors_of:
                prev = json.loads(out.read_text())[args.rerun_survivors_of]
                _reclassify({args.rerun_survivors_of: prev})
                earlier = prev["modules"].get(mod.name)
            res = run_module(mod, repo, env, work, args.sample, args.seed, earlier)
            res["rerun_of"] = args.rerun_survivors_of if earlier is not None else None
            RESULTS.mkdir(parents=True, exist_ok=True)
            with open(RESULTS / ".mutation.lock", "w") as lock:  # several runs may share the results
                fcntl.flock(lock, fcntl.LOCK_EX)
                runs = json.loads(out.read_text()) if out.exists() else {}
                entry = runs.setdefault(args.label, {"commit": commit, "command": command, "modules": {}})
                entry.update(commit=commit, command=command, sample=args.sample, seed=args.seed)
                entry.setdefault("commands", [])
                if command not in entry["commands"]:
                    entry["commands"].append(command)
                entry["modules"][mod.name] = res
                out.write_text(json.dumps(runs, indent=1) + "\n")
                (RESULTS / "mutation.md").write_text(render(runs))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
