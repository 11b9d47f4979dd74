"""``binarize``: 1-bit weights, and 1-bit activations or real ones, trained with STE, ReSTE or Bi-Real.

``--recipe binarize:estimator=reste,activations=1`` (the defaults):

* every synapse the layer policy picks is binarized (:class:`edgec.binary.BinaryWeight`):
  ``W_b = alpha_c * b(W)``, ``alpha_c = mean|W_c|`` per output channel; the first and the last stay
  at ``edge_bits`` (8, symmetric uniform grid), as ReSTE and Bi-Real keep them;
* ``activations=1`` (ANNs): the input of every binarized layer is binarized too
  (:class:`edgec.binary.BinaryActivation`, ``b(x - beta)`` with a learnable per-channel threshold
  initialised at the mean of that input on training data): 1W/1A, the layer's multiply-accumulates
  become binary operations (XNOR + popcount). ``activations=32`` keeps them real (1W/32A). A spiking
  network's activations are spikes, already one bit: nothing is inserted there;
* ``estimator``: ``ste`` (clipped straight-through), ``reste`` (rectified STE, a power function
  with exponent 1/o), ``bireal`` (Bi-Real's polynomial for activations, the clipped STE for
  weights); formulas in :mod:`edgec.binary`;
* ReSTE's schedule (:class:`PowerSchedule`, from the official code): at the start of epoch ``e`` of
  ``E``, ``o = 1 + (o_end - 1) (1 - cos(pi / 2 * e / E))``, ``o_end = 3``, on weights and
  activations alike.

The trained weights are baked to ``alpha_c * +-1`` and recorded as 1-bit layers of
:attr:`Program.quant` (``act_bits=1`` where the input is binarized), the input binarizers as
``binarize-input`` edits the program store replays. Sources: ../shared/reference/methods.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from edgec.binary import (
    ESTIMATORS,
    RESTE_T,
    BinaryActivation,
    BinaryWeight,
    attach_input_quantizer,
    input_quantizer_edit,
)
from edgec.errors import UsageError
from edgec.fakequant import UniformWeight, WeightQuantizer
from edgec.finetune import TrainingHook
from edgec.passes.base import PassContext, PassResult
from edgec.passes.training import (
    TrainingPass,
    attach_weight_quantizers,
    bake_all,
    check_bits,
    copy_program,
    model_input,
    option,
    training_stats,
)
from edgec.policy import LayerPolicy, parse_layers, synapses_in_order

if TYPE_CHECKING:
    from edgec.data import Dataset
    from edgec.program import Program

#: training samples the activation thresholds are initialised on
INIT_SAMPLES = 256


class PowerSchedule(TrainingHook):
    """ReSTE's power ``o``, raised from 1 to ``o_end`` on a quarter cosine over the epochs."""

    name = "reste-o"

    def __init__(self, quantizers: Sequence[nn.Module], o_end: float) -> None:
        self.quantizers = quantizers
        self.o_end = float(o_end)
        self.o = 1.0

    @staticmethod
    def power(epoch: int, epochs: int, o_end: float) -> float:
        return 1.0 + (o_end - 1.0) * (1.0 - math.cos(math.pi / 2.0 * epoch / max(1, epochs)))

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.o = self.power(epoch, epochs, self.o_end)
        for q in self.quantizers:
            q.o = self.o  # type: ignore[assignment]


def binarize_plan(module: nn.Module, edge_bits: int | None, layers: Any) -> dict[str, int]:
    """Width per synapse: 1 (binarized), ``edge_bits`` for the first and last, overrides (2..8: a
    uniform grid; 0 / skip: untouched). A usage error when nothing would be binarized."""
    synapses = synapses_in_order(module)
    if not synapses:
        raise UsageError(
            "the model has no Conv2d or Linear layer to binarize",
            hint="binarize compresses convolution and linear layers",
        )
    plan = LayerPolicy(bits=1, edge_bits=edge_bits, overrides=parse_layers(layers)).plan(synapses)
    bad = {n: b for n, b in plan.items() if not 1 <= b <= 8}
    if bad:
        name, bits = next(iter(bad.items()))
        raise UsageError(f"layer width {bits} for '{name}' is out of range", hint="widths are 1..8, or skip")
    if not any(b == 1 for b in plan.values()):
        kept = ", ".join(f"{n}:{b}" for n, b in plan.items()) or "none"
        raise UsageError(
            f"no layer of the model would be binarized: its {len(synapses)} synapse(s) stay wider "
            f"({kept}); the first and last keep edge_bits",
            hint="name layers to binarize (layers=NAME:1), or edge_bits=0 to binarize the first and last too",
        )
    return plan


def input_samples(program: Program, data: Dataset | None, names: list[str]) -> dict[str, torch.Tensor]:
    """The inputs of layers ``names`` on the first :data:`INIT_SAMPLES` samples of ``data``."""
    if data is None or not names:
        return {}
    x, _ = data.arrays()
    xb = torch.from_numpy(x[:INIT_SAMPLES])
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for n in names:

        def grab(_m: nn.Module, args: tuple[Any, ...], n: str = n) -> None:
            seen[n] = args[0].detach()

        handles.append(program.module.get_submodule(n).register_forward_pre_hook(grab))
    was = program.module.training
    program.module.eval()
    try:
        with torch.no_grad():
            program.module(model_input(program, xb))
    finally:
        for h in handles:
            h.remove()
        program.module.train(was)
    return seen


def channel_dim(module: nn.Module) -> int:
    return 1 if isinstance(module, nn.Conv2d) else -1


def channels_in(module: nn.Module) -> int:
    return int(module.in_channels if isinstance(module, nn.Conv2d) else module.in_features)  # type: ignore[arg-type]


@dataclass
class Binarize(TrainingPass):
    name: ClassVar[str] = "binarize"
    description: ClassVar[str] = (
        "1-bit weights (alpha = mean|W| per channel), 1-bit or real activations; STE, ReSTE or Bi-Real"
    )

    estimator: str = option("reste", "gradient estimator of sign: ste | reste | bireal", choices=ESTIMATORS)
    weights: int = option(1, "weight width of the binarized layers (this recipe makes 1-bit weights)")
    activations: int | None = option(
        None,
        "1: binarize the inputs of binarized layers (1W/1A); 32: keep them real (1W/32A); "
        "default 1 (an SNN's spikes are 1-bit already)",
    )
    o_end: float | None = option(None, "ReSTE: final power o of the schedule (default 3)")
    threshold: float | None = option(None, "ReSTE: no gradient beyond |x| > t (default 1.5)")
    edge_bits: int = option(8, "width of the first and last synapse (0: binarize them too)")
    per_channel: bool = option(True, "one alpha per output channel (False: one per layer)")
    layers: str = option("", "per-layer widths, e.g. features.3:1+Linear:8 (0 or skip: leave as is)")
    epochs: int | None = option(None, "fine-tuning epochs (default: the command's --epochs)")
    lr: float | None = option(None, "learning rate (default: the command's --lr)")

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise UsageError(
                f"unknown estimator '{self.estimator}'", hint=f"choose one of: {', '.join(ESTIMATORS)}"
            )
        if self.weights != 1:
            raise UsageError(
                f"binarize:weights={self.weights} contradicts binarization (1-bit weights)",
                hint="use uniform-quant:bits=N for 2..8-bit weights",
            )
        if self.activations not in (None, 1, 32):
            raise UsageError(
                f"activations={self.activations} is not a width binarize trains",
                hint="activations=1 (binary) or activations=32 (real)",
            )
        if self.estimator != "reste":
            given = [k for k in ("o_end", "threshold") if getattr(self, k) is not None]
            if given:
                raise UsageError(
                    f"{', '.join(given)} set with estimator={self.estimator}: only ReSTE has a power "
                    "schedule and threshold",
                    hint="drop them, or use estimator=reste",
                )
        if self.o_end is not None and not 1.0 <= self.o_end <= 10.0:
            raise UsageError(f"o_end={self.o_end} is out of range", hint="o_end takes 1..10 (the paper: 3)")
        if self.threshold is not None and not 0.1 < self.threshold <= 10.0:
            raise UsageError(
                f"threshold={self.threshold} is out of range", hint="t takes (0.1, 10] (the paper: 1.5)"
            )
        check_bits("edge_bits", self.edge_bits, 0, 8)

    # ---- what the pass does to which layer --------------------------------------------------------------
    def binary_inputs(self, program: Program) -> bool:
        if program.kind == "snn":
            if self.activations == 32:
                raise UsageError(
                    "activations=32 on a spiking network: its activations are spikes, one bit already",
                    hint="drop activations= for an SNN (its weights are binarized, its spikes stay)",
                )
            return False
        return self.activations in (None, 1)

    def requires(self, program: Program) -> None:
        super().requires(program)
        binarize_plan(program.module, self.edge_bits or None, self.layers)
        self.binary_inputs(program)

    def weight_quantizer(self, bits: int) -> WeightQuantizer:
        if bits == 1:
            return BinaryWeight(self.estimator, per_channel=self.per_channel, t=self.threshold or RESTE_T)
        return UniformWeight(max(bits, 2), per_channel=True)

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        prog = copy_program(program)
        plan = binarize_plan(prog.module, self.edge_bits or None, self.layers)
        binary = [n for n, b in plan.items() if b == 1]
        quantizers = attach_weight_quantizers(prog.module, plan, self.weight_quantizer)
        acts, edits = self.attach_activations(prog, ctx.train, binary)
        hooks: list[TrainingHook] = []
        if self.estimator == "reste":
            scheduled = [q for n, q in quantizers.items() if n in binary] + list(acts.values())
            hooks.append(PowerSchedule(scheduled, self.o_end or 3.0))
        result = self.train(prog, ctx, hooks=hooks)
        record = self.binary_record(bake_all(prog.module, list(plan)), acts)
        prog = prog.replace(quant={**prog.quant, **record}, edits=[*prog.edits, *edits])
        stats = {
            "weight_bits": plan,
            "binarized": binary,
            "binary_inputs": sorted(acts),
            "estimator": self.estimator,
            **training_stats(result),
        }
        if hooks:
            stats["reste_o_end"] = self.o_end or 3.0
        return PassResult(prog, modified=True, stats=stats)

    def attach_activations(
        self, prog: Program, data: Dataset | None, binary: list[str]
    ) -> tuple[dict[str, BinaryActivation], list[dict[str, Any]]]:
        """Binarize the inputs of ``binary`` layers (ANNs, ``activations=1``): thresholds at the mean of
        each input channel on training data (0 without data)."""
        if not self.binary_inputs(prog):
            return {}, []
        samples = input_samples(prog, data, binary)
        acts: dict[str, BinaryActivation] = {}
        edits = []
        for n in binary:
            layer = prog.module.get_submodule(n)
            q = BinaryActivation(
                channels_in(layer),
                dim=channel_dim(layer),
                estimator=self.estimator,
                t=self.threshold or RESTE_T,
            )
            if n in samples:
                q.init_from(samples[n])
            attach_input_quantizer(layer, q)
            acts[n] = q
            edits.append(input_quantizer_edit(n, q))
        return acts, edits

    @staticmethod
    def binary_record(record: dict[str, Any], acts: dict[str, Any]) -> dict[str, Any]:
        """The baked grids, with ``act_bits=1`` on the layers whose input is binarized (+-1, scale 1)."""
        out = dict(record)
        for n in acts:
            out[n] = dataclasses.replace(out[n], act_bits=1, act_scale=1.0, act_signed=True)
        return out
