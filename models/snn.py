"""Spiking networks for scikit-learn's 8x8 handwritten digits, built from :mod:`edgec.snn` layers.

Both are time-major (``[T, B, 1, 8, 8] -> [T, B, 10]`` output spikes; the class is the neuron with
the most spikes), take rate-encoded binary input spikes, and map onto Loihi 2 / lava-dl netx as they
are: every synapse (``nn.Linear`` or ``nn.Conv2d``) is followed by one :class:`~edgec.snn.CubaLIF`,
connectivity is sequential, and the decays are exact 12-bit fractions.
"""

from __future__ import annotations

import torch
from torch import nn

from edgec.snn import CubaLIF, TimeDistributed

#: timesteps and host-side encoding the zoo entries record (and their artifacts with them)
TIMESTEPS = 16
ENCODER = {"kind": "rate", "gain": 1.0, "seed": 0}


class SpikingMLP(nn.Module):
    """flatten, FC(64->128) + CubaLIF (with bias), FC(128->10) + CubaLIF."""

    timesteps = TIMESTEPS
    encoder = ENCODER

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(start_dim=2),
            nn.Linear(64, 128, bias=False),
            CubaLIF(128, du=0.5, dv=0.25, threshold=1.0, bias=True),
            nn.Linear(128, 10, bias=False),
            CubaLIF(du=0.5, dv=0.125, threshold=1.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class SpikingCNN(nn.Module):
    """conv3x3(1->16) + CubaLIF (bias), conv3x3 stride 2 (16->32) + CubaLIF, FC(512->10) + CubaLIF.

    Downsampling is a strided convolution, not pooling: netx cannot load pooling layers.
    """

    timesteps = TIMESTEPS
    encoder = ENCODER

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            TimeDistributed(nn.Conv2d(1, 16, 3, padding=1, bias=False)),
            CubaLIF(16, du=0.5, dv=0.25, threshold=1.0, bias=True),
            TimeDistributed(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)),
            CubaLIF(du=0.5, dv=0.25, threshold=1.0),
            nn.Flatten(start_dim=2),
            nn.Linear(32 * 4 * 4, 10, bias=False),
            CubaLIF(du=0.5, dv=0.125, threshold=1.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out
