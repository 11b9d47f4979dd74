"""The classification task (:mod:`edgec.tasks`): integer labels, cross-entropy, top-1 accuracy.

``verify`` of a classifier compares every output by max-abs error and the class scores by top-1
agreement (:func:`edgec.target.compare_outputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgec.data import from_arrays
from edgec.finetune import evaluate, labelled_arrays
from edgec.target import compare_outputs
from edgec.tasks import Task

if TYPE_CHECKING:
    from torch import nn

    from edgec.data import Dataset
    from edgec.finetune import Batch
    from edgec.program import Program
    from edgec.target import VerifyResult


class ClassificationTask(Task):
    """Integer labels, cross-entropy (or ``loss_fn``) on the class scores, top-1 accuracy."""

    name = "classification"
    metric = "top-1 accuracy"

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.loss_fn = loss_fn or torch.nn.functional.cross_entropy

    def prepare(self, data: Dataset, input_shape: tuple[int, ...], purpose: str) -> tuple[np.ndarray, Any]:
        return labelled_arrays(data, input_shape, purpose)

    def subset(self, x: np.ndarray, targets: Any, idx: np.ndarray, name: str) -> Dataset:
        return from_arrays(x[idx], targets[idx], name=name)

    def batch_targets(self, targets: Any, idx: torch.Tensor, device: torch.device) -> Any:
        return torch.from_numpy(targets)[idx].to(device)

    def loss(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(batch.logits, batch.y)

    def evaluate(
        self, program: Program, module: nn.Module, x: np.ndarray, targets: Any, *, device: str = "cpu"
    ) -> float:
        return evaluate(program, module, x, targets, device=device)

    def inputs(self, data: Dataset, limit: int | None) -> tuple[np.ndarray, Any]:
        return data.arrays(limit)

    def compare(
        self, out: dict[str, np.ndarray], ref: dict[str, np.ndarray], targets: Any, *, min_agreement: float
    ) -> VerifyResult:
        return compare_outputs(out, ref, targets, min_agreement=min_agreement)
