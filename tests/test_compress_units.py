"""The compression machinery's parts, each against an independent statement of what it must do."""

from __future__ import annotations

import math
import sys
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from edgec.data import from_arrays
from edgec.errors import ModelError
from edgec.fakequant import ReScaW, SoftThreshold, UniformWeight, attach, bake, weight_of
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


def test_rescaw_clip_widens_the_clamp_to_k_times_the_mean():
    # the ablation's clip=2: gamma = 2 mean|W| = 1, W~ = clamp(W, -1, 1) = [0.1, -0.4, 1, -0.3]
    w = torch.tensor([[0.1, -0.4, 1.2, -0.3]])
    got = ReScaW(2, clip=2.0)(w)
    # round(1.5 (W~ + 1)) = round([1.65, 0.9, 3, 1.05]) = [2, 1, 3, 1]; W_q = 1 (2/3 k - 1)
    assert torch.allclose(got, torch.tensor([[1 / 3, -1 / 3, 1.0, -1 / 3]]))
    assert ReScaW(2, clip=2.0).record(w).weight_scale == pytest.approx((1 / 3,))
    with pytest.raises(ValueError, match="clip must be > 0"):
        ReScaW(2, clip=0.0)


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


# ---- whole passes on a tiny spiking network ---------------------------------------------------------
class _TinySNN(nn.Module):
    """Three synapses (first, middle, last), each followed by a CUBA LIF neuron; weights scaled x3 from
    PyTorch's initialisation so every layer spikes on the digits (about 29 %, 22 % and 15 % of the time)."""

    timesteps: ClassVar[int] = 8
    encoder: ClassVar[dict[str, Any]] = {"kind": "rate", "gain": 1.0, "seed": 0}

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Flatten(start_dim=2),
            nn.Linear(64, 48, bias=False),
            CubaLIF(48, bias=True),
            nn.Linear(48, 32, bias=False),
            CubaLIF(),
            nn.Linear(32, 10, bias=False),
            CubaLIF(dv=0.125),
        )
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, nn.Linear):
                    m.weight.mul_(3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


_SYNAPSES = ("net.1", "net.3", "net.5")  # first, middle, last
_NEURONS = ("net.2", "net.4", "net.6")


def _compress_tiny(recipe: str, epochs: int = 1) -> Any:
    import edgec

    return edgec.compress(
        _TinySNN(), input_shape=(1, 1, 8, 8), passes=[recipe], train="builtin:digits", epochs=epochs, seed=0
    )


def _digits_dataset() -> Any:
    from edgec.data import open_dataset

    return open_dataset("builtin:digits:holdout")


def _digits_spikes(n: int = 32) -> torch.Tensor:
    """``n`` holdout digits, rate-encoded as the tiny network takes them: [T, n, 1, 8, 8]."""
    from edgec.snn import encode

    x = np.stack([xi for xi, _ in _digits_dataset().take(n)])
    return encode(torch.from_numpy(x).float(), _TinySNN.timesteps, _TinySNN.encoder)


def _stored_membranes(module: nn.Module, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Run ``module`` on ``x``; per spiking neuron, every membrane potential it carries from one time
    step to the next, and the one it ends with. ``v`` exists only inside the neuron's time loop, so a
    tracer reads it there: at the first line of step t, ``v`` is what step t - 1 stored."""
    from edgec.snn import is_spiking_neuron

    names = {id(m): n for n, m in module.named_modules() if is_spiking_neuron(m)}
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names.values()}

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event != "call" or frame.f_code.co_name != "forward":
            return None
        name = names.get(id(frame.f_locals.get("self")))
        if name is None:
            return None
        step: list[Any] = [None]

        def local(frame: Any, event: str, arg: Any) -> Any:
            t = frame.f_locals.get("t")
            if event == "line" and t is not None and t != step[0]:
                if step[0] is not None:
                    seen[name].append(frame.f_locals["v"].detach().clone())
                step[0] = t
            elif event == "return" and "v" in frame.f_locals:
                seen[name].append(frame.f_locals["v"].detach().clone())
            return local

        return local

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        module(x)
    finally:
        sys.settrace(previous)
    return seen


@pytest.fixture(scope="module")
def q_snn_tiny() -> Any:
    """q-snn with 2-bit synapses (3-bit first and last) and a 3-bit membrane, one epoch on the digits."""
    return _compress_tiny("q-snn:bits=2,state_bits=3,edge_bits=3")


def test_q_snn_membrane_holds_only_the_values_of_its_state_bits_grid(q_snn_tiny):
    """During a forward pass every neuron the pass prepared stores its membrane on the documented
    grid: ``k * threshold / L``, ``|k| <= L = 2^(3-1) - 1 = 3`` -- 7 levels, at most 2^3 -- and
    the grid is used (several levels each), not a constant."""
    module = q_snn_tiny.program.module
    assert not any(m._forward_hooks for m in module.modules())  # WS-DR's spike capture is gone
    seen = _stored_membranes(module, _digits_spikes())
    assert sorted(n for n, v in seen.items() if v) == list(_NEURONS)
    levels = 3
    for name in _NEURONS:
        v = torch.cat([s.flatten() for s in seen[name]])
        assert len(seen[name]) == _TinySNN.timesteps  # T - 1 carried states and the last one
        k = v / (float(module.get_submodule(name).threshold) / levels)
        assert torch.allclose(k, k.round(), atol=1e-4), name
        assert k.round().abs().max() <= levels, name
        distinct = torch.unique(k.round())
        assert 3 <= len(distinct) <= 2**3, (name, distinct)
        assert q_snn_tiny.program.quant[name].state_bits == 3
    # and the prepared network still trains: every synapse gets a gradient through it
    module(_digits_spikes(8)).sum().backward()
    for name in _SYNAPSES:
        grad = weight_of(module.get_submodule(name)).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    module.zero_grad(set_to_none=True)


def test_q_snn_membrane_rounding_passes_gradients_straight_through():
    """The stored membrane is rounded with the straight-through estimator: a weight reaches the next
    step's spike through the stored ``v`` with the gradient of an unquantized neuron.

    Linear(2 -> 1) weights (0.25, 0.25); neuron du = 1 (the current is this step's input only),
    dv = 0.5, threshold 0.75, 3-bit state: grid step 0.75 / 3 = 0.25. Input spikes (1, 1) then (0, 0):
    v0 = 0.5 (on the grid, below threshold: no spike, stored as is), v1 = 0.5 * 0.5 = 0.25, so step 1's
    spike depends on the weights only through the stored v0: d s1 / d w_j = 0.5 * sg'((0.25 - 0.75)
    / 0.75) / 0.75 with the fast-sigmoid surrogate sg'(z) = 1 / (1 + 10 |z|)^2. A rounding without
    the estimator would give 0."""
    from edgec.snn_quant import QuantStateCubaLIF, quantize_state

    x = torch.tensor([[[1.0, 1.0]], [[0.0, 0.0]]])  # [T=2, B=1, 2]
    grads = {}
    for quantized in (True, False):
        lin = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            lin.weight.fill_(0.25)
        neuron = CubaLIF(du=1.0, dv=0.5, threshold=0.75)
        if quantized:
            quantize_state(neuron, 3)
            assert isinstance(neuron, QuantStateCubaLIF)
        s = neuron(lin(x))
        assert s.sum() == 0
        s[1].sum().backward()
        assert lin.weight.grad is not None
        grads[quantized] = lin.weight.grad.clone()
    expected = 0.5 / (1.0 + 10.0 * abs((0.25 - 0.75) / 0.75)) ** 2 / 0.75
    assert grads[True].flatten().tolist() == pytest.approx([expected, expected], rel=1e-6)
    assert torch.equal(grads[True], grads[False])


def test_q_snn_weights_end_on_at_most_2_to_the_bits_levels_per_channel(q_snn_tiny):
    """After the pass each synapse's output channels hold at most 2^bits distinct weights (2 bits in
    the middle, ``edge_bits`` 3 at the first and last), and they are the symmetric max-abs grid:
    multiples of ``max|w_c| / q``, ``|level| <= q = 2^(bits-1) - 1``, one step per output channel
    (the recorded grid says the same)."""
    module = q_snn_tiny.program.module
    bits = {"net.1": 3, "net.3": 2, "net.5": 3}
    for name, b in bits.items():
        q = 2 ** (b - 1) - 1
        w = weight_of(module.get_submodule(name)).detach()
        steps = w.abs().amax(1) / q
        for row, step in zip(w, steps, strict=True):
            assert len(torch.unique(row)) <= 2**b, (name, row)
            k = row / step
            assert torch.allclose(k, k.round(), atol=1e-4), (name, row)
        assert len(torch.unique(steps)) > 1  # each channel its own step, not one for the tensor
        rec = q_snn_tiny.program.quant[name]
        assert rec.weight_bits == b and rec.per_channel
        assert rec.weight_scale == pytest.approx(steps.tolist(), rel=1e-5)
    assert q_snn_tiny.program.history[-1].stats["weight_bits"] == bits


def _binary_entropy(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_ws_dr_loss_matches_the_documented_formula_by_hand():
    """L = lambda_w (1 - H(levels) / log K) + lambda_s mean_l (1 - mean_i H_b(p_i) / log 2), computed
    here in plain Python: the soft level histogram assigns each weight u = w / s (s = max|w_c| / q)
    to level j with weight softmax_j(-(u - j)^2 / 0.5) (the code's kernel; the docstring only says
    "soft-assigned") and averages over the layer's weights."""
    from edgec.passes.q_snn import WSDR

    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, -0.5], [0.5, 0.5, 0.25]]))
    quantizer = UniformWeight(2)  # q = 1: levels -1, 0, 1 (K = 3)
    attach(lin, "weight", quantizer)
    # du = dv = 1: no memory, the neuron spikes exactly where its input exceeds the threshold (1)
    student = nn.ModuleDict({"fc": lin, "a": CubaLIF(du=1.0, dv=1.0), "b": CubaLIF(du=1.0, dv=1.0)})
    spikes_a = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])  # [T=2, B=2, 2]
    spikes_b = torch.tensor([[[1.0, 1.0, 1.0]], [[1.0, 0.0, 0.0]]])  # [T=2, B=1, 3]

    # by hand: u per weight (rows scaled by 1.0 and 0.5)
    u = [1.0, 0.0, -0.5, 1.0, 1.0, 0.5]
    soft = [0.0, 0.0, 0.0]
    for ui in u:
        e = [math.exp(-((ui - j) ** 2) / 0.5) for j in (-1, 0, 1)]
        for i in range(3):
            soft[i] += e[i] / sum(e) / len(u)
    weight_term = 1 - (-sum(p * math.log(p) for p in soft)) / math.log(3)
    rates_a = [2 / 4, 1 / 4]  # neuron 0 fires at 2 of T x B = 4 steps, neuron 1 at 1
    rates_b = [2 / 2, 1 / 2, 1 / 2]  # a neuron that always fires carries no information
    spike_term = (
        sum(
            1 - sum(_binary_entropy(p) for p in rates) / len(rates) / math.log(2)
            for rates in (rates_a, rates_b)
        )
        / 2
    )
    assert 0.1 < weight_term < 0.5 and 0.1 < spike_term < 0.5  # neither term is at a trivial value

    for lambda_w, lambda_s in ((0.3, 0.7), (1.0, 0.0), (0.0, 1.0)):
        hook = WSDR({"fc": quantizer}, lambda_w, lambda_s)
        hook.setup(student, None)
        try:
            assert torch.equal(student["a"](2 * spikes_a), spikes_a)
            assert torch.equal(student["b"](2 * spikes_b), spikes_b)
            loss = hook.loss(None)  # type: ignore[arg-type]  # the regulariser does not read the batch
        finally:
            hook.teardown()
        assert loss is not None
        assert float(loss.detach()) == pytest.approx(lambda_w * weight_term + lambda_s * spike_term, rel=1e-5)


def test_ws_dr_with_both_lambdas_zero_adds_no_loss(q_snn_tiny):
    """lambda_w = lambda_s = 0: the regulariser returns no loss at all, and q-snn's fine-tuning then
    optimises the task loss alone (its curve has no ws-dr term; with the defaults it has one)."""
    from edgec.passes.q_snn import WSDR

    lin = nn.Linear(4, 3)
    quantizer = UniformWeight(2)
    attach(lin, "weight", quantizer)
    student = nn.ModuleDict({"fc": lin, "lif": CubaLIF()})
    hook = WSDR({"fc": quantizer}, 0.0, 0.0)
    hook.setup(student, None)
    try:
        student["lif"](torch.rand(4, 2, 3) * 3)
        assert hook.loss(None) is None  # type: ignore[arg-type]
    finally:
        hook.teardown()
    (default,) = q_snn_tiny.report["passes"][0]["stats"]["finetune"]["curve"]
    assert default["terms"]["ws-dr"] > 0
    res = _compress_tiny("q-snn:bits=2,state_bits=3,edge_bits=3,lambda_w=0,lambda_s=0")
    (epoch,) = res.report["passes"][0]["stats"]["finetune"]["curve"]
    assert set(epoch["terms"]) == {"task"} and epoch["loss"] == epoch["terms"]["task"]


def test_soft_threshold_prune_reaches_its_sparsity_and_cuts_synaptic_operations():
    """soft-threshold-prune:sparsity=0.5 on the tiny SNN, one epoch of the digits (18 Adam steps at
    lr 1e-3).

    Tolerance: each layer's final threshold D is the 0.5 quantile of its starting |W| (so exactly half
    the weights lie at or below it at the start), the threshold is at D for the whole single epoch,
    and the zeros are the weights whose trained |W| ends at or below D. Adam moves a weight by about
    lr per step (its normalised update m / sqrt(v) is at most ~1 for a steady gradient; the cosine
    schedule only lowers lr), so only weights that started within steps * lr of D can cross it: the
    test allows twice that band, computed from the starting weights (about +-10 points here).

    First / last layer: ``edge_layers`` defaults to true, "prune the first and last synapse too".
    """
    from edgec.energy.analyze import count_program
    from edgec.loading import load_program

    original = load_program(_TinySNN(), input_shape=(1, 1, 8, 8))
    start = {n: weight_of(original.module.get_submodule(n)).detach().clone() for n in _SYNAPSES}
    res = _compress_tiny("soft-threshold-prune:sparsity=0.5")
    report = res.report
    ft = report["finetune"]
    steps = -(-report["data"]["train_samples"] // ft["batch_size"]) * ft["epochs"]
    band = 2 * steps * ft["lr"]
    stats = report["passes"][0]["stats"]
    assert report["passes"][0]["name"] == "soft-threshold-prune"
    assert set(stats["sparsity"]) == set(_SYNAPSES)  # the first and last too (edge_layers=true)
    for name in _SYNAPSES:
        w = weight_of(res.program.module.get_submodule(name)).detach()
        zeros = float((w == 0).float().mean())
        a = start[name].abs().flatten()
        d = float(torch.quantile(a, 0.5))
        low, high = float((a <= d - band).float().mean()), float((a <= d + band).float().mean())
        assert low <= zeros <= high, (name, zeros, low, high)
        assert low > 0.35 and high < 0.65  # the band itself is "about 50 %"
        assert stats["sparsity"][name] == pytest.approx(zeros, abs=5e-5)  # the report states it
    # synaptic operations (edgec's energy counter, exact: a pair counts only through a non-zero weight)
    data = _digits_dataset()
    before = count_program(original, data).sop_total("exact")
    after = count_program(res.program, data).sop_total("exact")
    assert after < 0.75 * before, (before, after)
    assert report["after"]["sops"] < report["before"]["sops"]


def test_soft_threshold_prune_leaves_first_and_last_synapse_dense_when_asked():
    """``edge_layers=false``: the first and last synapse are not pruned (no zero weight, not in the
    stats); the middle one is, to about half (the tolerance of the test above, rounded out)."""
    res = _compress_tiny("soft-threshold-prune:sparsity=0.5,edge_layers=false")
    stats = res.report["passes"][0]["stats"]
    assert set(stats["sparsity"]) == {"net.3"}
    module = res.program.module
    for name in ("net.1", "net.5"):
        assert int((weight_of(module.get_submodule(name)) == 0).sum()) == 0, name
    assert 0.4 < float((weight_of(module.get_submodule("net.3")) == 0).float().mean()) < 0.6
