"""``bi-vit``: Bi-ViT (AAAI 2024), a fully binarized vision transformer.

* Linear layers: 1-bit weights (``alpha = mean|W|`` per output row, clipped STE) and 1-bit inputs
  (Bi-Real's polynomial estimator, a learnable threshold per input feature), as the ``binarize``
  pass makes them; the first layer (patch embedding) and the last (head) stay at ``edge_bits``.
* q, k, v and the attention map, marked in the model by :class:`edgec.binary.Tap`: binarized with a
  learnable scale and zero-point per attention head (:class:`edgec.binary.LearnedBinary`, LSQ-style,
  initialised from data). ``scaling=fixed`` keeps the data-initialised values (the ablation).
* Distillation from the full-precision model (the program before this pass) run beside it:
  ``kd`` weighs the soft-label loss ``T^2 KL(softmax(z_t / T) || softmax(z_s / T))`` (Hinton et al.
  2015, DeiT's soft distillation); ``ranking`` weighs the ranking-aware attention distillation.

Ranking-aware attention distillation. The paper does not publish its ranking loss; edgec's reading
(docs/binarization.md) is a pairwise RankNet loss (Burges et al., ICML 2005) on the order in which each
query ranks the keys, weighted by how clearly the teacher orders them::

    L_rank = sum_{b,h,i,j,k} w_ijk * log(1 + exp(-(s_ij - s_ik) / tau)) / sum w_ijk
    w_ijk  = max(0, t_ij - t_ik)

with ``t`` the teacher's attention probabilities and ``s`` the log of the student's attention
probabilities before binarization (so ``s_ij - s_ik`` is the difference of the student's attention
scores ``q_i . k_j - q_i . k_k`` times the softmax scale): a pair the teacher orders clearly costs
the student a lot if it orders it the other way, a pair the teacher barely separates costs little.
It is averaged over the attention layers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from edgec.binary import LearnedBinary, Tap, attach_input_quantizer, input_quantizer_edit
from edgec.errors import UsageError
from edgec.finetune import Batch, TrainingHook
from edgec.passes.base import PassContext, PassResult
from edgec.passes.binarize import Binarize, binarize_plan, input_samples
from edgec.passes.training import (
    TrainingPass,
    attach_weight_quantizers,
    bake_all,
    check_bits,
    copy_program,
    option,
    training_stats,
)
from edgec.quant import LayerQuant

if TYPE_CHECKING:
    from edgec.program import Program

ROLES = ("q", "k", "v", "attn")


def ranking_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """The pairwise ranking loss of the module docstring; ``student`` / ``teacher`` are attention
    probabilities ``[B, H, N, N]`` (rows: queries)."""
    s = torch.log(student.clamp_min(1e-9))
    w = (teacher.unsqueeze(-1) - teacher.unsqueeze(-2)).clamp_min(0.0)  # w[..., i, j, k]
    d = s.unsqueeze(-1) - s.unsqueeze(-2)  # s_ij - s_ik
    return (w * F.softplus(-d / tau)).sum() / w.sum().clamp_min(1e-12)


def taps_of(module: nn.Module) -> dict[str, Tap]:
    return {n: m for n, m in module.named_modules() if isinstance(m, Tap)}


class _Captured:
    """The latest input of some modules (forward pre-hooks, run before any input quantizer)."""

    def __init__(self) -> None:
        self.values: dict[str, torch.Tensor] = {}
        self.handles: list[Any] = []

    def watch(self, module: nn.Module, names: list[str]) -> None:
        for n in names:

            def grab(_m: nn.Module, args: tuple[Any, ...], n: str = n) -> None:
                self.values[n] = args[0]

            self.handles.append(module.get_submodule(n).register_forward_pre_hook(grab, prepend=True))

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles, self.values = [], {}


class RankingDistillation(TrainingHook):
    """``weight * L_rank`` averaged over the attention maps (module docstring)."""

    name = "ranking"

    def __init__(self, taps: list[str], weight: float, tau: float) -> None:
        self.taps, self.weight, self.tau = taps, weight, tau
        self.student, self.teacher = _Captured(), _Captured()

    def setup(self, student: nn.Module, teacher: nn.Module | None) -> None:
        if teacher is None:
            raise ValueError("ranking distillation needs the teacher")
        self.student.watch(student, self.taps)
        self.teacher.watch(teacher, self.taps)

    def loss(self, batch: Batch) -> torch.Tensor | None:
        terms = [
            ranking_loss(self.student.values[n], self.teacher.values[n].detach(), self.tau) for n in self.taps
        ]
        return self.weight * torch.stack(terms).mean()

    def teardown(self) -> None:
        self.student.close()
        self.teacher.close()


class LogitDistillation(TrainingHook):
    """``weight * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))`` (Hinton et al. 2015)."""

    name = "kd"

    def __init__(self, weight: float, temperature: float) -> None:
        self.weight, self.t = weight, temperature

    def loss(self, batch: Batch) -> torch.Tensor | None:
        assert batch.teacher_logits is not None  # call() passes the teacher with this hook
        p_t = F.log_softmax(batch.teacher_logits / self.t, dim=1)
        p_s = F.log_softmax(batch.logits / self.t, dim=1)
        return self.weight * self.t**2 * F.kl_div(p_s, p_t, reduction="batchmean", log_target=True)


@dataclass
class BiViT(TrainingPass):
    name: ClassVar[str] = "bi-vit"
    model_kind: ClassVar[str | None] = "ann"
    description: ClassVar[str] = (
        "Bi-ViT: 1-bit linears, q, k, v and attention map (learnable per-head scales), ranking-aware "
        "attention distillation"
    )

    scaling: str = option(
        "learnable",
        "per-head scale and zero-point of q, k, v, attention: learnable | fixed",
        choices=("learnable", "fixed"),
    )
    ranking: float = option(1.0, "weight of the ranking-aware attention distillation (0: off)", minimum=0.0)
    kd: float = option(
        1.0, "weight of the soft-label distillation from the full-precision model (0: off)", minimum=0.0
    )
    temperature: float = option(2.0, "temperature of the soft-label distillation", minimum=0.1)
    tau: float = option(1.0, "temperature of the pairwise ranking loss", minimum=0.01)
    attention: bool = option(True, "binarize q, k, v and the attention map (False: the linear layers only)")
    edge_bits: int = option(8, "width of the first and last layer (0: binarize them too)")
    layers: str = option("", "per-layer widths, e.g. head:8+blocks.0.mlp.0:1 (0 or skip: leave as is)")
    epochs: int | None = option(None, "fine-tuning epochs (default: the command's --epochs)")
    lr: float | None = option(None, "learning rate (default: the command's --lr)")

    def __post_init__(self) -> None:
        check_bits("edge_bits", self.edge_bits, 0, 8)
        if self.scaling not in ("learnable", "fixed"):
            raise UsageError(f"unknown scaling '{self.scaling}'", hint="choose learnable or fixed")
        if self.ranking > 0 and not self.attention:
            raise UsageError(
                "ranking distillation with attention=false: the ranking loss distils the attention maps "
                "that attention=true binarizes",
                hint="drop ranking= (ranking=0) or keep attention binarized",
            )

    def _attention_taps(self, module: nn.Module) -> dict[str, Tap]:
        taps = {n: t for n, t in taps_of(module).items() if t.role in ROLES}
        if self.attention and not taps:
            raise UsageError(
                "bi-vit binarizes q, k, v and the attention map where the model marks them with "
                "edgec.binary.Tap; this model has no such marks",
                hint="use binarize for its linear layers, or bi-vit:attention=false (or zoo:digits-vit)",
            )
        return taps if self.attention else {}

    def requires(self, program: Program) -> None:
        super().requires(program)
        binarize_plan(program.module, self.edge_bits or None, self.layers)
        self._attention_taps(program.module)

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        teacher = copy.deepcopy(program.module).eval()
        prog = copy_program(program)
        module = prog.module
        plan = binarize_plan(module, self.edge_bits or None, self.layers)
        linears = Binarize(estimator="bireal", activations=1, edge_bits=self.edge_bits, layers=self.layers)
        binary = [n for n, b in plan.items() if b == 1]
        attach_weight_quantizers(module, plan, linears.weight_quantizer)
        acts, edits = linears.attach_activations(prog, ctx.train, binary)
        taps = self._attention_taps(module)
        samples = input_samples(prog, ctx.train, list(taps))
        for n, tap in taps.items():
            q = LearnedBinary(tap.heads, estimator="bireal", learnable=self.scaling == "learnable")
            if n in samples:
                q.init_from(samples[n])
            attach_input_quantizer(tap, q)
            edits.append(input_quantizer_edit(n, q))
        hooks: list[TrainingHook] = []
        if self.kd > 0:
            hooks.append(LogitDistillation(self.kd, self.temperature))
        attn_maps = [n for n, t in taps.items() if t.role == "attn"]
        if self.ranking > 0 and attn_maps:
            hooks.append(RankingDistillation(attn_maps, self.ranking, self.tau))
        result = self.train(prog, ctx, hooks=hooks, teacher=teacher if hooks else None)
        record = Binarize.binary_record(bake_all(module, list(plan)), acts)
        record.update(self._tap_record(module, taps))
        prog = prog.replace(quant={**prog.quant, **record}, edits=[*prog.edits, *edits])
        stats = {
            "weight_bits": plan,
            "binarized": binary,
            "binarized_attention": sorted(taps),
            "scaling": self.scaling,
            "distillation": {"kd": self.kd, "ranking": self.ranking if attn_maps else 0.0},
            **training_stats(result),
        }
        return PassResult(prog, modified=True, stats=stats)

    def _tap_record(self, module: nn.Module, taps: dict[str, Tap]) -> dict[str, LayerQuant]:
        """Each binarized tap; and each module whose q, k, v and attention map all are (its two matmuls
        take 1-bit operands: the energy report counts them as binary operations)."""
        out: dict[str, LayerQuant] = {}
        owners: dict[str, set[str]] = {}
        for n, tap in taps.items():
            out[n] = LayerQuant(
                method=f"bi-vit/{'lsq' if self.scaling == 'learnable' else 'fixed'}",
                act_bits=1,
                act_signed=True,
                extra={"role": tap.role, "per_head": tap.heads},
            )
            owners.setdefault(n.rpartition(".")[0], set()).add(tap.role)
        for owner, roles in owners.items():
            if roles >= set(ROLES):
                out[owner] = LayerQuant(
                    method="bi-vit/attention", act_bits=1, extra={"binary_matmuls": ["q k^T", "attn v"]}
                )
        return out
