"""A small DeiT-style vision transformer for the 8x8 digits (the Bi-ViT recipe's model).

DeiT (Touvron et al., ICML 2021) layout at toy size: 2x2 patches embedded by a strided convolution
(16 tokens of width 32), a class token and learned position embeddings, pre-norm blocks (multi-head
self-attention, GELU MLP, residual adds), a final LayerNorm and a linear head on the class token.

The attention is written out (q, k, v, softmax) with :class:`edgec.binary.Tap` identities on q, k,
v and the attention map, so a compression pass can quantize those tensors (Bi-ViT binarizes them
with learnable per-head scales); without a quantizer attached they compute nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from edgec.binary import Tap


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.q_tap = Tap("q", heads)
        self.k_tap = Tap("k", heads)
        self.v_tap = Tap("v", heads)
        self.attn_tap = Tap("attn", heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = self.q_tap(qkv[0]), self.k_tap(qkv[1]), self.v_tap(qkv[2])
        attn = self.attn_tap(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DigitsViT(nn.Module):
    """patch 2x2 -> 16 tokens x 32, class token, 2 blocks (2 heads, MLP 64), LayerNorm, head 32 -> 10."""

    def __init__(
        self, dim: int = 32, depth: int = 2, heads: int = 2, hidden: int = 64, classes: int = 10
    ) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, dim, kernel_size=2, stride=2)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        return self.head(self.norm(self.blocks(t))[:, 0])
