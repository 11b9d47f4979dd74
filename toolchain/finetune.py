"""The one fine-tuning loop every training-time pass uses.

``finetune(program, train, holdout, options, hooks=...)`` trains ``program.module`` in place:

* Adam + cosine learning rate, mini-batches drawn with a seeded generator: the same inputs, options
  and seed give the same weights (on the same device and thread count);
* an SNN is trained by backpropagation through time with its surrogate gradient: inputs are encoded
  with fresh rate-coding noise each step (seeded), the loss is the cross-entropy of the output spike
  counts; evaluation uses the program's own encoder, as every target does;
* quantization-aware training works through the weight parametrizations the pass registered
  (:mod:`edgec.fakequant`, straight-through estimators);
* what is learned is a *task* (:mod:`edgec.tasks`, chosen by ``program.metadata["task"]``):
  classification (integer labels, cross-entropy, top-1 accuracy) by default, detection (boxes,
  DETR's set loss, COCO mAP) for detection programs; the task gives the batches' targets, the loss
  and the held-out metric;
* the held-out metric is measured before training and after each epoch, and the best epoch's
  weights are kept;
* a pass adds to the loss through :class:`TrainingHook` objects: regularisers (WS-DR, ...),
  schedules (soft-threshold growth, ReSTE's power), and distillation from a teacher model, which the
  loop runs beside the student on the same batch;
* a NaN / Inf loss stops training with :class:`TrainingDiverged` (nothing is written); Ctrl-C
  propagates as ``KeyboardInterrupt`` (callers write artifacts atomically, so nothing half-written
  is left);
* progress: one task per epoch on ``progress`` (the CLI shows a rich bar with loss and accuracy).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgec.config import TrainingOptions
from edgec.errors import DataError, ModelError, UsageError
from edgec.options import option
from edgec.progress import NullProgress, Progress

if TYPE_CHECKING:
    from edgec.data import Dataset
    from edgec.program import Program
    from edgec.tasks import Task

log = logging.getLogger(__name__)


class TrainingDiverged(ModelError):
    """The loss became NaN or Inf during fine-tuning."""


@dataclass
class FinetuneOptions(TrainingOptions):
    """Options of the shared loop: ``--epochs``, ``--lr``, ``--batch-size``, ``--seed``, ``--device``
    (declared once in :class:`edgec.config.TrainingOptions`), and the optimiser's weight decay."""

    weight_decay: float = option(0.0, "Adam weight decay of the fine-tuning", minimum=0.0)


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:N]``; asking for CUDA where there is none is a usage error."""
    if name != "cpu" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise UsageError(f"unknown --device '{name}'", hint="use cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda was asked for, but no CUDA device is available", hint="use --device cpu"
        )
    return torch.device(name)


class TrainingHook:
    """What a pass adds to the loop. Every method is optional.

    ``setup(student, teacher)``        before the first step (register forward hooks, ...)
    ``on_epoch_start(epoch, epochs)``  schedules (``epoch`` counts from 0)
    ``loss(batch)``                    an extra loss term (a scalar tensor) or None
    ``teardown()``                     after the last step, also when training stops early
    ``parameters()``                   the hook's own trainable tensors (trained beside the model's)
    """

    name: str = "hook"

    def setup(self, student: nn.Module, teacher: nn.Module | None) -> None:
        return None

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        return None

    def loss(self, batch: Batch) -> torch.Tensor | None:
        return None

    def teardown(self) -> None:
        return None

    def parameters(self) -> list[nn.Parameter]:
        return []

    def ready(self) -> bool:
        """Whether the current weights are a valid result (a schedule that has not reached its end,
        e.g. a pruning threshold still growing, is not): only such epochs compete for the best."""
        return True


@dataclass
class Batch:
    """One training step's tensors, handed to the hooks."""

    x: torch.Tensor  # raw input [B, ...]
    y: Any  # the task's targets: labels [B] (classification), a list of box dicts (detection)
    model_input: torch.Tensor  # what the module received ([T, B, ...] for an SNN)
    output: Any  # the module's raw output (a dict of tensors for a detection model)
    logits: Any  # class scores [B, C] (spike counts for an SNN); the output itself for other tasks
    teacher_output: Any = None
    teacher_logits: Any = None
    step: int = 0
    epoch: int = 0


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    terms: dict[str, float]
    holdout_accuracy: float | None  # the task's held-out metric (FinetuneResult.metric)
    lr: float
    seconds: float


@dataclass
class FinetuneResult:
    initial_accuracy: float | None
    curve: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None  # None: the weights before training were the best
    best_accuracy: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    metric: str = "top-1 accuracy"  # what initial / best / holdout_accuracy measure

    def to_dict(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "metric": self.metric,
            "initial_accuracy": self.initial_accuracy,
            "best_epoch": self.best_epoch,
            "best_accuracy": self.best_accuracy,
            "curve": [asdict(r) for r in self.curve],
        }


def labelled_arrays(
    data: Dataset, input_shape: tuple[int, ...], purpose: str
) -> tuple[np.ndarray, np.ndarray]:
    """All samples of ``data`` as float32 inputs and int64 labels, checked against the model."""
    x, y = data.arrays()
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(
            f"{purpose} data '{data.name}' has samples of shape {tuple(x.shape[1:])}, "
            f"the model takes {tuple(input_shape)}",
            hint="give data of the model's input shape (one sample, no batch dimension)",
        )
    if y is None:
        raise DataError(
            f"{purpose} data '{data.name}' has no labels; fine-tuning needs (x, y) samples",
            hint="give an .npz with arrays x and y, an image folder with class folders, or builtin:digits",
        )
    return x, y


class _Runner:
    """Runs a program's module on raw input the way the program defines (encoder for SNNs)."""

    def __init__(self, program: Program, module: nn.Module, device: torch.device) -> None:
        self.kind = program.kind
        self.timesteps = program.timesteps
        self.encoder = program.encoder
        self.module = module
        self.device = device

    def model_input(self, x: torch.Tensor, train_step: int | None) -> torch.Tensor:
        if self.kind != "snn":
            return x
        from edgec.snn import encode

        enc = self.encoder
        if train_step is not None and enc is not None and enc.get("kind") == "rate":
            # fresh (seeded) rate-coding noise every training step: the network must not learn one
            # noise pattern; evaluation uses the recorded encoder, as the targets do
            enc = {**enc, "seed": int(enc.get("seed", 0)) + 1000 + train_step}
        return encode(x.cpu(), self.timesteps, enc).to(self.device)

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        return out.sum(0) if self.kind == "snn" else out

    def __call__(
        self, module: nn.Module, x: torch.Tensor, train_step: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mi = self.model_input(x, train_step)
        out = module(mi)
        return mi, out, self.logits(out)


def evaluate(
    program: Program,
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    device: str = "cpu",
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy of ``module`` (run as ``program`` defines) on ``x``, ``y``."""
    dev = resolve_device(device)
    runner = _Runner(program, module, dev)
    was_training = module.training
    module.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[i : i + batch_size]).to(dev)
            _, _, logits = runner(module, xb)
            correct += int((logits.argmax(1).cpu() == torch.from_numpy(y[i : i + batch_size])).sum())
    module.train(was_training)
    return correct / max(1, len(x))


def finetune(
    program: Program,
    train: Dataset,
    holdout: Dataset | None,
    options: FinetuneOptions,
    *,
    hooks: Sequence[TrainingHook] = (),
    teacher: nn.Module | None = None,
    task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    task: Task | None = None,
    parameters: Sequence[nn.Parameter] | None = None,
    progress: Progress | None = None,
    description: str = "fine-tuning",
) -> FinetuneResult:
    """Train ``program.module`` in place (see the module docstring); returns the training record.

    ``task`` defaults to the program's (:func:`edgec.tasks.task_for`); ``task_loss`` replaces the
    cross-entropy of a classification task."""
    from edgec.tasks import task_for, task_named

    progress = progress or NullProgress()
    device = resolve_device(options.device)
    module = program.module
    if task is None:
        task = task_named("classification", loss_fn=task_loss) if task_loss is not None else task_for(program)
    x_tr, y_tr = task.prepare(train, program.input_shape, "training")
    held = task.prepare(holdout, program.input_shape, "held-out") if holdout is not None else None
    torch.manual_seed(options.seed)
    gen = torch.Generator().manual_seed(options.seed)
    module.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    params = (
        list(parameters) if parameters is not None else [p for p in module.parameters() if p.requires_grad]
    )
    params += [p for h in hooks for p in h.parameters()]
    if not params:
        raise ModelError("the model has no trainable parameters to fine-tune")
    opt = torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, options.epochs))
    runner = _Runner(program, module, device)

    def held_accuracy() -> float | None:
        if held is None:
            return None
        return task.evaluate(program, module, held[0], held[1], device=options.device)

    result = FinetuneResult(initial_accuracy=held_accuracy(), options=asdict(options), metric=task.metric)
    best_state = copy.deepcopy(module.state_dict())
    # the starting weights compete for the best only if no hook's schedule has yet to run
    best: float | None = result.initial_accuracy
    have_best = all(h.ready() for h in hooks) or options.epochs == 0
    for h in hooks:
        h.setup(module, teacher)
    step = 0
    xs = torch.from_numpy(x_tr)
    try:
        for epoch in range(options.epochs):
            started = time.perf_counter()
            for h in hooks:
                h.on_epoch_start(epoch, options.epochs)
            module.train()
            perm = torch.randperm(len(xs), generator=gen)
            n_batches = math.ceil(len(xs) / options.batch_size)
            totals: dict[str, float] = {}
            loss_sum = 0.0
            with progress.task(f"{description}: epoch {epoch + 1}/{options.epochs}", total=n_batches) as bar:
                for i in range(0, len(xs), options.batch_size):
                    idx = perm[i : i + options.batch_size]
                    xb, yb = xs[idx].to(device), task.batch_targets(y_tr, idx, device)
                    step += 1
                    mi, out, logits = runner(module, xb, train_step=step)
                    batch = Batch(xb, yb, mi, out, logits, step=step, epoch=epoch)
                    if teacher is not None:
                        with torch.no_grad():
                            batch.teacher_output = teacher(mi)
                            batch.teacher_logits = runner.logits(batch.teacher_output)
                    loss = task.loss(batch)
                    terms = {"task": float(loss.detach())}
                    for h in hooks:
                        extra = h.loss(batch)
                        if extra is not None:
                            loss = loss + extra
                            terms[h.name] = terms.get(h.name, 0.0) + float(extra.detach())
                    if not torch.isfinite(loss):
                        raise TrainingDiverged(
                            f"the fine-tuning loss became {float(loss.detach())} "
                            f"at epoch {epoch + 1}, step {step}",
                            hint="lower --lr, or check the training data for extreme values",
                        )
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    loss_sum += float(loss.detach())
                    for k, v in terms.items():
                        totals[k] = totals.get(k, 0.0) + v
                    bar.advance()
            sched.step()
            acc = held_accuracy()
            record = EpochRecord(
                epoch=epoch + 1,
                loss=round(loss_sum / n_batches, 6),
                terms={k: round(v / n_batches, 6) for k, v in totals.items()},
                holdout_accuracy=acc,
                lr=float(opt.param_groups[0]["lr"]),
                seconds=round(time.perf_counter() - started, 3),
            )
            result.curve.append(record)
            log.info("%s epoch %d: loss %.4f, held-out accuracy %s", description, epoch + 1, record.loss, acc)
            if all(h.ready() for h in hooks) and (
                not have_best or acc is None or best is None or acc >= best
            ):
                best, have_best = acc, True
                result.best_epoch = epoch + 1
                best_state = copy.deepcopy(module.state_dict())
    finally:
        for h in hooks:
            h.teardown()
    module.load_state_dict(best_state)
    module.to("cpu").eval()
    result.best_accuracy = best
    return result
