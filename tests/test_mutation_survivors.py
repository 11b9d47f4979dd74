"""Tests for mutants that survived the suite (benchmarks/mutation.py; the list and the equivalent ones in
benchmarks/results/mutation-survivors.md). Each test names the mutant it kills: a bug users would feel
that nothing checked. Counts are derived here by hand or by brute force, not by edgec's counters."""

from __future__ import annotations

import itertools
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgec
from edgec.data import from_arrays
from edgec.energy.analyze import count_program
from edgec.program import Program


# ---- energy counting (toolchain/energy/counter.py) --------------------------------------------------
class Sdpa(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


class TwoSdpa(nn.Module):
    """One module calling attention twice: its per-layer detail is the sum of both calls."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = Sdpa()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.reshape(1, 2, 5, 4)  # B=1, H=2, L=5, E=4
        kv = x.reshape(1, 2, 5, 4)[..., :3, :]  # S=3
        return self.attn(q, kv, kv) + self.attn(q, kv, kv)


def test_attention_macs_detail_splits_qk_and_av_exactly():
    """counter.py:324 (rows * s * ek -> rows - s * ek) and :375 (detail starts at -1): the report's
    per-layer split of attention MACs is the hand count, not only the total."""
    with torch.inference_mode():  # sdpa arrives undecomposed
        counts = count_program(Program(module=TwoSdpa().eval(), example_input=torch.rand(1, 40)))
    (row,) = [r for r in counts.layers if r.macs_detail]
    rows, s, e = 1 * 2 * 5, 3, 4  # B * H * L query rows, S keys, E features
    assert row.macs_detail == {"attention_qk": 2 * rows * s * e, "attention_av": 2 * rows * s * e}
    assert row.macs == sum(row.macs_detail.values())


# ---- activity: synaptic operations (toolchain/energy/activity.py) -----------------------------------
class Frames(nn.Module):
    """A synapse applied to fixed binary frames [T, B, ...] (time folded into the batch)."""

    def __init__(self, synapse: nn.Module, frames: torch.Tensor) -> None:
        super().__init__()
        self.synapse = synapse
        self.frames = frames

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        t, b = self.frames.shape[:2]
        y = self.synapse(self.frames.reshape(t * b, *self.frames.shape[2:]))
        return y.reshape(t, b, *y.shape[1:])


def _sops(synapse: nn.Module, frames: torch.Tensor):
    program = Program(module=Frames(synapse, frames).eval(), example_input=frames[0], kind="snn", timesteps=1)
    (row,) = [r for r in count_program(program).layers if r.name == "synapse"]
    assert row.sops is not None
    return row.sops


def _pairs_same(x: torch.Tensor, w: torch.Tensor, dilation: int) -> tuple[int, int]:
    """(non-zero input, non-zero weight) pairs and in-bounds (output, tap) pairs of a stride-1 'same'
    convolution, by brute force: torch pads d*(k-1) in all, the smaller half on the left."""
    n, cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    top, left = dilation * (kh - 1) // 2, dilation * (kw - 1) // 2
    pairs = taps = 0
    for b, o, i, j in itertools.product(range(n), range(cout), range(h), range(wd)):
        for c, a, bb in itertools.product(range(cin), range(kh), range(kw)):
            r, s = i - top + a * dilation, j - left + bb * dilation
            if 0 <= r < h and 0 <= s < wd:
                taps += 1
                pairs += bool(x[b, c, r, s] != 0 and w[o, c, a, bb] != 0)
    return pairs, taps


@pytest.mark.parametrize(
    ("kernel", "dilation"), [(3, 1), (5, 2), (4, 1)], ids=["odd", "odd-dilated", "even-asymmetric"]
)
def test_same_padding_sops_and_dense_equal_brute_force(kernel, dilation):
    """activity.py:89 (the 'same' padding d*(k-1)//2 -> -2 or >>2) and :113 (batch = shape[1]): exact
    and boundary-aware dense counts of padding='same' convolutions, batch != channels."""
    gen = torch.Generator().manual_seed(kernel)
    conv = nn.Conv2d(3, 2, kernel, padding="same", dilation=dilation, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        conv.weight[torch.rand(conv.weight.shape, generator=gen) < 0.3] = 0.0
    frames = (torch.rand(2, 5, 3, 7, 6, generator=gen) < 0.3).float()  # T=2, B=5
    flat = frames.reshape(10, 3, 7, 6)
    pairs, taps = _pairs_same(flat, conv.weight, dilation)
    sops = _sops(conv, frames)
    assert sops.exact_run == pairs
    assert sops.dense_run == taps  # every (output, tap) in bounds, all weights counted
    assert sops.exact == pairs / 5  # per sample


def test_transposed_conv_sops_dense_and_literature_by_hand():
    """activity.py:128 (FLOPs of a transposed conv: * prod(k) -> << prod(k), out/groups -> out**groups):
    the literature's rate x FLOPs and the exact pairs of a grouped ConvTranspose2d."""
    gen = torch.Generator().manual_seed(5)
    conv = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))  # [in=4, out/g=3, 3, 3]
    frames = (torch.rand(1, 3, 4, 5, 5, generator=gen) < 0.4).float()  # T=1, B=3
    x = frames[0]
    # exact: each input spike of channel c reaches, per output channel of its group, every tap whose
    # output position lands inside the (cropped) output; brute force over the scatter
    out_h = (5 - 1) * 2 - 2 * 1 + 3
    pairs = 0
    for b, c, i, j in itertools.product(range(3), range(4), range(5), range(5)):
        if x[b, c, i, j] == 0:
            continue
        for o, a, bb in itertools.product(range(3), range(3), range(3)):
            r, s = i * 2 - 1 + a, j * 2 - 1 + bb
            pairs += bool(0 <= r < out_h and 0 <= s < out_h and conv.weight[c, o, a, bb] != 0)
    sops = _sops(conv, frames)
    assert sops.exact_run == pairs
    nnz = int((x != 0).sum())
    flops = x.numel() * (6 // 2) * 9  # every input element x (out channels per group) x kernel taps
    assert sops.literature == pytest.approx(nnz / x.numel() * flops / 3)


class TupleNeuron(nn.Module):
    """A spiking neuron that returns (spikes, membrane), as snnTorch's neurons do."""

    is_spiking_neuron = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x > 0.5).float(), x * 3.0


class TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8, bias=False)
        self.lif = TupleNeuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.fc(x))[0]


def test_neurons_returning_spikes_and_state_count_the_spikes():
    """activity.py:202 (out[0] -> out[1]) and :211 (x != 0 -> x != -1): spikes are the first output of
    a (spikes, state) neuron; active updates are the neuron's non-zero inputs."""
    torch.manual_seed(0)
    net = TupleNet().eval()
    with torch.no_grad():
        net.fc.weight.copy_(torch.randn(8, 6))
        net.fc.weight[:, :2] = 0.0
    x = torch.rand(4, 6)
    x[:, 4:] = 0.0  # inputs 4, 5 silent, weights of 0, 1 zero: only inputs 2, 3 drive the neurons
    x[0] = 0.0  # and the first sample drives nothing
    program = Program(module=net, example_input=x[:1], kind="snn", timesteps=1, encoder={"kind": "direct"})
    data = from_arrays(x.numpy())
    counts = count_program(program, data, samples=4)
    (row,) = [r for r in counts.layers if r.name == "lif"]
    with torch.no_grad():
        current = net.fc(x)
    assert (current == 0).any() and (current != 0).any()
    assert (current > 0.5).any() and ((current != 0) & (current <= 0.5)).any()  # spikes != non-zero
    assert row.spikes == pytest.approx(float((current > 0.5).sum()) / 4)
    assert row.active_neuron_updates == pytest.approx(float((current != 0).sum()) / 4)
    assert row.neuron_updates == 8


# ---- artifact writing (toolchain/artifact.py) ---------------------------------------------------------
def test_output_in_new_nested_folders_is_created(cli, tmp_path):
    """artifact.py:101 (mkdir(parents=True) -> False): -o into folders that do not exist yet."""
    out = tmp_path / "new" / "deeper" / "art"
    res = cli("compile", "zoo:digits-cnn", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert (out / "report.json").is_file() and (out / "model.onnx").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["art"]  # no temporary folder left beside it


def test_force_replaces_the_artifact_and_leaves_nothing_beside_it(cli, tmp_path):
    """artifact.py:117 (`if old is not None` -> `is None`): the replaced artifact is removed, not left
    as a hidden .art.old-PID folder beside the new one."""
    out = tmp_path / "art"
    assert cli("compile", "zoo:digits-cnn", "-o", out).exit_code == 0
    first = (out / "report.json").read_text()
    res = cli(
        "compile", "zoo:digits-cnn", "--quantize", "int8", "--calib", "builtin:digits", "-o", out, "--force"
    )
    assert res.exit_code == 0, res.stderr
    assert json_precision(out) == "int8" and (out / "report.json").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def json_precision(out) -> str:
    import json

    return json.loads((out / "report.json").read_text())["target_report"]["precision"]


def test_output_under_a_dangling_symlink_is_a_usage_error(cli, tmp_path):
    """artifact.py:79 (`is_symlink() or ...` -> `and`): a path through a dangling symlink is refused
    up front (exit 2, one line), not an internal error after the work."""
    os.symlink(tmp_path / "gone", tmp_path / "link")
    res = cli("compile", "zoo:digits-cnn", "-o", tmp_path / "link" / "art")
    assert res.exit_code == 2, res.stderr
    assert "is not a directory" in res.stderr
    assert not (tmp_path / "gone").exists()


# ---- verify's comparison (toolchain/target.py: compare_outputs) -------------------------------------
def test_outputs_of_other_shapes_fail_either_way():
    """target.py compare_outputs (`!=` -> `>` on shapes): an artifact whose output has fewer or more
    rows / classes than the source's fails, whichever is larger."""
    import numpy as np

    from edgec.target import compare_outputs

    a, b = np.zeros((4, 10)), np.zeros((5, 10))
    for out, ref in ((a, b), (b, a), (np.zeros((4, 9)), a)):
        res = compare_outputs({"y": out}, {"y": ref}, None, min_agreement=0.98)
        assert not res.passed and "outputs differ" in res.summary
    for name in ("z", "a"):  # an output of another name, sorting after or before the expected one
        res = compare_outputs({name: a}, {"y": a}, None, min_agreement=0.98)
        assert not res.passed and "outputs differ" in res.summary


def test_non_class_outputs_pass_within_five_percent_of_the_reference_range():
    """target.py compare_outputs (`<=` -> `>` / `!=`, `0.05 * scale` -> `0.05 & scale`, the summary's
    allowed figure): outputs that are not class scores pass while max |out - ref| <= 5 % of max |ref|."""
    import numpy as np

    from edgec.target import REL_TOLERANCE, compare_outputs

    ref = np.linspace(-2.0, 1.5, 12).reshape(12, 1)  # max |ref| = 2: 0.1 allowed
    allowed = REL_TOLERANCE * 2.0
    for delta, ok in ((0.0, True), (allowed * 0.5, True), (allowed, True), (allowed * 1.01, False)):
        out = ref.copy()
        out[3] += delta
        res = compare_outputs({"y": out}, {"y": ref}, None, min_agreement=0.98)
        assert res.passed is ok, delta
        assert res.metrics["max_abs_error"] == pytest.approx(delta)
        assert res.metrics["mean_abs_error"] == pytest.approx(delta / 12)
        assert f"(allowed {allowed:.3g})" in res.summary
    # a reference of zeros: the tolerance is 5 % of 1, not of 0
    zeros = np.zeros((12, 1))
    assert compare_outputs({"y": zeros + 0.04}, {"y": zeros}, None, min_agreement=0.98).passed
    assert not compare_outputs({"y": zeros + 0.06}, {"y": zeros}, None, min_agreement=0.98).passed
    # several outputs: each judged on its own, the verdict needs all
    spikes = np.zeros((12, 4))
    res = compare_outputs({"y": ref + 0.5, "s": spikes}, {"y": ref, "s": spikes}, None, min_agreement=0.98)
    assert not res.passed and res.metrics["outputs"]["s"]["max_abs_error"] == 0.0
    assert res.metrics["outputs"]["y"]["max_abs_error"] == pytest.approx(0.5)


# ---- Loihi emulator (targets/loihi/emulator.py) -------------------------------------------------------
def test_netx_load_of_mixed_weights_by_hand():
    """emulator.py:113 (127 / w_max -> 127 + w_max) and :99 (clip condition `>` -> `<=`): netx's scale
    of mixed-sign weights whose positive side dominates, and its clip flag.

    [[100, -3]]: scale = min(127 / 100, -128 / -3) = 1.27 -> floor(log2) + 1 signed = 1 scale bit; no
    shared zero bit (-3 is odd) -> n = 0 - 1; 8 - 1 + 1 = 8 weight bits, exponent -1; stored w << 1 =
    [200, -6], Lava drops 8 - 8 + 1 = 1 bit (both even): each synapse adds [100, -3], nothing clipped.
    """
    import numpy as np

    from edgec.targets.loihi.emulator import netx_dense_load

    load = netx_dense_load(np.array([[100, -3]]))
    assert (load.sign_mode, load.num_weight_bits, load.weight_exp, load.clipped) == ("mixed", 8, -1, False)
    np.testing.assert_array_equal(load.weight, [[200, -6]])
    np.testing.assert_array_equal(load.effective(), [[100, -3]])
    # out of range with mixed signs: netx clips to [-256, 254] and says so
    clipped = netx_dense_load(np.array([[300, -3]]))
    assert clipped.clipped and clipped.effective().max() <= 254


def _lava_cuba_reference(w_eff, spikes, i_decay, v_decay, vth_mant):
    """Lava's fixed-point CUBA neuron (PyLifModelBitAcc) in plain Python integers, for a dense layer:
    u = sign(u) * (|u| * (4096 - du) >> 12) + (W s << 6), wrapped to signed 24 bit; v likewise, plus u,
    clipped to 24 bit; a spike where v > vth << 6, then v = 0."""
    import numpy as np

    def decay(x: int, d: int) -> int:
        return (1 if x >= 0 else -1) * ((abs(x) * (4096 - d)) >> 12)

    m = 1 << 23
    n = w_eff.shape[0]
    u, v = [0] * n, [0] * n
    out = np.zeros((spikes.shape[0], n), dtype=np.uint8)
    for t, s in enumerate(spikes):
        a = [int(x) << 6 for x in w_eff @ s.astype(np.int64)]
        for i in range(n):
            u[i] = decay(u[i], i_decay) + a[i]
            if u[i] > m:
                u[i] -= 2 * m
            elif u[i] <= -m:
                u[i] += 2 * m
            v[i] = min(max(decay(v[i], v_decay) + u[i], -m + 1), m - 1)
            if v[i] > vth_mant << 6:
                out[t, i] = 1
                v[i] = 0
    return out


@pytest.mark.parametrize("kernel", ["numpy", "c"])
def test_24_bit_wrap_of_the_current_follows_lava(kernel, request):
    """emulator.py:388 (`u -= 2 * _M` -> `2 + _M`): a current that leaves signed 24 bit wraps as in
    Lava, in the numpy path and the C kernel alike (checked against a plain-integer reference)."""
    import numpy as np

    from edgec.targets.loihi.emulator import Emulator
    from edgec.targets.loihi.netlist import CubaNeuron, Layer, Netlist

    if kernel == "c":
        request.getfixturevalue("c_kernel")
    w = np.repeat(np.array([[254], [200], [100]]), 150, axis=1)  # every input excitatory and strong
    layer = Layer("dense", "d", (150,), (3,), w, CubaNeuron(0, 4096, 78000, None))  # no current decay
    net = Netlist((150,), [layer])
    x = np.ones((24, 1, 150), dtype=np.uint8)  # every input spikes every step: u grows past 2^23
    got = Emulator(net, kernel=kernel).run(x)[:, 0]
    want = _lava_cuba_reference(w, x[:, 0], 0, 4096, 78000)
    assert (np.cumsum(150 * 254 * 64 * np.ones(24)) > 2**23).any()  # the wrap is reached
    np.testing.assert_array_equal(got, want)
    assert want[:, 0].any() and not want[:, 0].all()


def test_emulator_takes_float_and_integer_spikes_and_records_neuron_layers_only():
    """emulator.py:313 (`|` -> `&` in the 0 / 1 check) and :322 (`record and` -> `or`): spikes given as
    float or int64 0 / 1 run like uint8; record=True gives one array per neuron layer, flatten not."""
    import numpy as np
    from test_loihi import _random_net

    from edgec.targets.loihi.emulator import Emulator

    rng = np.random.default_rng(2)
    net = _random_net(rng)
    x = (rng.random((6, 3, 2, 9, 9)) < 0.4).astype(np.uint8)
    emu = Emulator(net)
    want, rec = emu.run(x, record=True)
    for dtype in (np.float32, np.int64, np.bool_):
        np.testing.assert_array_equal(emu.run(x.astype(dtype)), want)
    assert len(rec) == len(net.compute_layers) == 3
    assert [r.shape[2:] for r in rec] == [la.out_shape for la in net.compute_layers]


# ---- the energy gate (toolchain/energy/gate.py) --------------------------------------------------------
def _report(name: str = "m", energy: float = 1e-6, table: str = "cmos45-fp32@1", macs: int = 1000) -> dict:
    return {
        "schema_version": 1,
        "target": "cpu",
        "program": {"name": name},
        "energy": {
            "headline": {"energy_j": energy, "source": "estimate", "table": table},
            "totals": {"macs": macs, "params": 10},
            "workload": {"data": None, "samples": 1},
        },
    }


def test_gate_max_increase_must_be_a_finite_percentage_of_zero_or_more():
    """gate.py parse_max_increase (`not finite or < 0` -> `and`): -5% and inf are usage errors."""
    from edgec.energy.gate import parse_max_increase
    from edgec.errors import UsageError

    assert parse_max_increase("5%") == pytest.approx(0.05) and parse_max_increase("0") == 0.0
    for bad in ("-5%", "inf", "nan", "five"):
        with pytest.raises(UsageError, match="max-increase"):
            parse_max_increase(bad)


def test_gate_notes_another_model_and_another_energy_basis():
    """gate.py compare (`cur_name != base_name` -> not; same_basis `==` -> `is not`): a baseline of
    another model is named in the notes; energy priced by another table is not compared, and says so;
    the same model and table give no note and compare energy."""
    from edgec.energy.gate import compare

    same = compare(_report(), _report(), max_increase=0.05)
    assert same.passed and same.notes == [] and "energy_j" in {d.metric for d in same.deltas}
    assert same.summary().startswith("every count equals")
    other = compare(_report(name="a"), _report(name="b"), max_increase=0.05)
    assert other.notes == ["the baseline is for model 'b', this report for 'a'"]
    basis = compare(_report(table="cmos45-int8@1", energy=9.0), _report(), max_increase=0.05)
    assert "energy_j" not in {d.metric for d in basis.deltas} and basis.passed
    assert any(n.startswith("energy not compared") for n in basis.notes)


def test_gate_from_a_zero_baseline():
    """gate.py (`b > 0` / `c > 0` edge): energy from zero is a regression when it appears, not when it
    stays zero; a count that leaves zero is a change."""
    from edgec.energy.gate import compare

    zero = compare(_report(energy=0.0, macs=0), _report(energy=0.0, macs=0), max_increase=0.05)
    assert zero.passed and all(d.change == 0.0 for d in zero.deltas if d.metric in ("energy_j", "macs"))
    grew = compare(_report(energy=1e-9, macs=0), _report(energy=0.0, macs=0), max_increase=0.05)
    assert not grew.passed and [d.metric for d in grew.regressions] == ["energy_j"]
    fell = compare(_report(energy=0.0, macs=0), _report(energy=1e-9, macs=0), max_increase=0.05)
    assert fell.passed  # energy may fall


# ---- Loihi lowering (targets/loihi/lowering.py) --------------------------------------------------------
def _one_dense_snn(threshold: float):
    import numpy as np

    from edgec.snn import CubaLIF

    fc = nn.Linear(64, 10, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(np.random.default_rng(0).uniform(-0.01, 0.01, (10, 64))))
    return nn.Sequential(nn.Flatten(2), fc, CubaLIF(threshold=threshold))


def test_a_threshold_beyond_17_bits_coarsens_the_weight_grid(tmp_path):
    """lowering.py:182 / 185 (`sigma * mult` -> `<<`, the grid's note `+` -> `*`): a threshold 5000x the
    largest weight does not fit vThMant on the weights' own grid; the lowering coarsens the scale so it
    does, keeps the threshold exact and says so. Also :261 (dv_error `-` -> `+`) and :269 (the 24-bit
    headroom ratio `1 << 23` -> `1 | 23`), by hand from the stored integers."""
    import numpy as np

    from edgec.targets.loihi.netlist import DECAY_UNITY, STATE_SHIFT, read_netx

    snn = _one_dense_snn(threshold=50.0)
    art = edgec.compile(snn, target="loihi", input_shape=(1, 1, 8, 8), out=tmp_path / "a")
    (row,) = art.report["target_report"]["layers"]
    assert row["grid"].endswith("coarsened for the threshold / bias range")
    assert 131000 < row["vThMant"] <= 2**17 - 1 and row["threshold_rel_error"] < 1e-6
    assert row["netx_load"]["lossless"] and row["effective_weight_bits"] >= 2
    lif = snn[2]
    assert row["du_error"] == abs(round(float(lif.du) * DECAY_UNITY) / DECAY_UNITY - float(lif.du))
    assert row["dv_error"] == abs(round(float(lif.dv) * DECAY_UNITY) / DECAY_UNITY - float(lif.dv)) < 1e-3
    w = read_netx(art.file("network")).compute_layers[0].weight
    worst = int(np.abs(w).sum(1).max()) << STATE_SHIFT
    assert row["worst_input_vs_24bit_state"] == pytest.approx(worst / 2**23)


def test_a_threshold_that_rounds_to_zero_is_refused_on_the_neuron(tmp_path):
    """lowering.py:348 (`vth_mant < 1` -> `< 0`) and :372 (`neuron_name or name` -> `and`): vThMant 0
    would make every positive voltage spike; compile refuses it (exit 4) naming the neuron module."""
    from edgec.errors import ConstraintViolation

    with pytest.raises(ConstraintViolation) as info:
        edgec.compile(_one_dense_snn(1e-6), target="loihi", input_shape=(1, 1, 8, 8), out=tmp_path / "a")
    (v,) = info.value.violations
    assert (v.layer, v.rule) == ("2", "threshold-range") and "vThMant 0 outside" in v.detail
    assert not (tmp_path / "a").exists()


def test_a_declared_weight_scale_is_used_exactly_or_refused(tmp_path):
    """lowering.py:329 / 330 (the declared-scale check: `weight is not None` -> `is None`, `-` -> `%`):
    a synapse declaring `weight_scale` gets exactly W / scale as its integers; a scale that does not
    make the weights integers is refused (exit 4) instead of silently rounded."""
    import numpy as np

    from edgec.errors import ConstraintViolation
    from edgec.snn import CubaLIF
    from edgec.targets.loihi.netlist import read_netx

    q = np.random.default_rng(1).integers(-100, 101, (10, 64))
    for noise, ok in ((0.0, True), (0.3, False)):
        fc = nn.Linear(64, 10, bias=False)
        with torch.no_grad():
            fc.weight.copy_(torch.from_numpy((q + noise) * 0.01))
        fc.weight_scale = 0.01  # type: ignore[assignment]
        snn = nn.Sequential(nn.Flatten(2), fc, CubaLIF(threshold=0.5))
        out = tmp_path / f"n{noise}"
        if ok:
            art = edgec.compile(snn, target="loihi", input_shape=(1, 1, 8, 8), out=out)
            (row,) = art.report["target_report"]["layers"]
            assert row["grid"].startswith("declared weight_scale")
            stored = read_netx(art.file("network")).compute_layers[0].weight
            np.testing.assert_array_equal(stored, q * (stored[q != 0][0] // q[q != 0][0]))
        else:
            with pytest.raises(ConstraintViolation) as info:
                edgec.compile(snn, target="loihi", input_shape=(1, 1, 8, 8), out=out)
            assert any("not integers" in v.detail for v in info.value.violations)


def test_an_inhibitory_layer_coarsened_onto_a_power_of_two_weight_loads_exactly(tmp_path):
    """lowering.py:199 (`_loadable`: `s / m` -> `s - m`): a 5-bit layer of weights <= 0 whose threshold
    (1024x the largest weight) coarsens its grid to 8 levels would store -8 * 16 = -128, which netx scales
    to -256 and Lava clips; the lowering falls back to multiplier 14, and the threshold and the weights
    it stores must still mean what the float layer does (vThMant * scale = threshold, weights within
    half a grid step)."""
    import numpy as np

    from edgec.snn import CubaLIF
    from edgec.targets.loihi.netlist import read_netx

    w = -np.random.default_rng(0).uniform(0, 0.01, (10, 64))
    w[0, 0] = -0.01
    fc = nn.Linear(64, 10, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(w))
    fc.weight_bits = 5  # type: ignore[assignment]
    snn = nn.Sequential(nn.Flatten(2), fc, CubaLIF(threshold=1024 * 0.01))
    art = edgec.compile(snn, target="loihi", input_shape=(1, 1, 8, 8), out=tmp_path / "a")
    (row,) = art.report["target_report"]["layers"]
    assert "x14: exact netx load" in row["grid"] and row["netx_load"]["lossless"]
    stored = read_netx(art.file("network")).compute_layers[0].weight
    assert stored.min() == -8 * 14 and stored.max() == 0
    scale = row["scale"]
    step = 14 * scale  # one weight level
    assert np.abs(stored * scale - w.astype(np.float32)).max() <= step / 2 + 1e-9
    assert row["vThMant"] * scale == pytest.approx(1024 * 0.01, rel=1e-5)


# ---- loading (toolchain/loading.py), the "now" sample ---------------------------------------------------
def test_a_trusted_pickle_whose_class_cannot_be_imported_names_the_module(cli, tmp_path, monkeypatch):
    """loading.py:125 (`getattr(exc, "name", None) or str(exc)` -> `and`): a whole model saved from the
    user's own module, loaded (--trust-pickle) where that module is not importable, fails with exit 3
    naming the module to put on PYTHONPATH (not Python's sentence around it)."""
    import importlib
    import sys

    name = "edgec_user_models_gone"
    (tmp_path / f"{name}.py").write_text("from torch import nn\n\nclass Net(nn.Sequential):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    net = importlib.import_module(name).Net(nn.Flatten(), nn.Linear(64, 10))
    torch.save(net, tmp_path / "m.pt")
    monkeypatch.delitem(sys.modules, name)
    sys.path.remove(str(tmp_path))
    importlib.invalidate_caches()
    res = cli(
        "compile", tmp_path / "m.pt", "--trust-pickle", "--input-shape", "1,1,8,8", "-o", tmp_path / "a"
    )
    assert res.exit_code == 3, (res.exit_code, res.stderr)
    assert f"the class of its model is defined in '{name}', which Python cannot import" in res.stderr
    assert not (tmp_path / "a").exists()


# ---- CPU session (targets/cpu/__init__.py, `session`), the "now" sample ---------------------------------
def test_an_artifact_compiled_for_onnxruntime_runs_on_openvino_when_asked(tmp_path):
    """targets/cpu/__init__.py:297 (`"openvino" in files` -> `not in`: which file OpenVINO opens): an
    artifact compiled for ONNX Runtime has no OpenVINO IR; `--backend openvino` at run time opens its
    model.onnx and gives ONNX Runtime's outputs (the summary promises "--backend onnxruntime|openvino
    picks another")."""
    import numpy as np
    from conftest import require_module

    require_module("openvino", "EDGEC_REQUIRE_OPENVINO", "the CPU target's openvino backend")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    art = edgec.compile(
        model, target="cpu", backend="onnxruntime", input_shape=(1, 1, 8, 8), out=tmp_path / "a"
    )
    assert "openvino" not in art.report["files"]
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for backend in ("onnxruntime", "openvino"):
        got = edgec.run(art, x, backend=backend)["output"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_dropout_exported_in_eval_mode_compiles_and_in_training_mode_is_refused(cli, tmp_path):
    """loading.py:363 (`node.args[2] is True` -> `< True`: which dropout counts as training): a .pt2
    with Dropout exported after m.eval() compiles and runs as the model does; exported in training
    mode it is refused (exit 3, naming aten.dropout and the fix)."""
    import numpy as np

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Dropout(0.5))
    x = torch.rand(4, 1, 8, 8)
    for mode in ("eval", "train"):
        getattr(model, mode)()
        path = tmp_path / f"{mode}.pt2"
        torch.export.save(torch.export.export(model, (x[:1],)), path)
        res = cli("compile", path, "-o", tmp_path / mode)
        if mode == "train":
            assert res.exit_code == 3, (res.exit_code, res.stderr)
            assert "exported in training mode (aten.dropout" in res.stderr and "m.eval()" in res.stderr
            assert not (tmp_path / mode).exists()
            continue
        assert res.exit_code == 0, res.stderr
        got = edgec.run(tmp_path / mode, x.numpy())["output"]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-5, atol=1e-6)


# ---- CPU session runner (targets/cpu/session.py), the "now" sample --------------------------------------
def test_a_fixed_batch_graph_runs_any_number_of_samples_each_its_own_output(tmp_path):
    """session.py:27 (the last piece's padding `fixed - real` -> `+`, `|`, `/`) and :55 (`x.ndim !=` ->
    `<`): ONNX Runtime on a graph whose batch is fixed at 2 gets 5 samples (two pieces and a padded
    one) or 1 (padded) and returns each sample's own output; an input of the wrong rank is a DataError
    saying what the artifact expects."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgec.errors import DataError
    from edgec.targets.cpu import onnxruntime_backend
    from edgec.targets.cpu.options import CpuOptions

    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "fixed_batch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    run = onnxruntime_backend.open_session(tmp_path / "model.onnx", CpuOptions(), threads=1, declared=["y"])
    assert run.fixed_batch == 2
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    for n in (5, 2, 1):
        got = run(x[:n])
        assert list(got) == ["y"] and got["y"].shape == (n, 3)
        np.testing.assert_allclose(got["y"], x[:n] @ w, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match=r"does not fit the artifact \(expects \[N, 4\]\)"):
        run(x[:, :, None])


# ---- verify's spike comparison (toolchain/target.py compare_spikes), the "now" sample -------------------
def test_spiking_outputs_are_compared_by_spike_count_per_neuron():
    """target.py `compare_spikes`: a spiking network's outputs [N, T, neurons] are judged by spike count
    per output neuron (its class), with the share of identical spikes reported; by hand on 3 samples of
    4 steps and 3 neurons: one spike moved in time (same counts), one extra spike (another class)."""
    import numpy as np

    from edgec.target import compare_spikes

    ref = np.zeros((3, 4, 3), np.float32)
    ref[0, :, 2] = 1  # sample 0: neuron 2 (4 spikes)
    ref[0, 0, 0] = 1
    ref[1, :3, 0] = 1  # sample 1: neuron 0 (3 spikes)
    ref[1, 3, 1] = 1
    ref[2, :2, 1] = 1  # sample 2: neuron 1 (2 spikes)
    ref[2, 0, 2] = 1
    out = ref.copy()
    out[1, 0, 0], out[1, 3, 0] = 0, 1  # moved in time: counts unchanged, 2 spikes differ
    out[2, 1:3, 2] = 1  # 2 more spikes on neuron 2: 3 > 2, another class
    labels = np.array([2, 0, 1])
    res = compare_spikes({"output": out}, {"output": ref}, labels, min_agreement=0.6)
    m = res.metrics
    assert res.passed and m["top1_agreement"] == pytest.approx(2 / 3)
    assert m["accuracy_source"] == 1.0 and m["accuracy_artifact"] == pytest.approx(2 / 3)
    assert m["max_abs_error"] == 2.0 and m["mean_abs_error"] == pytest.approx(2 / 9)  # on the counts
    assert m["outputs_identical"] == pytest.approx(1 - 4 / 36)
    assert not compare_spikes({"output": out}, {"output": ref}, labels, min_agreement=0.9).passed
    same = compare_spikes({"output": ref}, {"output": ref.copy()}, labels, min_agreement=0.98)
    assert same.passed and same.metrics["outputs_identical"] == 1.0 and same.metrics["max_abs_error"] == 0
    for other in ({"output": out[:, :3]}, {"logits": out}):  # fewer steps; another name (sorts first)
        res = compare_spikes(other, {"output": ref}, labels, min_agreement=0.6)
        assert not res.passed and "outputs differ" in res.summary
