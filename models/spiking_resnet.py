"""A small spiking ResNet for the 8x8 digits, with the shortcut added to the neurons' input current.

Each block computes ``s_out = LIF(conv2(LIF(conv1(s))) + shortcut(s))``: the residual joins the synaptic
current before the neuron (the "membrane shortcut" of MS-ResNet and the Spike-driven Transformer), so
every neuron emits binary spikes and every synapse receives spikes. Stem conv(1->16), blocks 16, 32
(stride 2) and 64 (stride 2) channels, then FC(64 x 2 x 2 -> 10) with spiking outputs.

Loihi / netx connects layers strictly in sequence: ``edgec check --target loihi`` lists the residual adds
(``residual-add``) instead of lowering it; the CPU target runs it.
"""

from __future__ import annotations

import torch
from torch import nn

from edgec.snn import CubaLIF, TimeDistributed

TIMESTEPS = 8
ENCODER = {"kind": "rate", "gain": 1.0, "seed": 0}


class SpikingBasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = TimeDistributed(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False))
        self.lif1 = CubaLIF(du=0.5, dv=0.25, threshold=1.0)
        self.conv2 = TimeDistributed(nn.Conv2d(c_out, c_out, 3, padding=1, bias=False))
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else TimeDistributed(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False))
        )
        self.lif2 = CubaLIF(du=0.5, dv=0.25, threshold=1.0)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lif2(self.conv2(self.lif1(self.conv1(s))) + self.shortcut(s))
        return out


class SpikingResNet(nn.Module):
    timesteps = TIMESTEPS
    encoder = ENCODER

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            TimeDistributed(nn.Conv2d(1, 16, 3, padding=1, bias=False)),
            CubaLIF(16, du=0.5, dv=0.25, threshold=1.0, bias=True),
        )
        self.blocks = nn.Sequential(
            SpikingBasicBlock(16, 16, 1), SpikingBasicBlock(16, 32, 2), SpikingBasicBlock(32, 64, 2)
        )
        self.head = nn.Sequential(
            nn.Flatten(start_dim=2), nn.Linear(64 * 2 * 2, 10, bias=False), CubaLIF(du=0.5, dv=0.125)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.blocks(self.stem(x)))
        return out
