"""``qp-snn``: QP-SNN (ICLR 2025), low-bit ReScaW weights plus structured pruning by the SVS criterion.

1. Quantization: ReScaW (:class:`edgec.fakequant.ReScaW`) on every synapse the layer policy picks,
   ``bits`` wide, the first and last synapse at ``edge_bits``; the quantized network is fine-tuned
   for the first ``prune_at`` share of the epochs (the paper prunes a low-bit SNN).
2. Structured pruning of the quantized network: every prunable synapse loses ``prune`` of its output
   channels, chosen by ``criterion`` (``svs``: singular values of the channels' spike activity on
   training data, the paper's criterion; ``magnitude`` / ``random`` for the ablation). The channels
   are removed from the network, and the next layer's inputs with them (:mod:`edgec.surgery`).
3. Fine-tuning of the pruned low-bit network for the remaining epochs with the shared loop
   (straight-through rounding, the neurons' surrogate gradient); the best epoch is kept and the
   weights baked onto their grid.

Formulas and sources: ../shared/reference/methods.md and docs/compression.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edgec.errors import UsageError
from edgec.fakequant import ReScaW, UniformWeight, WeightQuantizer, detach_all
from edgec.passes.base import PassContext, PassResult
from edgec.passes.channels import CRITERIA, apply_pruning, score_channels
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
    criterion: str = option("svs", "channel score: svs | magnitude | random", choices=CRITERIA)
    edge_bits: int = option(8, "width of the first and last synapse (0: like the rest)")
    per_channel: bool = option(True, "one ReScaW scale per output channel (False: one per layer)")
    quantizer: str = option(
        "rescaw",
        "rescaw (the paper's) | uniform (max-abs scale, for the ablation)",
        choices=("rescaw", "uniform"),
    )
    gradient: str = option(
        "clipped",
        "ReScaW's gradient: clipped (zero outside the clamp at ±mean|W|) | straight (through the clamp too)",
        choices=("clipped", "straight"),
    )
    clip: float = option(
        1.0,
        "ReScaW's clamp in multiples of mean|W| (1: the paper's; wider keeps more outliers, coarser steps)",
        minimum=0.01,
        maximum=100.0,
    )
    prune_at: float = option(0.5, "share of the epochs trained quantized before pruning (0: prune first)")
    layers: str = option("", "per-layer widths, e.g. net.3:6+Linear:8 (0 or skip: leave uncompressed)")
    epochs: int | None = option(None, "fine-tuning epochs (default: the command's --epochs)")
    lr: float | None = option(None, "learning rate (default: the command's --lr)")

    def __post_init__(self) -> None:
        check_bits("bits", self.bits, 1, 8)
        check_bits("edge_bits", self.edge_bits, 0, 8)
        check_fraction("prune", self.prune)
        check_fraction("prune_at", self.prune_at)
        if self.quantizer not in ("rescaw", "uniform"):
            raise UsageError(f"unknown quantizer '{self.quantizer}'", hint="choose rescaw or uniform")
        if self.gradient not in ("clipped", "straight"):
            raise UsageError(f"unknown gradient '{self.gradient}'", hint="choose clipped or straight")
        if self.criterion not in CRITERIA:
            raise UsageError(
                f"unknown criterion '{self.criterion}'", hint=f"choose one of: {', '.join(CRITERIA)}"
            )

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        import dataclasses

        prog = copy_program(program)
        params_before = parameter_count(prog.module)
        plan = layer_plan(prog.module, self.bits, self.edge_bits or None, self.layers)

        def rescaw(bits: int) -> WeightQuantizer:
            if self.quantizer == "uniform":
                return UniformWeight(max(bits, 2), per_channel=self.per_channel)
            return ReScaW(
                bits, per_channel=self.per_channel, clip_gradient=self.gradient == "clipped", clip=self.clip
            )

        attach_weight_quantizers(prog.module, plan, rescaw)
        options = self.finetune_options(ctx)
        first = round(options.epochs * self.prune_at) if self.prune > 0 else options.epochs
        stage1 = self.train(prog, ctx, options=dataclasses.replace(options, epochs=first))
        edits: list[dict[str, Any]] = []
        prune_stats: dict[str, Any] = {}
        result = stage1
        if self.prune > 0:
            groups, skipped, scores = score_channels(prog, self.criterion, ctx.train, ctx.seed)
            for name in plan:  # surgery on the plain weights, then fresh quantizers on the smaller layers
                detach_all(prog.module.get_submodule(name))
            edits, prune_stats = apply_pruning(prog, groups, scores, self.prune, self.criterion, skipped)
            attach_weight_quantizers(prog.module, plan, rescaw)
            result = self.train(
                prog, ctx, options=dataclasses.replace(options, epochs=options.epochs - first)
            )
        record = bake_all(prog.module, list(plan))
        prog = prog.replace(quant={**prog.quant, **record}, edits=[*prog.edits, *edits])
        stats = {
            "pruning": prune_stats,
            "weight_bits": plan,
            "parameters": {"before": params_before, "after": parameter_count(prog.module)},
            "quantized_training": stage1.to_dict() if self.prune > 0 else None,
            **training_stats(result),
        }
        if self.prune > 0:
            stats["accuracy_before"] = stage1.initial_accuracy
        return PassResult(prog, modified=True, stats=stats)
