"""NIR in, node by node: SumPool2d, AvgPool2d, Scale, Threshold, IF, Conv1d and bare I / LI graphs read
by edgec, compiled for the CPU and for Loihi, against the float NIR equations simulated here by hand
(forward Euler with the graph's dt, docs/nir.md section 2), every spike; what Loihi refuses by design
is asserted as its why-not row. And a decay off Loihi's 12-bit grid: the error both reports state.

The reference (:func:`simulate`) is written from the nir node definitions, not from edgec's mapping:
pooling through torch's pooling functions (edgec builds depthwise convolutions), Scale as a product
after the synapse (edgec folds it into the rows), Threshold as a Heaviside step. Weights, thresholds
and pooling factors sit on small power-of-two grids and IF / Threshold keep no decayed state, so
float32 (ONNX) and Loihi's integers compute the same sums: equality is exact, ties at the threshold
included.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import edgec
from edgec.errors import ConstraintViolation
from edgec.nirgraph import module_from_nir

DT = 1e-4
T = 10


def _full(v: float, shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, v, dtype=np.float64)


def chain(
    nodes: list[tuple[str, Any]], in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> nir.NIRGraph:
    """input -> nodes... -> output, with the graph's dt and T in its metadata."""
    allnodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    allnodes.update(nodes)
    allnodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
    names = list(allnodes)
    return nir.NIRGraph(nodes=allnodes, edges=list(pairwise(names)), metadata={"dt": DT, "timesteps": T})


# ---- the float NIR equations, by hand ----------------------------------------------------------
def _pair(v: Any) -> tuple[int, int]:
    a = [int(x) for x in np.asarray(v).reshape(-1)]
    return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])


def _step(node: Any, x: np.ndarray, state: dict[str, np.ndarray], dt: float) -> np.ndarray:
    """One time bin of one node on a batch ``x`` [N, ...]; neurons keep their voltage in ``state``."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    if isinstance(node, nir.Linear | nir.Affine):
        y = x.reshape(len(x), -1) @ node.weight.T
        return y + node.bias if isinstance(node, nir.Affine) else y
    if isinstance(node, nir.Conv1d | nir.Conv2d):
        conv = F.conv1d if isinstance(node, nir.Conv1d) else F.conv2d
        w, b = torch.from_numpy(node.weight), torch.from_numpy(np.asarray(node.bias, dtype=np.float64))
        return conv(t, w, b, node.stride, node.padding, node.dilation, node.groups).numpy()
    if isinstance(node, nir.SumPool2d):  # the sum over each window (zero padding adds nothing)
        k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        return F.avg_pool2d(t, k, s, p, divisor_override=1).numpy()
    if isinstance(node, nir.AvgPool2d):
        return F.avg_pool2d(t, _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)).numpy()
    if isinstance(node, nir.Scale):
        return x * node.scale
    if isinstance(node, nir.Flatten):
        return x.reshape(len(x), -1)
    if isinstance(node, nir.Threshold):  # z = 1 where the input exceeds the threshold
        return (x > node.threshold).astype(np.float64)
    v = state.setdefault("v", np.zeros(x.shape))
    if isinstance(node, nir.IF | nir.I):  # dv/dt = r I
        v = v + dt * node.r * x
    else:  # LIF, LI: tau dv/dt = (v_leak - v) + r I
        v = v + dt / node.tau * (node.v_leak - v + node.r * x)
    if isinstance(node, nir.I | nir.LI):  # no spikes: the voltage is the output
        state["v"] = v
        return v
    z = v > node.v_threshold
    state["v"] = np.where(z, node.v_reset, v)
    return z.astype(np.float64)


def simulate(graph: nir.NIRGraph, x: np.ndarray, dt: float = DT) -> np.ndarray:
    """The chain's output for inputs ``x`` [T, N, ...] (spikes, or an I / LI node's voltage)."""
    names = [n for n in graph.nodes if n not in ("input", "output")]
    states: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    out = []
    for t in range(x.shape[0]):
        a = x[t].astype(np.float64)
        for n in names:
            a = _step(graph.nodes[n], a, states[n], dt)
        out.append(a)
    return np.array(out)


def _static(n: int, shape: tuple[int, ...], seed: int, p: float = 0.5) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, *shape)) < p).astype(np.float32)


def _trains(n: int, shape: tuple[int, ...], seed: int, p: float = 0.4) -> np.ndarray:
    return (np.random.default_rng(seed).random((T, n, *shape)) < p).astype(np.uint8)


def _loihi_emulator(path: Path, x: np.ndarray) -> np.ndarray:
    from edgec.targets.loihi.emulator import Emulator
    from edgec.targets.loihi.netlist import read_netx

    return Emulator(read_netx(path / "network.net")).run(x)


def check_everywhere(
    graph: nir.NIRGraph, in_shape: tuple[int, ...], tmp_path: Path, loihi: bool = True
) -> None:
    """The graph read by edgec (float layers), its CPU artifact and (``loihi``) its Loihi artifact's
    emulator each give the hand simulation's output spikes, every one."""
    src = tmp_path / "g.nir"
    nir.write(str(src), graph)
    # the float layers on random spike trains
    x = _trains(16, in_shape, seed=1)
    want = simulate(graph, x)
    assert want.sum() >= 0.1 * want.size, "the network is driven"
    assert (1 - want).sum() >= 0.1 * want.size, "... and not saturated"
    module = edgec.load_program(str(src)).module.double()
    with torch.no_grad():
        got = module(torch.from_numpy(x.astype(np.float64))).numpy()
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    # the CPU artifact (ONNX, rate encoder: 0 / 1 images code to themselves at every step)
    cpu = edgec.compile(str(src), target="cpu", out=str(tmp_path / "cpu"))
    img = _static(16, in_shape, seed=2)
    out = edgec.run(cpu, img)["output"]  # [N, T, ...]
    ref = simulate(graph, np.repeat(img[None], T, axis=0))
    assert ref.sum() > 0
    np.testing.assert_array_equal(np.swapaxes(out, 0, 1).reshape(ref.shape), ref)
    if loihi:  # the deployed network (bit-exact emulator of Lava fixed_pt) on the spike trains
        art = edgec.compile(str(src), target="loihi", out=str(tmp_path / "loihi"))
        np.testing.assert_array_equal(_loihi_emulator(Path(art.path), x).reshape(want.shape), want)


# ---- node by node -------------------------------------------------------------------------------
def test_sum_pool_with_padding_then_if_computes_the_window_sums(tmp_path):
    """SumPool2d 3x3 stride 2 padding 1 (a depthwise conv of ones in edgec), then IF with g = dt r = 1
    and an integer threshold: ties at the threshold do not fire (v > v_threshold)."""
    s = (2, 4, 4)
    graph = chain(
        [
            (
                "pool",
                nir.SumPool2d(
                    kernel_size=np.array([3, 3]), stride=np.array([2, 2]), padding=np.array([1, 1])
                ),
            ),
            ("if", nir.IF(r=_full(1 / DT, s), v_threshold=_full(4.0, s))),
        ],
        (2, 8, 8),
        s,
    )
    check_everywhere(graph, (2, 8, 8), tmp_path)


def test_avg_pool_then_if_computes_the_window_means(tmp_path):
    s = (2, 3, 3)
    graph = chain(
        [
            (
                "pool",
                nir.AvgPool2d(
                    kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
                ),
            ),
            ("if", nir.IF(r=_full(0.5 / DT, s), v_threshold=_full(0.75, s))),
        ],
        (2, 6, 6),
        s,
    )
    imp = module_from_nir(graph)
    # the pooling factor 1/k^2 and the IF's g = dt r = 0.5 are both in the depthwise weights
    np.testing.assert_array_equal(imp.module[0].module.weight.detach().numpy(), 0.25 * 0.5)
    check_everywhere(graph, (2, 6, 6), tmp_path)


def _dense(seed: int, n_out: int, n_in: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-4, 9, (n_out, n_in)) / 8.0  # mostly excitatory


def test_scale_after_a_synapse_is_folded_into_its_rows(tmp_path):
    """Linear -> Scale (per neuron, one negative) -> IF: Scale multiplies the synapse's output, which
    edgec folds into the rows; the spikes are those of the product computed after the synapse."""
    w = _dense(3, 4, 12)
    scale = np.array([2.0, 0.5, -1.0, 1.5])
    graph = chain(
        [
            ("fc", nir.Affine(weight=w, bias=np.array([0.25, 0.0, 0.5, -0.125]))),
            ("scale", nir.Scale(scale=scale)),
            ("if", nir.IF(r=_full(1 / DT, (4,)), v_threshold=_full(1.0, (4,)))),
        ],
        (12,),
        (4,),
    )
    imp = module_from_nir(graph)
    np.testing.assert_array_equal(
        imp.module[0].weight.detach().numpy(), (w * scale[:, None]).astype(np.float32)
    )
    check_everywhere(graph, (12,), tmp_path)


def test_the_reported_input_scale_includes_a_scale_node_folded_into_the_same_rows():
    """Affine -> Scale s -> IF with dt r = 0.25: the rows carry W * s * 0.25, so the neuron's
    input_scale_min/max are min / max of 0.25 s = -0.25 / 0.5 (it said 0.25 / 0.25, the IF's part only)."""
    w = _dense(11, 4, 6)
    s = np.array([2.0, 0.5, -1.0, 1.5])
    graph = chain(
        [
            ("fc", nir.Affine(weight=w, bias=np.array([0.5, 0.0, -0.25, 0.125]))),
            ("scale", nir.Scale(scale=s)),
            ("if", nir.IF(r=_full(0.25 / DT, (4,)), v_threshold=_full(1.0, (4,)))),
        ],
        (6,),
        (4,),
    )
    imp = module_from_nir(graph)
    [row] = imp.report()["layers"]
    assert (row["input_scale_min"], row["input_scale_max"]) == (-0.25, 0.5)
    np.testing.assert_array_equal(imp.module[0].weight.detach().numpy(), w * (0.25 * s)[:, None])
    np.testing.assert_array_equal(imp.module[0].bias.detach().numpy(), [0.25, 0.0, 0.0625, 0.046875])


def test_scale_with_no_synapse_before_it_is_a_why_not_row():
    graph = chain(
        [
            ("scale", nir.Scale(scale=_full(2.0, (6,)))),
            ("fc", nir.Linear(weight=_dense(0, 3, 6))),
            ("if", nir.IF(r=_full(1 / DT, (3,)), v_threshold=_full(1.0, (3,)))),
        ],
        (6,),
        (3,),
    )
    with pytest.raises(ConstraintViolation) as err:
        module_from_nir(graph)
    [row] = err.value.violations
    assert (row.layer, row.rule) == ("scale", "nir-input-scale") and err.value.exit_code == 4
    assert "no synapse before it" in row.detail


def test_threshold_with_per_neuron_levels_is_a_heaviside_step(tmp_path):
    """nir.Threshold (its level is named `threshold`, not `v_threshold`: reading it used to crash with an
    AttributeError) maps to a memoryless LIF; per-neuron levels are normalised into the rows. The levels
    are powers of two so that the division keeps exact ties exact (a level of 1.5 turns a tie a = 1.5
    into a / 1.5, which float rounding may put above 1) and the rows stay on a grid Loihi holds."""
    levels = np.array([0.5, 1.0, 2.0, 0.5, 0.25])
    graph = chain(
        [("fc", nir.Linear(weight=_dense(5, 5, 10))), ("th", nir.Threshold(threshold=levels))], (10,), (5,)
    )
    imp = module_from_nir(graph)
    [row] = imp.report()["layers"]
    assert (row["nir"], row["edgec"], row["dv"], row["threshold"]) == ("Threshold", "LIF", 1.0, 1.0)
    # no differential equation to discretise: nothing is lost to Euler
    assert row["dv_euler_vs_exact"] == 0.0 and row["dv_loihi_error"] == 0.0
    check_everywhere(graph, (10,), tmp_path)


def test_if_with_a_bias_and_a_resistance_integrates_dt_r_times_the_input(tmp_path):
    """Affine (with bias) -> IF, g = dt r = 0.25: a pure integrator of the input, reset to 0."""
    graph = chain(
        [
            ("fc", nir.Affine(weight=_dense(7, 6, 16), bias=np.linspace(-0.5, 0.75, 6))),
            ("if", nir.IF(r=_full(0.25 / DT, (6,)), v_threshold=_full(0.5, (6,)))),
        ],
        (16,),
        (6,),
    )
    [row] = module_from_nir(graph).report()["layers"]
    assert (row["edgec"], row["dv"], row["input_scale_min"], row["input_scale_max"]) == (
        "IF",
        0.0,
        0.25,
        0.25,
    )
    check_everywhere(graph, (16,), tmp_path)


def test_conv1d_runs_on_the_cpu_and_loihi_says_why_not(tmp_path):
    w = np.random.default_rng(2).integers(-2, 5, (3, 2, 3)) / 4.0
    s = (3, 8)
    graph = chain(
        [
            (
                "conv",
                nir.Conv1d(
                    input_shape=8, weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(3)
                ),
            ),
            ("if", nir.IF(r=_full(1 / DT, s), v_threshold=_full(0.5, s))),
        ],
        (2, 8),
        s,
    )
    check_everywhere(graph, (2, 8), tmp_path, loihi=False)
    with pytest.raises(ConstraintViolation) as err:
        edgec.compile(str(tmp_path / "g.nir"), target="loihi", out=str(tmp_path / "loihi"))
    rows = {v.rule: v for v in err.value.violations}
    assert rows["unsupported-layer"].detail == "Conv1d" and "conv (2-D)" in rows["unsupported-layer"].hint
    # the IF after it has no synapse Loihi takes: its row says so (it used to say "on the input / after
    # a flatten", neither of which is the case here)
    assert "after a layer Loihi refuses" in rows["neuron-without-synapse"].detail
    assert err.value.exit_code == 4 and not (tmp_path / "loihi").exists()


@pytest.mark.parametrize("kind", ["I", "LI"])
def test_a_bare_current_node_is_a_voltage_readout_on_the_cpu_and_refused_on_loihi(kind, tmp_path):
    """I / LI alone (no spiking neuron after them) become edgec's non-spiking LI: its voltage, the NIR
    node's state, is the output (float32 on the CPU: to 1e-5)."""
    w = _dense(11, 3, 8)
    neuron = (
        nir.I(r=_full(0.5 / DT, (3,)))
        if kind == "I"
        else nir.LI(tau=_full(DT / 0.3, (3,)), r=_full(2.0, (3,)), v_leak=_full(0.5, (3,)))
    )
    graph = chain([("fc", nir.Linear(weight=w)), ("n", neuron)], (8,), (3,))
    src = tmp_path / "g.nir"
    nir.write(str(src), graph)
    cpu = edgec.compile(str(src), target="cpu", out=str(tmp_path / "cpu"))
    img = _static(8, (8,), seed=4)
    out = edgec.run(cpu, img)["output"]
    ref = simulate(graph, np.repeat(img[None], T, axis=0))
    assert np.abs(ref).max() > 0.5  # the readout moves
    np.testing.assert_allclose(np.swapaxes(out, 0, 1), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConstraintViolation) as err:
        edgec.compile(str(src), target="loihi", out=str(tmp_path / "loihi"))
    rows = {v.rule: v for v in err.value.violations}
    assert rows["unsupported-neuron"].kind == "LI" and "synapse-without-neuron" in rows
    assert err.value.exit_code == 4


# ---- a decay off Loihi's 12-bit grid ------------------------------------------------------------
def test_a_decay_off_the_12_bit_grid_is_reported_with_its_error(tmp_path):
    """CubaLIF with dt / tau_syn = 0.15 and dt / tau_mem = 0.3: Loihi stores round(4096 d) = 614 and
    1229, off by |614/4096 - 0.15| and |1229/4096 - 0.3|; both reports say so, and the netlist holds
    exactly those decays."""
    from edgec.targets.loihi.netlist import read_netx

    du, dv = 0.15, 0.3
    s = (4,)
    graph = chain(
        [
            ("fc", nir.Linear(weight=_dense(9, 4, 10))),
            (
                "cuba",
                nir.CubaLIF(
                    tau_syn=_full(DT / du, s), tau_mem=_full(DT / dv, s), r=_full(1 / dv, s),
                    v_leak=np.zeros(s), v_threshold=_full(1.0, s), v_reset=np.zeros(s), w_in=_full(1 / du, s),
                ),
            ),
        ],
        (10,),
        s,
    )  # fmt: skip
    src = tmp_path / "g.nir"
    nir.write(str(src), graph)
    du_err, dv_err = abs(614 / 4096 - 0.15), abs(1229 / 4096 - 0.3)
    # 4096 d = 614.4 and 1228.8: 0.4 and 0.2 of a 12-bit step lost
    assert du_err == pytest.approx(0.4 / 4096, rel=1e-9) and dv_err == pytest.approx(0.2 / 4096, rel=1e-9)
    [row] = edgec.load_program(str(src)).metadata["import"]["layers"]
    assert (row["du_loihi_12bit"], row["dv_loihi_12bit"]) == (614, 1229)
    assert row["du_loihi_error"] == pytest.approx(du_err, rel=1e-9)
    assert row["dv_loihi_error"] == pytest.approx(dv_err, rel=1e-9)
    assert row["du_euler_vs_exact"] == pytest.approx(abs(0.85 - np.exp(-0.15)), rel=1e-9)
    assert row["dv_euler_vs_exact"] == pytest.approx(abs(0.7 - np.exp(-0.3)), rel=1e-9)
    art = edgec.compile(str(src), target="loihi", out=str(tmp_path / "loihi"))
    report = json.loads((Path(art.path) / "report.json").read_text())
    assert report["program"]["import"]["layers"] == [row]
    [lrow] = report["target_report"]["layers"]
    assert (lrow["iDecay"], lrow["vDecay"]) == (614, 1229)
    # against the exact decays the import recorded (not the layer's float32 0.30000001), to float64
    assert (lrow["du"], lrow["dv"]) == (0.15, 0.3)
    assert lrow["du_error"] == pytest.approx(du_err, rel=1e-12)
    assert lrow["dv_error"] == pytest.approx(dv_err, rel=1e-12)
    neuron = read_netx(Path(art.path) / "network.net").layers[-1].neuron
    assert (neuron.i_decay, neuron.v_decay) == (614, 1229)
