"""Reproduce the zoo's shipped weights: ``python -m edgec.models.train NAME [--out DIR]``.

Training is deterministic (fixed seeds, one thread) and takes seconds on a laptop CPU. The data is
``builtin:digits:train``; accuracy is reported on ``builtin:digits:holdout``. ``detr-shapes`` trains on
``builtin:shapes:train`` (60 epochs, minutes on 2 cores) and reports mAP@[.5:.95] on its holdout.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgec.data import open_dataset

log = logging.getLogger(__name__)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # resolve: editable installs link files


def digits_arrays() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x_tr, y_tr = open_dataset("builtin:digits:train").arrays()
    x_ho, y_ho = open_dataset("builtin:digits:holdout").arrays()
    assert y_tr is not None and y_ho is not None  # builtin digits are labelled
    return torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_ho), torch.from_numpy(y_ho)


def fit_classifier(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
) -> float:
    """Adam + cross-entropy on the digits train split; returns holdout accuracy."""
    torch.manual_seed(seed)
    x_tr, y_tr, x_ho, y_ho = digits_arrays()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(x_tr), batch_size):
            idx = perm[i : i + batch_size]
            loss = nn.functional.cross_entropy(forward(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        log.info("epoch %d loss %.4f", epoch, loss.item())
    model.eval()
    with torch.no_grad():
        return float((forward(x_ho).argmax(1) == y_ho).float().mean())


def train_digits_cnn() -> tuple[nn.Module, float]:
    from edgec.models.digits import DigitsCNN

    torch.manual_seed(0)
    model = DigitsCNN()
    acc = fit_classifier(model, model, epochs=30, lr=3e-3)
    return model, acc


class _WeightGrid(nn.Module):
    """Fake quantization of a synapse's weights to a symmetric per-layer grid (straight-through).

    ``W -> s * clip(round(W / s), -q, q)`` with ``s = max|W| / q``, ``q = 2^(bits-1) - 1``: the grid the
    Loihi lowering keeps exactly (it detects weights already on a grid), so what is trained is what runs.
    """

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.q = (1 << (bits - 1)) - 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = w.detach().abs().max().clamp_min(1e-12) / self.q
        return w + (torch.clamp(torch.round(w / s), -self.q, self.q) * s - w).detach()


def fit_spiking(
    model: nn.Module, *, epochs: int, lr: float, qat_epochs: int = 0, weight_bits: int = 8
) -> float:
    """BPTT with the surrogate gradient; loss = cross-entropy of the output spike counts.

    Training draws fresh rate-encoding noise every batch (a seed per step); evaluation uses the
    encoder the zoo entry records, as every target does. ``qat_epochs`` more epochs then train with
    the synapse weights fake-quantized to ``weight_bits`` (a symmetric grid per layer), and the
    weights are left on that grid: the deployed 8-bit network computes what was trained.
    """
    from torch.nn.utils import parametrize

    from edgec.models.snn import ENCODER, TIMESTEPS
    from edgec.snn import encode

    step = 0

    def forward(x: torch.Tensor) -> torch.Tensor:
        nonlocal step
        enc = ENCODER
        if model.training:
            step += 1
            enc = {**ENCODER, "seed": 1000 + step}
        return model(encode(x, TIMESTEPS, enc)).sum(0)

    acc = fit_classifier(model, forward, epochs=epochs, lr=lr)
    if qat_epochs:
        synapses = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        for m in synapses:
            parametrize.register_parametrization(m, "weight", _WeightGrid(weight_bits))
        acc = fit_classifier(model, forward, epochs=qat_epochs, lr=lr / 10, seed=1)
        for m in synapses:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return acc


def train_digits_snn_mlp() -> tuple[nn.Module, float]:
    from edgec.models.snn import SpikingMLP

    torch.manual_seed(0)
    model = SpikingMLP()
    return model, fit_spiking(model, epochs=15, lr=3e-3, qat_epochs=3)


def train_digits_snn_cnn() -> tuple[nn.Module, float]:
    from edgec.models.snn import SpikingCNN

    torch.manual_seed(0)
    model = SpikingCNN()
    return model, fit_spiking(model, epochs=8, lr=3e-3, qat_epochs=3)


def train_with_core_loop(
    model: nn.Module, *, epochs: int, lr: float, seed: int = 0, kind: str = "snn"
) -> tuple[nn.Module, float]:
    """Train a zoo model with edgec's own fine-tuning loop (:mod:`edgec.finetune`): for a spiking one BPTT
    with the surrogate gradient and fresh rate-coding noise per step; Adam + cosine, the last epoch kept
    (the holdout is not used to pick an epoch)."""
    from edgec.finetune import FinetuneOptions, evaluate, finetune
    from edgec.program import Program

    program = Program(
        module=model,
        example_input=torch.zeros(1, 1, 8, 8),
        kind=kind,  # type: ignore[arg-type]
        timesteps=int(getattr(model, "timesteps", 1)),
        encoder=dict(getattr(model, "encoder")) if kind == "snn" else None,  # noqa: B009
    )
    options = FinetuneOptions(epochs=epochs, lr=lr, seed=seed)
    finetune(program, open_dataset("builtin:digits:train"), None, options, description="training")
    x_ho, y_ho = open_dataset("builtin:digits:holdout").arrays()
    assert y_ho is not None  # builtin digits are labelled
    return model, evaluate(program, model, x_ho, y_ho)


def train_digits_snn_vgg() -> tuple[nn.Module, float]:
    from edgec.models.spiking_vgg import SpikingVGG

    torch.manual_seed(0)
    return train_with_core_loop(SpikingVGG(), epochs=6, lr=3e-3)


def train_digits_snn_resnet() -> tuple[nn.Module, float]:
    from edgec.models.spiking_resnet import SpikingResNet

    torch.manual_seed(0)
    return train_with_core_loop(SpikingResNet(), epochs=6, lr=3e-3)


def train_digits_sdt() -> tuple[nn.Module, float]:
    from edgec.models.spike_driven_transformer import SpikeDrivenTransformer

    torch.manual_seed(0)
    return train_with_core_loop(SpikeDrivenTransformer(), epochs=8, lr=2e-3)


def train_digits_vit() -> tuple[nn.Module, float]:
    from edgec.models.vit import DigitsViT

    torch.manual_seed(0)
    return train_with_core_loop(DigitsViT(), epochs=60, lr=3e-3, kind="ann")


def train_detr_shapes() -> tuple[nn.Module, float]:
    """zoo:detr-shapes on builtin:shapes (its holdout figure is mAP@[.5:.95]; see models/detr.py)."""
    from edgec.models.detr import train_detr_shapes as train

    return train()


TRAINERS: dict[str, Callable[[], tuple[nn.Module, float]]] = {
    "digits-cnn": train_digits_cnn,
    "digits-snn-mlp": train_digits_snn_mlp,
    "digits-snn-cnn": train_digits_snn_cnn,
    "digits-snn-vgg": train_digits_snn_vgg,
    "digits-snn-resnet": train_digits_snn_resnet,
    "digits-sdt": train_digits_sdt,
    "digits-vit": train_digits_vit,
    "detr-shapes": train_detr_shapes,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(TRAINERS))
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    np.random.seed(0)
    model, acc = TRAINERS[args.name]()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.pt"
    torch.save(model.state_dict(), path)
    metric = "mAP@[.5:.95]" if args.name.startswith("detr") else "accuracy"
    print(f"{args.name}: holdout {metric} {acc:.4f}; weights written to {path}")


if __name__ == "__main__":
    main()
