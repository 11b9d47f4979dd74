"""A tiny Spike-driven Transformer (Yao et al., NeurIPS 2023) for the 8x8 digits.

Spike-driven self-attention (SDSA) uses only masks and additions: with binary spike tensors ``Q, K, V``
(``[T, B, N, D]``, N tokens), ``SDSA(Q, K, V) = SN(SUM_c(Q * K)) * V``: the Hadamard product of two spike
tensors is an AND, its column sum over the tokens an addition, a spiking neuron turns the ``[1, D]``
sums into a binary channel mask, and the mask selects channels of ``V``. No softmax, no real-valued
matrix product; linear in tokens and channels. Residuals join the real-valued stream before the
neurons ("membrane shortcut"), so every linear layer receives spikes.

Layout: 2x2 patches -> conv embedding (D = 32) + learned position, 2 blocks (SDSA + a spiking MLP
32-64-32), spiking neurons before each sub-block, a linear classifier on the tokens' spikes (its
outputs summed over time are the class scores).
"""

from __future__ import annotations

import torch
from torch import nn

from edgec.snn import CubaLIF, TimeDistributed

TIMESTEPS = 8
ENCODER = {"kind": "rate", "gain": 1.0, "seed": 0}
DIM = 32
TOKENS = 16  # 4 x 4 patches of 2 x 2 pixels


def LinearBN(d_in: int, d_out: int) -> nn.Linear:
    return nn.Linear(d_in, d_out)


class SpikeDrivenSelfAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v = (LinearBN(dim, dim) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = (CubaLIF(du=0.5, dv=0.25, threshold=1.0) for _ in range(3))
        self.mask_lif = CubaLIF(du=1.0, dv=1.0, threshold=0.5)  # memoryless: a per-step threshold
        self.proj = LinearBN(dim, dim)

    def forward(self, s: torch.Tensor) -> torch.Tensor:  # s: spikes [T, B, N, D]
        q, k, v = self.q_lif(self.q(s)), self.k_lif(self.k(s)), self.v_lif(self.v(s))
        mask = self.mask_lif((q * k).sum(dim=2, keepdim=True))  # AND, then column sum over the tokens
        out: torch.Tensor = self.proj(mask * v)
        return out


class SpikeDrivenBlock(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.attn_lif = CubaLIF(du=0.5, dv=0.25, threshold=1.0)
        self.attn = SpikeDrivenSelfAttention(dim)
        self.mlp_lif = CubaLIF(du=0.5, dv=0.25, threshold=1.0)
        self.fc1 = LinearBN(dim, hidden)
        self.hidden_lif = CubaLIF(du=0.5, dv=0.25, threshold=1.0)
        self.fc2 = LinearBN(hidden, dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # u: the real-valued stream [T, B, N, D]
        u = u + self.attn(self.attn_lif(u))
        out: torch.Tensor = u + self.fc2(self.hidden_lif(self.fc1(self.mlp_lif(u))))
        return out


class SpikeDrivenTransformer(nn.Module):
    timesteps = TIMESTEPS
    encoder = ENCODER

    def __init__(self, dim: int = DIM, depth: int = 2) -> None:
        super().__init__()
        self.embed = TimeDistributed(nn.Conv2d(1, dim, 2, stride=2))
        self.position = nn.Parameter(torch.zeros(TOKENS, dim))
        self.blocks = nn.Sequential(*(SpikeDrivenBlock(dim, 2 * dim) for _ in range(depth)))
        self.head_lif = CubaLIF(du=0.5, dv=0.25, threshold=1.0)
        self.head = nn.Linear(TOKENS * dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: spikes [T, B, 1, 8, 8]
        e = self.embed(x)  # [T, B, D, 4, 4]
        u = e.flatten(3).transpose(2, 3) + self.position  # tokens [T, B, 16, D]
        s = self.head_lif(self.blocks(u))
        # a linear read-out of every token's spikes (on 16 tokens, averaging them away loses where each
        # stroke is): the class scores are its outputs summed over time (edgec.snn.predict)
        out: torch.Tensor = self.head(s.flatten(2))
        return out
