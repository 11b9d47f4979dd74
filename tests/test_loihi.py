"""Loihi target without Lava: artifacts, lowering, emulator, check rules, CLI (real files throughout).

The Lava comparisons live in test_loihi_lava.py (marked ``lava``); NIR round trips in test_nir.py.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import edgec
from edgec.artifact import Artifact
from edgec.loading import load_program
from edgec.snn import CubaLIF, TimeDistributed, run_model
from edgec.target import get_target
from edgec.targets.loihi import encode_spikes
from edgec.targets.loihi.emulator import Emulator, netx_dense_load
from edgec.targets.loihi.lowering import detect_grid, multipliers
from edgec.targets.loihi.netlist import CubaNeuron, Layer, Netlist, read_netx

HOLDOUT = "builtin:digits:holdout"


def _holdout(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    x, y = edgec.open_dataset(HOLDOUT).arrays(n)
    assert y is not None
    return x, y


def _float_spikes(program, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        program.module.eval()
        return run_model(program, torch.from_numpy(x)).numpy()


# ---- artifacts ----------------------------------------------------------------------------------
def test_network_net_has_the_netx_layout(loihi_cnn):
    rep = json.loads((loihi_cnn / "report.json").read_text())
    assert {"network", "nir"} <= set(rep["files"])
    with h5py.File(loihi_cnn / "network.net", "r") as f:
        assert list(f.keys()) == ["layer"]
        layers = f["layer"]
        assert sorted(layers.keys(), key=int) == [str(i) for i in range(len(layers))]
        types = []
        for k in sorted(layers.keys(), key=int):
            g = layers[k]
            assert isinstance(g["type"], h5py.Dataset) and g["type"].dtype == np.dtype("S10")
            assert g["type"].shape == (1,)
            types.append(g["type"][0].decode())
            assert isinstance(g["shape"], h5py.Dataset) and g["shape"].dtype == np.int64
            if types[-1] in ("dense", "conv"):
                n = g["neuron"]
                assert n["type"][0] == b"CUBA"
                assert {"iDecay", "vDecay", "vThMant", "refDelay", "gradedSpike"} <= set(n.keys())
                assert 0 <= n["iDecay"][()] <= 4096 and 0 <= n["vDecay"][()] <= 4096
                assert 0 < n["vThMant"][()] < 2**17
                w = g["weight"][()]
                assert w.dtype == np.int64 and w.min() >= -256 and w.max() <= 254
            if types[-1] == "dense":
                assert g["weight"].shape == (g["outFeatures"][()], g["inFeatures"][()])
                assert tuple(g["shape"][()]) == (g["outFeatures"][()],)
            if types[-1] == "conv":
                w = g["weight"]
                assert w.shape[:2] == (g["outChannels"][()], g["inChannels"][()] // g["groups"][()])
                assert tuple(g["kernelSize"][()]) == w.shape[2:]
                assert g["shape"].shape == (3,) and g["shape"][0] == g["outChannels"][()]  # (C, H, W)
                for key in ("stride", "padding", "dilation"):
                    assert g[key].shape == (2,)
        assert types == ["input", "conv", "conv", "flatten", "dense"]
        assert tuple(layers["0"]["shape"][()]) == (1, 8, 8)
        assert tuple(layers["2"]["shape"][()]) == (32, 4, 4)  # stride-2 conv


def test_report_gives_per_layer_quantization_error(loihi_mlp):
    rep = json.loads((loihi_mlp / "report.json").read_text())
    tr = rep["target_report"]
    assert tr["timesteps"] == 16 and tr["encoder"]["kind"] == "rate"
    assert tr["latency_steps"] == 2 and tr["neurons"] == 138
    assert tr["nir"]["written"] and tr["nir"]["dt"] == 1e-4
    rows = tr["layers"]
    assert [r["layer"] for r in rows] == ["net.1", "net.3"]
    for r in rows:
        for key in (
            "weight_bits",
            "scale",
            "vThMant",
            "iDecay",
            "vDecay",
            "weight_rel_rms_error",
            "threshold_rel_error",
            "du_error",
            "dv_error",
            "netx_load",
            "calibration",
        ):
            assert key in r, key
        assert r["netx_load"]["lossless"] is True  # netx's optimize_weight_bits keeps every integer
        assert 0 <= r["weight_rel_rms_error"] < 0.01 and r["threshold_rel_error"] < 0.005
        assert r["calibration"]["spike_agreement"] > 0.99
    assert rows[0]["bias_range"][0] < 0 < rows[0]["bias_range"][1]  # the hidden layer's neuron bias
    md = (loihi_mlp / "report.md").read_text()
    assert "loihi" in md


# ---- must show: accuracy of the deployed network -------------------------------------------------
@pytest.mark.parametrize("fixture", ["loihi_mlp", "loihi_cnn"])
def test_emulated_artifact_is_within_one_point_of_the_float_snn(fixture, request):
    art = request.getfixturevalue(fixture)
    result = edgec.verify(art)  # emulator backend, the model's own holdout (540 digits)
    m = result.metrics
    assert m["samples"] == 540 and m["data"] == HOLDOUT
    assert abs(m["accuracy_source"] - m["accuracy_artifact"]) <= 0.01, m
    assert m["accuracy_artifact"] >= 0.95
    assert m["top1_agreement"] >= 0.98


def test_off_grid_weights_are_scaled_per_layer_and_stay_within_one_point(tmp_path):
    """A model trained without quantization: the lowering chooses each layer's scale on calibration data."""
    program = load_program("zoo:digits-snn-mlp")
    module = copy.deepcopy(program.module)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                m.weight.add_(torch.randn(m.weight.shape, generator=gen) * 0.02 * m.weight.abs().max())
    program = program.replace(module=module)
    out = tmp_path / "off-grid"
    art = edgec.compile(program, target="loihi", out=out)
    rows = art.report["target_report"]["layers"]
    assert all("(calibrated)" in r["grid"] and "detected" not in r["grid"] for r in rows)
    assert all(0 < r["weight_rel_rms_error"] < 0.02 for r in rows)
    result = get_target("loihi").verify(art, program, edgec.open_dataset(HOLDOUT))
    m = result.metrics
    assert result.passed and abs(m["accuracy_source"] - m["accuracy_artifact"]) <= 0.01, m


# ---- compression passes hand over 2- to 8-bit weights and pruned channels -------------------------
def _on_grid(module: nn.Module, bits: int) -> nn.Module:
    module = copy.deepcopy(module)
    q = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                s = m.weight.abs().max() / q
                m.weight.copy_(torch.round(m.weight / s).clamp(-q, q) * s)
    return module


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_every_weight_width_up_to_8_bits_maps_exactly(bits, tmp_path):
    program = load_program("zoo:digits-snn-mlp")
    program = program.replace(module=_on_grid(program.module, bits))
    art = edgec.compile(program, target="loihi", out=tmp_path / f"w{bits}")
    rows = art.report["target_report"]["layers"]
    assert [r["effective_weight_bits"] for r in rows] == [bits, bits]
    assert all("detected" in r["grid"] and r["weight_max_abs_error"] < 1e-6 for r in rows)
    assert all(r["netx_load"]["lossless"] for r in rows)
    net = read_netx(art.file("network"))
    k = 2 ** (bits - 1) - 1
    for la in net.compute_layers:
        assert la.weight is not None
        m = int(np.gcd.reduce(np.abs(la.weight[la.weight != 0])))  # the grid step in integers
        assert m % 2 == 0 and m in multipliers(k)  # stretched over Loihi's 8-bit weight, even
        assert np.abs(la.weight).max() == k * m <= 254
    # what runs is what was trained: the emulator follows the float model on the same spikes
    x, _ = _holdout(200)
    emu = Emulator(net).run(encode_spikes(x, program.timesteps, program.encoder))
    ref = _float_spikes(program, x)
    agree = (emu.sum(0).argmax(1) == ref.sum(0).argmax(1)).mean()
    assert agree >= 0.97, agree


def test_weight_bits_option_requantizes_float_weights(tmp_path):
    program = load_program("zoo:digits-snn-mlp")
    cfg = edgec.CompileConfig(target="loihi", target_options={"loihi": {"weight_bits": 4}})
    module = copy.deepcopy(program.module)
    with torch.no_grad():
        module.net[1].weight.mul_(1.0001)  # off the shipped 8-bit grid
    art = edgec.compile(program.replace(module=module), config=cfg, out=tmp_path / "w4")
    net = read_netx(art.file("network"))
    first = net.compute_layers[0]
    assert first.weight is not None
    m = int(np.gcd.reduce(np.abs(first.weight[first.weight != 0])))
    assert np.abs(first.weight).max() // m <= 7  # 4-bit symmetric integers, times an even multiplier
    assert art.report["target_report"]["layers"][0]["weight_bits"] == 4
    with pytest.raises(edgec.UsageError, match="weight_bits"):
        bad = edgec.CompileConfig(target="loihi", target_options={"loihi": {"weight_bits": 9}})
        edgec.compile(program, config=bad, out=tmp_path / "w9")


def test_pruned_channels_lower_to_a_smaller_network(tmp_path):
    program = load_program("zoo:digits-snn-cnn")
    module = copy.deepcopy(program.module)
    conv1, lif1, conv2 = module.net[0].module, module.net[1], module.net[2].module
    keep = torch.arange(16) % 4 != 3  # remove 4 of conv1's 16 output channels
    with torch.no_grad():
        new1 = nn.Conv2d(1, int(keep.sum()), 3, padding=1, bias=False)
        new1.weight.copy_(conv1.weight[keep])
        new_lif = CubaLIF(int(keep.sum()), du=float(lif1.du), dv=float(lif1.dv), bias=True)
        new_lif.bias.copy_(lif1.bias[keep])
        new2 = nn.Conv2d(int(keep.sum()), 32, 3, stride=2, padding=1, bias=False)
        new2.weight.copy_(conv2.weight[:, keep])
        new2.weight[:, :, 0, 0] = 0.0  # and unstructured pruning: zeros stay zeros
    module.net[0] = TimeDistributed(new1)
    module.net[1] = new_lif
    module.net[2] = TimeDistributed(new2)
    pruned = program.replace(module=module)
    art = edgec.compile(pruned, target="loihi", out=tmp_path / "pruned")
    net = read_netx(art.file("network"))
    shapes = [la.weight.shape for la in net.compute_layers if la.weight is not None]
    assert shapes[:2] == [(12, 1, 3, 3), (32, 12, 3, 3)]
    assert np.all(net.compute_layers[1].weight[:, :, 0, 0] == 0)  # type: ignore[index]
    assert art.report["target_report"]["neurons"] == 12 * 64 + 32 * 16 + 10
    x, _ = _holdout(200)
    emu = Emulator(net).run(encode_spikes(x, pruned.timesteps, pruned.encoder))
    ref = _float_spikes(pruned, x)
    assert (emu.sum(0).argmax(1) == ref.sum(0).argmax(1)).mean() >= 0.95


# ---- emulator ---------------------------------------------------------------------------------------
def _random_net(rng: np.random.Generator, *, saturate: bool = False) -> Netlist:
    big = 254 if saturate else 40
    conv = Layer(
        "conv",
        "c",
        (2, 9, 9),
        (6, 5, 5),
        rng.integers(-big, big + 1, (6, 1, 3, 3)) * 2,
        CubaNeuron(0 if saturate else 1500, 300, 40, rng.integers(-60, 60, 6)),
        stride=(2, 2),
        padding=(1, 1),
        groups=2,
    )
    flat = Layer("flatten", "f", (6, 5, 5), (150,))
    w = rng.integers(-127, 128, (20, 150)) * 2
    dense = Layer("dense", "d", (150,), (20,), w, CubaNeuron(4096, 0 if saturate else 900, 300, None))
    w2 = rng.integers(0, 64, (7, 20)) * 4  # excitatory only
    out = Layer("dense", "o", (20,), (7,), w2, CubaNeuron(2048, 512, 1000, rng.integers(-9, 9, 7)))
    return Netlist((2, 9, 9), [conv, flat, dense, out])


@pytest.mark.parametrize("saturate", [False, True])
def test_c_kernel_and_numpy_emulators_agree(saturate, c_kernel):
    rng = np.random.default_rng(1 + saturate)
    net = _random_net(rng, saturate=saturate)
    x = (rng.random((30, 9, 2, 9, 9)) < 0.4).astype(np.uint8)
    out_c, rec_c = Emulator(net, kernel="c").run(x, record=True)
    out_np, rec_np = Emulator(net, kernel="numpy").run(x, record=True)
    for a, b in zip(rec_c, rec_np, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out_c, out_np)
    assert all(r.any() for r in rec_c), "every layer spikes"


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups"), [((1, 2), (2, 1), (2, 1), 1), ((3, 3), (0, 0), (1, 1), 2)]
)
def test_c_convolution_handles_stride_padding_dilation_groups(stride, padding, dilation, groups, c_kernel):
    from edgec.targets.loihi.netlist import conv_out_shape

    rng = np.random.default_rng(4)
    w = rng.integers(-100, 101, (6, 4 // groups, 3, 3)) * 2
    out_shape = conv_out_shape((4, 11, 10), 6, (3, 3), stride, padding, dilation)
    conv = Layer(
        "conv",
        "c",
        (4, 11, 10),
        out_shape,
        w,
        CubaNeuron(2000, 500, 30, rng.integers(-9, 9, 6)),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    net = Netlist((4, 11, 10), [conv])
    x = (rng.random((9, 7, 4, 11, 10)) < 0.3).astype(np.uint8)
    got = Emulator(net, kernel="c").run(x)
    assert got.any()
    np.testing.assert_array_equal(got, Emulator(net, kernel="numpy").run(x))


@pytest.mark.parametrize("saturate", [False, True])
def test_large_batches_run_on_blas_and_equal_the_event_driven_kernels(saturate, c_kernel):
    """From BLAS_MIN_ROWS rows (timesteps x samples) on, synapses run as one BLAS matmul / oneDNN conv
    (what `verify` and `run` use on big inputs); every layer's spikes at every step equal the
    event-driven C synapses' (kernel="c", the path the Lava comparisons pin down)."""
    from edgec.targets.loihi.emulator import BLAS_MIN_ROWS

    rng = np.random.default_rng(11 + saturate)
    net = _random_net(rng, saturate=saturate)
    x = (rng.random((16, 20, 2, 9, 9)) < 0.4).astype(np.uint8)
    assert x.shape[0] * x.shape[1] >= BLAS_MIN_ROWS  # 320 rows: the large-batch path
    out_blas, rec_blas = Emulator(net).run(x, record=True)
    out_c, rec_c = Emulator(net, kernel="c").run(x, record=True)
    for a, b in zip(rec_blas, rec_c, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out_blas, out_c)
    assert all(r.any() for r in rec_c), "every layer spikes"
    # and one sample at a time (16 rows: the event-driven path) gives the same outputs
    for i in (0, 7, 19):
        np.testing.assert_array_equal(Emulator(net).run(x[:, i : i + 1])[:, 0], out_blas[:, i])


def test_emulator_samples_are_independent_of_their_batch():
    rng = np.random.default_rng(3)
    net = _random_net(rng)
    x = (rng.random((12, 5, 2, 9, 9)) < 0.4).astype(np.uint8)
    emu = Emulator(net)
    whole = emu.run(x)
    for i in range(5):
        np.testing.assert_array_equal(emu.run(x[:, i : i + 1])[:, 0], whole[:, i])


def test_emulator_refuses_non_spikes_and_wrong_shapes():
    net = _random_net(np.random.default_rng(0))
    emu = Emulator(net)
    with pytest.raises(edgec.DataError, match="binary spikes"):
        emu.run(np.full((4, 1, 2, 9, 9), 0.5))
    with pytest.raises(edgec.DataError, match="do not fit"):
        emu.run(np.zeros((4, 1, 2, 8, 8), dtype=np.uint8))


def compile_dense_on_grid(bits: int, signs: str, out) -> Artifact:
    """A one-layer SNN whose weights sit on a ``bits``-bit grid (mixed, positive or negative signs)."""
    rng = np.random.default_rng(bits)
    k = 2 ** (bits - 1) - 1
    q = rng.integers(-k, k + 1, (10, 64))
    q[0, 0] = -k if signs == "negative" else k
    q = np.abs(q) if signs == "positive" else -np.abs(q) if signs == "negative" else q
    fc = nn.Linear(64, 10, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(q * 0.01))
    module = nn.Sequential(nn.Flatten(2), fc, CubaLIF(threshold=0.05))
    return edgec.compile(module, target="loihi", input_shape=(1, 1, 8, 8), out=out)


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("signs", ["mixed", "positive", "negative"])
def test_lowered_dense_weights_load_exactly_through_netx(bits, signs, tmp_path):
    """Whatever the width and signs, the integers in network.net are the ones Lava multiplies with
    (edgec's copy of the load rule here; lava-dl's own in test_loihi_lava.py)."""
    art = compile_dense_on_grid(bits, signs, tmp_path / "a")
    (row,) = art.report["target_report"]["layers"]
    assert row["netx_load"]["lossless"] is True and row["weight_max_abs_error"] < 1e-6
    stored = read_netx(art.file("network")).compute_layers[0].weight
    assert stored is not None
    np.testing.assert_array_equal(netx_dense_load(stored).effective(), stored)


def test_netx_weight_load_reproduces_lavas_lossy_corners():
    # all weights <= 0 and the most negative a power of two. netx (max == 0 counts as mixed): scale
    # min(inf, -128 / -128) = 1 -> 1 + 1 signed = 1 scale bit, 7 - 1 = 6 shared zero bits, so 1 weight
    # bit and exponent -1; w << 1 = -256. Lava sees only <= 0: inhibitory, |w| = 256 clipped to 255,
    # truncated to 8 - 1 = 7 dropped bits: 128, so -128, times 2^-1: each synapse adds -64, not -128.
    # The same value from lava-dl's own functions: test_loihi_lava.py (test_lossy_corner_is_lavas_value).
    load = netx_dense_load(np.array([[-128, 0], [0, -128]]))
    assert load.sign_mode == "mixed"
    assert (load.num_weight_bits, load.weight_exp) == (1, -1)
    np.testing.assert_array_equal(load.weight, [[-128, 0], [0, -128]])
    np.testing.assert_array_equal(load.effective(), [[-64, 0], [0, -64]])
    with pytest.raises(edgec.ModelError, match="zero"):
        netx_dense_load(np.zeros((3, 3), dtype=np.int64))


@pytest.mark.parametrize("bits", range(2, 9))
def test_detect_grid_finds_quantized_weights(bits):
    rng = np.random.default_rng(bits)
    q = 2 ** (bits - 1) - 1
    ints = rng.integers(-q, q + 1, (16, 40))
    ints[0, 0] = q
    found = detect_grid((ints * 0.0123).astype(np.float32), bits)
    assert found is not None
    s, got = found
    np.testing.assert_array_equal(got, ints)
    assert s == pytest.approx(0.0123, rel=1e-5)
    assert detect_grid(rng.normal(size=(16, 40)), 8) is None


# ---- check: what Loihi cannot take ---------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64, bias=False)
        self.lif1 = CubaLIF()
        self.fc2 = nn.Linear(64, 10, bias=False)
        self.lif2 = CubaLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2)
        return self.lif2(self.fc2(self.lif1(self.fc1(x)) + x))


class _ForeignNeuron(nn.Module):
    is_spiking_neuron = True  # e.g. an adaptive LIF from another library

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 1).float()


def _snn(*layers: nn.Module) -> nn.Module:
    return nn.Sequential(*layers)


def _delayed() -> nn.Module:
    fc = nn.Linear(64, 10, bias=False)
    fc.delay = torch.full((10,), 80)  # type: ignore[assignment]
    return _snn(nn.Flatten(2), fc, CubaLIF())


def _tiny_weights() -> nn.Module:
    fc = nn.Linear(64, 10, bias=False)
    with torch.no_grad():
        fc.weight.fill_(1e-4)
    return _snn(nn.Flatten(2), fc, CubaLIF(threshold=100.0))


def _zero_weights() -> nn.Module:
    fc = nn.Linear(64, 10, bias=False)
    nn.init.zeros_(fc.weight)
    return _snn(nn.Flatten(2), fc, CubaLIF())


CASES = {
    "synapse-without-neuron": lambda: _snn(nn.Flatten(2), nn.Linear(64, 32), CubaLIF(), nn.Linear(32, 10)),
    "neuron-without-synapse": lambda: _snn(
        CubaLIF(), nn.Flatten(2), nn.Linear(64, 10, bias=False), CubaLIF()
    ),
    "synapse-bias": lambda: _snn(nn.Flatten(2), nn.Linear(64, 10, bias=True), CubaLIF(du=0.5)),
    "unsupported-neuron": lambda: _snn(nn.Flatten(2), nn.Linear(64, 10, bias=False), _ForeignNeuron()),
    "pooling": lambda: _snn(
        TimeDistributed(nn.Conv2d(1, 4, 3, padding=1, bias=False)),
        CubaLIF(),
        TimeDistributed(nn.AvgPool2d(2)),
        nn.Flatten(2),
        nn.Linear(64, 10, bias=False),
        CubaLIF(),
    ),
    "residual-add": _Residual,
    "delay-range": _delayed,
    "threshold-range": _tiny_weights,
    "weight-range": _zero_weights,
    "dense-input-shape": lambda: _snn(
        nn.Linear(8, 8, bias=False), CubaLIF(), nn.Flatten(2), nn.Linear(64, 10, bias=False), CubaLIF()
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_check_names_the_rule_each_snn_breaks(rule):
    _, rows = edgec.check(CASES[rule](), target="loihi", input_shape=(1, 1, 8, 8))
    assert rule in {r.rule for r in rows}, [r.to_dict() for r in rows]
    hit = next(r for r in rows if r.rule == rule)
    assert hit.hint and hit.detail and hit.layer


def test_check_refuses_real_valued_input_encoding():
    program = load_program("zoo:digits-snn-mlp").replace(encoder={"kind": "direct"})
    _, rows = edgec.check(program, target="loihi")
    assert [r.rule for r in rows] == ["input-encoding"]


def test_zoo_snns_pass_check():
    for name in ("digits-snn-mlp", "digits-snn-cnn"):
        _, rows = edgec.check(f"zoo:{name}", target="loihi")
        assert rows == [], [r.to_dict() for r in rows]


def test_an_ann_with_pooling_and_residual_adds_gets_the_why_not_table(cli_proc, tmp_path):
    res = cli_proc("check", "zoo:resnet18", "--target", "loihi", "--json")
    assert res.exit_code == 4, res.stderr
    assert "Traceback" not in res.stderr
    doc = json.loads(res.stdout)
    rules = {v["rule"] for v in doc["violations"]}
    assert {"not-spiking", "pooling", "residual-add", "batchnorm", "non-spiking-activation"} <= rules
    adds = [v for v in doc["violations"] if v["rule"] == "residual-add"]
    assert len(adds) == 8  # one per BasicBlock of ResNet-18
    assert all(v["hint"] for v in doc["violations"])
    # compile refuses the same way: constraint exit code, the table on stderr, nothing written
    out = tmp_path / "never"
    res = cli_proc("compile", "zoo:resnet18", "--target", "loihi", "-o", str(out))
    assert res.exit_code == 4 and "residual-add" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


class _TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(x + self.block(x))


def test_an_exported_ann_file_gets_the_same_table(cli, tmp_path):
    path = tmp_path / "tiny.pt2"
    model = _TinyResNet().eval()
    torch.export.save(torch.export.export(model, (torch.rand(1, 1, 8, 8),)), str(path))
    res = cli("check", str(path), "--target", "loihi", "--json")
    assert res.exit_code == 4, res.stderr
    rows = json.loads(res.stdout)["violations"]
    rules = [r["rule"] for r in rows]
    assert {"not-spiking", "pooling", "residual-add", "batchnorm", "non-spiking-activation"} <= set(rules)
    assert rules.count("pooling") == 2 and rules.count("residual-add") == 1
    assert "unsupported-op" not in rules and "unsupported-layer" not in rules, rows


# ---- CLI -------------------------------------------------------------------------------------------
def test_cli_compile_run_and_verify(cli, tmp_path):
    out = tmp_path / "mlp-t8"
    res = cli(
        "compile",
        "zoo:digits-snn-mlp",
        "--target",
        "loihi",
        "--timesteps",
        "8",
        "--calib",
        "builtin:digits",
        "-o",
        str(out),
    )
    assert res.exit_code == 0, res.stderr
    assert "network.net" in res.stdout and "network.nir" in res.stdout
    art = Artifact.open(out)
    assert art.report["program"]["timesteps"] == 8
    x, _ = _holdout(5)
    np.save(tmp_path / "x.npy", x)
    res = cli("run", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "s.npy"))
    assert res.exit_code == 0, res.stderr
    spikes = np.load(tmp_path / "s.npy")
    assert spikes.shape == (5, 8, 10) and spikes.dtype == np.uint8
    enc = encode_spikes(x, 8, art.report["program"]["encoder"])
    np.testing.assert_array_equal(spikes, Emulator(read_netx(out / "network.net")).run(enc).swapaxes(0, 1))
    res = cli("verify", str(out), "--backend", "emulator")
    assert res.exit_code == 0, res.stderr
    assert "accuracy float SNN" in res.stdout
    res = cli("verify", str(out), "--backend", "quantum")
    assert res.exit_code == 2 and "lava" in res.stderr


def test_loihi_target_needs_neither_lava_nor_torch_to_be_listed():
    code = (
        "import sys, edgec\n"
        "from edgec.target import get_target\n"
        "t = get_target('loihi'); av = t.availability()\n"
        "assert av.usable, av\n"
        "assert t.backends == ('emulator', 'lava')\n"
        "bad = [m for m in ('torch', 'lava', 'lava.magma') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_demo_ends_with_the_spiking_mlp_on_loihi(cli, tmp_path):
    res = cli("demo", "-o", str(tmp_path / "demo"))
    assert res.exit_code == 0, res.stderr
    assert "check zoo:digits-snn-mlp for loihi: ok" in res.stdout
    assert "(not-spiking, batchnorm x2, non-spiking-activation x3, pooling)" in res.stdout  # why not, grouped
    assert (tmp_path / "demo" / "digits-snn-mlp-loihi" / "network.net").is_file()
    assert "deployed network (emulator, bit-exact with Lava fixed_pt)" in res.stdout
