"""``uniform-quant``: the plain baseline -- symmetric uniform weight quantization-aware training.

``W_q = s * clamp(round(W / s), -q, q)``, ``q = 2^(b-1) - 1``, ``s = max|W| / q`` per output channel (or
per layer), straight-through rounding, fine-tuned with the shared loop. For ANNs and SNNs alike; the
first and last synapse stay at ``edge_bits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edgec.fakequant import UniformWeight
from edgec.passes.base import PassContext, PassResult
from edgec.passes.training import (
    TrainingPass,
    attach_weight_quantizers,
    bake_all,
    check_bits,
    copy_program,
    layer_plan,
    option,
    training_stats,
)
from edgec.program import Program


@dataclass
class UniformQuant(TrainingPass):
    name: ClassVar[str] = "uniform-quant"
    description: ClassVar[str] = "baseline: symmetric uniform low-bit weights, quantization-aware fine-tuning"

    bits: int = option(4, "weight width (2..8)")
    edge_bits: int = option(8, "width of the first and last synapse (0: like the rest)")
    per_channel: bool = option(True, "one scale per output channel (False: one per layer)")
    layers: str = option("", "per-layer widths, e.g. net.3:6+Linear:8 (0 or skip: leave uncompressed)")
    epochs: int | None = option(None, "fine-tuning epochs (default: the command's --epochs)")
    lr: float | None = option(None, "learning rate (default: the command's --lr)")

    def __post_init__(self) -> None:
        check_bits("bits", self.bits, 2, 8)
        check_bits("edge_bits", self.edge_bits, 0, 8)

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        prog = copy_program(program)
        plan = layer_plan(prog.module, self.bits, self.edge_bits or None, self.layers)
        attach_weight_quantizers(prog.module, plan, lambda b: UniformWeight(b, per_channel=self.per_channel))
        result = self.train(prog, ctx)
        record = bake_all(prog.module, list(plan))
        prog = prog.replace(quant={**prog.quant, **record})
        return PassResult(prog, modified=True, stats={"weight_bits": plan, **training_stats(result)})
