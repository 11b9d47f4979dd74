"""A tiny DETR (Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020) for
``builtin:shapes``: ``zoo:detr-shapes``.

Image ``[B, 3, 64, 64]`` -> a small conv backbone (three stride-2 3x3 convolutions, 64 channels at
1/8 resolution: 8 x 8 = 64 tokens) -> 2-D sine positional encoding -> a transformer encoder (2
post-norm layers) -> a decoder (2 layers) over :data:`QUERIES` learned object queries -> per query a
class head (3 shapes + "no object") and a box head (3-layer MLP added to the query's learnable
reference box, :func:`anchor_grid`, then a sigmoid: ``(cx, cy, w, h)`` relative to the image).
Cross-attention carries SMCA's Gaussian prior around each query's reference box (the anchor for the
first layer, the previous layer's box after that; :func:`spatial_prior`): with it and the anchors
the tiny DETR leaves the "every query predicts the mean box" plateau within a few epochs.
The output is a dict ``{"logits": [B, Q, 4], "boxes": [B, Q, 4]}``, in training mode also
``aux_logits`` / ``aux_boxes`` of the first decoder layer (DETR's auxiliary losses). Training and
evaluation use :mod:`edgec.detection` (Hungarian matching, L1 + GIoU, COCO mAP).

Attention is written out with ``nn.Linear`` projections and explicit matmuls (not
``nn.MultiheadAttention``, whose packed ``in_proj_weight`` is no ``nn.Linear``): every projection is a
layer the compression passes and the targets see by name, and the matmul inputs pass through named
identity points (:class:`edgec.lsq.QuantPoint` ``q_in``, ``k_in``, ``v_in``, ``attn_in``) where a
quantizer of the attention inputs attaches (Q-DETR quantizes them too).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgec.lsq import QuantPoint

NUM_CLASSES = 3
QUERIES = 16
D_MODEL = 64
HEADS = 4
FFN = 128
IMAGE_SIZE = 64


class Attention(nn.Module):
    """Multi-head scaled dot-product attention with explicit projections and quantization points."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
        self.q_in, self.k_in, self.v_in, self.attn_in = (QuantPoint() for _ in range(4))

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, lq, d = q.shape
        lk = k.shape[1]
        h, e = self.heads, d // self.heads
        qh = self.q_proj(q).reshape(b, lq, h, e).transpose(1, 2) * (e**-0.5)
        kh = self.k_proj(k).reshape(b, lk, h, e).transpose(1, 2)
        vh = self.v_proj(v).reshape(b, lk, h, e).transpose(1, 2)
        scores = torch.matmul(self.q_in(qh), self.k_in(kh.transpose(-2, -1)))
        attn = (scores if bias is None else scores + bias).softmax(-1)
        out = torch.matmul(self.attn_in(attn), self.v_in(vh))
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, d))


class FeedForward(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.attn, self.ffn = Attention(d, heads), FeedForward(d, hidden)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        qk = x + pos
        x = self.norm1(x + self.attn(qk, qk, x))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.self_attn, self.cross_attn = Attention(d, heads), Attention(d, heads)
        self.ffn = FeedForward(d, hidden)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(
        self,
        t: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor,
        query_pos: torch.Tensor,
        prior: torch.Tensor,
    ) -> torch.Tensor:
        qk = t + query_pos
        t = self.norm1(t + self.self_attn(qk, qk, t))
        t = self.norm2(t + self.cross_attn(t + query_pos, memory + pos, memory, prior))
        return self.norm3(t + self.ffn(t))


def sine_positions(h: int, w: int, d: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's 2-D sine positional encoding ``[h * w, d]`` (half the channels for y, half for x)."""
    n = d // 4
    omega = 1.0 / temperature ** (torch.arange(n, dtype=torch.float32) / n)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    py = ys[:, None] * omega[None]  # [h, n]
    px = xs[:, None] * omega[None]  # [w, n]
    pe_y = torch.cat([py.sin(), py.cos()], 1)[:, None, :].expand(h, w, 2 * n)
    pe_x = torch.cat([px.sin(), px.cos()], 1)[None, :, :].expand(h, w, 2 * n)
    return torch.cat([pe_y, pe_x], -1).reshape(h * w, 4 * n)


def anchor_grid(queries: int) -> torch.Tensor:
    """Initial reference boxes of the queries, as logits of ``(cx, cy, w, h)``: centres on a square grid
    over the image, width and height 0.3. Each query's box is predicted relative to its own learnable
    reference (as Deformable / Anchor DETR do), which breaks the symmetry between queries and lets a
    tiny DETR converge in a few epochs instead of hundreds."""
    side = math.ceil(math.sqrt(queries))
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")
    ref = torch.stack(
        [cx.flatten(), cy.flatten(), torch.full((side * side,), 0.3), torch.full((side * side,), 0.3)], 1
    )
    return torch.logit(ref[:queries])


def spatial_prior(ref: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """SMCA's Gaussian co-attention prior (Gao et al., "Fast Convergence of DETR with Spatially
    Modulated Co-Attention", ICCV 2021): ``-(dx^2 / (2 (w/2)^2) + dy^2 / (2 (h/2)^2))`` between each
    query's reference box ``ref`` [B, Q, 4] (cx, cy, w, h) and each token centre ``tokens`` [T, 2],
    added to the cross-attention logits [B, 1, Q, T]: a query looks first where its box is."""
    c = ref[..., None, :2]  # [B, Q, 1, 2]
    half = (ref[..., None, 2:] / 2).clamp_min(0.05)
    d = (tokens[None, None] - c) / half
    return (-0.5 * (d * d).sum(-1))[:, None]


class TinyDETR(nn.Module):
    """See the module docstring."""

    tokens: torch.Tensor  # [h * w, 2] token centres (buffer)

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        queries: int = QUERIES,
        d: int = D_MODEL,
        heads: int = HEADS,
        hidden: int = FFN,
        enc_layers: int = 2,
        dec_layers: int = 2,
        image_size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, d, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        side = image_size // 8
        self.register_buffer("pos", sine_positions(side, side, d)[None], persistent=False)
        centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
        ty, tx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("tokens", torch.stack([tx.flatten(), ty.flatten()], 1), persistent=False)
        self.query_pos = nn.Parameter(torch.randn(queries, d))
        self.anchors = nn.Parameter(anchor_grid(queries))
        self.encoder = nn.ModuleList(EncoderLayer(d, heads, hidden) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d, heads, hidden) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.class_head = nn.Linear(d, num_classes + 1)
        self.box_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4))

    def heads(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.decoder_norm(t)
        return self.class_head(t), (self.box_head(t) + self.anchors).sigmoid()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(x)  # [B, d, h, w]
        memory = f.flatten(2).transpose(1, 2)  # [B, h*w, d]
        pos = self.pos
        for layer in self.encoder:
            memory = layer(memory, pos)
        query_pos = self.query_pos[None].expand(x.shape[0], -1, -1)
        t = torch.zeros_like(query_pos)
        ref = self.anchors.sigmoid()[None].expand(x.shape[0], -1, -1)
        aux: list[tuple[torch.Tensor, torch.Tensor]] = []
        for layer in self.decoder:
            t = layer(t, memory, pos, query_pos, spatial_prior(ref, self.tokens))
            aux.append(self.heads(t))
            ref = aux[-1][1].detach()  # the next layer looks where this one found the object
        logits, boxes = aux.pop()
        if not self.training:
            aux = []
        out = {"logits": logits, "boxes": boxes}
        if aux:
            out["aux_logits"] = torch.stack([a[0] for a in aux])
            out["aux_boxes"] = torch.stack([a[1] for a in aux])
        return out


def detection_program(model: nn.Module) -> object:
    """``model`` as a detection :class:`edgec.program.Program` (what the zoo entry builds)."""
    from edgec.program import Program

    return Program(
        module=model,
        example_input=torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),
        name="detr-shapes",
        metadata={"task": "detection", "dataset": "builtin:shapes"},
    )


def train_detr_shapes(epochs: int = 60, lr: float = 1e-3, seed: int = 0) -> tuple[nn.Module, float]:
    """Train ``zoo:detr-shapes`` on ``builtin:shapes:train`` with edgec's own loop (detection task:
    Hungarian matching, L1 + GIoU + class loss, auxiliary decoder loss), Adam + cosine, fixed seed, the
    last epoch kept; returns the model and its mAP@[.5:.95] on ``builtin:shapes:holdout``."""
    from edgec.data import open_dataset
    from edgec.finetune import FinetuneOptions, finetune
    from edgec.program import Program
    from edgec.tasks import task_for

    torch.manual_seed(seed)
    model = TinyDETR()
    program = detection_program(model)
    assert isinstance(program, Program)  # detection_program builds a Program
    options = FinetuneOptions(epochs=epochs, lr=lr, seed=seed, batch_size=32)
    finetune(program, open_dataset("builtin:shapes:train"), None, options, description="training")
    x, targets = open_dataset("builtin:shapes:holdout").targets()
    return model, task_for(program).evaluate(program, model, x, targets)
