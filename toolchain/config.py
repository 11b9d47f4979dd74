"""The option groups of edgec's verbs, each option declared once (see :mod:`edgec.options`).

``edgec.toml`` (read from the current directory, or ``--config FILE``); keys are the options' names::

    [compile]                # CompileConfig: compile, check and report
    target = "cpu"
    quantize = "int8"
    calib = "builtin:digits"
    calib_method = "percentile"
    calib_samples = 256
    passes = ["fold-bn", {name = "magnitude-prune", sparsity = 0.5}]   # a recipe, in order

    [passes.fold-bn]         # default options of one pass (a recipe entry's own win)

    [target.loihi]           # options of one target (declared by the target, see `edgec targets`)
    weight_bits = 8

    [verify]                 # VerifyOptions
    min_agreement = "99%"

    [bench]                  # BenchOptions
    threads = 2

    [report]                 # ReportOptions
    samples = 64

Precedence: command-line flags / API keywords > edgec.toml > the defaults declared here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgec.options import CONFIG_FILE, PassSpec, build, check_value, declared, group, option, parse_shape
from edgec.passes import pass_names

__all__ = [
    "CONFIG_FILE",
    "BenchOptions",
    "CompileConfig",
    "DataOptions",
    "PassSpec",
    "ReportOptions",
    "RunOptions",
    "SearchOptions",
    "TrainingOptions",
    "VerifyOptions",
    "load_config",
    "parse_shape",
]


@dataclass
class Options:
    """Base of the option groups: values given in code are checked like flags and edgec.toml."""

    def __post_init__(self) -> None:
        for opt in declared(type(self)):
            setattr(self, opt.key, check_value(opt, getattr(self, opt.key), opt.key))


@dataclass
class DataOptions(Options):
    """How image folders are read (for --calib, --data and --train-data alike)."""

    image_resize: str = option(
        "none",
        "resize images to the model's input: none (as they are) | fit (stretch to H x W) | "
        "crop (shorter side to H / 0.875, centre H x W: ImageNet's 256 -> 224)",
        choices=("none", "fit", "crop"),
    )
    image_normalize: str = option(
        "none",
        "normalise image pixels in [0, 1]: none | imagenet (mean 0.485,0.456,0.406, std 0.229,0.224,0.225)",
        choices=("none", "imagenet"),
    )

    def image_options(self) -> dict[str, str]:
        return {"resize": self.image_resize, "normalize": self.image_normalize}


@dataclass
class TrainingOptions(Options):
    """The shared fine-tuning loop of training-time passes (:mod:`edgec.finetune`)."""

    train_data: str | None = option(
        None,
        "labelled training data of training-time passes (same forms as --calib; default: the model's own "
        "dataset)",
    )
    epochs: int = option(5, "fine-tuning epochs of training passes", minimum=0)
    lr: float = option(1e-3, "fine-tuning learning rate (Adam, cosine schedule)", minimum=1e-12)
    batch_size: int = option(64, "fine-tuning batch size", minimum=1)
    device: str = option("cpu", "fine-tuning device: cpu | cuda | cuda:N")
    validation: float = option(
        0.1,
        "share of the training data held out to pick the best epoch: 10% or 0.1",
        kind="percent",
        minimum=0.01,
        maximum=0.5,
    )
    seed: int = option(0, "seed of every random choice (calibration order, data split, training)")


@group("compile", tables={"pass_options": "passes", "target_options": "target"})
@dataclass
class CompileConfig(TrainingOptions, DataOptions):
    """Options of ``compile``, ``check`` and ``report`` (what is compiled, for which target, how)."""

    target: str = option("cpu", "target name, see `edgec targets`", short="-t")
    backend: str | None = option(
        None,
        "execution backend the artifact is built for and runs on by default, for a target that builds "
        "one artifact per backend (cpu: onnxruntime | openvino; default: the target's choice)",
    )
    quantize: str = option(
        "none", "precision to compile for; the target declares its own (`edgec targets`): cpu none | int8"
    )
    calib: str | None = option(
        None,
        "calibration data: .npz/.npy, an image folder, builtin:digits, or package.module:function "
        "(default: the model's own dataset)",
    )
    calib_method: str = option(
        "minmax",
        "how activation ranges are chosen from calibration data (ONNX-based targets)",
        choices=("minmax", "percentile", "entropy"),
    )
    calib_samples: int = option(128, "calibration samples to use", minimum=1)
    timesteps: int | None = option(None, "SNN timesteps (default: the model's own)", minimum=1)
    input_shape: tuple[int, ...] | None = option(
        None, "input shape with batch, e.g. 1,3,32,32 (TorchScript needs it)", kind="shape"
    )
    arch: str | None = option(
        None,
        "architecture of a state_dict file: a zoo name (see `edgec models`) or package.module:Factory "
        "(a callable returning the nn.Module)",
    )
    trust_pickle: bool = option(False, "allow unpickling a whole module (runs its code)")
    dt: float | None = option(
        None, "NIR graphs: seconds per timestep (default: the graph's, else 1e-4)", minimum=1e-12
    )
    passes: list[PassSpec] = option(
        [],
        "a pass or compression recipe to run, in order (repeatable; NAME or NAME:key=value,...): "
        + ", ".join(pass_names())
        + " (`edgec recipes` lists their options)",
        kind="passes",
        flag="--recipe",
        aliases=("--pass",),
        short="-r",
    )
    pass_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # [passes.NAME]
    target_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # [target.NAME]

    def options_for_target(self) -> dict[str, Any]:
        return dict(self.target_options.get(self.target, {}))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        d["passes"] = [p.to_dict() for p in self.passes]
        return d


@group("verify")
@dataclass
class VerifyOptions(DataOptions):
    """Options of ``verify``."""

    data: str | None = option(None, "evaluation data (default: the model's own, e.g. the digits holdout)")
    backend: str | None = option(None, "execution backend of the target (see `edgec targets`)")
    limit: int | None = option(None, "use at most this many samples", minimum=1)
    min_agreement: float = option(
        0.98, "minimum top-1 agreement to pass: 98% or 0.98", kind="percent", maximum=1.0
    )
    trust_pickle: bool = option(False, "allow reloading a source model that is a pickled module")


@group("bench")
@dataclass
class BenchOptions(Options):
    """Options of ``bench``."""

    batch_size: int = option(1, "inputs per call", minimum=1)
    iterations: int = option(100, "timed calls", minimum=1)
    warmup: int = option(10, "untimed calls first", minimum=0)
    threads: int | None = option(None, "intra-op threads (default: the runtime's)", minimum=1)
    backend: str | None = option(None, "execution backend of the target (see `edgec targets`)")


@group("run")
@dataclass
class RunOptions(Options):
    """Options of ``run``."""

    backend: str | None = option(None, "execution backend of the target (see `edgec targets`)")


@group("report")
@dataclass
class ReportOptions(DataOptions):
    """Options of ``report`` (the model options come from :class:`CompileConfig`)."""

    data: str | None = option(None, "inputs for activity counts (default: --calib, else the model's own)")
    samples: int | None = option(None, "samples the activity counts average over (default 32)", minimum=1)
    weight_bits: int | None = option(
        None, "weight storage width to assume, e.g. 4 or 1", minimum=1, maximum=32
    )
    format: str | None = option(
        None,
        "table | json | md | html (default: from -o, else table)",
        choices=("table", "json", "md", "html"),
        short="-f",
        api=False,
    )
    baseline: str | None = option(
        None, "baseline report.json to gate against (exit code 6 on regression)", api=False
    )
    max_increase: float = option(
        0.05, "allowed energy increase over the baseline: 5% or 0.05", kind="percent", api=False
    )


@group("search")
@dataclass
class SearchOptions(TrainingOptions, DataOptions):
    """Options of ``search`` (:mod:`edgec.search`): the space, the sampler, how trials run."""

    target: str | None = option(
        None,
        "target(s) to deploy every trial to, comma-separated, each TARGET or TARGET:PRECISION "
        "(e.g. loihi,cpu:int8)",
        short="-t",
    )
    space: str = option("builtin", "search space: builtin (by model kind) or a TOML file (docs/search.md)")
    trials: int = option(24, "trials to reach (a resumed search counts the finished ones)", minimum=1)
    objectives: str = option(
        "accuracy,energy", "objectives, comma-separated: accuracy, energy, bytes, sops (first target)"
    )
    constraint: list[str] = option(
        [], "a bound on a metric, e.g. energy_uj<=0.5, bytes<=8000, accuracy>=0.9 (repeatable)"
    )
    reference: list[str] = option(
        [],
        "a hand-picked recipe to measure beside the trials and mark in the report: RECIPE[;RECIPE...][@T] "
        "(repeatable)",
    )
    sampler: str = option(
        "nsga2",
        "nsga2 (the multi-objective front) | tpe (the accuracy-energy fitness)",
        choices=("nsga2", "tpe"),
    )
    population: int = option(8, "trials asked from the sampler at once (NSGA-II's population)", minimum=2)
    fitness_weight: float = option(0.07, "w of the tpe fitness accuracy * (1 uJ / energy)^w", minimum=0.0)
    workers: int = option(
        1, "trials run at once on this machine (--ray local: the CPUs it starts)", minimum=1
    )
    ray: str | None = option(None, "run trials as Ray tasks: auto | local | HOST:PORT (needs the ray extra)")
    trial_cpus: float = option(
        1.0, "CPUs of each trial: its torch threads (local workers), what a Ray task declares", minimum=0.0
    )
    trial_gpus: float = option(0.0, "GPUs each Ray trial declares", minimum=0.0)
    storage: str | None = option(None, "Optuna storage URL (default: sqlite:///OUT/study.db)")
    data: str | None = option(None, "held-out evaluation data (default: the model's own holdout)")
    limit: int | None = option(
        None, "evaluate the deployed artifacts on at most this many samples", minimum=1
    )
    keep_all: bool = option(False, "keep every trial's artifacts (default: only the Pareto front's)")
    arch: str | None = option(None, "architecture of a state_dict file (see edgec compile --arch)")
    trust_pickle: bool = option(False, "allow unpickling a whole module (runs its code)")


def load_config(path: Path | None = None, **overrides: Any) -> CompileConfig:
    """Defaults, then ``edgec.toml`` (``path`` or ./edgec.toml if present), then non-None overrides."""
    return build(CompileConfig, overrides, config=path)
