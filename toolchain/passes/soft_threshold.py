"""``soft-threshold-prune``: LATS-style soft-threshold reparameterisation for unstructured sparsity.

LATS (Chen et al., ICLR 2023; ../shared/reference/methods.md): ``W_eff = sign(W) * relu(|W| - d(t))``,
with the threshold ``d(t)`` growing over fine-tuning by a schedule (``sine`` is S-LATS:
``d(t) = D * (sin(pi x) / pi + x)``, ``x = t / T``) and the identity as the gradient through the
threshold, so a pruned weight can come back while ``d`` is small. Each layer's final threshold ``D`` is
the ``sparsity`` quantile of its weight magnitudes when the pass starts. After fine-tuning the zeros
are exact: the energy report's synaptic-operation count and the Loihi artifact both see them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from edgec.errors import UsageError
from edgec.fakequant import SCHEDULES, SoftThreshold, attach, bake, weight_of
from edgec.finetune import TrainingHook
from edgec.passes.base import PassContext, PassResult
from edgec.passes.training import (
    TrainingPass,
    check_fraction,
    copy_program,
    layer_plan,
    option,
    training_stats,
)
from edgec.program import Program


class _Schedule(TrainingHook):
    name = "threshold-schedule"

    def __init__(self, thresholds: list[SoftThreshold]) -> None:
        self.thresholds = thresholds

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        for t in self.thresholds:
            t.progress = (epoch + 1) / max(1, epochs)

    def ready(self) -> bool:
        return all(t.progress >= 1.0 for t in self.thresholds)


@dataclass
class SoftThresholdPrune(TrainingPass):
    name: ClassVar[str] = "soft-threshold-prune"
    description: ClassVar[str] = (
        "LATS soft-threshold pruning: sign(W) * relu(|W| - d(t)), scheduled, for sparse synapses"
    )

    sparsity: float = option(0.5, "target fraction of zero weights per layer, in [0, 1)")
    schedule: str = option(
        "sine", "threshold growth: sine (S-LATS) | linear | cosine | constant", choices=tuple(SCHEDULES)
    )
    edge_layers: bool = option(True, "prune the first and last synapse too")
    layers: str = option("", "per-layer choice, e.g. net.0:skip (any width > 0 means prune)")
    epochs: int | None = option(None, "fine-tuning epochs (default: the command's --epochs)")
    lr: float | None = option(None, "learning rate (default: the command's --lr)")

    def __post_init__(self) -> None:
        check_fraction("sparsity", self.sparsity)
        if self.schedule not in SCHEDULES:
            raise UsageError(
                f"unknown schedule '{self.schedule}'", hint=f"choose one of: {', '.join(SCHEDULES)}"
            )

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        prog = copy_program(program)
        plan = layer_plan(prog.module, 1, None if self.edge_layers else 0, self.layers)
        thresholds = []
        for name in plan:
            m = prog.module.get_submodule(name)
            w = weight_of(m).detach().abs().flatten()
            final = float(torch.quantile(w, self.sparsity)) if self.sparsity > 0 else 0.0
            t = SoftThreshold(final, self.schedule)
            attach(m, "weight", t)
            thresholds.append(t)
        if (self.epochs if self.epochs is not None else self.finetune_options(ctx).epochs) == 0:
            for t in thresholds:
                t.progress = 1.0  # no training: prune at the final threshold at once
        result = self.train(prog, ctx, hooks=[_Schedule(thresholds)])
        sparsity = {}
        for name in plan:
            bake(prog.module.get_submodule(name))
            w = weight_of(prog.module.get_submodule(name))
            sparsity[name] = round(float((w == 0).float().mean()), 4)
        stats = {"sparsity": sparsity, "schedule": self.schedule, **training_stats(result)}
        return PassResult(prog, modified=True, stats=stats)
