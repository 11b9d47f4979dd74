"""``edgec compress``: run compression recipes with fine-tuning and write the compressed program.

``compress(model, passes=[...], train=SRC, ...)``:

1. loads the model (anything ``edgec compile`` takes, or an earlier compressed directory) and checks
   every recipe fits it before any training;
2. splits the labelled training data into a training part and a validation part (``validation``
   fraction, seeded): the fine-tuning loop picks its best epoch on the validation part, so the
   evaluation data stays unseen;
3. measures the source model on the evaluation data (``data``; default: the model's own dataset's
   holdout): top-1 accuracy, MACs, synaptic operations, parameters and bytes at bit width;
4. runs the recipes in order through the pass manager (each fine-tunes with the shared loop);
5. measures the compressed model the same way, and writes OUT atomically: ``program.json`` +
   ``weights.safetensors`` (:mod:`edgec.store`: reloads without pickle, no ``--arch`` needed) and
   ``report.json`` / ``report.md`` (each pass, the training curves, before / after).

Nothing is written when anything fails, including a diverging loss or Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.artifact import (
    REPORT_JSON,
    REPORT_MD,
    SCHEMA_VERSION,
    ArtifactWriter,
    check_output_dir,
    write_json,
)
from edgec.config import CompileConfig
from edgec.data import Dataset, open_dataset
from edgec.errors import DataError, UsageError
from edgec.finetune import FinetuneOptions
from edgec.loading import load_program
from edgec.options import takes
from edgec.passes import PassContext, PassManager
from edgec.progress import NullProgress, Progress
from edgec.recipes import parse_recipes

if TYPE_CHECKING:
    from edgec.passes import Pass
    from edgec.program import Program

REPORT_KIND = "compression"
#: tables every compressed model is priced with (edgec.energy.tables), so reports compare across chips
SUMMARY_TABLES = ("cmos45-fp32", "cmos45-int8", "loihi1-davies2018")


@dataclass
class CompressResult:
    program: Program
    report: dict[str, Any]
    path: Path | None = None

    def __repr__(self) -> str:
        acc = self.report.get("accuracy", {})
        return f"CompressResult(path={self.path}, accuracy {acc.get('source')} -> {acc.get('compressed')})"


@dataclass(frozen=True)
class DataSplit:
    train: Dataset
    validation: Dataset
    evaluation: Dataset | None
    facts: dict[str, Any] = field(default_factory=dict)


def _as_dataset(spec: str | Dataset, purpose: str) -> Dataset:
    return spec if isinstance(spec, Dataset) else open_dataset(spec, purpose=purpose)  # type: ignore[arg-type]


def split_data(
    program: Program, train: str | Dataset, data: str | Dataset | None, validation: float, seed: int
) -> DataSplit:
    """Training / validation (seeded split of ``train``) / evaluation data, checked against the model."""
    if not 0.0 < validation < 0.5:
        raise UsageError(f"validation fraction must be in (0, 0.5), got {validation}")
    from edgec.tasks import task_for

    task = task_for(program)
    ds = _as_dataset(train, "training")
    x, y = task.prepare(ds, program.input_shape, "training")
    if len(x) < 4:
        raise DataError(f"training data '{ds.name}' has {len(x)} samples; fine-tuning needs more")
    perm = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, round(validation * len(x)))
    val, tr = perm[:n_val], perm[n_val:]
    eval_spec = data if data is not None else program.metadata.get("dataset")
    if (
        eval_spec is None
        and isinstance(train, str)
        and train.startswith("builtin:")
        and train.count(":") == 1
    ):
        eval_spec = train  # a built-in dataset's evaluation split is its holdout, never seen in training
    evaluation = _as_dataset(eval_spec, "evaluation") if eval_spec is not None else None
    if evaluation is not None:
        task.prepare(evaluation, program.input_shape, "evaluation")
    facts = {
        "train": ds.name,
        "train_samples": len(tr),
        "validation_samples": len(val),
        "validation_fraction": validation,
        "evaluation": evaluation.name if evaluation is not None else None,
    }
    return DataSplit(
        task.subset(x, y, tr, f"{ds.name} (training part)"),
        task.subset(x, y, val, f"{ds.name} (validation part)"),
        evaluation,
        facts,
    )


def summarize(program: Program, data: Dataset | None, device: str = "cpu") -> dict[str, Any]:
    """The task's metric (``accuracy``: top-1, or mAP for detection), operations and size of ``program``
    on ``data`` (what the report compares)."""
    from edgec.energy.analyze import count_program, energy_section
    from edgec.tasks import task_for

    task = task_for(program)
    out: dict[str, Any] = {"accuracy": None, "metric": task.metric}
    if data is not None:
        x, y = task.prepare(data, program.input_shape, "evaluation")
        out["accuracy"] = task.evaluate(program, program.module, x, y, device=device)
    counts = count_program(program, data)
    section = energy_section(program, data, table=SUMMARY_TABLES[0], target="(compress)", counts=counts)
    t = section["totals"]
    out.update(
        {
            "parameters": int(sum(p.numel() for p in program.module.parameters())),
            "param_bytes": int(t.get("param_bytes", 0)),
            "macs": int(t.get("macs", 0)),
            "bops": int(t.get("bops", 0)),
            "ops_bop64": float(t.get("ops_bop64", t.get("macs", 0))),
            "sops": (t.get("sops") or {}).get("exact"),
            "energy_j": {},
        }
    )
    for table in SUMMARY_TABLES:
        s = energy_section(program, data, table=table, target="(compress)", counts=counts)
        out["energy_j"][table] = s["headline"]["energy_j"]
    return out


@takes(CompileConfig)
def compress(
    model: Any,
    *,
    data: str | Dataset | None = None,
    out: str | Path | None = None,
    force: bool = False,
    config: CompileConfig | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> CompressResult:
    """Compress ``model`` with the recipes in ``passes`` (``"qp-snn:bits=4"`` strings, tables, or pass
    objects) fine-tuned on ``train_data`` (also ``train=``; a spec string or a :class:`Dataset`); see the
    module docstring. ``data`` is the
    evaluation data of the before / after comparison. With ``out`` the compressed program and its report
    are written there."""
    from edgec.options import build, merge

    if "train" in options:  # the short keyword of the Python API
        options["train_data"] = options.pop("train")
    # the Python API also takes the training data as a Dataset (the option itself is a spec string)
    train_set = options.pop("train_data") if isinstance(options.get("train_data"), Dataset) else None
    cfg = merge(config, options) if config is not None else build(CompileConfig, options)
    progress = progress or NullProgress()
    passes = parse_recipes(list(cfg.passes))
    if not passes:
        raise UsageError("no recipe given", hint="pass --recipe NAME[:key=value,...] (see `edgec recipes`)")
    train: str | Dataset | None = train_set if train_set is not None else cfg.train_data
    if train is None:
        raise UsageError(
            "compression fine-tunes the model and needs labelled training data",
            hint="pass --train-data SRC (e.g. builtin:digits, or an .npz with x and y)",
        )
    fields = {f.name for f in dataclasses.fields(FinetuneOptions)}
    options_ = FinetuneOptions(**{k: getattr(cfg, k) for k in fields if hasattr(cfg, k)})
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        check_output_dir(out_dir, force=force)  # fail before any work
    program = load_program(
        model,
        arch=cfg.arch,
        input_shape=cfg.input_shape,
        trust_pickle=cfg.trust_pickle,
        timesteps=cfg.timesteps,
    )
    for p in passes:
        p.requires(program)  # a recipe that does not fit the model fails before training
    split = split_data(program, train, data, cfg.validation, cfg.seed)
    before = summarize(program, split.evaluation, cfg.device)
    ctx = PassContext(
        config=cfg,
        calib=split.train,
        train=split.train,
        holdout=split.validation,
        progress=progress,
        seed=cfg.seed,
        finetune=options_,
    )
    compressed = PassManager(passes).run(program, ctx)
    if split.evaluation is not None and not compressed.metadata.get("dataset"):
        # later verify / report of the compressed model default to the data it was evaluated on
        spec = data if isinstance(data, str) else train if isinstance(train, str) else None
        if spec is not None:
            compressed = compressed.replace(metadata={**compressed.metadata, "dataset": spec})
    after = summarize(compressed, split.evaluation, cfg.device)
    report = _report(compressed, passes, options_, split, before, after)
    result = CompressResult(compressed, report)
    if out_dir is not None:
        from edgec.store import save_program

        with ArtifactWriter(out_dir, force=force) as tmp:
            files = save_program(compressed, tmp)
            report["files"] = files
            write_json(tmp / REPORT_JSON, report)
            (tmp / REPORT_MD).write_text(render_markdown(report))
        result.path = out_dir
    return result


def _report(
    program: Program,
    passes: list[Pass],
    options: FinetuneOptions,
    split: DataSplit,
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    from edgec import __version__
    from edgec.quant import record_to_dict

    return {
        "schema_version": SCHEMA_VERSION,
        "kind": REPORT_KIND,
        "edgec_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "program": program.describe(),
        "recipes": [{"name": p.name, "options": p.config()} for p in passes],
        "finetune": dataclasses.asdict(options),
        "data": split.facts,
        "passes": [r.to_dict() for r in program.history],
        "quant": record_to_dict(program.quant),
        "edits": program.edits,
        "accuracy": {
            "source": before["accuracy"],
            "compressed": after["accuracy"],
            "data": split.facts["evaluation"],
            "metric": before.get("metric", "top-1 accuracy"),
        },
        "before": before,
        "after": after,
        "energy_tables": list(SUMMARY_TABLES),
    }


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.2f} %"
    if isinstance(v, float):
        return f"{v:.4g}"
    return f"{v:,}"


def render_markdown(report: dict[str, Any]) -> str:
    """report.md of a compressed program: what each pass did, before / after, the training curves."""
    b, a, ft = report["before"], report["after"], report["finetune"]
    data = report["data"]
    lines = [
        f"# edgec compress: {report['program']['name']}",
        "",
        "Recipes: " + ", ".join(f"`{r['name']}`" for r in report["recipes"]),
        f"Fine-tuning: {ft['epochs']} epochs, lr {ft['lr']}, batch {ft['batch_size']}, seed {ft['seed']}, "
        f"device {ft['device']}; data {data['train']} ({data['train_samples']} training, "
        f"{data['validation_samples']} validation samples; the best epoch is chosen on validation).",
        "",
        "| | source | compressed |",
        "|---|---|---|",
        f"| {report['accuracy'].get('metric', 'top-1 accuracy')} on "
        f"{report['accuracy']['data'] or '(no evaluation data)'} "
        f"| {_fmt(b['accuracy'], True)} | {_fmt(a['accuracy'], True)} |",
        f"| parameters | {_fmt(b['parameters'])} | {_fmt(a['parameters'])} |",
        f"| parameter bytes at bit width | {_fmt(b['param_bytes'])} | {_fmt(a['param_bytes'])} |",
        f"| MACs per inference (dense) | {_fmt(b['macs'])} | {_fmt(a['macs'])} |",
        f"| of which binary operations (BOPs, 1-bit x 1-bit) | {_fmt(b.get('bops'))} "
        f"| {_fmt(a.get('bops'))} |",
        f"| BOPs / 64 + FLOPs (Bi-Real Net convention) | {_fmt(b.get('ops_bop64'))} "
        f"| {_fmt(a.get('ops_bop64'))} |",
        f"| synaptic operations per inference (measured) | {_fmt(b['sops'])} | {_fmt(a['sops'])} |",
    ]
    for table in report["energy_tables"]:
        lines.append(
            f"| energy per inference, {table} (estimate) | {_fmt(b['energy_j'].get(table))} J "
            f"| {_fmt(a['energy_j'].get(table))} J |"
        )
    lines += ["", "## Passes", ""]
    for p in report["passes"]:
        stats = {k: v for k, v in p["stats"].items() if k != "finetune"}
        lines.append(f"- `{p['name']}` ({p['duration_s']} s): `{json.dumps(stats, default=str)}`")
        curve = p["stats"].get("finetune")
        if curve and curve.get("curve"):
            lines.append("")
            lines.append(f"  | epoch | loss | validation {curve.get('metric', 'top-1 accuracy')} |")
            lines.append("  |---|---|---|")
            for r in curve["curve"]:
                lines.append(f"  | {r['epoch']} | {r['loss']:.4f} | {_fmt(r['holdout_accuracy'], True)} |")
            best = curve["best_epoch"]
            lines.append(f"  best epoch: {best if best is not None else 'none (kept the start)'}")
    return "\n".join(lines) + "\n"
