"""The compression machinery's parts, each against an independent statement of what it must do."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgec.data import from_arrays
from edgec.errors import ModelError
from edgec.fakequant import ReScaW, SoftThreshold, UniformWeight, attach, bake
from edgec.finetune import FinetuneOptions, TrainingDiverged, finetune
from edgec.passes.channels import svs_scores
from edgec.program import Program
from edgec.quant import LayerQuant
from edgec.snn import CubaLIF, TimeDistributed
from edgec.surgery import channel_groups, prune_group


# ---- quantizers -------------------------------------------------------------------------------
def test_rescaw_matches_the_paper_formula_by_hand():
    # one output channel, gamma = mean|W| = 0.5; s = 2^2 - 1 = 3 levels apart: W~ = clamp(W / 0.5, -1, 1)
    w = torch.tensor([[0.1, -0.4, 1.2, -0.3]])
    got = ReScaW(2)(w)
    # W~ = [0.2, -0.8, 1, -0.6]; round(1.5 (W~ + 1)) = round([1.8, 0.3, 3, 0.6]) = [2, 0, 3, 1]
    # W_q = 0.5 (2/3 k - 1) = 0.5 [1/3, -1, 1, -1/3]
    assert torch.allclose(got, torch.tensor([[1 / 6, -0.5, 0.5, -1 / 6]]))


def test_rescaw_bakes_onto_at_most_2_to_the_bits_values_per_channel():
    torch.manual_seed(0)
    lin = nn.Linear(40, 6)
    attach(lin, "weight", ReScaW(3))
    rec = bake(lin)
    w = lin.weight.detach().numpy()
    assert rec is not None and rec.odd_levels and rec.weight_bits == 3
    for row in w:
        assert len(np.unique(row)) <= 8
    levels = rec.levels(w)  # raises if a weight is off its recorded grid
    assert set(np.unique(levels)) <= set(range(-7, 8, 2))


def test_uniform_weight_is_symmetric_max_abs_grid():
    w = torch.tensor([[0.3, -0.9, 0.05], [2.0, 1.0, -0.4]])
    q = UniformWeight(3, per_channel=True)  # q = 3 levels each side
    got = q(w)
    s = torch.tensor([0.9 / 3, 2.0 / 3]).reshape(2, 1)
    assert torch.allclose(got, torch.clamp(torch.round(w / s), -3, 3) * s)
    rec = q.record(w)
    assert rec.weight_scale == pytest.approx((0.3, 2 / 3))


def test_straight_through_gradient():
    w = torch.tensor([[0.31, -0.77]], requires_grad=True)
    UniformWeight(4)(w).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_soft_threshold_follows_the_s_lats_schedule():
    t = SoftThreshold(0.2, "sine")
    t.progress = 0.5
    assert t.threshold == pytest.approx(0.2 * (math.sin(math.pi / 2) / math.pi + 0.5))
    t.progress = 1.0
    w = torch.tensor([0.1, -0.25, 0.5])
    assert torch.allclose(t(w), torch.tensor([0.0, -0.05, 0.3]))


def test_layer_quant_rejects_weights_off_the_grid():
    rec = LayerQuant(method="t", weight_bits=4, weight_scale=(0.5,))
    assert rec.levels(np.array([[1.0, -3.5]])).tolist() == [[2, -7]]
    with pytest.raises(ValueError):
        rec.levels(np.array([[0.3]]))
    with pytest.raises(ValueError):
        rec.levels(np.array([[4.0]]))  # level 8 > 7


# ---- surgery ------------------------------------------------------------------------------------
def _snn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        TimeDistributed(nn.Conv2d(1, 6, 3, padding=1)),
        CubaLIF(6, bias=True),
        TimeDistributed(nn.Conv2d(6, 5, 3, stride=2, padding=1)),
        CubaLIF(),
        nn.Flatten(start_dim=2),
        nn.Linear(5 * 4 * 4, 3),
        CubaLIF(),
    )


def _ann() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 4),
    ).eval()


@pytest.mark.parametrize("kind", ["snn", "ann"])
def test_pruning_equals_the_network_with_those_channels_cut(kind):
    """A pruned network computes what the original computes with the pruned channels' outgoing
    weights set to zero (the channels still spike / activate, but nothing reads them)."""
    model = _snn() if kind == "snn" else _ann()
    x = (torch.rand(16, 4, 1, 8, 8) < 0.3).float() if kind == "snn" else torch.randn(4, 2, 8, 8)
    groups, skipped = channel_groups(model, x)
    first = groups[0]
    assert first.producer == "0" and first.consumer == ("2" if kind == "snn" else "5")
    keep = [0, 2, 3, 5]
    reference = _snn() if kind == "snn" else _ann()
    consumer = reference.get_submodule(first.consumer)
    consumer = consumer.module if isinstance(consumer, TimeDistributed) else consumer
    cut = [c for c in range(first.channels) if c not in keep]
    with torch.no_grad():
        if kind == "snn":
            consumer.weight[:, cut] = 0
        else:
            for c in cut:
                consumer.weight[:, c * 16 : (c + 1) * 16] = 0
    prune_group(model, first, keep)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-6)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < sum(p.numel() for p in reference.parameters())
    assert "5" in skipped or "2" in skipped or kind == "snn"


def test_residual_outputs_are_not_prunable():
    class Res(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 3, 3, padding=1)
            self.b = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)) + x)

    groups, skipped = channel_groups(Res(), torch.randn(1, 3, 5, 5))
    assert groups == [] and "residual" in skipped["a"]


# ---- criteria -----------------------------------------------------------------------------------
def test_svs_score_is_the_nuclear_norm_of_the_time_averaged_map():
    act = torch.zeros(4, 1, 2, 3, 3)  # [T, N, C, H, W]
    act[:, 0, 0, 0, 0] = 1  # channel 0: one pixel, always on -> map rank 1, singular value 1
    act[:2, 0, 1] = torch.eye(3)  # channel 1: identity for half the steps -> 0.5 * I -> nuclear norm 1.5
    scores = svs_scores(act, spiking=True)
    assert scores.tolist() == pytest.approx([1.0, 1.5])


# ---- the fine-tuning loop -------------------------------------------------------------------------
def _tiny_program() -> Program:
    torch.manual_seed(0)
    return Program(module=nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), example_input=torch.zeros(1, 4))


def _data(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)


def test_finetune_is_deterministic_for_a_seed_and_keeps_the_best_epoch():
    x, y = _data()
    train = from_arrays(x, y, name="t")
    opts = FinetuneOptions(epochs=3, lr=0.05, batch_size=16, seed=7)
    a, b = _tiny_program(), _tiny_program()
    ra = finetune(a, train, train, opts)
    finetune(b, train, train, opts)
    for pa, pb in zip(a.module.parameters(), b.module.parameters(), strict=True):
        assert torch.equal(pa, pb)
    accs = [r.holdout_accuracy for r in ra.curve]
    assert ra.best_accuracy == max([ra.initial_accuracy, *accs])
    c = _tiny_program()
    finetune(c, train, train, FinetuneOptions(epochs=3, lr=0.05, batch_size=16, seed=8))
    assert not torch.equal(next(c.module.parameters()), next(a.module.parameters()))


def test_finetune_stops_on_a_nan_loss():
    x, y = _data()
    prog = _tiny_program()
    with torch.no_grad():
        prog.module[1].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="became nan"):
        finetune(prog, from_arrays(x, y), None, FinetuneOptions(epochs=1))
    assert issubclass(TrainingDiverged, ModelError)


def test_compress_prints_pass_statistics_in_words():
    """A pass's statistics were printed as a Python dict repr ({'pruning': {'layers': {...}}})."""
    from edgec.cli.compress import pass_summary

    stats = {
        "pruning": {
            "criterion": "svs",
            "fraction": 0.5,
            "layers": {"net.0": {"channels": 32, "kept": 16}, "net.2": {"channels": 64, "kept": 32}},
            "not_prunable": {"net.9": "its output goes through output"},
        },
        "weight_bits": {"net.0": 8, "net.2": 4, "net.9": 8},
        "parameters": {"before": 67392, "after": 17568},
        "accuracy_before": 0.5,
        "accuracy_after": 0.9,
        "best_epoch": 3,
    }
    line = pass_summary({"stats": stats})
    assert line.startswith("validation accuracy 50.00% -> 90.00% (best epoch 3); ")
    assert "layers (net.0 32 -> 16, net.2 64 -> 32)" in line
    assert "not prunable (net.9: its output goes through output)" in line
    assert "weight bits: 4 (net.2), 8 (net.0, net.9)" in line
    assert "parameters: 67,392 -> 17,568" in line
    assert not any(c in line for c in "{}'")


def test_rescaw_gradient_is_clipped_at_the_clamp_or_straight_through_as_asked():
    """ReScaW's clamp at +-mean|W|: the clipped estimator gives a clamped weight no gradient, the
    straight one passes the upstream gradient to every weight; the forward values are the same."""
    w = torch.tensor([[0.1, -0.2, 2.0, -3.0]])  # mean |W| = 1.325: the last two are clamped
    out = {}
    for clip in (True, False):
        x = w.clone().requires_grad_(True)
        y = ReScaW(4, clip_gradient=clip)(x)
        y.backward(torch.ones_like(y))
        out[clip] = (y.detach(), x.grad)
    torch.testing.assert_close(out[True][0], out[False][0])
    assert out[True][1].tolist() == [[1.0, 1.0, 0.0, 0.0]]
    assert out[False][1].tolist() == [[1.0, 1.0, 1.0, 1.0]]
