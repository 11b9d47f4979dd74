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
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from edgec.errors import ConstraintViolation, ModelError, UsageError
from edgec.snn import IF, LI, LIF, CubaLIF, TimeDistributed
from edgec.target import Violation

DEFAULT_DT = 1e-4
DECAY_UNITY = 4096  # Loihi's 12-bit decay fractions (lava-nc proc/lif/models.py)

_HINT_REPLACE = (
    "edgec maps Affine, Linear, Conv1d/2d, Flatten, SumPool2d, AvgPool2d, Scale, Threshold, "
    "LIF, CubaLIF, IF, LI, I and nested graphs (docs/nir.md)"
)


class NirUnsupported(Exception):
    """An edgec network holds something NIR's neuron set cannot express exactly (when writing)."""


@dataclass
class NeuronMapping:
    """How one NIR neuron node became an edgec neuron layer (a row of the report)."""

    node: str
    nir_type: str
    edgec_type: str
    layer: str
    du: float | None
    dv: float | None
    threshold: float
    input_scale: tuple[float, float]  # min / max of g folded into the synapse
    notes: list[str] = field(default_factory=list)

    def to_dict(self, dt: float) -> dict[str, Any]:
        row: dict[str, Any] = {
            "node": self.node,
            "nir": self.nir_type,
            "edgec": self.edgec_type,
            "layer": self.layer,
            "threshold": self.threshold,
            "input_scale_min": self.input_scale[0],
            "input_scale_max": self.input_scale[1],
        }
        for key, d in (("du", self.du), ("dv", self.dv)):
            if d is None:
                continue
            q = round(DECAY_UNITY * d)
            row[key] = d
            row[f"{key}_loihi_12bit"] = q
            row[f"{key}_loihi_error"] = abs(q / DECAY_UNITY - d)
            # Euler's (1 - dt/tau) against the exact exp(-dt/tau) of the continuous equation
            row[f"{key}_euler_vs_exact"] = abs((1.0 - d) - math.exp(-d)) if d > 0 else 0.0
        if self.notes:
            row["notes"] = self.notes
        return row


@dataclass
class NirImport:
    module: nn.Sequential
    input_shape: tuple[int, ...]
    dt: float
    dt_source: str
    mappings: list[NeuronMapping]
    timesteps: int | None
    encoder: dict[str, Any] | None

    def report(self) -> dict[str, Any]:
        return {
            "dt": self.dt,
            "dt_source": self.dt_source,
            "discretisation": "forward Euler, current first (docs/nir.md)",
            "layers": [m.to_dict(self.dt) for m in self.mappings],
        }


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


# ---- parameters ---------------------------------------------------------------------------------
def _arr(v: Any) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float64)


def _uniform(name: str, what: str, value: Any, rows: list[Violation]) -> float:
    a = _arr(value).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        rows.append(Violation(name, "nir-parameter", f"{what} is empty or not finite", ""))
        return 1.0
    if not np.allclose(a, a[0], rtol=1e-6, atol=0.0):
        rows.append(
            Violation(
                name,
                "per-neuron-" + what.replace("_", "-"),
                f"{what} differs between neurons ({a.min():g} .. {a.max():g})",
                "Loihi (and edgec's layers) take one decay per layer: use one value per layer",
            )
        )
    return float(a[0])


def _per_feature(value: Any, shape: tuple[int, ...], conv: bool, name: str, what: str) -> np.ndarray:
    """A neuron parameter as one value per neuron (dense) or per channel (conv)."""
    a = _arr(value)
    features = shape[0] if shape else 1
    if a.size == 1:
        return np.full(features, float(a.reshape(-1)[0]))
    if conv:
        if a.ndim != len(shape) and a.size == shape[0]:
            a = a.reshape(-1, *[1] * (len(shape) - 1))
        try:
            full = np.broadcast_to(a, shape)
        except ValueError:
            raise ModelError(f"NIR node {name}: {what} of shape {a.shape} does not fit {shape}") from None
        per = full.reshape(shape[0], -1)
        if not np.allclose(per, per[:, :1], rtol=1e-6):
            raise ConstraintViolation(
                f"NIR node {name}: {what} differs within a channel",
                [Violation(name, "nir-parameter", f"{what} varies over positions", "one value per channel")],
            )
        return per[:, 0].copy()
    if a.size != features:
        raise ModelError(f"NIR node {name}: {what} has {a.size} values for {features} neurons")
    return a.reshape(-1).copy()


def _decay(dt: float, tau: float, name: str, what: str) -> float:
    if not tau > 0:
        raise ModelError(f"NIR node {name}: {what} = {tau:g} is not a positive time constant")
    if math.isinf(tau):
        return 0.0
    d = dt / tau
    if d > 1.0 + 1e-9:
        raise UsageError(
            f"NIR node {name}: dt / {what} = {dt:g} / {tau:g} = {d:g} > 1 (the Euler step would overshoot)",
            hint=f"give the graph's time step with --dt (at most {tau:g} for this node); "
            "frameworks that count time in steps (sinabs) use --dt 1",
        )
    return min(d, 1.0)


# ---- NIR -> edgec -------------------------------------------------------------------------------
class NetBuilder:
    def __init__(self, dt: float) -> None:
        self.dt = dt
        self.layers: list[nn.Module] = []
        self.shape: tuple[int, ...] = ()
        self.pending: nn.Module | None = None  # last synapse with no neuron after it yet
        self.mappings: list[NeuronMapping] = []
        self.rows: list[Violation] = []

    # shapes: run the layer on zeros (one step, one sample)
    def add(self, layer: nn.Module, *, synapse: bool = False) -> None:
        with torch.no_grad():
            y = layer(torch.zeros(1, 1, *self.shape))
        self.layers.append(layer)
        self.shape = tuple(int(d) for d in y.shape[2:])
        self.pending = layer if synapse else None

    def flat(self, name: str, n_in: int) -> None:
        if len(self.shape) > 1 or (self.shape and self.shape[0] != n_in):
            if int(np.prod(self.shape)) != n_in:
                raise ModelError(
                    f"NIR node {name} takes {n_in} inputs; the node before it gives {self.shape}"
                )
            self.add(nn.Flatten(start_dim=2))

    def synapse_rows(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        m = self.pending
        inner = m.module if isinstance(m, TimeDistributed) else m
        assert isinstance(inner, (nn.Linear, nn.Conv1d, nn.Conv2d))
        return inner.weight, inner.bias

    def scale_rows(self, name: str, g: np.ndarray) -> bool:
        """Multiply the pending synapse's output rows by ``g`` (per output neuron / channel)."""
        if np.allclose(g, 1.0, rtol=0, atol=0):
            return True
        if self.pending is None:
            self.rows.append(
                Violation(
                    name,
                    "nir-input-scale",
                    f"input scaling {g.min():g}..{g.max():g} with no synapse before it to carry it",
                    "put the neuron after a Linear / Affine / Conv node",
                )
            )
            return False
        w, b = self.synapse_rows()
        gt = torch.as_tensor(g, dtype=w.dtype)
        features = w.shape[0]
        if gt.numel() == 1:
            gt = gt.reshape(1).expand(features)
        if gt.numel() != features:
            raise ModelError(f"NIR node {name}: {gt.numel()} scales for {features} outputs of the synapse")
        with torch.no_grad():
            w.mul_(gt.reshape(-1, *([1] * (w.dim() - 1))))
            if b is not None:
                b.mul_(gt)
        return True

    def neuron(self, name: str, kind: str, node: Any, nxt: Any | None) -> int:
        """Map a neuron node (and the LIF / IF after an LI / I); returns how many nodes it used."""
        import nir

        conv = len(self.shape) > 1
        features = self.shape[0] if self.shape else 1
        dt = self.dt
        used = 1
        du: float | None = None
        notes: list[str] = []
        if isinstance(node, (nir.LI, nir.I)) and isinstance(nxt, (nir.LIF, nir.IF)):
            if isinstance(node, nir.LI):
                du = _decay(dt, _uniform(name, "tau", node.tau, self.rows), name, "tau")
                if np.any(_arr(node.v_leak)):
                    self.rows.append(
                        Violation(name, "nir-current-leak", "LI current with v_leak != 0", "v_leak = 0")
                    )
            else:
                du = 0.0
            g_cur = _per_feature(node.r, self.shape, conv, name, "r") * (du if du else dt)
            node, used, kind = nxt, 2, f"{kind}+{type(nxt).__name__}"
            notes.append("current node fused into CubaLIF")
        else:
            g_cur = None
        if isinstance(node, nir.CubaLIF):
            du = _decay(dt, _uniform(name, "tau_syn", node.tau_syn, self.rows), name, "tau_syn")
            g_cur = _per_feature(node.w_in, self.shape, conv, name, "w_in") * du
        if isinstance(node, (nir.CubaLIF, nir.LIF, nir.LI)):
            what = "tau_mem" if isinstance(node, nir.CubaLIF) else "tau"
            tau = node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau
            dv = _decay(dt, _uniform(name, what, tau, self.rows), name, what)
            g = _per_feature(node.r, self.shape, conv, name, "r") * dv
            bias = _per_feature(node.v_leak, self.shape, conv, name, "v_leak") * dv
        elif isinstance(node, (nir.IF, nir.I)):
            dv = 0.0
            g = _per_feature(node.r, self.shape, conv, name, "r") * dt
            bias = np.zeros(features)
        elif isinstance(node, nir.Threshold):
            dv = 1.0
            g = np.ones(features)
            bias = np.zeros(features)
        else:  # pragma: no cover - the caller dispatches only neuron types
            raise AssertionError(type(node))
        if g_cur is not None:
            g = g * g_cur
        spiking = not isinstance(node, (nir.LI, nir.I))
        thr = _per_feature(node.v_threshold, self.shape, conv, name, "v_threshold") if spiking else None
        if spiking and not isinstance(node, nir.Threshold) and np.any(_arr(node.v_reset)):
            self.rows.append(
                Violation(
                    name,
                    "nir-reset",
                    f"v_reset = {_arr(node.v_reset).reshape(-1)[0]:g}",
                    "Loihi and edgec's neurons reset to 0: use v_reset = 0",
                )
            )
        self.place_neuron(name, kind, du, dv, thr, bias, g, notes)
        return used

    def place_neuron(
        self,
        name: str,
        kind: str,
        du: float | None,
        dv: float,
        thr: np.ndarray | None,
        bias: np.ndarray,
        g: np.ndarray,
        notes: list[str] | None = None,
    ) -> None:
        """Add the edgec neuron for ``u <- (1-du) u + g x; v <- (1-dv) v + u + bias`` (``du`` None: no
        current, ``thr`` None: a non-spiking LI), folding ``g`` into the synapse before it."""
        notes = list(notes or [])
        features = self.shape[0] if self.shape else 1
        spiking = thr is not None
        threshold = 1.0
        if thr is not None:
            if np.any(thr <= 0):
                self.rows.append(
                    Violation(name, "nir-threshold", f"v_threshold {thr.min():g} <= 0", "thresholds > 0")
                )
                thr = np.abs(thr) + 1e-12
            if np.allclose(thr, thr[0], rtol=1e-9, atol=0):
                threshold = float(thr[0])
            else:  # per-neuron thresholds: normalise rows and bias by them (threshold 1)
                g, bias = g / thr, bias / thr
                notes.append("per-neuron v_threshold normalised into the synapse (threshold 1)")
        self.scale_rows(name, g)
        has_bias = bool(np.any(bias))
        bias_features = features if has_bias else None
        layer: nn.Module
        if not spiking:
            layer = LI(bias_features, dv=dv, bias=has_bias)
        elif du is not None:
            layer = CubaLIF(bias_features, du=du, dv=dv, threshold=threshold, bias=has_bias)
        elif dv == 0.0:
            layer = IF(bias_features, threshold=threshold, bias=has_bias)
        else:
            layer = LIF(bias_features, dv=dv, threshold=threshold, bias=has_bias)
        if has_bias:
            with torch.no_grad():
                layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))  # type: ignore[union-attr]
        index = len(self.layers)
        self.add(layer)
        self.mappings.append(
            NeuronMapping(
                name,
                kind,
                type(layer).__name__,
                str(index),
                du,
                dv,
                threshold,
                (float(np.min(g)), float(np.max(g))),
                notes,
            )
        )

    def synapse(self, name: str, node: Any) -> None:
        import nir

        if isinstance(node, (nir.Affine, nir.Linear)):
            w = _arr(node.weight)
            if w.ndim != 2:
                raise ModelError(f"NIR node {name}: weight of shape {w.shape} is not a matrix")
            bias = _arr(node.bias) if isinstance(node, nir.Affine) else None
            has_bias = bias is not None and bool(np.any(bias))
            self.flat(name, int(w.shape[1]))
            lin = nn.Linear(int(w.shape[1]), int(w.shape[0]), bias=has_bias)
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(w))
                if has_bias:
                    assert lin.bias is not None and bias is not None
                    lin.bias.copy_(torch.as_tensor(bias.reshape(-1)))
            self.add(lin, synapse=True)
            return
        if isinstance(node, (nir.Conv2d, nir.Conv1d)):
            w = _arr(node.weight)
            two = isinstance(node, nir.Conv2d)
            groups = int(node.groups)
            c_in = int(w.shape[1]) * groups
            if not self.shape:
                raise ModelError(f"NIR node {name}: a convolution needs a shaped input")
            if self.shape[0] != c_in:
                raise ModelError(f"NIR node {name} takes {c_in} channels; its input has shape {self.shape}")
            bias = _arr(node.bias).reshape(-1) if node.bias is not None else None
            has_bias = bias is not None and bool(np.any(bias))
            pad = node.padding if isinstance(node.padding, str) else _ints(node.padding, two)
            conv: Any = (nn.Conv2d if two else nn.Conv1d)(
                c_in,
                int(w.shape[0]),
                tuple(w.shape[2:]),  # type: ignore[arg-type]
                stride=_ints(node.stride, two),
                padding=pad,
                dilation=_ints(node.dilation, two),
                groups=groups,
                bias=has_bias,
            )
            with torch.no_grad():
                conv.weight.copy_(torch.as_tensor(w))
                if has_bias:
                    conv.bias.copy_(torch.as_tensor(bias))
            self.add(TimeDistributed(conv), synapse=True)
            return
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            if len(self.shape) != 3:
                raise ModelError(f"NIR node {name}: 2-D pooling needs a (C, H, W) input, got {self.shape}")
            k = _ints(node.kernel_size, True)
            c = self.shape[0]
            pool = nn.Conv2d(
                c,
                c,
                k,
                stride=_ints(node.stride, True),
                padding=_ints(node.padding, True),
                groups=c,
                bias=False,
            )
            value = 1.0 if isinstance(node, nir.SumPool2d) else 1.0 / (k[0] * k[1])
            with torch.no_grad():
                pool.weight.fill_(value)
            self.add(TimeDistributed(pool), synapse=True)
            return
        raise AssertionError(type(node))  # pragma: no cover


def _ints(v: Any, two: bool) -> Any:
    a = [int(x) for x in np.asarray(v).reshape(-1)]
    if two:
        return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])
    return a[0]


def _input_shape(node: Any, first: Any) -> tuple[int, ...] | None:
    import nir

    shape = node.input_type.get("input") if node.input_type else None
    dims = tuple(int(d) for d in np.asarray(shape).reshape(-1)) if shape is not None else ()
    # a conv's input: channels from its weight, spatial size from its input_shape
    if isinstance(first, nir.Conv2d) and first.input_shape is not None:
        hw = _ints(first.input_shape, True)
        return (int(_arr(first.weight).shape[1]) * int(first.groups), hw[0], hw[1])
    if isinstance(first, (nir.Affine, nir.Linear)):
        n = int(_arr(first.weight).shape[1])
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
            _HINT_REPLACE,
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
            b.scale_rows(name, _per_feature(node.scale, b.shape, len(b.shape) > 1, name, "scale"))
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
                    "(graph)", "not-spiking", "no LIF / CubaLIF / IF / LI / Threshold node", _HINT_REPLACE
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
