"""``q-snn``: Q-SNN, low-bit synaptic weights and a low-bit membrane potential, with a weight/spike
entropy regulariser in the spirit of WS-DR.

* Weights: symmetric uniform ``bits``-bit grid per output channel (:class:`edgec.fakequant.UniformWeight`),
  first and last synapse at ``edge_bits``.
* Membrane: every CUBA LIF neuron stores ``v`` on a ``state_bits`` grid spanning
  ``[-threshold, threshold]`` (:class:`edgec.snn_quant.QuantStateCubaLIF`).
* Regulariser (Weight-Spike Dual Regulation, Q-SNN; the paper's exact terms are not public, so this is
  a documented reading): information entropy kept high on both sides,

      L_ws = lambda_w * mean_l (1 - H(levels_l) / log K_l) + lambda_s * mean_l (1 - mean_i H_b(p_i) / log 2)

  where ``H(levels_l)`` is the entropy of layer l's weight-level histogram (soft-assigned, so it has a
  gradient; ``K_l`` levels), ``p_i`` the firing rate of neuron i on the batch and ``H_b`` the binary
  entropy. Low-bit weights collapsing onto few levels, and neurons going silent, both raise the loss.

Loihi keeps 24-bit neuron state: the trained low-bit membrane cannot run there as trained, and the
Loihi target says so (check rule ``membrane-quantization``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from edgec.fakequant import UniformWeight, original_weight
from edgec.finetune import Batch, TrainingHook
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
from edgec.snn import is_spiking_neuron
from edgec.snn_quant import quantize_state


class WSDR(TrainingHook):
    """The weight / spike entropy regulariser (module docstring)."""

    name = "ws-dr"

    def __init__(self, quantizers: dict[str, UniformWeight], lambda_w: float, lambda_s: float) -> None:
        self.quantizers = quantizers
        self.lambda_w = lambda_w
        self.lambda_s = lambda_s
        self.spikes: list[torch.Tensor] = []
        self.handles: list[Any] = []
        self.module: nn.Module | None = None

    def setup(self, student: nn.Module, teacher: nn.Module | None) -> None:
        self.module = student
        for m in student.modules():
            if is_spiking_neuron(m):
                self.handles.append(m.register_forward_hook(self._capture))

    def _capture(self, _m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        if torch.is_grad_enabled():
            self.spikes.append(out)

    def loss(self, batch: Batch) -> torch.Tensor | None:
        assert self.module is not None  # set by setup(), which finetune calls first
        terms = []
        if self.lambda_w > 0:
            ent = []
            for name, q in self.quantizers.items():
                w = original_weight(self.module.get_submodule(name))
                s = q.scale(w).reshape(-1, *([1] * (w.dim() - 1)))
                u = (w / s).flatten()
                levels = torch.arange(-q.q, q.q + 1, dtype=u.dtype, device=u.device)
                soft = torch.softmax(-((u[:, None] - levels[None, :]) ** 2) / 0.5, dim=1).mean(0)
                h = -(soft * torch.log(soft + 1e-12)).sum()
                ent.append(1.0 - h / math.log(len(levels)))
            terms.append(self.lambda_w * torch.stack(ent).mean())
        if self.lambda_s > 0 and self.spikes:
            ent = []
            for s in self.spikes:
                p = s.float().mean(dim=(0, 1)).clamp(1e-6, 1 - 1e-6)  # rate per neuron over time and batch
                hb = -(p * torch.log(p) + (1 - p) * torch.log(1 - p))
                ent.append(1.0 - hb.mean() / math.log(2.0))
            terms.append(self.lambda_s * torch.stack(ent).mean())
        self.spikes = []
        return torch.stack(terms).sum() if terms else None

    def teardown(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.spikes = []


@dataclass
class QSNN(TrainingPass):
    name: ClassVar[str] = "q-snn"
    model_kind: ClassVar[str | None] = "snn"
    description: ClassVar[str] = (
        "Q-SNN: low-bit weights and low-bit membrane potential, WS-DR-style entropy regulariser"
    )

    bits: int = option(4, "weight width of the compressed synapses (2..8)")
    state_bits: int = option(8, "membrane potential width of every spiking neuron (2..16)")
    edge_bits: int = option(8, "width of the first and last synapse (0: like the rest)")
    lambda_w: float = option(0.01, "weight of the weight-entropy term")
    lambda_s: float = option(0.01, "weight of the spike-entropy term")
    layers: str = option("", "per-layer widths, e.g. net.3:6+Linear:8 (0 or skip: leave uncompressed)")
    epochs: int | None = option(None, "fine-tuning epochs (default: the command's --epochs)")
    lr: float | None = option(None, "learning rate (default: the command's --lr)")

    def __post_init__(self) -> None:
        check_bits("bits", self.bits, 2, 8)
        check_bits("state_bits", self.state_bits, 2, 16)
        check_bits("edge_bits", self.edge_bits, 0, 8)

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        prog = copy_program(program)
        neurons = [n for n, m in prog.module.named_modules() if is_spiking_neuron(m)]
        for n in neurons:
            quantize_state(prog.module.get_submodule(n), self.state_bits)  # type: ignore[arg-type]
        edits = [{"op": "quantize-state", "layer": n, "bits": self.state_bits} for n in neurons]
        plan = layer_plan(prog.module, self.bits, self.edge_bits or None, self.layers)
        quantizers = attach_weight_quantizers(prog.module, plan, lambda b: UniformWeight(b, per_channel=True))
        hook = WSDR(quantizers, self.lambda_w, self.lambda_s)  # type: ignore[arg-type]
        result = self.train(prog, ctx, hooks=[hook])
        record = bake_all(prog.module, list(plan))
        from edgec.quant import LayerQuant

        for n in neurons:
            record[n] = LayerQuant(method="q-snn/membrane", state_bits=self.state_bits)
        prog = prog.replace(quant={**prog.quant, **record}, edits=[*prog.edits, *edits])
        stats = {
            "weight_bits": plan,
            "state_bits": {n: self.state_bits for n in neurons},
            **training_stats(result),
        }
        return PassResult(prog, modified=True, stats=stats)
