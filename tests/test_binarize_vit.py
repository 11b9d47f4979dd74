"""Bi-ViT (``bi-vit`` recipe) on the zoo's digits ViT: the learned per-head binarizer and the ranking loss
by hand, the fully binarized ViT's record, binary operations, program store and CPU artifact."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import edgec
from edgec.binary import LearnedBinary, Tap, read_packed
from edgec.passes.bi_vit import ranking_loss
from edgec.store import load_program_dir

BLOCK_LINEARS = [f"blocks.{b}.{m}" for b in (0, 1) for m in ("attn.qkv", "attn.proj", "mlp.0", "mlp.2")]
TAPS = [f"blocks.{b}.attn.{r}_tap" for b in (0, 1) for r in ("q", "k", "v", "attn")]


# ---- by hand ----------------------------------------------------------------------------------------
def test_ranking_loss_matches_the_formula_by_hand():
    """One query over three keys. Teacher t = (0.5, 0.3, 0.2): pairs (j, k) with t_j > t_k weigh t_j - t_k;
    student log-probabilities s; L = sum w log(1 + exp(-(s_j - s_k))) / sum w."""
    t = torch.tensor([0.5, 0.3, 0.2]).reshape(1, 1, 1, 3)
    s = torch.tensor([0.2, 0.3, 0.5]).reshape(1, 1, 1, 3)  # the reverse order
    ls = [math.log(v) for v in (0.2, 0.3, 0.5)]
    pairs = [(0, 1, 0.2), (0, 2, 0.3), (1, 2, 0.1)]  # (j, k, t_j - t_k)
    expected = sum(w * math.log1p(math.exp(-(ls[j] - ls[k]))) for j, k, w in pairs) / 0.6
    assert float(ranking_loss(s, t)) == pytest.approx(expected, rel=1e-6)
    # the same order as the teacher costs less; tau sharpens the pairwise penalty
    assert float(ranking_loss(t, t)) < expected
    assert float(ranking_loss(t, t, tau=0.1)) < float(ranking_loss(t, t))
    # a gradient step on the student's scores moves them towards the teacher's order
    logits = torch.log(s).clone().requires_grad_(True)
    ranking_loss(logits.softmax(-1), t).backward()
    assert logits.grad is not None
    assert logits.grad[0, 0, 0, 0] < 0 < logits.grad[0, 0, 0, 2]


def test_learned_binary_takes_two_values_per_head_by_hand():
    """x_b = sign(clamp(x / alpha + z, -1, 1)), out = (x_b - z) alpha: head 0 (alpha 0.5, z 0) gives
    +-0.5; head 1 (alpha 2, z -1: a non-negative map) gives 0 or 4."""
    q = LearnedBinary(2)
    with torch.no_grad():
        q.alpha.copy_(torch.tensor([0.5, 2.0]))
        q.zero_point.copy_(torch.tensor([0.0, -1.0]))
    x = torch.tensor([[[-3.0, -0.1, 0.0, 0.2], [0.5, 1.9, 2.0, 2.1]]])  # [B=1, H=2, 4]
    out = q(x)
    assert out.tolist() == [[[-0.5, -0.5, 0.5, 0.5], [0.0, 0.0, 4.0, 4.0]]]
    # data initialisation: alpha = 2 mean|x| per head; z = -1 for a non-negative tensor, else 0
    q.init_from(torch.tensor([[[-1.0, 3.0], [0.5, 1.5]]]))
    assert q.alpha.tolist() == pytest.approx([4.0, 2.0]) and q.zero_point.tolist() == [0.0, -1.0]
    with pytest.raises(ValueError, match="has 2 heads"):
        q(torch.zeros(1, 3, 4))


def test_shipped_digits_vit_is_accurate_and_its_taps_change_nothing():
    from edgec.models import ZOO

    model = ZOO["digits-vit"].build().eval()
    x, y = edgec.open_dataset("builtin:digits:holdout").arrays()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    assert float((logits.argmax(1).numpy() == y).mean()) >= 0.96  # 97.2 % when trained (models/train.py)
    for block in model.blocks:  # the same attention without the Tap identities
        block.attn.q_tap = block.attn.k_tap = block.attn.v_tap = block.attn.attn_tap = torch.nn.Identity()
    with torch.no_grad():
        assert torch.equal(model(torch.from_numpy(x)), logits)


def test_taps_compute_nothing_without_a_quantizer():
    tap = Tap("q", heads=2)
    x = torch.randn(2, 2, 5, 4)
    assert torch.equal(tap(x), x)


# ---- the fully binarized digits ViT ------------------------------------------------------------------
@pytest.fixture(scope="module")
def bivit(tmp_path_factory: pytest.TempPathFactory) -> tuple[edgec.compression.CompressResult, Path]:
    """zoo:digits-vit, bi-vit (learnable scaling, ranking + soft-label distillation), one epoch on 384
    training digits (a smoke-sized run: the benchmark trains 20 epochs on all of them)."""
    root = tmp_path_factory.mktemp("bivit")
    x, y = edgec.open_dataset("builtin:digits:train").arrays(limit=384)
    np.savez(root / "train.npz", x=x, y=y)
    res = edgec.compress(
        "zoo:digits-vit", passes=["bi-vit"], train=str(root / "train.npz"), epochs=1, lr=3e-3, seed=0,
        out=root / "vit",
    )  # fmt: skip
    return res, root / "vit"


def test_bi_vit_records_every_block_linear_and_attention_tensor_at_1_bit(bivit):
    res, _ = bivit
    quant = res.program.quant
    assert quant["patch"].weight_bits == 8 and quant["head"].weight_bits == 8
    assert quant["patch"].act_bits is None and quant["head"].act_bits is None
    for n in BLOCK_LINEARS:
        assert (quant[n].weight_bits, quant[n].act_bits) == (1, 1), n
    for n in TAPS:
        assert quant[n].act_bits == 1 and quant[n].weight_bits is None, n
    for b in (0, 1):  # both matmuls of each attention take 1-bit operands
        assert quant[f"blocks.{b}.attn"].extra["binary_matmuls"] == ["q k^T", "attn v"]
    stats = res.program.history[-1].stats
    assert stats["distillation"] == {"kd": 1.0, "ranking": 1.0}
    assert sorted(stats["binarized_attention"]) == sorted(TAPS)


def test_bi_vit_tensors_are_binary_per_head_and_the_program_reloads(bivit):
    res, out = bivit
    reloaded = load_program_dir(out)
    x, _ = edgec.open_dataset("builtin:digits:holdout").arrays(limit=16)
    seen: dict[str, torch.Tensor] = {}
    handles = [
        reloaded.module.get_submodule(n).register_forward_hook(
            lambda _m, _a, o, n=n: seen.__setitem__(n, o.detach())
        )
        for n in TAPS
    ]
    with torch.no_grad():
        a = res.program.module(torch.from_numpy(x))
        b = reloaded.module(torch.from_numpy(x))
    for h in handles:
        h.remove()
    assert torch.equal(a, b)
    for n in TAPS:
        q = reloaded.module.get_submodule(n).input_quantizer
        for h in range(2):  # each head: two values, (+-1 - round(z)) * |alpha|
            alpha, z = abs(float(q.alpha[h].detach())), round(float(q.zero_point[h].detach()))
            values = torch.unique(seen[n][:, h]).tolist()
            assert values == pytest.approx([(-1 - z) * alpha, (1 - z) * alpha], rel=1e-6), n
    with torch.no_grad():
        attn = seen["blocks.0.attn.attn_tap"]
    assert float(attn.min()) >= 0.0  # the attention map keeps its sign: {0, 2 alpha}


def test_bi_vit_counts_binary_operations_of_linears_and_attention_matmuls(bivit):
    after = bivit[0].report["after"]
    tokens, dim, hidden, heads, head_dim = 17, 32, 64, 2, 16
    linears = tokens * dim * (3 * dim + dim + 2 * hidden)  # qkv, proj, mlp.0, mlp.2
    attention = 2 * heads * tokens * tokens * head_dim  # q k^T and attn v
    bops = 2 * (linears + attention)
    assert after["bops"] == bops == 315_520
    assert after["macs"] == bops + 16 * dim * 4 + dim * 10  # + patch embedding 2x2 conv, head
    assert after["ops_bop64"] == pytest.approx(bops / 64 + after["macs"] - bops)


def test_bi_vit_compiles_for_the_cpu_and_agrees_with_pytorch(bivit, tmp_path):
    import onnxruntime as ort

    res, out = bivit
    art = edgec.compile(out, target="cpu", out=tmp_path / "cpu")
    tr = art.report["target_report"]
    assert tr["ort_fusion"]["fused_quantized_ops"] == len(BLOCK_LINEARS)  # every block linear int8
    packed = read_packed(art.file("weights_1bit"))
    assert sorted(packed) == sorted(BLOCK_LINEARS)
    for n, w in packed.items():  # two values per output channel, the recorded alpha
        alpha = np.asarray(res.program.quant[n].weight_scale, np.float32)
        assert np.allclose(np.abs(w).reshape(len(w), -1), alpha[:, None], rtol=1e-6), n
    x, _ = edgec.open_dataset("builtin:digits:holdout").arrays()
    sess = ort.InferenceSession(str(art.file("model")), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {"input": x})[0].argmax(1)
    with torch.no_grad():
        ref = res.program.module(torch.from_numpy(x)).argmax(1).numpy()
    assert (pred == ref).mean() >= 0.99


@pytest.mark.slow
def test_digits_vit_weights_are_reproducible():
    from edgec.models import ZOO
    from edgec.models.train import train_digits_vit

    torch.set_num_threads(1)  # as train.py's main does (restored after the test by conftest)
    model, acc = train_digits_vit()
    shipped = ZOO["digits-vit"].build().state_dict()
    trained = model.state_dict()
    assert list(trained) == list(shipped)
    for key, value in trained.items():
        assert torch.equal(value, shipped[key]), key
    assert acc >= 0.96
