"""NIR (float, continuous time) <-> edgec's spiking layers (discrete time): the mapping both ways.

NIR (``nir`` 1.0.8) defines neurons by differential equations; edgec's layers (:mod:`edgec.snn`)
and Loihi take one step per time bin. edgec uses one forward-Euler step of ``dt`` seconds per
timestep, current first, then the voltage with the new current (Loihi's and snnTorch's order; NIR's
own nir-to-lava examples, snnTorch and edgec's writer use ``dt = 1e-4``)::

    NIR CubaLIF   tau_syn dI/dt = -I + w_in S          du = dt / tau_syn
                  tau_mem dv/dt = (v_leak - v) + r I   dv = dt / tau_mem
        edgec     u <- (1 - du) u + g S,  v <- (1 - dv) v + u + b,  spike v > v_threshold, v <- 0
                  g = dv r du w_in (folded into the synapse before),  b = dv v_leak
    NIR LIF       tau dv/dt = (v_leak - v) + r I       LIF: dv = dt / tau, g = dv r, b = dv v_leak
    NIR IF        dv/dt = r I                          IF:  g = dt r
    NIR LI        tau dv/dt = (v_leak - v) + r I       LI (non-spiking readout): dv = dt/tau, g = dv r
    NIR I         dv/dt = r I                          LI with dv = 0, g = dt r
    NIR LI | I -> LIF | IF                             one CubaLIF (the LI / I is its current; edgec's
                                                       own writer emits exactly this pair when a decay
                                                       is 0): du = dt/tau_LI (0 for I), g = g_LI g_LIF
    NIR Threshold                                      LIF with dv = 1 (no memory): spike x > threshold

``g`` (per neuron) multiplies the rows of the synapse before the neuron (and its bias): the same
function, since that synapse is linear. A per-neuron ``v_threshold`` is normalised the same way
(rows, bias and threshold divided by it: threshold 1). Decays and thresholds are per layer scalars
on Loihi; ``tau`` must be one value per layer. ``v_reset`` must be 0 (Loihi resets to 0).

What the discretisation costs is reported per neuron layer (:class:`NeuronMapping`): the Euler decay
against the exact exponential ``exp(-dt/tau)`` of NIR's equations, and the 12-bit decay Loihi will
store (``round(4096 d)``) with its error.

Synapses: ``Affine`` / ``Linear`` -> ``nn.Linear``; ``Conv1d`` / ``Conv2d`` -> ``TimeDistributed``
convolutions; ``SumPool2d`` / ``AvgPool2d`` -> a depthwise ``Conv2d`` with weights 1 / ``1/k^2`` (the
same sums, and a synapse Loihi can take when a neuron follows); ``Scale`` folds into the synapse before
it; ``Flatten`` -> ``nn.Flatten(start_dim=2)``. Nested ``NIRGraph`` nodes are inlined. What has no
edgec form (``Delay``, ``CubaLI``, branches, recurrent edges, ...) is refused as one table of rows
(:class:`~edgec.errors.ConstraintViolation`, exit 4), never dropped.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np
from torch import nn

from edgec.errors import ConstraintViolation, ModelError, UsageError
from edgec.nirmap import (
    DEFAULT_DT,
    HINT_REPLACE,
    NetBuilder,
    NirImport,
    NirUnsupported,
    as_array,
    int_values,
    per_feature,
)
from edgec.target import Violation


# ---- graph walking ------------------------------------------------------------------------------
def _inline(graph: Any, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]], str, str]:
    """Nodes and edges with nested graphs inlined; returns (nodes, edges, input name, output name)."""
    import nir

    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
    for name, node in graph.nodes.items():
        full = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges, sub_in, sub_out = _inline(node, f"{full}.")
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
            entry[name], exit_[name] = sub_in, sub_out
        else:
            nodes[full] = node
            entry[name] = exit_[name] = full
    for a, b in graph.edges:
        a0, b0 = str(a), str(b)
        if a0 not in exit_ or b0 not in entry:
            raise ModelError(f"the NIR graph has an edge {a0} -> {b0} to a node it does not hold")
        edges.append((exit_[a0], entry[b0]))
    if len(inputs) != 1 or len(outputs) != 1:
        where = f"graph '{prefix[:-1]}'" if prefix else "the NIR graph"
        raise ConstraintViolation(
            f"{where} has {len(inputs)} Input and {len(outputs)} Output nodes",
            [
                Violation(
                    prefix[:-1] or "(graph)",
                    "nir-graph",
                    f"{len(inputs)} inputs, {len(outputs)} outputs",
                    "edgec compiles networks with one input and one output",
                )
            ],
        )
    return nodes, edges, f"{prefix}{inputs[0]}", f"{prefix}{outputs[0]}"


def _chain(nodes: dict[str, Any], edges: list[tuple[str, str]], start: str) -> list[str]:
    """The nodes in order, or a violation table when the graph is not one chain."""
    import nir

    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    # inlined Input / Output nodes of nested graphs are pass-throughs: drop them from the chain
    rows = []
    for name in nodes:
        if len(succ.get(name, [])) > 1:
            rows.append(Violation(name, "nir-branch", f"{len(succ[name])} outgoing edges", "one path only"))
        if len(pred.get(name, [])) > 1:
            kind = "recurrent" if any(p in _descendants(name, succ) for p in pred[name]) else "merge"
            rows.append(
                Violation(
                    name,
                    "nir-recurrent" if kind == "recurrent" else "nir-branch",
                    f"{len(pred[name])} incoming edges ({kind})",
                    "edgec lowers feed-forward chains: no recurrent or merging edges",
                )
            )
    if rows:
        raise ConstraintViolation(f"the NIR graph is not a single chain: {len(rows)} violation(s)", rows)
    order = [start]
    seen = {start}
    while succ.get(order[-1]):
        nxt = succ[order[-1]][0]
        if nxt in seen:
            break
        order.append(nxt)
        seen.add(nxt)
    missing = [n for n in nodes if n not in seen]
    if missing:
        raise ConstraintViolation(
            f"the NIR graph has {len(missing)} node(s) outside its main chain",
            [
                Violation(n, "nir-branch", "not on the path from input to output", "one path only")
                for n in missing
            ],
        )
    return [n for n in order if not (isinstance(nodes[n], (nir.Input, nir.Output)) and n != start)]


def _descendants(name: str, succ: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    todo = [name]
    while todo:
        for n in succ.get(todo.pop(), []):
            if n not in out:
                out.add(n)
                todo.append(n)
    return out


def _input_shape(node: Any, first: Any) -> tuple[int, ...] | None:
    import nir

    shape = node.input_type.get("input") if node.input_type else None
    dims = tuple(int(d) for d in np.asarray(shape).reshape(-1)) if shape is not None else ()
    # a conv's input: channels from its weight, spatial size from its input_shape
    if isinstance(first, nir.Conv2d) and first.input_shape is not None:
        hw = int_values(first.input_shape, True)
        return (int(as_array(first.weight).shape[1]) * int(first.groups), hw[0], hw[1])
    if isinstance(first, (nir.Affine, nir.Linear)):
        n = int(as_array(first.weight).shape[1])
        if dims and int(np.prod(dims)) == n:
            return dims
        return (n,)
    return dims or None


def _graph_metadata(graph: Any) -> dict[str, Any]:
    meta = getattr(graph, "metadata", None) or {}
    return dict(meta)


def _meta_value(meta: dict[str, Any], key: str) -> Any:
    v = meta.get(key)
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size == 1 else v
    if isinstance(v, bytes):
        v = v.decode()
    return v


def module_from_nir(
    graph: Any, *, dt: float | None = None, input_shape: tuple[int, ...] | None = None
) -> NirImport:
    """An edgec spiking network (``nn.Sequential``, time-major) computing the NIR graph (module docstring)."""
    import nir

    meta = _graph_metadata(graph)
    graph_dt = _meta_value(meta, "dt")
    if dt is not None:
        step, source = float(dt), "--dt"
    elif graph_dt is not None:
        step, source = float(graph_dt), "graph metadata"
    else:
        step, source = DEFAULT_DT, f"default ({DEFAULT_DT:g} s: the graph records no dt; override with --dt)"
    if not step > 0:
        raise UsageError(f"dt must be > 0 seconds, got {step:g}")
    nodes, edges, start, _ = _inline(graph)
    order = _chain(nodes, edges, start)
    known: tuple[Any, ...] = (
        nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d, nir.Flatten,
        nir.Scale, nir.Threshold, nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.I, nir.Input, nir.Output,
    )  # fmt: skip
    identity = getattr(nir.ir.graph, "Identity", ())  # in nir 1.0.8's graph module, not exported
    known = (*known, identity) if identity else known
    unknown = [
        Violation(
            n,
            "nir-node",
            f"{type(nodes[n]).__name__} has no edgec form",
            HINT_REPLACE,
            kind=type(nodes[n]).__name__,
        )
        for n in order
        if not isinstance(nodes[n], known)
    ]
    if unknown:
        raise ConstraintViolation(
            f"the NIR graph holds {len(unknown)} node(s) edgec cannot map: "
            + ", ".join(f"{v.layer} ({v.kind})" for v in unknown),
            unknown,
        )
    body = [n for n in order[1:] if not isinstance(nodes[n], (nir.Output, *([identity] if identity else [])))]
    shape = input_shape or (_input_shape(nodes[order[0]], nodes[body[0]]) if body else None)
    if not shape:
        raise ModelError("cannot tell the NIR graph's input shape", hint="pass --input-shape 1,C,H,W")
    b = NetBuilder(step)
    b.shape = tuple(shape)
    neurons = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.I, nir.Threshold)
    i = 0
    while i < len(body):
        name = body[i]
        node = nodes[name]
        if isinstance(node, neurons):
            nxt = nodes[body[i + 1]] if i + 1 < len(body) else None
            i += b.neuron(name, type(node).__name__, node, nxt)
            continue
        if isinstance(node, nir.Flatten):
            if len(b.shape) > 1:
                b.add(nn.Flatten(start_dim=2))
        elif isinstance(node, nir.Scale):
            b.scale_rows(name, per_feature(node.scale, b.shape, len(b.shape) > 1, name, "scale"))
        else:
            b.synapse(name, node)
        i += 1
    if b.rows:
        raise ConstraintViolation(f"the NIR graph cannot be mapped: {len(b.rows)} violation(s)", b.rows)
    if not b.mappings:
        raise ConstraintViolation(
            "the NIR graph has no neuron",
            [
                Violation(
                    "(graph)", "not-spiking", "no LIF / CubaLIF / IF / LI / Threshold node", HINT_REPLACE
                )
            ],
        )
    timesteps = _meta_value(meta, "timesteps")
    encoder = _meta_value(meta, "encoder")
    if isinstance(encoder, str):
        try:
            encoder = ast.literal_eval(encoder)  # edgec writes the encoder dict's repr
        except (ValueError, SyntaxError):
            encoder = None
    return NirImport(
        module=nn.Sequential(*b.layers).eval(),
        input_shape=tuple(shape),
        dt=step,
        dt_source=source,
        mappings=b.mappings,
        timesteps=int(timesteps) if timesteps is not None else None,
        encoder=encoder if isinstance(encoder, dict) else None,
    )


# ---- edgec -> NIR (neurons; the Loihi target's writer uses this) -------------------------------
def neuron_nodes(
    du: float, dv: float, threshold: float, bias: np.ndarray, shape: tuple[int, ...], dt: float, layer: str
) -> list[tuple[str, Any]]:
    """NIR nodes for one edgec CubaLIF step ``u <- (1-du) u + x; v <- (1-dv) v + u + b`` (inverse of the
    table in the module docstring, with the synapse unscaled: ``w_in = 1/du``, ``r = 1/dv``).

    Decays of 0 have no finite time constant: the current is then ``I`` (``r = 1/dt``) or, with
    ``du > 0`` and ``dv = 0``, ``LI`` followed by ``IF``; ``dv = 0`` with a bias has no NIR form."""
    import nir

    def full(v: float | np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=np.float64), shape).astype(np.float64).copy()

    thr = full(float(threshold))
    if du > 0 and dv > 0:
        return [
            (
                "cubalif",
                nir.CubaLIF(
                    tau_syn=full(dt / du),
                    tau_mem=full(dt / dv),
                    r=full(1.0 / dv),
                    v_leak=bias / dv,
                    v_threshold=thr,
                    v_reset=np.zeros(shape),
                    w_in=full(1.0 / du),
                ),
            )
        ]
    if du == 0:
        current: tuple[str, Any] = ("i", nir.I(r=full(1.0 / dt)))
    else:
        current = ("li", nir.LI(tau=full(dt / du), r=full(1.0 / du), v_leak=np.zeros(shape)))
    if dv > 0:
        voltage: tuple[str, Any] = (
            "lif",
            nir.LIF(
                tau=full(dt / dv),
                r=full(1.0 / dv),
                v_leak=bias / dv,
                v_threshold=thr,
                v_reset=np.zeros(shape),
            ),
        )
    else:
        if np.any(bias):
            raise NirUnsupported(f"layer {layer}: a bias without voltage decay (vDecay = 0) has no NIR form")
        voltage = ("if", nir.IF(r=full(1.0 / dt), v_threshold=thr, v_reset=np.zeros(shape)))
    return [current, voltage]
