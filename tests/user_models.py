"""Models as a user builds and saves them (not zoo models): the README's ways of exporting.

Each ``save_*`` writes a file the way the README tells users to and returns its path. The models
are tiny and seeded (``torch.manual_seed(0)`` before building), so every process builds the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

CNN_SHAPE = (3, 16, 16)


class SmallCNN(nn.Module):
    """Conv + BatchNorm + strided conv + linear head: the shape of an ordinary user CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


class TwoHeads(nn.Module):
    """One input, two outputs (a tuple): class scores [N, 5] and a box [N, 3]. Scriptable."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(20, 16)
        self.cls = nn.Linear(16, 5)
        self.box = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.body(x))
        return self.cls(h), self.box(h)


class DictHeads(TwoHeads):
    """The same two heads returned as a dict ``{"cls", "box"}`` (the same weights for a seed)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        h = torch.relu(self.body(x))
        return {"cls": self.cls(h), "box": self.box(h)}


def two_heads(as_dict: bool) -> nn.Module:
    return DictHeads() if as_dict else TwoHeads()


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(20, 8)
        self.b = nn.Linear(10, 8)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(y)


def small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    m = SmallCNN().eval()
    with torch.no_grad():  # statistics a trained BatchNorm would have (not the identity)
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m


def save_export(model: nn.Module, path: Path, shape: tuple[int, ...], *, dynamic: bool = False) -> Path:
    """README: ``torch.export.save(torch.export.export(m, (torch.rand(1, ...),)), path)``; with
    ``dynamic`` the batch dimension is free (``dynamic_shapes``)."""
    if dynamic:
        ep = torch.export.export(
            model, (torch.rand(2, *shape),), dynamic_shapes=({0: torch.export.Dim("batch")},)
        )
    else:
        ep = torch.export.export(model, (torch.rand(1, *shape),))
    torch.export.save(ep, path)
    return path


def save_torchscript(model: nn.Module, path: Path, shape: tuple[int, ...]) -> Path:
    """README: ``torch.jit.save(torch.jit.trace(m, x), path)``."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(model, torch.rand(1, *shape)), path)
    return path


def save_data(path: Path, shape: tuple[int, ...], n: int = 40, *, seed: int = 0, labels: int = 10) -> Path:
    """``data.npz`` with ``x`` (uniform [0, 1) float32) and ``y`` (integer labels)."""
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.random((n, *shape), dtype=np.float32), y=np.arange(n) % labels)
    return path
