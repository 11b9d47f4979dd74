"""The search driver: Optuna ask / tell over batches of trials, the study in Optuna storage.

Why ask / tell with our own executors rather than Ray Tune: one code path runs sequentially, with
``--workers K`` and on Ray (only :mod:`edgec.search.execute` differs), and the Optuna storage is the single
source of truth for resuming (Tune keeps its own trial bookkeeping and result directories beside it).

The loop, until ``trials`` trials are finished (complete or failed; an interrupted one does not count):

1. ask the sampler for a batch of ``population`` trials (fewer at the end) with the space's fixed
   distributions; record their parameters before anything runs;
2. run the batch on the executor (records come back in batch order);
3. tell the sampler in trial-number order: the first target's objective values (or, for ``tpe``, the
   fitness of :mod:`edgec.search.objectives`), the constraints' violations; a failed trial or one its first
   target refuses is told as failed; every record is stored as the trial's user attribute ``record``;
4. write ``search.json`` (atomically).

Asking in fixed batches and telling in trial order makes the sampler see the same history whatever the
number of workers, so the same seed and space give the same trials. A driver killed mid-batch leaves trials
RUNNING in storage: the next run with the same OUT tells those whose worker finished (``result.json`` in
the trial directory) and re-queues the rest with the same parameters (``enqueue_trial``), so no finished
trial runs twice.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgec.config import SearchOptions
from edgec.errors import UsageError
from edgec.options import build, merge, takes
from edgec.search.objectives import Constraint, fitness, parse_constraint, parse_objectives, values_for
from edgec.search.references import parse_reference, run_references
from edgec.search.result import SearchResult, TrialResult, finish, write_search_json
from edgec.search.space import Space, load_space
from edgec.search.trial import RESULT, TRIALS_DIR, trial_dir

log = logging.getLogger(__name__)

STUDY_NAME = "edgec-search"
STUDY_DB = "study.db"
#: files an OUT of edgec search may hold (anything else there: not ours, refused)
OUR_FILES = {STUDY_DB, TRIALS_DIR, "search.json", "report.md", "report.html"}


@takes(SearchOptions)
def search(
    model: str | Path,
    *,
    out: str | Path,
    config: SearchOptions | None = None,
    on_trial: Callable[[TrialResult], None] | None = None,
    **options: Any,
) -> SearchResult:
    """Search compression recipes x targets for the accuracy x energy Pareto front (module docstring).

    ``model`` is a file path, ``zoo:NAME`` or a compressed program directory: it travels to the workers
    by name. ``on_trial`` is called with each finished trial (the CLI's live table). Writes OUT:
    ``study.db`` (the Optuna study), ``trials/trial-NNNN/`` (the front's artifacts), ``search.json``,
    ``report.md``, ``report.html``. Rerun with the same OUT to resume."""
    cfg = merge(config, options) if config is not None else build(SearchOptions, options)
    if not isinstance(model, (str, Path)):
        raise UsageError(
            "edgec.search takes a model by path or zoo name (it travels to the workers)",
            hint="save it first: edgec.compress(..., out=DIR) or torch.export.save(...)",
        )
    plan = _plan(str(model), cfg)
    out_dir = Path(out)
    executor = _executor(cfg)  # a --ray address that does not answer fails here, before OUT is touched
    created = _prepare_out(out_dir)
    try:
        study = _open_study(out_dir, cfg, plan)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        executor.close()
        raise
    try:
        return _loop(study, executor, out_dir, cfg, plan, on_trial)
    finally:
        executor.close()


def _plan(model: str, cfg: SearchOptions) -> dict[str, Any]:
    """Everything checked before anything runs: targets, objectives, constraints, the space, the data."""
    from edgec.loading import load_program
    from edgec.target import get_target

    names = [t.strip() for t in (cfg.target or "").split(",") if t.strip()]
    if not names:
        raise UsageError("name the target(s) to deploy to", hint="e.g. --target loihi or --target loihi,cpu")
    if len(set(names)) != len(names):
        raise UsageError(f"--target names a target twice: {cfg.target}")
    targets = []
    for n in names:  # TARGET or TARGET:PRECISION (cpu:int8): the precision every trial compiles at
        name, _, quantize = n.partition(":")
        tgt = get_target(name)
        if quantize:
            tgt.require_precision(quantize)
        targets.append(tgt)
    objectives = parse_objectives(cfg.objectives)
    if "energy_uj" in objectives and not any(t.cost_tables for t in targets):
        raise UsageError(
            f"objective 'energy' cannot be priced: no chosen target ({', '.join(names)}) "
            "has an energy cost table",
            hint="drop it from --objectives or add a target with one (`edgec targets`)",
        )
    constraints = [parse_constraint(c) for c in cfg.constraint]
    references = [parse_reference(r) for r in cfg.reference]
    program = load_program(model, arch=cfg.arch, trust_pickle=cfg.trust_pickle)
    space = load_space(cfg.space, program.kind)
    train = cfg.train_data or program.metadata.get("dataset")
    if train is None:
        raise UsageError(
            "every trial fine-tunes the model and needs labelled training data",
            hint="pass --train-data SRC (e.g. builtin:digits, or an .npz with x and y)",
        )
    sensitivity = None
    if space.has("wide"):
        space, sensitivity = _rank_groups(program, space, train, cfg)
    return {
        "model": model,
        "kind": program.kind,
        "targets": names,
        "objectives": objectives,
        "constraints": constraints,
        "space": space,
        "train": train,
        "sensitivity": sensitivity,
        "references": references,
        "timesteps": program.timesteps if program.kind == "snn" else None,
    }


def _rank_groups(program: Any, space: Space, train: str, cfg: SearchOptions) -> tuple[Space, Any]:
    """The space's ``wide`` values checked against the model's layer groups, then the groups ranked once
    (:mod:`edgec.search.sensitivity`) at the space's lowest ``bits`` (4 if it has none)."""
    import dataclasses

    from edgec.search.sensitivity import check_wide, compressible_groups, rank_groups

    dim = next(d for d in space.dims if d.name == "wide")
    groups = compressible_groups(program.module)
    values: list[Any] = list(dim.choices) if dim.choices else [dim.low, dim.high]
    check_wide(values, groups, f"space '{space.name}'")
    bits_dim = next((d for d in space.dims if d.name == "bits"), None)
    widths = [] if bits_dim is None else list(bits_dim.choices) or [bits_dim.low]
    ints = [int(b) for b in widths if isinstance(b, (int, float)) and not isinstance(b, bool)]
    bits = min(ints) if ints else 4
    from edgec.data import open_dataset
    from edgec.tasks import task_for

    data = open_dataset(
        train, purpose="calibration", input_shape=program.input_shape, images=cfg.image_options()
    )
    x, _ = task_for(program).prepare(data, program.input_shape, "calibration")
    sens = rank_groups(program, x, bits=bits, seed=cfg.seed, device=cfg.device)
    log.info("layer groups by sensitivity: %s", sens.groups)
    return dataclasses.replace(space, ranking=sens.ranking), sens


def _executor(cfg: SearchOptions) -> Any:
    from edgec.search.execute import LocalExecutor, RayExecutor

    if cfg.ray is not None:
        return RayExecutor(cfg.ray, workers=cfg.workers, num_cpus=cfg.trial_cpus, num_gpus=cfg.trial_gpus)
    return LocalExecutor(cfg.workers, threads=max(1, round(cfg.trial_cpus)))


def _prepare_out(out: Path) -> bool:
    """OUT is new (created: True), empty, or an earlier search's (resumed); anything else is refused."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output '{out}' is a file", hint="give a directory with -o")
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir() if p.name not in OUR_FILES)
        if others:
            raise UsageError(
                f"output directory '{out}' holds files edgec search did not write ({', '.join(others[:4])})",
                hint="give a new or empty directory with -o (the same OUT resumes an earlier search)",
            )
        return False
    out.mkdir(parents=True)
    return True


def _study_key(cfg: SearchOptions, plan: dict[str, Any]) -> dict[str, Any]:
    """What a resumed study must share with the one in storage."""
    return {
        "model": plan["model"],
        "targets": plan["targets"],
        "objectives": plan["objectives"],
        "space": plan["space"].to_dict(),
        "sampler": cfg.sampler,
        "train": plan["train"],
        "epochs": cfg.epochs,
        **({"sensitivity": list(plan["space"].ranking)} if plan.get("sensitivity") else {}),
    }


def _sampler(cfg: SearchOptions) -> Any:
    """Constraints reach the samplers through ``Trial.set_constraint`` (see :func:`_tell`)."""
    import optuna

    if cfg.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.population)
    return optuna.samplers.NSGAIISampler(seed=cfg.seed, population_size=cfg.population)


def _open_study(out: Path, cfg: SearchOptions, plan: dict[str, Any]) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = cfg.storage or f"sqlite:///{(out / STUDY_DB).resolve()}"
    directions: list[Any] = (
        ["maximize"]
        if cfg.sampler == "tpe"
        else [{"accuracy": "maximize"}.get(o, "minimize") for o in plan["objectives"]]
    )
    try:
        storage = optuna.storages.RDBStorage(url)
    except Exception as exc:
        from edgec.errors import first_line

        raise UsageError(
            f"cannot open the study storage '{url}': {first_line(exc)}",
            hint="give a database URL Optuna can open (sqlite:///path.db, postgresql://...) "
            "or leave --storage out",
        ) from None
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        sampler=_sampler(cfg),
        directions=directions,
        load_if_exists=True,
    )
    key = _study_key(cfg, plan)
    stored = study.user_attrs.get("edgec_search")
    if stored is None:
        study.set_user_attr("edgec_search", key)
    elif stored != key:
        diff = sorted(k for k in key if stored.get(k) != key[k])
        raise UsageError(
            f"the study in '{url}' is a different search (differs in: {', '.join(diff)})",
            hint="resume with the same model, targets, objectives, space, sampler and epochs, "
            "or use a new -o",
        )
    return study


def _recover(study: Any, out: Path, cfg: SearchOptions, plan: dict[str, Any]) -> None:
    """Trials a killed driver left RUNNING: told from their result.json if their worker finished, else
    failed as interrupted and their parameters re-queued."""
    from optuna.trial import Trial, TrialState

    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # a live handle on the stored trial (Optuna hands out Trial objects only from ask())
        t = Trial(study, frozen._trial_id)
        result = trial_dir(out, t.number) / RESULT
        record = json.loads(result.read_text()) if result.is_file() else None
        if record is not None:
            record.setdefault("attempts", 1)
            _tell(study, t, record, cfg, plan)
        else:
            _interrupt(study, [t])


def _interrupt(study: Any, trials: list[Any]) -> None:
    """Trials stopped mid-run: failed as interrupted, their parameters queued for the next run."""
    from optuna.trial import TrialState

    for t in trials:
        t.set_user_attr("interrupted", True)
        study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(dict(t.params), skip_if_exists=False)


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
    return sum(1 for t in done if "record" in t.user_attrs)


def _spec(
    out: Path, number: int, params: dict[str, Any], cfg: SearchOptions, plan: dict[str, Any]
) -> dict[str, Any]:
    space: Space = plan["space"]
    return {
        "number": number,
        "dir": str(trial_dir(out, number).resolve()),
        "model": plan["model"],
        "arch": cfg.arch,
        "trust_pickle": cfg.trust_pickle,
        "params": params,
        "recipes": space.recipes_for(params),
        "timesteps": space.timesteps_for(params),
        **_common_spec(cfg, plan),
    }


def _common_spec(cfg: SearchOptions, plan: dict[str, Any]) -> dict[str, Any]:
    """What every trial (and every --reference) of the search shares."""
    return {
        "model": plan["model"],
        "arch": cfg.arch,
        "trust_pickle": cfg.trust_pickle,
        "train": plan["train"],
        "data": cfg.data,
        "limit": cfg.limit,
        "targets": plan["targets"],
        "epochs": cfg.epochs,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "device": cfg.device,
        "validation": cfg.validation,
        "seed": cfg.seed,
        "image_resize": cfg.image_resize,
        "image_normalize": cfg.image_normalize,
    }


def _apply_constraints(record: dict[str, Any], constraints: list[Constraint]) -> None:
    """A target's metrics past a constraint make the trial infeasible there, with the reason."""
    for row in (record.get("targets") or {}).values():
        if not row.get("feasible"):
            continue
        broken = [c for c in constraints if not c.holds(row.get(c.metric))]
        if broken:
            row["feasible"] = False
            row["reason"] = "constraint " + ", ".join(f"{c} (got {row.get(c.metric)})" for c in broken)


def _tell(study: Any, trial: Any, record: dict[str, Any], cfg: SearchOptions, plan: dict[str, Any]) -> None:
    """Store the record on the trial, set its constraints, and tell the sampler (see the module docstring)."""
    from optuna.trial import TrialState

    values = None
    if record.get("state") == "complete":
        _apply_constraints(record, plan["constraints"])
        first = (record.get("targets") or {}).get(plan["targets"][0], {})
        if first.get("accuracy") is not None:  # refused only by a constraint: the sampler still learns
            metrics = {**first}
            if plan["constraints"]:
                for c in plan["constraints"]:
                    trial.set_constraint(str(c), c.violation(metrics.get(c.metric)))
            if cfg.sampler == "tpe":
                if metrics.get("energy_uj"):
                    values = [fitness(metrics["accuracy"], metrics["energy_uj"], cfg.fitness_weight)]
            else:
                values = values_for(metrics, plan["objectives"])
    trial.set_user_attr("record", record)
    if values is not None:
        study.tell(trial, values, skip_if_finished=True)
    else:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _loop(
    study: Any,
    executor: Any,
    out: Path,
    cfg: SearchOptions,
    plan: dict[str, Any],
    on_trial: Callable[[TrialResult], None] | None,
) -> SearchResult:
    started = time.perf_counter()
    overhead = 0.0
    waited = 0.0
    t0 = time.perf_counter()
    _recover(study, out, cfg, plan)
    (out / TRIALS_DIR).mkdir(exist_ok=True)
    distributions = plan["space"].distributions()
    overhead += time.perf_counter() - t0
    while True:
        t0 = time.perf_counter()
        remaining = cfg.trials - _finished(study)
        if remaining <= 0:
            break
        asked = [study.ask(distributions) for _ in range(min(cfg.population, remaining))]
        specs = [_spec(out, t.number, dict(t.params), cfg, plan) for t in asked]
        for t, s in zip(asked, specs, strict=True):
            t.set_user_attr("spec", {k: s[k] for k in ("recipes", "timesteps", "seed")})
        overhead += time.perf_counter() - t0

        t1 = time.perf_counter()
        try:
            records = _run_unique(study, executor, specs, _reporter(specs, on_trial))
        except KeyboardInterrupt:  # Ctrl-C: the workers are stopped, finished trials told, the rest re-queued
            _recover(study, out, cfg, plan)
            write_search_json(study, out, cfg, plan, executor.describe(), _timing(started, overhead, waited))
            raise
        waited += time.perf_counter() - t1
        t0 = time.perf_counter()
        for t, record in zip(asked, records, strict=True):
            _tell(study, t, record, cfg, plan)
        write_search_json(study, out, cfg, plan, executor.describe(), _timing(started, overhead, waited))
        overhead += time.perf_counter() - t0
    if plan["references"]:  # hand-picked recipes, by the same trial code, after the trials
        t1 = time.perf_counter()
        try:
            plan["reference_records"] = run_references(
                executor, out, plan["references"], _common_spec(cfg, plan)
            )
        except KeyboardInterrupt:
            write_search_json(study, out, cfg, plan, executor.describe(), _timing(started, overhead, waited))
            raise
        waited += time.perf_counter() - t1
    return finish(study, out, cfg, plan, executor.describe(), _timing(started, overhead, waited))


def _reporter(
    specs: list[dict[str, Any]], on_trial: Callable[[TrialResult], None] | None
) -> Callable[[int, dict[str, Any]], None]:
    def done(i: int, record: dict[str, Any]) -> None:
        if on_trial is not None:
            s = specs[i]
            on_trial(TrialResult.from_record(s["number"], s["params"], s, record))

    return done


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _run_unique(study: Any, executor: Any, specs: list[dict[str, Any]], done: Any) -> list[dict[str, Any]]:
    """Run the batch's trials whose parameters no complete trial had (same seed and options: the same
    result); the others take the record of that trial, marked ``reused_from``. Samplers propose a
    point twice, more so in small categorical spaces."""
    from optuna.trial import TrialState

    seen: dict[str, int] = {}
    records: dict[int, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        rec = t.user_attrs.get("record")
        if rec is not None and rec.get("state") == "complete" and "reused_from" not in rec:
            seen.setdefault(_key(t.params), t.number)
            records[t.number] = rec
    unique = []
    first_in_batch: dict[str, int] = {}
    for i, s in enumerate(specs):
        k = _key(s["params"])
        if k not in seen and k not in first_in_batch:
            first_in_batch[k] = i
            unique.append(i)
    ran = executor.run_batch([specs[i] for i in unique], lambda j, r: done(unique[j], r))
    by_index = dict(zip(unique, ran, strict=True))
    out = []
    for i, s in enumerate(specs):
        if i in by_index:
            out.append(by_index[i])
            continue
        k = _key(s["params"])
        source_number = seen.get(k)
        rec = records[source_number] if source_number is not None else by_index[first_in_batch[k]]
        if source_number is None:
            source_number = specs[first_in_batch[k]]["number"]
        reused = {**json.loads(json.dumps(rec)), "reused_from": source_number, "wall_s": 0.0, "attempts": 0}
        out.append(reused)
        done(i, reused)
    return out


def _timing(started: float, overhead: float, waited: float) -> dict[str, Any]:
    wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 3),
        "overhead_s": round(overhead, 3),
        "trials_wall_s": round(waited, 3),
        "overhead_share": round(overhead / wall, 5) if wall > 0 else None,
    }
