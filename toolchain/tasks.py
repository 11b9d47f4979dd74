"""What a model is trained and judged for: its targets, its loss and its metric (a *task*).

The fine-tuning loop (:mod:`edgec.finetune`), ``edgec compress`` and a target's ``verify`` are written
once; the task says what differs between classification and detection:

``prepare(data, input_shape, purpose)``   all samples as ``(x [N, ...], targets)``, checked
``subset(x, targets, idx, name)``         a :class:`Dataset` of some of them (train / validation split)
``batch_targets(targets, idx, device)``   one mini-batch's targets as the loss takes them
``loss(batch)``                           the task loss of a :class:`edgec.finetune.Batch`
``evaluate(program, module, x, targets)`` the held-out metric (higher is better)
``compare(out, ref, targets)``            an artifact's outputs vs the source model's (``verify``)

A program names its task in ``metadata["task"]`` (absent: classification). :data:`TASKS` finds the
class by name, importing it only when used: the tasks build on the fine-tuning loop and on
:mod:`edgec.target`, which both ask this module for a task, so this module imports neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from edgec.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

    from edgec.data import Dataset
    from edgec.finetune import Batch
    from edgec.program import Program
    from edgec.target import VerifyResult

TASKS: dict[str, str] = {
    "classification": "edgec.classification_task:ClassificationTask",
    "detection": "edgec.detection_task:DetectionTask",
}


class Task:
    """Base of the tasks (see the module docstring)."""

    name: ClassVar[str] = "task"
    #: what :meth:`evaluate` measures, for reports ("top-1 accuracy", "mAP@[.5:.95]")
    metric: ClassVar[str] = "metric"

    @classmethod
    def for_program(cls, program: Program | None) -> Task:
        return cls()

    def prepare(self, data: Dataset, input_shape: tuple[int, ...], purpose: str) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def subset(self, x: np.ndarray, targets: Any, idx: np.ndarray, name: str) -> Dataset:
        raise NotImplementedError

    def batch_targets(self, targets: Any, idx: torch.Tensor, device: torch.device) -> Any:
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(
        self, program: Program, module: nn.Module, x: np.ndarray, targets: Any, *, device: str = "cpu"
    ) -> float:
        raise NotImplementedError

    def inputs(self, data: Dataset, limit: int | None) -> tuple[np.ndarray, Any]:
        """Inputs and (possibly absent) targets for ``verify``."""
        raise NotImplementedError

    def compare(
        self, out: dict[str, np.ndarray], ref: dict[str, np.ndarray], targets: Any, *, min_agreement: float
    ) -> VerifyResult:
        raise NotImplementedError


def task_for(program: Program | None) -> Task:
    """The task ``program.metadata["task"]`` names (classification when it names none)."""
    name = (program.metadata.get("task") if program is not None else None) or "classification"
    if name not in TASKS:
        raise ModelError(
            f"the model's metadata names an unknown task '{name}'", hint=f"tasks: {', '.join(sorted(TASKS))}"
        )
    task: Task = _task_class(name).for_program(program)
    return task


def task_named(name: str, **kwargs: Any) -> Task:
    """The task called ``name`` built with ``kwargs`` (``task_named("classification", loss_fn=f)``)."""
    if name not in TASKS:
        raise ModelError(f"unknown task '{name}'", hint=f"tasks: {', '.join(sorted(TASKS))}")
    task: Task = _task_class(name)(**kwargs)
    return task


def _task_class(name: str) -> type[Task]:
    module, _, cls = TASKS[name].partition(":")
    found: type[Task] = getattr(importlib.import_module(module), cls)
    return found
