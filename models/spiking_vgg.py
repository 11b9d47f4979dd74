"""A spiking VGG-style CNN for the 8x8 digits, wide enough for channel pruning to matter.

``[T, B, 1, 8, 8]`` rate-coded spikes -> four 3x3 convolutions (32, 32, 64, 64 channels; the second and
fourth with stride 2 instead of pooling, which netx cannot load) each followed by a CUBA LIF neuron, then
a fully connected classifier (``64 x 2 x 2 -> 10``) with spiking outputs. Sequential synapse + neuron
blocks only, so it lowers onto Loihi 2 as it is; QP-SNN's pruning removes channels of the four convs.
"""

from __future__ import annotations

import torch
from torch import nn

from edgec.snn import CubaLIF, TimeDistributed

TIMESTEPS = 8
ENCODER = {"kind": "rate", "gain": 1.0, "seed": 0}


def _block(c_in: int, c_out: int, stride: int, bias: bool) -> list[nn.Module]:
    return [
        TimeDistributed(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)),
        CubaLIF(c_out if bias else None, du=0.5, dv=0.25, threshold=1.0, bias=bias),
    ]


class SpikingVGG(nn.Module):
    timesteps = TIMESTEPS
    encoder = ENCODER

    def __init__(self, widths: tuple[int, int, int, int] = (32, 32, 64, 64)) -> None:
        super().__init__()
        a, b, c, d = widths
        self.net = nn.Sequential(
            *_block(1, a, 1, bias=True),
            *_block(a, b, 2, bias=False),
            *_block(b, c, 1, bias=False),
            *_block(c, d, 2, bias=False),
            nn.Flatten(start_dim=2),
            nn.Linear(d * 2 * 2, 10, bias=False),
            CubaLIF(du=0.5, dv=0.125, threshold=1.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out
