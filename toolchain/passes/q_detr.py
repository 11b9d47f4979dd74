"""``q-detr``: the LSQ low-bit DETR plus distribution rectification distillation (DRD).

Q-DETR (Xu et al., "Q-DETR: An Efficient Low-Bit Quantized Detection Transformer", CVPR 2023). The
official repository holds no code; the equations are the authors' (../shared/reference/methods.md):

* **Query rectification** (inner level: maximise the self-information entropy of the student's
  queries under a Gaussian assumption): ``D*_s = (D_s - mean(D_s)) / sqrt(var(D_s) + 1e-5) * gamma +
  beta`` with ``gamma``, ``beta`` learnable (one per channel; mean and variance over each query's
  channels).
* **Foreground-aware query matching** (upper level): for every ground-truth box ``i`` of an image,
  ``G_i = max_j GIoU(b_gt_i, b_s_j)`` over the student's predicted boxes; student query ``j`` is kept
  when ``GIoU(b_gt_i, b_s_j) > tau * G_i`` for some ``i`` (and each box's best query always); each kept
  query is matched to the teacher query ``k`` maximising ``mu1 * GIoU(b_s_j, b_t_k) - mu2 *
  ||b_s_j - b_t_k||_1`` (``mu1 = 2``, ``mu2 = 5``).
* **Distillation**: ``L_DRD = mean over kept queries of ||D*_s_j - D_t_k||_2`` on the decoder's query
  features (the output of ``features``, by default ``decoder_norm``: what the class and box heads
  read), and ``L = L_GT + lambda * L_DRD`` (option ``lam``: ``lambda`` is a Python keyword).

Readings where the equations leave a choice (documented in docs/compression.md): the rectification
is applied to the features that are distilled (it shapes the loss; the deployed student is the LSQ
network itself, with nothing added at inference); the teacher is the full-precision model the pass
starts from; boxes used for matching are detached.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from edgec.detection import giou
from edgec.errors import UsageError
from edgec.finetune import Batch, TrainingHook
from edgec.passes.lsq import LSQ
from edgec.passes.training import option

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle

    from edgec.program import Program


class QueryRectifier(nn.Module):
    """``(q - mean) / sqrt(var + eps) * gamma + beta`` over each query's channels (learnable gamma, beta)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        mean = q.mean(-1, keepdim=True)
        var = q.var(-1, keepdim=True, unbiased=False)
        return (q - mean) / torch.sqrt(var + self.eps) * self.gamma + self.beta


def foreground_matches(
    gt: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor, tau: float, mu1: float, mu2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's (student query indices, teacher query indices) of foreground-aware matching.

    ``gt`` [G, 4], ``student`` / ``teacher`` [Q, 4]: ``(cx, cy, w, h)`` boxes (see the module docstring)."""
    if len(gt) == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=student.device)
        return empty, empty
    g = giou(gt, student)  # [G, Q]
    best = g.max(1)
    keep = (g > tau * best.values[:, None]).any(0)
    keep[best.indices] = True
    js = keep.nonzero().flatten()
    cost = mu1 * giou(student[js], teacher) - mu2 * torch.cdist(student[js], teacher, p=1)
    return js, cost.argmax(1)


class DRDHook(TrainingHook):
    """Distribution rectification distillation (see the module docstring) as a loss term of the loop."""

    name = "drd"

    def __init__(
        self,
        features: str,
        channels: int,
        *,
        lam: float,
        tau: float,
        mu1: float,
        mu2: float,
        boxes: str = "boxes",
    ) -> None:
        self.features, self.boxes = features, boxes
        self.lam, self.tau, self.mu1, self.mu2 = lam, tau, mu1, mu2
        self.rectifier = QueryRectifier(channels)
        self._student: torch.Tensor | None = None
        self._teacher: torch.Tensor | None = None
        self._handles: list[RemovableHandle] = []
        self.kept = 0  # student queries distilled over the run (a statistic for the report)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.rectifier.parameters())

    def setup(self, student: nn.Module, teacher: nn.Module | None) -> None:
        if teacher is None:
            raise UsageError("q-detr distils from a teacher; none was given")
        self.rectifier.to(next(student.parameters()).device)

        def keep(which: str):  # the last call is the final decoder layer's (aux heads come first)
            def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
                setattr(self, which, out)

            return hook

        self._handles = [
            student.get_submodule(self.features).register_forward_hook(keep("_student")),
            teacher.get_submodule(self.features).register_forward_hook(keep("_teacher")),
        ]

    def teardown(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def loss(self, batch: Batch) -> torch.Tensor | None:
        if self._student is None or self._teacher is None or batch.teacher_output is None:
            return None
        ds, dt = self.rectifier(self._student), self._teacher.detach()
        sb = batch.output[self.boxes].detach()
        tb = batch.teacher_output[self.boxes].detach()
        terms = []
        for b, target in enumerate(batch.y):
            js, ks = foreground_matches(target["boxes"], sb[b], tb[b], self.tau, self.mu1, self.mu2)
            if len(js):
                terms.append(torch.linalg.vector_norm(ds[b, js] - dt[b, ks], dim=-1))
        if not terms:
            return None
        dist = torch.cat(terms)
        self.kept += len(dist)
        return self.lam * dist.mean()


@dataclass
class QDETR(LSQ):
    name: ClassVar[str] = "q-detr"
    description: ClassVar[str] = (
        "Q-DETR: LSQ low-bit DETR + distribution rectification distillation from the full-precision teacher"
    )

    lam: float = option(1.0, "lambda, the weight of the DRD loss (L = L_GT + lambda L_DRD)", minimum=0.0)
    tau: float = option(
        0.5, "foreground threshold: keep queries with GIoU > tau * the box's best", minimum=0.0
    )
    mu1: float = option(2.0, "matching weight of GIoU(student, teacher)", minimum=0.0)
    mu2: float = option(5.0, "matching weight of the L1 box distance", minimum=0.0)
    features: str = option("decoder_norm", "module whose output is the decoder's query features")

    def requires(self, program: Program) -> None:
        super().requires(program)
        if program.metadata.get("task") != "detection":
            raise UsageError(
                "recipe 'q-detr' distils a detection transformer's queries; this model is no detector",
                hint="use lsq (the same quantizer without DRD), or give a detection model (zoo:detr-shapes)",
            )
        names = dict(program.module.named_modules())
        if self.features not in names:
            raise UsageError(
                f"q-detr: the model has no module '{self.features}' (features=)",
                hint="name the module whose output is the decoder's query features",
            )

    def teacher(self, program: Program) -> nn.Module | None:
        return copy.deepcopy(program.module).eval()

    def hooks(self, prog: Program, teacher: nn.Module | None) -> Sequence[TrainingHook]:
        feat = prog.module.get_submodule(self.features)
        channels = getattr(feat, "normalized_shape", None)
        width = int(channels[0]) if channels else int(getattr(feat, "out_features", 0))
        if not width:
            raise UsageError(
                f"q-detr: cannot tell the width of '{self.features}'s output",
                hint="name a LayerNorm or Linear module in features=",
            )
        return (DRDHook(self.features, width, lam=self.lam, tau=self.tau, mu1=self.mu1, mu2=self.mu2),)
