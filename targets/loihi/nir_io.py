"""NIR export of the lowered network (``network.nir``), and NIR back into edgec.

What the file holds
-------------------
The *deployed* network: the Loihi integers of :mod:`.netlist`, as floats in each layer's integer
units (one unit = one weight step of that layer; scaling a layer's weights, threshold and bias by the
same positive factor leaves its spikes unchanged in float arithmetic). Graph: ``input`` ->
(``Linear`` | ``Conv2d`` | ``Flatten``) and neuron nodes in sequence -> ``output``. Node names are
``<index>_<kind>``; node metadata keeps the source layer name and the per-layer float scale
(``edgec_scale``: multiply weights, threshold and bias by it to get the source model's units).

Discretization (NIR is continuous time; Loihi steps are Euler steps of ``dt``)
-----------------------------------------------------------------------------
With ``dt = 1e-4`` s (snnTorch's and NIR's nir-to-lava examples' choice; stored as graph metadata
``dt``) and ``du = iDecay / 4096``, ``dv = vDecay / 4096``, one forward-Euler step of
``CubaLIF`` (current first, then voltage with the new current, as Loihi, snnTorch and Norse do)::

    tau_syn dI/dt = -I + w_in S          I <- (1 - dt/tau_syn) I + (dt/tau_syn) w_in S
    tau_mem dv/dt = (v_leak - v) + r I   v <- (1 - dt/tau_mem) v + (dt/tau_mem) (v_leak + r I)

equals Loihi's ``u <- (1-du) u + a``, ``v <- (1-dv) v + u + b`` when

    tau_syn = dt / du,  w_in = 1 / du,  tau_mem = dt / dv,  r = 1 / dv,  v_leak = b / dv,
    v_threshold = vThMant,  v_reset = 0

Decays of 0 have no finite time constant, so those layers use two nodes: the current is ``I``
(``dv/dt = r I``, ``r = 1/dt``: a pure integrator) when ``du = 0``, else ``LI`` (``tau = dt/du``,
``r = 1/du``); the voltage is ``LIF`` as above, or ``IF`` (``r = 1/dt``) when ``dv = 0`` (which has
no leak, so it cannot carry a bias: such a layer is not written to NIR). Loihi's rounding toward zero
in the decays has no NIR counterpart: a float simulator of this file differs from Loihi by that
rounding only.

Grouped convolutions are written as ungrouped ``Conv2d`` nodes whose cross-group taps are zero (the
same computation): NIR 1.0.8 infers a convolution's input channels from its weight shape and rejects a
grouped kernel when the graph is built, on write and on read.

Reading back (:func:`netlist_from_nir`) inverts every formula above (rounding to the integers) and is
exact for files written here; tests check write -> ``nir.read`` -> netlist -> emulator equality.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import ModelError
from edgec.nirgraph import neuron_nodes
from edgec.nirmap import NirUnsupported

__all__ = ["DT", "NirUnsupported", "netlist_from_nir", "netlist_to_nir", "read_nir", "write_nir"]

from .netlist import DECAY_UNITY, CubaNeuron, Layer, Netlist, conv_out_shape

log = logging.getLogger(__name__)

DT = 1e-4


def _bias_full(la: Layer) -> np.ndarray:
    assert la.neuron is not None  # dense / conv layers only (callers skip flatten)
    shape = la.out_shape
    if la.neuron.bias is None:
        return np.zeros(shape)
    b = la.neuron.bias.astype(np.float64)
    if la.kind == "conv":
        b = b.reshape(shape[0], *([1] * (len(shape) - 1)))
    return np.broadcast_to(b, shape).astype(np.float64).copy()


def _synapse_bias(la: Layer) -> np.ndarray | None:
    """A layer without current state (``iDecay = 4096``: ``u = a`` each step) may carry its bias on the
    synapse: ``u = a + b`` then adds ``b`` to the voltage every step exactly as Loihi's ``bias_mant``.
    Written so, a bias needs no voltage decay (NIR's IF has no ``v_leak``); per neuron / per channel."""
    n = la.neuron
    if n is None or n.i_decay != DECAY_UNITY or n.bias is None or not np.any(n.bias):
        return None
    return np.broadcast_to(n.bias.astype(np.float64), (la.out_shape[0],)).copy()


def _neuron_nodes(la: Layer, dt: float) -> list[tuple[str, Any]]:
    """The layer's neuron as NIR nodes: the core's float mapping (edgec.nirgraph) in integer units."""
    assert la.neuron is not None  # dense / conv layers only (callers skip flatten)
    n = la.neuron
    bias = np.zeros(la.out_shape) if _synapse_bias(la) is not None else _bias_full(la)
    return neuron_nodes(
        n.i_decay / DECAY_UNITY,
        n.v_decay / DECAY_UNITY,
        float(n.vth_mant),
        bias,
        la.out_shape,
        dt,
        la.name,
    )


def _ungroup(w: np.ndarray, groups: int) -> np.ndarray:
    """A grouped kernel ``[out, in/g, kH, kW]`` as the equivalent full kernel with zero cross-group taps."""
    out_ch, in_per, kh, kw = w.shape
    full = np.zeros((out_ch, in_per * groups, kh, kw), dtype=w.dtype)
    out_per = out_ch // groups
    for g in range(groups):
        full[g * out_per : (g + 1) * out_per, g * in_per : (g + 1) * in_per] = w[
            g * out_per : (g + 1) * out_per
        ]
    return full


def netlist_to_nir(
    net: Netlist, *, scales: list[float] | None = None, dt: float = DT, metadata: dict[str, Any] | None = None
) -> Any:
    """The netlist as a ``nir.NIRGraph`` (module docstring); ``scales`` are the per-layer float units."""
    import nir

    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.asarray(net.input_shape)})}
    order = ["input"]
    compute = 0
    for i, la in enumerate(net.layers):
        meta = {"edgec_layer": la.name}
        if la.kind == "flatten":
            name = f"{i}_flatten"
            nodes[name] = nir.Flatten(
                input_type={"input": np.asarray(la.in_shape)}, start_dim=0, end_dim=-1, metadata=meta
            )
            order.append(name)
            continue
        assert la.weight is not None  # not a flatten: dense / conv layers carry weights
        if scales is not None:
            meta["edgec_scale"] = float(scales[compute])  # type: ignore[assignment]
        compute += 1
        w = la.weight.astype(np.float64)
        if la.kind == "conv" and la.groups > 1:
            w = _ungroup(w, la.groups)
        syn_bias = _synapse_bias(la)
        if la.kind == "dense":
            syn: Any = (
                nir.Linear(weight=w, metadata=meta)
                if syn_bias is None
                else nir.Affine(weight=w, bias=syn_bias, metadata=meta)
            )
        else:
            syn = nir.Conv2d(
                input_shape=(int(la.in_shape[1]), int(la.in_shape[2])),
                weight=w,
                stride=tuple(la.stride),
                padding=tuple(la.padding),
                dilation=tuple(la.dilation),
                groups=1,
                bias=np.zeros(w.shape[0]) if syn_bias is None else syn_bias,
                metadata=meta,
            )
        name = f"{i}_{la.kind}"
        nodes[name] = syn
        order.append(name)
        for suffix, node in _neuron_nodes(la, dt):
            nodes[f"{i}_{suffix}"] = node
            order.append(f"{i}_{suffix}")
    nodes["output"] = nir.Output(output_type={"output": np.asarray(net.output_shape)})
    order.append("output")
    edges = list(itertools.pairwise(order))
    graph_meta = {
        "dt": dt,
        "edgec_units": "loihi integer units per layer (see edgec docs/loihi.md)",
        **(metadata or {}),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph_meta)


def write_nir(net: Netlist, path: str | Path, **kwargs: Any) -> None:
    import nir

    nir.write(str(path), netlist_to_nir(net, **kwargs))


# ---- back ---------------------------------------------------------------------------------------
def _chain(graph: Any) -> list[str]:
    succ: dict[str, list[str]] = {}
    pred: dict[str, int] = {name: 0 for name in graph.nodes}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
        pred[b] = pred.get(b, 0) + 1
    starts = [n for n, k in pred.items() if k == 0]
    if len(starts) != 1 or any(len(v) > 1 for v in succ.values()) or any(k > 1 for k in pred.values()):
        raise ModelError("the NIR graph is not a single chain: edgec lowers sequential networks only")
    order = [starts[0]]
    while order[-1] in succ:
        order.append(succ[order[-1]][0])
    if len(order) != len(graph.nodes):
        raise ModelError("the NIR graph has nodes outside its main chain")
    return order


def _scalar(a: Any, what: str) -> float:
    arr = np.asarray(a, dtype=np.float64)
    if arr.size == 0 or not np.allclose(arr, arr.reshape(-1)[0], rtol=1e-9, atol=0):
        raise ModelError(f"NIR {what} differs between neurons; Loihi layers share one value")
    return float(arr.reshape(-1)[0])


def _decay(dt: float, tau: Any, what: str) -> int:
    t = _scalar(tau, what)
    return round(DECAY_UNITY * dt / t) if np.isfinite(t) else 0


def _int(a: Any, what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    r = np.rint(arr)
    if not np.allclose(arr, r, atol=1e-6):
        raise ModelError(f"NIR {what} are not Loihi integers (edgec reads back the NIR files it writes)")
    return r.astype(np.int64)


def _layer_bias(v_leak: Any, dv: float, la_kind: str, shape: tuple[int, ...]) -> np.ndarray | None:
    b = np.asarray(v_leak, dtype=np.float64) * dv
    b = np.broadcast_to(b, shape)
    if not np.any(np.rint(b)):
        return None
    if la_kind == "conv":  # one bias per channel
        per = b.reshape(shape[0], -1)
        if not np.allclose(per, per[:, :1]):
            raise ModelError("NIR conv bias differs within a channel; Loihi conv biases are per channel")
        return _int(per[:, 0], "biases")
    return _int(b.reshape(-1), "biases")


def netlist_from_nir(graph: Any) -> Netlist:
    """Invert :func:`netlist_to_nir` (integers recovered by rounding; exact for edgec's own files)."""
    import nir

    dt = float(np.asarray(graph.metadata.get("dt", DT)).reshape(-1)[0]) if graph.metadata else DT
    order = _chain(graph)
    nodes = [graph.nodes[n] for n in order]
    if not isinstance(nodes[0], nir.Input):
        raise ModelError("the NIR graph does not start with an Input node")
    shape = tuple(int(d) for d in np.asarray(nodes[0].input_type["input"]).reshape(-1))
    net = Netlist(input_shape=shape)
    i = 1
    while i < len(nodes):
        node, name = nodes[i], order[i]
        label = str(node.metadata.get("edgec_layer", name)) if getattr(node, "metadata", None) else name
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.Flatten):
            out = (int(np.prod(shape)),)
            net.layers.append(Layer("flatten", label, shape, out))
            shape = out
            i += 1
            continue
        if isinstance(node, (nir.Linear, nir.Affine)):
            syn_bias = node.bias if isinstance(node, nir.Affine) and np.any(node.bias) else None
            w = _int(node.weight, "weights")
            kind = "dense"
            out_shape: tuple[int, ...] = (int(w.shape[0]),)
            extra: dict[str, Any] = {}
        elif isinstance(node, nir.Conv2d):
            syn_bias = node.bias if np.any(node.bias) else None
            w = _int(node.weight, "weights")
            pair = lambda v: tuple(int(x) for x in np.broadcast_to(np.asarray(v), (2,)))  # noqa: E731
            extra = {
                "stride": pair(node.stride),
                "padding": pair(node.padding),
                "dilation": pair(node.dilation),
                "groups": int(node.groups),
            }
            out_shape = conv_out_shape(
                shape, w.shape[0], w.shape[2:], extra["stride"], extra["padding"], extra["dilation"]
            )
            kind = "conv"
        else:
            raise ModelError(f"NIR node {name} ({type(node).__name__}) where a synapse was expected")
        neuron, used = _read_neuron(nodes[i + 1 :], order[i + 1 :], dt, kind, out_shape)
        if syn_bias is not None:  # written on the synapse: only for layers without current state
            if neuron.i_decay != DECAY_UNITY:
                raise ModelError(
                    f"NIR node {name}: a synapse bias adds to the current, which this layer keeps over "
                    "steps; Loihi biases the voltage"
                )
            extra_bias = _int(np.asarray(syn_bias).reshape(-1), "biases")
            neuron.bias = extra_bias if neuron.bias is None else neuron.bias + extra_bias
        net.layers.append(Layer(kind, label, shape, out_shape, w, neuron, **extra))  # type: ignore[arg-type]
        shape = out_shape
        i += 1 + used
    return net


def _read_neuron(
    nodes: list[Any], names: list[str], dt: float, kind: str, shape: tuple[int, ...]
) -> tuple[CubaNeuron, int]:
    import nir

    if not nodes:
        raise ModelError("the NIR graph ends with a synapse (no neuron after it)")
    first = nodes[0]
    if isinstance(first, nir.CubaLIF):
        du = _decay(dt, first.tau_syn, "tau_syn")
        dv = _decay(dt, first.tau_mem, "tau_mem")
        _check_reset(first)
        bias = _layer_bias(first.v_leak, dv / DECAY_UNITY, kind, shape)
        return CubaNeuron(
            du, dv, int(_int([_scalar(first.v_threshold, "v_threshold")], "threshold")[0]), bias
        ), 1
    if isinstance(first, (nir.I, nir.LI)) and len(nodes) > 1 and isinstance(nodes[1], (nir.LIF, nir.IF)):
        du = 0 if isinstance(first, nir.I) else _decay(dt, first.tau, "tau")
        second = nodes[1]
        _check_reset(second)
        if isinstance(second, nir.LIF):
            dv = _decay(dt, second.tau, "tau")
            bias = _layer_bias(second.v_leak, dv / DECAY_UNITY, kind, shape)
        else:
            dv, bias = 0, None
        thr = int(_int([_scalar(second.v_threshold, "v_threshold")], "threshold")[0])
        return CubaNeuron(du, dv, thr, bias), 2
    raise ModelError(f"NIR node {names[0]} ({type(first).__name__}) is not a neuron edgec maps to Loihi CUBA")


def _check_reset(node: Any) -> None:
    if np.any(np.asarray(node.v_reset)):
        raise ModelError("NIR neurons reset to a non-zero voltage; Loihi resets to 0")


def read_nir(path: str | Path) -> Netlist:
    import nir

    return netlist_from_nir(nir.read(str(path)))
