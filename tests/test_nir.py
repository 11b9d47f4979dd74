"""network.nir: every supported layer type survives nir.write -> nir.read -> netlist -> emulator exactly."""

from __future__ import annotations

import zlib

import nir
import numpy as np
import pytest

from edgec.targets.loihi.emulator import Emulator
from edgec.targets.loihi.netlist import CubaNeuron, Layer, Netlist, read_netx
from edgec.targets.loihi.nir_io import (
    DT,
    NirUnsupported,
    netlist_from_nir,
    netlist_to_nir,
    read_nir,
    write_nir,
)


def _neuron(
    rng: np.random.Generator, n: int | None, *, i_decay: int, v_decay: int, vth: int = 300
) -> CubaNeuron:
    bias = None if n is None else rng.integers(-40, 41, n)
    return CubaNeuron(i_decay, v_decay, vth, bias)


def _dense(rng: np.random.Generator, n_in: int, n_out: int, **neuron: int) -> Layer:
    w = rng.integers(-127, 128, (n_out, n_in)) * 2
    bias = neuron.pop("bias", 1)
    return Layer("dense", f"fc{n_out}", (n_in,), (n_out,), w, _neuron(rng, n_out if bias else None, **neuron))


def _conv(rng: np.random.Generator, **kw: int) -> Layer:
    groups, stride, padding, dilation = (
        kw.get("groups", 1),
        kw.get("stride", 1),
        kw.get("padding", 1),
        kw.get("dilation", 1),
    )
    c_in, c_out, hw = 4, 6, 9
    w = rng.integers(-60, 61, (c_out, c_in // groups, 3, 3)) * 2
    out_hw = (hw + 2 * padding - dilation * 2 - 1) // stride + 1
    return Layer(
        "conv",
        "conv",
        (c_in, hw, hw),
        (c_out, out_hw, out_hw),
        w,
        _neuron(rng, c_out, i_decay=1024, v_decay=512),
        stride=(stride, stride),
        padding=(padding, padding),
        dilation=(dilation, dilation),
        groups=groups,
    )


def _with_conv(rng: np.random.Generator, **kw: int) -> Netlist:
    conv = _conv(rng, **kw)
    flat = Layer("flatten", "flat", conv.out_shape, (int(np.prod(conv.out_shape)),))
    return Netlist((4, 9, 9), [conv, flat, _dense(rng, flat.out_shape[0], 7, i_decay=2048, v_decay=256)])


# every layer type edgec writes to NIR, with the neuron variants its decays call for
CASES = {
    "dense+CubaLIF": lambda r: Netlist(
        (20,),
        [_dense(r, 20, 16, i_decay=1365, v_decay=700), _dense(r, 16, 5, i_decay=4096, v_decay=1, bias=0)],
    ),
    "dense+I+LIF (no current decay)": lambda r: Netlist((20,), [_dense(r, 20, 8, i_decay=0, v_decay=900)]),
    "dense+LI+IF (no voltage decay)": lambda r: Netlist(
        (20,), [_dense(r, 20, 8, i_decay=700, v_decay=0, bias=0)]
    ),
    "dense+I+IF (no decays)": lambda r: Netlist(
        (20,), [_dense(r, 20, 8, i_decay=0, v_decay=0, bias=0, vth=2000)]
    ),
    "dense+IF with a bias on the synapse (iDecay 4096, vDecay 0: ann2snn's layers)": lambda r: Netlist(
        (20,), [_dense(r, 20, 8, i_decay=4096, v_decay=0), _dense(r, 8, 4, i_decay=4096, v_decay=300)]
    ),
    "conv2d+flatten": lambda r: _with_conv(r),
    "conv2d stride 2": lambda r: _with_conv(r, stride=2),
    "conv2d groups 2, no padding": lambda r: _with_conv(r, groups=2, padding=0),
    "conv2d dilation 2": lambda r: _with_conv(r, dilation=2, padding=2),
}


def _spikes(net: Netlist, rng: np.random.Generator) -> np.ndarray:
    return (rng.random((25, 6, *net.input_shape)) < 0.35).astype(np.uint8)


def _params(node: nir.NIRNode) -> dict[str, np.ndarray]:
    d = node.to_dict()
    return {k: np.asarray(v) for k, v in d.items() if k not in ("type", "metadata")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_nir_round_trip_is_exact(case, tmp_path):
    rng = np.random.default_rng(zlib.crc32(case.encode()))  # hash() is salted per process
    net = CASES[case](rng)
    graph = netlist_to_nir(net, scales=[0.01] * len(net.compute_layers))
    path = tmp_path / "network.nir"
    nir.write(str(path), graph)
    back = nir.read(str(path))
    # what was written is what is read: same nodes, edges and parameters
    assert set(back.nodes) == set(graph.nodes)
    assert sorted(map(tuple, back.edges)) == sorted(map(tuple, graph.edges))
    for name, node in graph.nodes.items():
        got = back.nodes[name]
        assert type(got) is type(node), name
        a, b = _params(node), _params(got)
        assert set(a) <= set(b), (name, set(a) ^ set(b))
        for key in a:
            np.testing.assert_array_equal(a[key].astype(float), b[key].astype(float), err_msg=f"{name}.{key}")
    assert float(back.metadata["dt"]) == DT
    # converted back, the graph is the same Loihi network: identical integers, identical spikes
    again = netlist_from_nir(back)
    assert [la.kind for la in again.layers] == [la.kind for la in net.layers]
    for la, lb in zip(net.layers, again.layers, strict=True):
        assert la.out_shape == lb.out_shape
        if la.weight is not None:
            assert lb.weight is not None and lb.neuron is not None and la.neuron is not None
            assert la.neuron.to_dict() == lb.neuron.to_dict()
            assert (la.stride, la.padding, la.dilation) == (lb.stride, lb.padding, lb.dilation)
            if la.groups > 1:  # written ungrouped (zero cross-group taps): the same convolution
                assert lb.groups == 1 and np.count_nonzero(lb.weight) == np.count_nonzero(la.weight)
            else:
                np.testing.assert_array_equal(la.weight, lb.weight)
    x = _spikes(net, rng)
    want = Emulator(net).run(x)
    assert want.any(), "the test network spikes"
    np.testing.assert_array_equal(Emulator(again).run(x), want)


def test_cuba_lif_time_constants_follow_the_documented_discretization():
    rng = np.random.default_rng(0)
    net = Netlist((20,), [_dense(rng, 20, 4, i_decay=1024, v_decay=512)])
    node = netlist_to_nir(net).nodes["0_cubalif"]
    du, dv = 1024 / 4096, 512 / 4096
    np.testing.assert_allclose(node.tau_syn, DT / du)
    np.testing.assert_allclose(node.tau_mem, DT / dv)
    np.testing.assert_allclose(node.w_in, 1 / du)
    np.testing.assert_allclose(node.r, 1 / dv)
    la = net.layers[0]
    assert la.neuron is not None and la.neuron.bias is not None
    np.testing.assert_allclose(node.v_leak, la.neuron.bias / dv)
    np.testing.assert_array_equal(node.v_threshold, la.neuron.vth_mant)
    # one forward-Euler step of the NIR equations is Loihi's update (before Loihi's rounding)
    i0, v0, s = 3.0, 5.0, 7.0
    dt = DT
    i1 = i0 + dt / node.tau_syn[0] * (-i0 + node.w_in[0] * s)
    v1 = v0 + dt / node.tau_mem[0] * (node.v_leak[0] - v0 + node.r[0] * i1)
    assert i1 == pytest.approx((1 - du) * i0 + s)
    assert v1 == pytest.approx((1 - dv) * v0 + i1 + la.neuron.bias[0])


def test_a_bias_without_voltage_decay_has_no_nir_form():
    rng = np.random.default_rng(1)
    net = Netlist((20,), [_dense(rng, 20, 4, i_decay=100, v_decay=0)])
    with pytest.raises(NirUnsupported, match="vDecay = 0"):
        netlist_to_nir(net)


@pytest.mark.parametrize("fixture", ["loihi_mlp", "loihi_cnn"])
def test_compiled_network_nir_matches_network_net(fixture, request):
    art = request.getfixturevalue(fixture)
    from_net = read_netx(art / "network.net")
    from_nir = read_nir(art / "network.nir")
    graph = nir.read(str(art / "network.nir"))
    assert float(graph.metadata["dt"]) == DT and "timesteps" in graph.metadata
    x = (np.random.default_rng(2).random((16, 20, *from_net.input_shape)) < 0.3).astype(np.uint8)
    np.testing.assert_array_equal(Emulator(from_nir).run(x), Emulator(from_net).run(x))


def test_write_nir_writes_a_file_nir_reads(tmp_path):
    rng = np.random.default_rng(5)
    net = _with_conv(rng)
    write_nir(net, tmp_path / "n.nir", metadata={"timesteps": 4})
    graph = nir.read(str(tmp_path / "n.nir"))
    assert isinstance(graph.nodes["input"], nir.Input) and isinstance(graph.nodes["output"], nir.Output)
    assert isinstance(graph.nodes["0_conv"], nir.Conv2d) and isinstance(graph.nodes["1_flatten"], nir.Flatten)
