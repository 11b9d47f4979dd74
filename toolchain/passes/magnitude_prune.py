"""``magnitude-prune``: the structured-pruning baseline -- remove the channels with the smallest L1 norm.

Li et al., "Pruning Filters for Efficient ConvNets" (ICLR 2017): a channel's score is the L1 norm of its
producer weights. The same surgery as ``qp-snn`` removes the channels physically; then the shared loop
fine-tunes (``epochs=0`` prunes only, e.g. before ``uniform-quant``). For ANNs and SNNs alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edgec.errors import UsageError
from edgec.passes.base import PassContext, PassResult
from edgec.passes.channels import CRITERIA, prune_channels
from edgec.passes.training import (
    TrainingPass,
    check_fraction,
    copy_program,
    option,
    parameter_count,
    training_stats,
)
from edgec.program import Program


@dataclass
class MagnitudePrune(TrainingPass):
    name: ClassVar[str] = "magnitude-prune"
    description: ClassVar[str] = (
        "baseline: structured channel pruning by L1 weight magnitude, then fine-tuning"
    )

    prune: float = option(0.5, "fraction of each prunable layer's channels to remove, in [0, 1)")
    criterion: str = option("magnitude", "channel score: magnitude | random | svs", choices=CRITERIA)
    epochs: int | None = option(None, "fine-tuning epochs (default: the command's --epochs; 0: prune only)")
    lr: float | None = option(None, "learning rate (default: the command's --lr)")

    def __post_init__(self) -> None:
        check_fraction("prune", self.prune)
        if self.criterion not in CRITERIA:
            raise UsageError(
                f"unknown criterion '{self.criterion}'", hint=f"choose one of: {', '.join(CRITERIA)}"
            )

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        prog = copy_program(program)
        before = parameter_count(prog.module)
        edits, stats = prune_channels(prog, self.prune, self.criterion, ctx.train, ctx.seed)
        prog = prog.replace(edits=[*prog.edits, *edits])
        result = self.train(prog, ctx)
        return PassResult(
            prog,
            modified=True,
            stats={
                "pruning": stats,
                "parameters": {"before": before, "after": parameter_count(prog.module)},
                **training_stats(result),
            },
        )
