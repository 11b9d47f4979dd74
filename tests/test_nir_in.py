"""NIR in: a float NIR graph (built with the nir API) read into edgec's layers and compiled for Loihi.

The float reference here is an independent forward-Euler simulation of NIR's equations written from
the nir node definitions (not edgec's code); the deployed network is the bit-exact emulator (and real
Lava in the slow test).
"""

from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import edgec
from edgec.errors import ConstraintViolation, ModelError, UsageError
from edgec.nirgraph import module_from_nir

DT = 1e-4
DU, DV1, DV2 = 0.5, 0.25, 0.125  # exact 12-bit fractions: Loihi stores these decays without error
STEP = 1 / 32  # weights on a grid of 1/32 and thresholds on it: the lowering keeps them exactly


def _full(v: float, shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, v, dtype=np.float64)


def conv_dense_graph(seed: int = 0, *, w_in: float = 2.0, r1: float = 2.0, r2: float = 8.0) -> nir.NIRGraph:
    """conv 1->6 (stride 2) + CubaLIF, flatten, dense 96->10 + LIF; g = dv r du w_in = 1 in both layers
    with the defaults, so the weights reach Loihi unscaled."""
    rng = np.random.default_rng(seed)
    w1 = rng.integers(-40, 41, (6, 1, 3, 3)) * STEP
    w2 = rng.integers(-30, 31, (10, 96)) * STEP
    s1 = (6, 4, 4)
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
            "conv": nir.Conv2d(
                input_shape=(8, 8), weight=w1, stride=2, padding=1, dilation=1, groups=1, bias=np.zeros(6)
            ),
            "cuba": nir.CubaLIF(
                tau_syn=_full(DT / DU, s1),
                tau_mem=_full(DT / DV1, s1),
                r=_full(r1, s1),
                v_leak=np.zeros(s1),
                v_threshold=_full(1.0, s1),
                v_reset=np.zeros(s1),
                w_in=_full(w_in, s1),
            ),
            "flat": nir.Flatten(input_type={"input": np.array(s1)}, start_dim=0),
            "fc": nir.Affine(weight=w2, bias=np.zeros(10)),
            "lif": nir.LIF(
                tau=_full(DT / DV2, (10,)),
                r=_full(r2, (10,)),
                v_leak=np.zeros(10),
                v_threshold=_full(1.0, (10,)),
                v_reset=np.zeros(10),
            ),
            "output": nir.Output(output_type={"output": np.array([10])}),
        },
        edges=[
            ("input", "conv"),
            ("conv", "cuba"),
            ("cuba", "flat"),
            ("flat", "fc"),
            ("fc", "lif"),
            ("lif", "output"),
        ],
        metadata={"dt": DT, "timesteps": 12},
    )


# ---- an independent float simulation of NIR's equations (forward Euler, current first) ----------
def simulate_layer(node: nir.NIRNode, a: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """One neuron node over time on its synaptic input ``a`` [T, N, ...]: (spikes, voltage before reset)."""
    i = np.zeros(a.shape[1:])
    v = np.zeros(a.shape[1:])
    spikes, volts = [], []
    for t in range(a.shape[0]):
        if isinstance(node, nir.CubaLIF):
            i = i + dt / node.tau_syn * (-i + node.w_in * a[t])
            v = v + dt / node.tau_mem * (node.v_leak - v + node.r * i)
        else:  # LIF
            v = v + dt / node.tau * (node.v_leak - v + node.r * a[t])
        volts.append(v.copy())
        s = v > node.v_threshold
        v = np.where(s, node.v_reset, v)
        spikes.append(s)
    return np.array(spikes, dtype=np.uint8), np.array(volts)


def synapse(node: nir.NIRNode, s: np.ndarray) -> np.ndarray:
    t, n = s.shape[:2]
    if isinstance(node, nir.Conv2d):
        x = torch.from_numpy(s.reshape(t * n, *s.shape[2:]).astype(np.float64))
        y = torch.nn.functional.conv2d(x, torch.from_numpy(node.weight), stride=2, padding=1).numpy()
        return y.reshape(t, n, *y.shape[1:])
    return s.reshape(t, n, -1) @ node.weight.T + node.bias


def simulate_graph(graph: nir.NIRGraph, spikes: np.ndarray) -> np.ndarray:
    n = graph.nodes
    s1, _ = simulate_layer(n["cuba"], synapse(n["conv"], spikes), DT)
    s2, _ = simulate_layer(n["lif"], synapse(n["fc"], s1), DT)
    return s2


def _spikes(n: int, t: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random((t, n, 1, 8, 8)) < 0.4).astype(np.uint8)


# ---- the mapping --------------------------------------------------------------------------------
@pytest.mark.parametrize("w_in, r1, r2", [(2.0, 2.0, 8.0), (1.0, 3.0, 1.5)])
def test_edgec_layers_compute_the_euler_steps_of_the_nir_equations(w_in, r1, r2):
    graph = conv_dense_graph(w_in=w_in, r1=r1, r2=r2)
    imp = module_from_nir(graph)
    x = _spikes(8, 12)
    with torch.no_grad():
        ours = imp.module.double()(torch.from_numpy(x.astype(np.float64))).numpy()
    want = simulate_graph(graph, x)
    assert want.sum() > 20, "the test network spikes"
    np.testing.assert_array_equal(ours, want)
    # the input scaling g = dv r du w_in (CubaLIF) and dv r (LIF) is folded into the synapses
    rows = {r.node: r for r in imp.mappings}
    assert rows["cuba"].input_scale == pytest.approx((DV1 * r1 * DU * w_in,) * 2)
    assert rows["lif"].input_scale == pytest.approx((DV2 * r2,) * 2)


def test_the_discretisation_is_reported_per_layer():
    graph = conv_dense_graph()
    # an off-grid time constant: dt / tau = 0.3 is no 12-bit fraction
    graph.nodes["lif"].tau = _full(DT / 0.3, (10,))
    imp = module_from_nir(graph)
    rows = {r["node"]: r for r in imp.report()["layers"]}
    assert rows["lif"]["dv"] == pytest.approx(0.3)
    assert rows["lif"]["dv_loihi_12bit"] == round(0.3 * 4096) == 1229
    assert rows["lif"]["dv_loihi_error"] == pytest.approx(abs(1229 / 4096 - 0.3))
    assert rows["lif"]["dv_euler_vs_exact"] == pytest.approx(abs(0.7 - np.exp(-0.3)))
    assert rows["cuba"]["du_loihi_error"] == 0.0 and rows["cuba"]["dv_loihi_error"] == 0.0
    assert imp.report()["dt"] == DT and imp.report()["dt_source"] == "graph metadata"


def test_dt_from_the_command_wins_and_a_dt_past_tau_is_refused():
    graph = conv_dense_graph()
    imp = module_from_nir(graph, dt=DT / 2)
    assert float(imp.module[1].du) == pytest.approx(DU / 2)  # tau fixed, half the step: half the decay
    with pytest.raises(UsageError, match=r"dt / tau_syn .* > 1") as err:
        module_from_nir(graph, dt=DT * 4)
    assert err.value.exit_code == 2


def test_nested_graphs_and_edgecs_own_current_voltage_pairs_are_read():
    """LI -> LIF inside a nested graph is one CubaLIF (what edgec's writer emits for du > 0)."""
    rng = np.random.default_rng(3)
    w = rng.integers(-20, 21, (5, 12)) * STEP
    inner = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([5])}),
            "li": nir.LI(tau=_full(DT / 0.5, (5,)), r=_full(2.0, (5,)), v_leak=np.zeros(5)),
            "lif": nir.LIF(
                tau=_full(DT / 0.25, (5,)), r=_full(4.0, (5,)), v_leak=_full(0.2, (5,)),
                v_threshold=_full(1.0, (5,)), v_reset=np.zeros(5),
            ),
            "output": nir.Output(output_type={"output": np.array([5])}),
        },
        edges=[("input", "li"), ("li", "lif"), ("lif", "output")],
    )  # fmt: skip
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([12])}),
            "fc": nir.Linear(weight=w),
            "neuron": inner,
            "output": nir.Output(output_type={"output": np.array([5])}),
        },
        edges=[("input", "fc"), ("fc", "neuron"), ("neuron", "output")],
    )
    imp = module_from_nir(graph)
    cuba = imp.module[1]
    assert type(cuba).__name__ == "CubaLIF" and float(cuba.du) == 0.5 and float(cuba.dv) == 0.25
    np.testing.assert_allclose(cuba.bias.detach().numpy(), 0.25 * 0.2)  # b = dv v_leak
    np.testing.assert_allclose(imp.module[0].weight.detach().numpy(), w * (0.25 * 4.0 * 0.5 * 2.0))


# ---- compiled for Loihi -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nir_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nir.NIRGraph]:
    root = tmp_path_factory.mktemp("nirin")
    graph = conv_dense_graph()
    nir.write(str(root / "net.nir"), graph)
    art = edgec.compile(str(root / "net.nir"), target="loihi", out=str(root / "out"))
    return Path(art.path), graph


def test_deployed_network_agrees_with_the_float_nir_simulation_within_the_rounding_bound(nir_artifact):
    """Weights, thresholds and decays sit exactly on Loihi's grid here, so the one documented difference
    left is Loihi's rounding toward zero of the decayed state (one integer unit per step in u and in v,
    the integer unit being sigma / 64): a deployed spike may differ from the float one only where the
    float voltage is within that accumulated bound of the threshold. Checked layer by layer on the
    deployed layer's own input spikes, at each neuron's first differing step."""
    from edgec.targets.loihi.emulator import Emulator
    from edgec.targets.loihi.netlist import read_netx

    path, graph = nir_artifact
    report = json.loads((path / "report.json").read_text())
    layers = report["target_report"]["layers"]
    assert [r["effective_weight_bits"] for r in layers] and all(
        r["weight_rel_rms_error"] == 0 for r in layers
    )
    x = _spikes(64, 12, seed=7)
    out, rec = Emulator(read_netx(path / "network.net")).run(x, record=True)
    n = graph.nodes
    inputs = [x, rec[0]]
    total_diff = 0
    for k, (syn, neuron, du) in enumerate([(n["conv"], n["cuba"], DU), (n["fc"], n["lif"], 1.0)]):
        sigma = layers[k]["scale"]
        dv = DV1 if k == 0 else DV2
        bound = sigma / 64 * (1 / du + 1) / dv
        fs, fv = simulate_layer(neuron, synapse(syn, inputs[k]), DT)
        deployed = rec[k].reshape(fs.shape)
        diff = fs != deployed
        total_diff += int(diff.sum())
        first = np.argmax(diff, axis=0)  # each neuron's first differing step
        has = diff.any(axis=0)
        v_first = np.take_along_axis(fv, first[None], 0)[0][has]
        assert np.all(np.abs(v_first - 1.0) <= bound + 1e-12), (k, np.abs(v_first - 1.0).max(), bound)
    np.testing.assert_array_equal(out, rec[-1])
    # and end to end: the float NIR simulation and the deployed network agree on the output spikes
    agree = float((simulate_graph(graph, x) == out.reshape(12, 64, 10)).mean())
    assert agree >= 0.99, agree
    assert report["program"]["import"]["from"] == "nir" and report["program"]["source"]["format"] == "nir"


def test_compiled_nir_writes_an_artifact_edgec_reads_back_spike_for_spike(nir_artifact, tmp_path):
    """network.nir (integer units) read by the core's float reader compiles to the same network."""
    from edgec.targets.loihi.emulator import Emulator
    from edgec.targets.loihi.netlist import read_netx

    path, _ = nir_artifact
    again = edgec.compile(str(path / "network.nir"), target="loihi", out=str(tmp_path / "again"))
    x = _spikes(16, 12, seed=9)
    a = Emulator(read_netx(path / "network.net")).run(x)
    b = Emulator(read_netx(Path(again.path) / "network.net")).run(x)
    np.testing.assert_array_equal(a, b)


def test_verify_rebuilds_the_nir_source(nir_artifact, cli):
    path, _ = nir_artifact
    res = cli("verify", str(path), "--json")
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["top1_agreement"] >= 0.98


def test_nir_graph_compiles_for_the_cpu_and_computes_the_nir_equations(tmp_path):
    """The other road off a NIR graph: --target cpu (ONNX, the time loop unrolled, rate encoder in
    front). Inputs of 0 / 1 rate-code to themselves at every step, so the artifact's output spikes
    must be the float simulation of the NIR equations on those spikes, every one."""
    graph = conv_dense_graph()
    nir.write(str(tmp_path / "net.nir"), graph)
    art = edgec.compile(str(tmp_path / "net.nir"), target="cpu", out=str(tmp_path / "cpu"))
    x = (np.random.default_rng(3).random((32, 1, 8, 8)) < 0.4).astype(np.float32)
    out = edgec.run(art, x)["output"]
    assert out.shape == (32, 12, 10)
    ref = simulate_graph(graph, np.repeat(x[None], 12, axis=0))  # [T, N, 10]
    assert ref.sum() > 100  # the network is driven
    np.testing.assert_array_equal(out.transpose(1, 0, 2), ref)
    assert edgec.verify(art).metrics["outputs_identical"] == 1.0


@pytest.mark.slow
@pytest.mark.lava
def test_nir_graph_on_loihi_emulator_equals_real_lava_spike_for_spike(nir_artifact):
    from conftest import require_module

    require_module("lava.magma", "EDGEC_REQUIRE_LAVA", "make setup installs lava-nc / lava-dl")
    path, _ = nir_artifact
    x = np.random.default_rng(4).random((10, 1, 8, 8)).astype(np.float32)
    lava = edgec.run(str(path), x, backend="lava")["output"]
    emu = edgec.run(str(path), x)["output"]
    assert emu.sum() > 10
    np.testing.assert_array_equal(lava, emu)


# ---- bad input ----------------------------------------------------------------------------------
def test_a_file_that_is_not_nir_is_refused_in_one_line(cli, tmp_path):
    bad = tmp_path / "model.nir"
    bad.write_text("not a graph\n")
    res = cli("compile", str(bad), "--target", "loihi", "-o", str(tmp_path / "o"))
    assert res.exit_code == 3
    assert "is not a NIR graph: NIR files are HDF5" in res.stderr
    assert not (tmp_path / "o").exists()


def test_an_hdf5_file_that_is_not_nir_says_so(cli, loihi_mlp, tmp_path):
    net = tmp_path / "network.h5"
    net.write_bytes((loihi_mlp / "network.net").read_bytes())
    res = cli("check", str(net), "--target", "loihi")
    assert res.exit_code == 3
    assert "HDF5 file but not a NIR graph" in res.stderr and "netx" in res.stderr


def test_an_unsupported_node_is_named_with_exit_4(cli, tmp_path):
    graph = conv_dense_graph()
    nodes = dict(graph.nodes)
    nodes["delay"] = nir.Delay(delay=np.ones(10))
    edges = [e for e in graph.edges if e != ("lif", "output")] + [("lif", "delay"), ("delay", "output")]
    nir.write(str(tmp_path / "d.nir"), nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}))
    with pytest.raises(ConstraintViolation, match=r"delay \(Delay\)") as err:
        edgec.load_program(str(tmp_path / "d.nir"))
    assert err.value.exit_code == 4 and err.value.violations[0].rule == "nir-node"
    res = cli("check", str(tmp_path / "d.nir"), "--target", "loihi")
    assert res.exit_code == 4 and "delay" in res.stderr


def test_a_non_zero_reset_and_per_neuron_decays_are_why_not_rows():
    graph = conv_dense_graph()
    graph.nodes["lif"].v_reset = _full(0.1, (10,))
    taus = _full(DT / DV2, (10,))
    taus[3] *= 2
    graph.nodes["lif"].tau = taus
    with pytest.raises(ConstraintViolation) as err:
        module_from_nir(graph)
    rules = {v.rule for v in err.value.violations}
    assert rules == {"nir-reset", "per-neuron-tau"}


def test_a_recurrent_nir_graph_is_refused():
    graph = conv_dense_graph()
    edges = [*graph.edges, ("lif", "fc")]
    with pytest.raises(ConstraintViolation) as err:
        module_from_nir(nir.NIRGraph(nodes=graph.nodes, edges=edges, metadata={"dt": DT}, type_check=False))
    assert {v.rule for v in err.value.violations} >= {"nir-recurrent"}


def test_a_weight_matrix_that_does_not_fit_its_input_is_a_model_error():
    graph = conv_dense_graph()
    graph.nodes["fc"].weight = np.zeros((10, 50))
    with pytest.raises(ModelError, match="takes 50 inputs"):
        module_from_nir(graph)


def test_report_counts_a_nir_graph(cli, tmp_path):
    nir.write(str(tmp_path / "g.nir"), conv_dense_graph())
    res = cli("report", tmp_path / "g.nir", "--target", "loihi", "--format", "json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    neurons = {row["type"]: row for row in doc["energy"]["layers"] if row["type"] in ("CubaLIF", "LIF")}
    # both neuron layers are counted (T = 12 steps of 6x4x4 and 10 neurons), none is uncounted
    assert neurons["CubaLIF"]["neuron_updates"] == 12 * 96 and neurons["LIF"]["neuron_updates"] == 12 * 10
    assert doc["energy"]["totals"]["uncounted"] == []
    assert doc["program"]["source"]["format"] == "nir" and doc["program"]["timesteps"] == 12
