"""Set-prediction object detection (DETR-style): matching, losses, decoding and mAP.

A detection program (``program.metadata["task"] == "detection"``) maps an image ``[B, C, H, W]`` to

* ``logits`` ``[B, Q, K + 1]``: class scores of each of ``Q`` object queries over ``K`` classes and a
  last "no object" class;
* ``boxes``  ``[B, Q, 4]``: each query's box as ``(cx, cy, w, h)`` relative to the image (0..1);

and in training mode optionally ``aux_logits`` / ``aux_boxes`` ``[L, B, Q, ...]``, the same heads
applied after each earlier decoder layer (auxiliary losses, DETR section 3.2).

Targets are the data abstraction's dicts (:data:`edgec.data.Target`): ``boxes`` ``(x0, y0, x1, y1)``
in pixels and ``labels``.

* **Matching** (Carion et al., DETR, ECCV 2020): a one-to-one assignment of queries to ground-truth
  boxes minimising ``w_class * (-p(class)) + w_l1 * L1(box) + w_giou * (-GIoU)`` by the Hungarian
  algorithm (``scipy.optimize.linear_sum_assignment``).
* **Loss**: cross-entropy over ``K + 1`` classes (unmatched queries are "no object", weighted
  ``no_object_weight``), plus ``w_l1 * L1 + w_giou * (1 - GIoU)`` on matched boxes, normalised by the
  number of ground-truth boxes; the weights are DETR's (1, 5, 2; no-object 0.1).
* **Decoding** (DETR's ``PostProcess``): ``p = softmax(logits)[..., :K]``, each query's score and
  label are ``p``'s maximum and its class, its box ``(cx, cy, w, h)`` scaled to pixels ``(x0, y0, x1,
  y1)``. The same function decodes PyTorch and ONNX Runtime outputs.
* **mAP**: COCO's mean average precision, by ``torchmetrics.detection.MeanAveragePrecision`` (the
  pycocotools back end), never a hand-written one: ``map`` (IoU 0.50:0.95) and ``map_50``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgec.errors import DataError, MissingDependency

if TYPE_CHECKING:
    from edgec.data import Target

#: DETR's matching costs and loss weights (Carion et al. 2020, section 4 / the released configuration)
CLASS_WEIGHT, L1_WEIGHT, GIOU_WEIGHT, NO_OBJECT_WEIGHT = 1.0, 5.0, 2.0, 0.1


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise generalized IoU of ``(cx, cy, w, h)`` boxes ``a`` [N, 4] and ``b`` [M, 4] -> [N, M]."""
    from torchvision.ops import box_convert, generalized_box_iou

    return generalized_box_iou(box_convert(a, "cxcywh", "xyxy"), box_convert(b, "cxcywh", "xyxy"))


def to_relative(
    targets: Sequence[Target], size: tuple[int, int], device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Pixel ``(x0, y0, x1, y1)`` targets -> relative ``(cx, cy, w, h)`` tensors (what the model predicts)."""
    from torchvision.ops import box_convert

    h, w = size
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    out = []
    for t in targets:
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4) / scale
        out.append(
            {
                "boxes": box_convert(boxes, "xyxy", "cxcywh").to(device),
                "labels": torch.as_tensor(t["labels"], dtype=torch.int64).to(device),
            }
        )
    return out


@torch.no_grad()
def hungarian_match(
    logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each image, (query indices, target indices) of the minimum-cost one-to-one matching.

    The costs of all images are computed in one go against all targets of the batch (as DETR's
    matcher does), then each image's block is assigned on its own."""
    from scipy.optimize import linear_sum_assignment

    b, q = logits.shape[:2]
    sizes = [len(t["labels"]) for t in targets]
    empty = torch.zeros(0, dtype=torch.int64)
    if sum(sizes) == 0:
        return [(empty, empty) for _ in targets]
    labels = torch.cat([t["labels"] for t in targets])
    tboxes = torch.cat([t["boxes"] for t in targets])
    prob = logits.flatten(0, 1).softmax(-1)
    flat = boxes.flatten(0, 1)
    cost = (
        (
            -CLASS_WEIGHT * prob[:, labels]
            + L1_WEIGHT * torch.cdist(flat, tboxes, p=1)
            - GIOU_WEIGHT * giou(flat, tboxes)
        )
        .reshape(b, q, -1)
        .cpu()
    )
    out = []
    for i, block in enumerate(cost.split(sizes, -1)):
        if sizes[i] == 0:
            out.append((empty, empty))
            continue
        qi, gi = linear_sum_assignment(block[i].numpy())
        out.append((torch.as_tensor(qi, dtype=torch.int64), torch.as_tensor(gi, dtype=torch.int64)))
    return out


def set_loss(
    logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]]
) -> torch.Tensor:
    """DETR's loss of one decoder layer's predictions (see the module docstring)."""
    num_classes = logits.shape[-1] - 1
    matches = hungarian_match(logits, boxes, targets)
    target_classes = torch.full(logits.shape[:2], num_classes, dtype=torch.int64, device=logits.device)
    weight = torch.ones(num_classes + 1, device=logits.device)
    weight[-1] = NO_OBJECT_WEIGHT
    src_boxes, tgt_boxes = [], []
    for b, (q, g) in enumerate(matches):
        target_classes[b, q] = targets[b]["labels"][g]
        src_boxes.append(boxes[b, q])
        tgt_boxes.append(targets[b]["boxes"][g])
    loss = CLASS_WEIGHT * nn.functional.cross_entropy(logits.transpose(1, 2), target_classes, weight)
    n = max(1, sum(len(t["labels"]) for t in targets))
    if n and src_boxes:
        s, t = torch.cat(src_boxes), torch.cat(tgt_boxes)
        if len(s):
            loss = loss + L1_WEIGHT * (s - t).abs().sum() / n
            loss = loss + GIOU_WEIGHT * (1 - torch.diag(giou(s, t))).sum() / n
    return loss


def detection_loss(
    output: dict[str, torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]
) -> torch.Tensor:
    """The final layer's :func:`set_loss` plus the auxiliary layers' (when the output has them)."""
    loss = set_loss(output["logits"], output["boxes"], targets)
    if "aux_logits" in output:
        for logits, boxes in zip(output["aux_logits"], output["aux_boxes"], strict=True):
            loss = loss + set_loss(logits, boxes, targets)
    return loss


def decode(
    logits: np.ndarray | torch.Tensor, boxes: np.ndarray | torch.Tensor, size: tuple[int, int]
) -> list[dict[str, torch.Tensor]]:
    """Scores, labels and pixel boxes of every query (DETR's post-processing), one dict per image."""
    from torchvision.ops import box_convert

    lg = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits).float()
    bx = torch.as_tensor(np.asarray(boxes) if not isinstance(boxes, torch.Tensor) else boxes).float()
    prob = lg.softmax(-1)[..., :-1]
    scores, labels = prob.max(-1)
    h, w = size
    xyxy = box_convert(bx, "cxcywh", "xyxy") * torch.tensor([w, h, w, h], dtype=torch.float32)
    return [{"boxes": xyxy[i], "scores": scores[i], "labels": labels[i]} for i in range(len(lg))]


def mean_ap(preds: Sequence[dict[str, torch.Tensor]], targets: Sequence[Target]) -> dict[str, float]:
    """COCO mAP of decoded predictions against pixel targets: ``map`` (IoU .50:.95), ``map_50``,
    ``map_75``."""
    try:
        from torchmetrics.detection import MeanAveragePrecision
    except ImportError:  # pragma: no cover - declared dependency
        raise MissingDependency(
            "detection mAP needs torchmetrics and pycocotools", hint="pip install 'edgec[detection]'"
        ) from None
    if len(preds) != len(targets):
        raise DataError(f"{len(preds)} predictions for {len(targets)} targets")
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    metric.update(
        [{k: v.detach().cpu() for k, v in p.items()} for p in preds],
        [
            {
                "boxes": torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.as_tensor(t["labels"], dtype=torch.int64),
            }
            for t in targets
        ],
    )
    res = metric.compute()
    return {k: float(res[k]) for k in ("map", "map_50", "map_75")}


@dataclass(frozen=True)
class DetectionOutputs:
    """Which outputs of the program hold the class scores and the boxes."""

    logits: str = "logits"
    boxes: str = "boxes"

    @classmethod
    def of(cls, metadata: dict[str, Any]) -> DetectionOutputs:
        d = metadata.get("detection") or {}
        return cls(d.get("logits", "logits"), d.get("boxes", "boxes"))
