"""Small models for scikit-learn's 8x8 handwritten digits."""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """conv3x3(1->16) BN ReLU, conv3x3(16->32) BN ReLU, maxpool 2, FC(512->64) ReLU, FC(64->10)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
