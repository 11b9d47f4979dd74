"""``lsq``: low-bit weights *and* activations with learned step sizes (LSQ), quantization-aware training.

Every planned synapse (``nn.Conv2d`` / ``nn.Linear``; first and last at ``edge_bits``) gets an
:class:`edgec.lsq.LsqWeight` on its weight (one learned step per output channel) and an
:class:`edgec.lsq.InputQuantizer` on its input (one learned step, signed or unsigned as the input
is); with ``attention=true`` the model's :class:`edgec.lsq.QuantPoint` s (the inputs of attention's
``q k^T`` and ``attn v`` matmuls) are quantized at ``bits`` too. Steps start at LSQ's initial values
(a calibration batch of the training data) and are fine-tuned with the weights by the shared loop
(:mod:`edgec.finetune`; the task loss of the model: cross-entropy, or DETR's set loss for a
detector). Formulas: :mod:`edgec.lsq`; Esser et al., "Learned Step Size Quantization", ICLR 2020.
This is the baseline quantizer of Q-DETR (Xu et al., CVPR 2023), whose DRD is the ``q-detr`` recipe.

Result: weights baked on their grid, the input quantizers kept in the model (they are part of what
it computes; replayed from the ``quantize-inputs`` edit on load), and each layer's record
(:class:`edgec.quant.LayerQuant`: weight bits and steps, ``act_bits`` / ``act_scale`` / ``act_signed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from edgec.errors import UsageError
from edgec.lsq import LsqWeight, attach_input_quantizer, input_quantizers, observe, quant_points
from edgec.passes.base import PassContext, PassResult
from edgec.passes.training import (
    TrainingPass,
    bake_all,
    check_bits,
    copy_program,
    layer_plan,
    model_input,
    option,
    training_stats,
)
from edgec.program import Program
from edgec.quant import LayerQuant

if TYPE_CHECKING:
    from torch import nn

    from edgec.finetune import TrainingHook

#: training samples the initial activation steps are computed on
CALIBRATION_SAMPLES = 32


@dataclass
class LSQ(TrainingPass):
    name: ClassVar[str] = "lsq"
    model_kind: ClassVar[str | None] = "ann"
    description: ClassVar[str] = (
        "learned step size quantization of weights and activations (LSQ), attention inputs too; "
        "the Q-DETR baseline"
    )

    bits: int = option(4, "weight and activation width (2..8)")
    edge_bits: int = option(8, "width of the first and last synapse (0: like the rest)")
    attention: bool = option(True, "quantize the attention matmul inputs (q, k, v, softmax output)")
    layers: str = option("", "per-layer widths, e.g. backbone.0:8+Linear:4 (0 or skip: leave in float)")
    epochs: int | None = option(None, "fine-tuning epochs (default: the command's --epochs)")
    lr: float | None = option(None, "learning rate (default: the command's --lr)")

    def __post_init__(self) -> None:
        check_bits("bits", self.bits, 2, 8)
        check_bits("edge_bits", self.edge_bits, 0, 8)

    # ---- the quantizers -------------------------------------------------------------------------
    def quantize(self, prog: Program, ctx: PassContext) -> tuple[dict[str, int], dict[str, int]]:
        """Attach weight and input quantizers; returns (weight plan, input plan) by layer name."""
        module = prog.module
        plan = layer_plan(module, self.bits, self.edge_bits or None, self.layers)
        inputs = dict(plan)
        if self.attention:
            inputs.update(dict.fromkeys(quant_points(module), self.bits))
        for name, bits in plan.items():
            from edgec.fakequant import attach, weight_of

            sub = module.get_submodule(name)
            attach(sub, "weight", LsqWeight(bits, weight_of(sub)))
        for name, bits in inputs.items():
            attach_input_quantizer(module.get_submodule(name), bits)
        self._calibrate(prog, ctx)
        return plan, inputs

    def _calibrate(self, prog: Program, ctx: PassContext) -> None:
        """LSQ's initial activation steps (and each input's sign) from a batch of training data."""
        data = ctx.train if ctx.train is not None else ctx.calib
        if data is None:
            raise UsageError("recipe 'lsq' needs training data", hint="pass --train-data SRC")
        x = torch.from_numpy(next(iter(data.batches(CALIBRATION_SAMPLES))))
        module = prog.module
        quantizers = input_quantizers(module)
        was = module.training
        module.eval()
        # quantizers run in execution order; each observes the input its predecessors quantized
        observe(quantizers.values())
        with torch.no_grad():
            module(model_input(prog, x))
        module.train(was)

    def finish(self, prog: Program, plan: dict[str, int], inputs: dict[str, int]) -> Program:
        """Bake the weights, record every layer's grids and the ``quantize-inputs`` edit."""
        module = prog.module
        record: dict[str, LayerQuant] = bake_all(module, list(plan))
        quantizers = input_quantizers(module)
        for name, q in quantizers.items():
            base = record.get(name) or LayerQuant(method="lsq/activation")
            record[name] = LayerQuant(**{**base.to_dict(), "weight_scale": base.weight_scale, **q.fields()})
        edit = {
            "op": "quantize-inputs",
            "layers": {name: [q.bits, q.signed] for name, q in quantizers.items()},
        }
        return prog.replace(quant={**prog.quant, **record}, edits=[*prog.edits, edit])

    def hooks(self, prog: Program, teacher: nn.Module | None) -> Sequence[TrainingHook]:
        return ()

    def teacher(self, program: Program) -> nn.Module | None:
        return None

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        teacher = self.teacher(program)
        prog = copy_program(program)
        plan, inputs = self.quantize(prog, ctx)
        result = self.train(prog, ctx, hooks=self.hooks(prog, teacher), teacher=teacher)
        prog = self.finish(prog, plan, inputs)
        stats: dict[str, Any] = {
            "weight_bits": plan,
            "activation_bits": inputs,
            **training_stats(result),
        }
        return PassResult(prog, modified=True, stats=stats)
