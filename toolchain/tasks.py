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
class by name, importing it only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
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
    "classification": "edgec.tasks:ClassificationTask",
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


class ClassificationTask(Task):
    """Integer labels, cross-entropy (or ``loss_fn``) on the class scores, top-1 accuracy."""

    name = "classification"
    metric = "top-1 accuracy"

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.loss_fn = loss_fn or torch.nn.functional.cross_entropy

    def prepare(self, data: Dataset, input_shape: tuple[int, ...], purpose: str) -> tuple[np.ndarray, Any]:
        from edgec.finetune import labelled_arrays

        return labelled_arrays(data, input_shape, purpose)

    def subset(self, x: np.ndarray, targets: Any, idx: np.ndarray, name: str) -> Dataset:
        from edgec.data import from_arrays

        return from_arrays(x[idx], targets[idx], name=name)

    def batch_targets(self, targets: Any, idx: torch.Tensor, device: torch.device) -> Any:
        return torch.from_numpy(targets)[idx].to(device)

    def loss(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(batch.logits, batch.y)

    def evaluate(
        self, program: Program, module: nn.Module, x: np.ndarray, targets: Any, *, device: str = "cpu"
    ) -> float:
        from edgec.finetune import evaluate

        return evaluate(program, module, x, targets, device=device)

    def inputs(self, data: Dataset, limit: int | None) -> tuple[np.ndarray, Any]:
        return data.arrays(limit)

    def compare(
        self, out: dict[str, np.ndarray], ref: dict[str, np.ndarray], targets: Any, *, min_agreement: float
    ) -> VerifyResult:
        from edgec.target import compare_outputs

        return compare_outputs(out, ref, targets, min_agreement=min_agreement)


def task_for(program: Program | None) -> Task:
    """The task ``program.metadata["task"]`` names (classification when it names none)."""
    name = (program.metadata.get("task") if program is not None else None) or "classification"
    if name not in TASKS:
        raise ModelError(
            f"the model's metadata names an unknown task '{name}'", hint=f"tasks: {', '.join(sorted(TASKS))}"
        )
    module, _, cls = TASKS[name].partition(":")
    task: Task = getattr(importlib.import_module(module), cls).for_program(program)
    return task
