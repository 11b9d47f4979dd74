"""What every training-time compression pass shares: options, the layer plan, quantizers, fine-tuning.

A compression pass (QP-SNN, Q-SNN, soft-threshold pruning, the baselines, ...) is a :class:`TrainingPass`:

1. ``requires`` checks the model fits the method (a spiking pass on an SNN, ...);
2. ``call`` copies the module, changes its structure (pruning) and records each change as an *edit*
   (:mod:`edgec.store` replays edits to rebuild the compressed model without pickle), registers its
   weight reparameterisations (:mod:`edgec.fakequant`) on the synapses the :class:`LayerPolicy` picks,
   fine-tunes with the shared loop (:func:`edgec.finetune.finetune`), and bakes the weights onto their
   grid, recording each layer's grid in :attr:`Program.quant`;
3. its stats (what changed, the training curve, accuracy before and after) go into the report.

Options are dataclass fields; ``metadata={"help": ...}`` is what ``edgec recipes`` prints. ``epochs``
and ``lr`` override the command's ``--epochs`` / ``--lr`` for this pass only.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from edgec.errors import UsageError
from edgec.fakequant import WeightQuantizer, attach, bake
from edgec.finetune import FinetuneOptions, FinetuneResult, TrainingHook, finetune
from edgec.options import option  # noqa: F401 - passes declare their options with it
from edgec.passes.base import Pass, PassContext
from edgec.policy import LayerPolicy, parse_layers, synapses_in_order
from edgec.quant import LayerQuant

if TYPE_CHECKING:
    from edgec.program import Program


def check_bits(name: str, bits: int, low: int, high: int) -> None:
    if not isinstance(bits, int) or not low <= bits <= high:
        raise UsageError(f"{name}={bits} is out of range", hint=f"{name} takes {low}..{high}")


def check_fraction(name: str, value: float) -> None:
    if not 0.0 <= float(value) < 1.0:
        raise UsageError(
            f"{name}={value} is outside [0, 1)", hint=f"{name} is the fraction to remove, e.g. 0.5"
        )


class TrainingPass(Pass):
    """Base of the compression passes (see the module docstring)."""

    needs: ClassVar[frozenset[str]] = frozenset({"training"})
    #: the pass changes what the model computes: artifacts store the compressed model and verify
    #: compares with it, not with the source
    changes_function: ClassVar[bool] = True
    #: "snn", "ann" or None (both)
    model_kind: ClassVar[str | None] = None
    description: ClassVar[str] = ""

    epochs: int | None
    lr: float | None

    def requires(self, program: Program) -> None:
        if self.model_kind is not None and program.kind != self.model_kind:
            what = "spiking networks (SNNs)" if self.model_kind == "snn" else "non-spiking networks (ANNs)"
            other = (
                "uniform-quant or magnitude-prune"
                if self.model_kind == "snn"
                else "qp-snn, q-snn or soft-threshold-prune"
            )
            this = "an SNN" if program.kind == "snn" else "an ANN"
            raise UsageError(
                f"recipe '{self.name}' compresses {what}; this model is {this}",
                hint=f"use {other} instead (see `edgec recipes`)",
            )

    # ---- helpers for subclasses -------------------------------------------------------------------
    def finetune_options(self, ctx: PassContext) -> FinetuneOptions:
        base = ctx.finetune or FinetuneOptions(seed=ctx.seed)
        changes: dict[str, Any] = {}
        if self.epochs is not None:
            changes["epochs"] = self.epochs
        if self.lr is not None:
            changes["lr"] = self.lr
        return dataclasses.replace(base, **changes)

    def train(
        self,
        program: Program,
        ctx: PassContext,
        *,
        hooks: Sequence[TrainingHook] = (),
        teacher: nn.Module | None = None,
        options: FinetuneOptions | None = None,
    ) -> FinetuneResult:
        assert ctx.train is not None  # the pass manager checks `needs` before calling
        return finetune(
            program,
            ctx.train,
            ctx.holdout,
            options or self.finetune_options(ctx),
            hooks=hooks,
            teacher=teacher,
            progress=ctx.progress,
            description=self.name,
        )


def copy_program(program: Program) -> Program:
    """A deep copy of the module (the caller's model is never changed in place)."""
    return program.replace(
        module=copy.deepcopy(program.module), quant=dict(program.quant), edits=list(program.edits)
    )


def model_input(program: Program, x: torch.Tensor) -> torch.Tensor:
    """What the module receives for raw input ``x`` (an SNN's encoded ``[T, B, ...]``)."""
    if program.kind != "snn":
        return x
    from edgec.snn import encode

    return encode(x, program.timesteps, program.encoder)


def layer_plan(module: nn.Module, bits: int, edge_bits: int | None, layers: Any) -> dict[str, int]:
    policy = LayerPolicy(bits=bits, edge_bits=edge_bits, overrides=parse_layers(layers))
    plan = policy.plan(synapses_in_order(module))
    if not plan:
        raise UsageError("no layer of the model is left to compress", hint="check the layers= option")
    return plan


def attach_weight_quantizers(
    module: nn.Module, plan: dict[str, int], make: Callable[[int], WeightQuantizer]
) -> dict[str, WeightQuantizer]:
    """Register ``make(bits)`` on the weight of every planned synapse."""
    out = {}
    for name, bits in plan.items():
        q = make(bits)
        attach(module.get_submodule(name), "weight", q)
        out[name] = q
    return out


def bake_all(module: nn.Module, names: Sequence[str]) -> dict[str, LayerQuant]:
    """Bake every parametrized weight among ``names``; returns the grid record of the quantized ones."""
    record: dict[str, LayerQuant] = {}
    for name in names:
        q = bake(module.get_submodule(name))
        if q is not None:
            record[name] = q
    return record


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def training_stats(result: FinetuneResult) -> dict[str, Any]:
    return {
        "accuracy_before": result.initial_accuracy,
        "accuracy_after": result.best_accuracy,
        "best_epoch": result.best_epoch,
        "finetune": result.to_dict(),
    }
