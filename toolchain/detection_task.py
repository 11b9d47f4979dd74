"""The detection task (:mod:`edgec.tasks`): boxes as targets, DETR's set loss, COCO mAP as the metric.

``verify`` of a detection artifact decodes the artifact's and the source model's outputs the same way
(:func:`edgec.detection.decode`) and compares their mAP on the data's boxes: it passes when the
artifact's mAP@[.5:.95] is within :data:`MAP_TOLERANCE` (1 point) of the source model's. The raw
outputs' max-abs errors are reported beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgec.detection import DetectionOutputs, decode, detection_loss, mean_ap, to_relative
from edgec.errors import DataError
from edgec.tasks import Task

if TYPE_CHECKING:
    from torch import nn

    from edgec.data import Dataset, Target
    from edgec.finetune import Batch
    from edgec.program import Program
    from edgec.target import VerifyResult

#: verify passes when |mAP(artifact) - mAP(source)| <= this (mAP in [0, 1]: 0.01 is one point)
MAP_TOLERANCE = 0.01


class DetectionTask(Task):
    name = "detection"
    metric = "mAP@[.5:.95]"

    def __init__(self, image_size: tuple[int, int], outputs: DetectionOutputs | None = None) -> None:
        self.size = image_size
        self.outputs = outputs or DetectionOutputs()

    @classmethod
    def for_program(cls, program: Program | None) -> DetectionTask:
        if program is None:
            raise DataError("the detection task needs the model (its input size)")
        h, w = program.input_shape[-2:]
        return cls((int(h), int(w)), DetectionOutputs.of(program.metadata))

    def prepare(self, data: Dataset, input_shape: tuple[int, ...], purpose: str) -> tuple[np.ndarray, Any]:
        x, targets = data.targets()
        if tuple(x.shape[1:]) != tuple(input_shape):
            raise DataError(
                f"{purpose} data '{data.name}' has samples of shape {tuple(x.shape[1:])}, "
                f"the model takes {tuple(input_shape)}",
                hint="give data of the model's input shape (one sample, no batch dimension)",
            )
        return x, targets

    def subset(self, x: np.ndarray, targets: Any, idx: np.ndarray, name: str) -> Dataset:
        from edgec.data import from_targets

        return from_targets(x[idx], [targets[int(i)] for i in idx], name=name)

    def batch_targets(self, targets: Any, idx: torch.Tensor, device: torch.device) -> Any:
        return to_relative([targets[int(i)] for i in idx], self.size, device)

    def loss(self, batch: Batch) -> torch.Tensor:
        out = batch.output
        if not isinstance(out, dict):
            raise DataError("a detection model must return a dict with 'logits' and 'boxes'")
        o = {"logits": out[self.outputs.logits], "boxes": out[self.outputs.boxes]}
        if "aux_logits" in out:
            o.update(aux_logits=out["aux_logits"], aux_boxes=out["aux_boxes"])
        return detection_loss(o, batch.y)

    def predictions(
        self, module: nn.Module, x: np.ndarray, *, device: str = "cpu", batch_size: int = 64
    ) -> list[dict[str, torch.Tensor]]:
        was = module.training
        module.eval()
        preds: list[dict[str, torch.Tensor]] = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                out = module(torch.from_numpy(x[i : i + batch_size]).to(device))
                preds += decode(out[self.outputs.logits].cpu(), out[self.outputs.boxes].cpu(), self.size)
        module.train(was)
        return preds

    def evaluate(
        self, program: Program, module: nn.Module, x: np.ndarray, targets: Any, *, device: str = "cpu"
    ) -> float:
        return mean_ap(self.predictions(module, x, device=device), targets)["map"]

    def inputs(self, data: Dataset, limit: int | None) -> tuple[np.ndarray, Any]:
        return data.targets(limit)

    def scores(self, outputs: dict[str, np.ndarray], targets: list[Target]) -> dict[str, float]:
        return mean_ap(decode(outputs[self.outputs.logits], outputs[self.outputs.boxes], self.size), targets)

    def compare(
        self, out: dict[str, np.ndarray], ref: dict[str, np.ndarray], targets: Any, *, min_agreement: float
    ) -> VerifyResult:
        from edgec.target import VerifyResult

        if list(out) != list(ref) or any(out[k].shape != ref[k].shape for k in ref):
            got = {k: list(v.shape) for k, v in out.items()}
            want = {k: list(v.shape) for k, v in ref.items()}
            return VerifyResult(False, {"outputs": got, "expected": want}, f"outputs differ: {got} vs {want}")
        art, src = self.scores(out, targets), self.scores(ref, targets)
        metrics: dict[str, Any] = {
            "samples": len(targets),
            "task": "detection",
            "map_artifact": art["map"],
            "map50_artifact": art["map_50"],
            "map_source": src["map"],
            "map50_source": src["map_50"],
            "map_tolerance": MAP_TOLERANCE,
            "outputs": {
                k: {"max_abs_error": float(np.abs(out[k].astype(np.float64) - ref[k]).max(initial=0.0))}
                for k in ref
            },
        }
        metrics["max_abs_error"] = max(v["max_abs_error"] for v in metrics["outputs"].values())
        diff = art["map"] - src["map"]
        passed = abs(diff) <= MAP_TOLERANCE
        summary = (
            f"mAP@[.5:.95] {100 * art['map']:.2f} (artifact) vs {100 * src['map']:.2f} (source), "
            f"{100 * diff:+.2f} points (allowed +-{100 * MAP_TOLERANCE:.0f}); mAP@.5 "
            f"{100 * art['map_50']:.2f} vs {100 * src['map_50']:.2f}"
        )
        return VerifyResult(passed, metrics, summary)
