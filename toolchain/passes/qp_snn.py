"""``qp-snn``: QP-SNN (ICLR 2025), low-bit ReScaW weights plus structured pruning by the SVS criterion.

1. Structured pruning: every prunable synapse loses ``prune`` of its output channels, chosen by
   ``criterion`` (``svs``: singular values of the channels' spike activity on training data, the
   paper's criterion; ``magnitude`` / ``random`` for the ablation). The channels are removed from the
   network, and the next layer's inputs with them (:mod:`edgec.surgery`).
2. Quantization: ReScaW (:class:`edgec.fakequant.ReScaW`) on every synapse the layer policy picks,
   ``bits`` wide, the first and last synapse at ``edge_bits``.
3. Fine-tuning with the shared loop (straight-through rounding, the neurons' surrogate gradient);
   the best epoch is kept and the weights baked onto their grid.

Formulas and sources: ../shared/reference/methods.md and docs/compression.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edgec.errors import UsageError
from edgec.fakequant import ReScaW
from edgec.passes.base import PassContext, PassResult
from edgec.passes.channels import CRITERIA, prune_channels
from edgec.passes.training import (
    TrainingPass,
    attach_weight_quantizers,
    bake_all,
    check_bits,
    check_fraction,
    copy_program,
    layer_plan,
    option,
    parameter_count,
    training_stats,
)
from edgec.program import Program


@dataclass
class QPSNN(TrainingPass):
    name: ClassVar[str] = "qp-snn"
    model_kind: ClassVar[str | None] = "snn"
    description: ClassVar[str] = (
        "QP-SNN: ReScaW low-bit weights + channel pruning by spike-activity singular values"
    )

    bits: int = option(4, "weight width of the compressed synapses (1..8)")
    prune: float = option(0.5, "fraction of each prunable layer's channels to remove, in [0, 1)")
    criterion: str = option("svs", "channel score: svs | magnitude | random")
    edge_bits: int = option(8, "width of the first and last synapse (0: like the rest)")
    per_channel: bool = option(True, "one ReScaW scale per output channel (False: one per layer)")
    layers: str = option("", "per-layer widths, e.g. net.3:6+Linear:8 (0 or skip: leave uncompressed)")
    epochs: int | None = option(None, "fine-tuning epochs (default: the command's --epochs)")
    lr: float | None = option(None, "learning rate (default: the command's --lr)")

    def __post_init__(self) -> None:
        check_bits("bits", self.bits, 1, 8)
        check_bits("edge_bits", self.edge_bits, 0, 8)
        check_fraction("prune", self.prune)
        if self.criterion not in CRITERIA:
            raise UsageError(
                f"unknown criterion '{self.criterion}'", hint=f"choose one of: {', '.join(CRITERIA)}"
            )

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        prog = copy_program(program)
        params_before = parameter_count(prog.module)
        edits, prune_stats = prune_channels(prog, self.prune, self.criterion, ctx.train, ctx.seed)
        plan = layer_plan(prog.module, self.bits, self.edge_bits or None, self.layers)
        attach_weight_quantizers(prog.module, plan, lambda b: ReScaW(b, per_channel=self.per_channel))
        result = self.train(prog, ctx)
        record = bake_all(prog.module, list(plan))
        prog = prog.replace(quant={**prog.quant, **record}, edits=[*prog.edits, *edits])
        stats = {
            "pruning": prune_stats,
            "weight_bits": plan,
            "parameters": {"before": params_before, "after": parameter_count(prog.module)},
            **training_stats(result),
        }
        return PassResult(prog, modified=True, stats=stats)
