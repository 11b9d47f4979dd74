"""Dense counts by tracing one inference: analytic MACs per layer, functional operators, liveness.

One forward pass (batch 1) runs under two instruments at once:

* the layers being executed are known: from forward hooks on every module of a module tree, or,
  for a torch.export / TorchScript graph, from each node's layer (:mod:`edgec.energy.graphs`).
  Modules with an analytic rule (:mod:`edgec.energy.rules`: conv, linear, attention, recurrent,
  norms, activations, pooling, spiking neurons) are counted from their input and output *shapes*,
  and the operations inside them are not counted again. This is why fused inference paths cannot
  hide work: ``nn.MultiheadAttention`` under ``torch.inference_mode`` runs one
  ``_native_multi_head_attention`` kernel, and its hook still sees ``query``, ``key`` and ``value``.
  A graph's operators are counted one node at a time with the operator rules, as their layer's work.
* a ``TorchDispatchMode`` sees every ATen operation. In a module tree, those executed outside any
  analytic module (a functional ``q @ k.transpose(-2, -1)``, ``F.conv2d``, a residual ``+``) are
  counted by operator (:mod:`edgec.energy.ops`) and attributed to the innermost module running
  them. The same trace gives each tensor's lifetime, from which the peak of live activation memory
  is computed (see :func:`peak_live`).

An operator with no rule that does arithmetic is *uncounted*: listed per layer, never counted as 0.
``nn.TransformerEncoderLayer`` has a fused inference path that bypasses its children's ``forward``;
when none of its children ran, its children are counted analytically from the layer's input shape.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from edgec.energy.counts import LayerCounts
from edgec.energy.graphs import CallTracker, GraphProgram, Layer
from edgec.energy.ops import aten_item, is_free
from edgec.energy.rules import (
    ACTIVATION_NAMES,
    ACTIVATIONS,
    ANALYTIC,
    ANALYTIC_NAMES,
    NOOP,
    NOOP_NAMES,
    Item,
    first_tensor,
    mha_item,
    module_item,
    role_of,
    tensors,
)

log = logging.getLogger(__name__)

#: kernels that only the modules counted analytically run (their fused inference paths)
_RUN_BY_COUNTED_MODULES = {"_transformer_encoder_layer_fwd", "_native_multi_head_attention"}


@dataclass
class _Row:
    name: str
    type: str
    role: str
    order: int
    calls: int = 0
    macs: int = 0
    macs_detail: dict[str, int] = field(default_factory=dict)
    other: dict[str, int] = field(default_factory=dict)
    output_shape: list[int] | None = None
    output_elements: int = 0
    nonzero_outputs: int = 0  # activation layers: for the output density of one traced inference
    counted_outputs: int = 0

    def add(self, item: Item, *, call: bool = True) -> None:
        self.calls += int(call)
        self.macs += item.macs
        for k, v in item.macs_detail.items():
            self.macs_detail[k] = self.macs_detail.get(k, 0) + v
        for k, v in item.other.items():
            self.other[k] = self.other.get(k, 0) + v

    def output(self, out: torch.Tensor, *, moves_data: bool, activation: bool) -> None:
        """Record one call's output (views and identities move no data)."""
        self.output_shape = [int(d) for d in out.shape]
        if moves_data:
            self.output_elements += int(out.numel())
        if activation:
            self.nonzero_outputs += int(torch.count_nonzero(out))
            self.counted_outputs += int(out.numel())


@dataclass
class Trace:
    """What one traced inference produced."""

    rows: list[_Row]
    peak_elements: int
    peak_bytes: float
    peak_at: str
    uncounted: dict[tuple[str, str], list[str]]  # (layer, type) -> operators with no counting rule
    output: Any = None  # what the traced inference returned

    def layer_counts(self) -> list[LayerCounts]:
        return [
            LayerCounts(
                name=r.name,
                type=r.type,
                role=r.role,
                calls=r.calls,
                macs=r.macs,
                macs_detail=dict(r.macs_detail),
                other_ops=dict(r.other),
                output_shape=r.output_shape,
                output_elements=r.output_elements,
                output_density=(r.nonzero_outputs / r.counted_outputs) if r.counted_outputs else None,
            )
            for r in sorted(self.rows, key=lambda r: r.order)
        ]


class _Recorder(TorchDispatchMode):
    def __init__(self, param_keys: set[int]) -> None:
        super().__init__()
        self.stack: list[tuple[str, str, bool]] = []  # module tree: (name, type, analytic)
        self.suppress = 0
        self.rows: dict[tuple[str, str], _Row] = {}
        self.uncounted: dict[tuple[str, str], list[str]] = {}
        self.param_keys = param_keys
        # liveness: storage key -> [first step, last step, elements, bytes]
        self.life: dict[int, list[float]] = {}
        self.keep: list[torch.Tensor] = []  # keeps storages alive so their addresses stay unique
        self.step = 0
        self.step_owner: list[str] = []
        self.analytic_calls = 0
        self.root_type = "Module"
        self.layer: Layer | None = None  # graphs: the layer of the node running now
        self.bookkeeping = False  # edgec's own operators (output densities) are not the model's

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Run edgec's own bookkeeping without counting or timing it as the model's work."""
        self.bookkeeping = True
        try:
            yield
        finally:
            self.bookkeeping = False

    def row(self, name: str, type_: str, role: str) -> _Row:
        key = (name, type_)
        if key not in self.rows:
            self.rows[key] = _Row(name, type_, role, order=len(self.rows))
        return self.rows[key]

    def current(self) -> str:
        if self.layer is not None:
            return self.layer.name
        return self.stack[-1][0] if self.stack else ""

    def owner(self) -> tuple[str, str]:
        """(row name, class name) of the innermost layer running now."""
        if self.layer is not None:
            return self.layer.name or "(model)", self.layer.type
        if self.stack:
            return self.stack[-1][0] or "(model)", self.stack[-1][1]
        return "(model)", self.root_type

    def count_op(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """Count one operator as the work of the innermost layer running it (or list it uncounted)."""
        if is_free(name) or name in _RUN_BY_COUNTED_MODULES or not tensors(out):
            return  # data movement, a kernel counted by its module, or no tensor made (size queries)
        counted = aten_item(name, args, kwargs, out)
        owner, owner_type = self.owner()
        if counted is None:
            ops = self.uncounted.setdefault((owner, owner_type), [])
            if name not in ops:
                ops.append(name)
            return
        category, item = counted
        if self.layer is not None and self.layer.type in ANALYTIC_NAMES:  # a graph's known layer
            self.row(owner, owner_type, role_of(owner_type)).add(item, call=False)
        else:
            role = "matmul" if category in ("matmul", "conv", "attention", "recurrent") else "op"
            self.row(owner, f"aten.{category}", role).add(item)

    def touch(self, t: torch.Tensor, *, produced: bool) -> None:
        if t.layout != torch.strided or t.device.type == "meta":
            return
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return
        key = storage.data_ptr()
        if key == 0 or key in self.param_keys:
            return
        rec = self.life.get(key)
        if rec is None:
            # an input we have not seen produced is the model input: live from step 0
            first = float(self.step) if produced else 0.0
            nbytes = storage.nbytes()
            rec = [first, float(self.step), nbytes / max(t.element_size(), 1), float(nbytes)]
            self.life[key] = rec
            self.keep.append(t)
        rec[1] = float(self.step)

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.bookkeeping:
            return out
        for t in tensors((args, kwargs)):
            self.touch(t, produced=False)
        for t in tensors(out):
            self.touch(t, produced=True)
        self.step_owner.append(self.current())
        self.step += 1
        if self.suppress == 0:
            name = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)
            self.count_op(name, args, kwargs, out)
        return out


class _GraphCalls(CallTracker):
    """Listener of a graph run: counts each operator node as its layer's work, and records each
    finished call of a layer (calls, output size, activation density)."""

    def __init__(self, rec: _Recorder) -> None:
        super().__init__()
        self.rec = rec

    def before(self, layer: Layer) -> None:
        super().before(layer)
        self.rec.layer = layer

    def op(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        self.rec.count_op(op, args, kwargs, out)

    def call(self, layer: Layer, output: torch.Tensor | None) -> None:
        if layer.type not in ANALYTIC_NAMES:
            return
        row = self.rec.row(layer.name or "(model)", layer.type, role_of(layer.type))
        row.calls += 1
        if output is not None:
            with self.rec.quiet():
                row.output(
                    output, moves_data=layer.type not in NOOP_NAMES, activation=layer.type in ACTIVATION_NAMES
                )


def _role(m: nn.Module, neuron_types: tuple[type[nn.Module], ...]) -> str:
    return role_of(type(m).__name__, neuron=isinstance(m, neuron_types))


def trace_counts(
    module: nn.Module,
    run: Callable[[], Any],
    *,
    neuron_types: tuple[type[nn.Module], ...] = (),
    graph: GraphProgram | None = None,
    graph_input: torch.Tensor | None = None,
) -> Trace:
    """Run one inference of ``module`` (batch 1) under the instruments; return its counts.

    A module tree runs ``run()`` with hooks; a ``graph`` (:func:`edgec.energy.graphs.graph_of`) runs
    ``graph_input`` node by node instead. ``neuron_types`` are spiking neuron classes: each call
    counts ``numel(output)`` neuron updates (neurons x T), and the ops inside them are not counted
    as element-wise work.
    """
    param_keys = {
        int(p.untyped_storage().data_ptr()) for p in [*module.parameters(), *module.buffers()] if p.numel()
    }
    rec = _Recorder(param_keys)
    if graph is not None:
        rec.root_type = graph.layer_types().get("", type(module).__name__)
        rec.suppress = 1  # a graph's operators are counted node by node, as their layer's work
        calls = _GraphCalls(rec)
        with rec:
            output = graph.run(graph_input if graph_input is not None else torch.empty(0), calls)
        calls.finish()
    else:
        rec.root_type = type(module).__name__
        with _module_hooks(module, rec, neuron_types), rec:
            output = run()
    peak_elements, peak_bytes, peak_step = peak_live(rec.life)
    owner = rec.step_owner[peak_step] if 0 <= peak_step < len(rec.step_owner) else ""
    return Trace(
        list(rec.rows.values()), peak_elements, peak_bytes, owner or "(model)", rec.uncounted, output
    )


class _module_hooks:  # a context manager, used like a function
    """Forward hooks that keep the recorder's stack of running modules and count analytic ones."""

    def __init__(self, module: nn.Module, rec: _Recorder, neuron_types: tuple[type[nn.Module], ...]) -> None:
        self.module, self.rec, self.neuron_types = module, rec, neuron_types
        self.handles: list[Any] = []

    def __enter__(self) -> None:
        rec, neuron_types = self.rec, self.neuron_types
        names = {id(m): n for n, m in self.module.named_modules(remove_duplicate=False)}
        fused_parents = (nn.TransformerEncoderLayer,)
        snapshots: dict[int, list[int]] = {}

        def pre(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            analytic = is_analytic(m, neuron_types)
            rec.stack.append((names.get(id(m), type(m).__name__), type(m).__name__, analytic))
            if analytic:
                rec.suppress += 1
            if isinstance(m, fused_parents):
                snapshots.setdefault(id(m), []).append(rec.analytic_calls)

        def post(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            name, _, analytic = rec.stack.pop()
            name = name or "(model)"
            if analytic:
                rec.suppress -= 1
                rec.analytic_calls += 1
                item = Item() if isinstance(m, neuron_types) else module_item(m, args, kwargs, out)
                if item is not None:
                    r = rec.row(name, type(m).__name__, _role(m, neuron_types))
                    r.add(item)
                    outs = tensors(out)
                    if outs:
                        with rec.quiet():
                            r.output(
                                outs[0],
                                moves_data=not isinstance(m, NOOP),
                                activation=isinstance(m, ACTIVATIONS),
                            )
            if isinstance(m, fused_parents):
                before = snapshots[id(m)].pop()
                if rec.analytic_calls == before:  # the fused path skipped every child's forward
                    _count_fused_encoder_layer(m, name, args, kwargs, rec)

        if isinstance(self.module, torch.jit.ScriptModule):
            return  # TorchScript takes no Python hooks: its operators count under (model)
        for m in self.module.modules():
            self.handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            self.handles.append(m.register_forward_hook(post, with_kwargs=True))

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


def is_analytic(m: nn.Module, neuron_types: tuple[type[nn.Module], ...] = ()) -> bool:
    return isinstance(m, (*neuron_types, *ANALYTIC))


def analytic_layers(
    module: nn.Module, neuron_types: tuple[type[nn.Module], ...], types: dict[str, str] | None
) -> set[str]:
    """Paths of the layers counted analytically: by class (module trees) or class name (``types``)."""
    if types is None:
        return {n for n, m in module.named_modules() if is_analytic(m, neuron_types)}
    return {n for n, t in types.items() if t in ANALYTIC_NAMES}


def _count_fused_encoder_layer(
    m: nn.TransformerEncoderLayer, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], rec: _Recorder
) -> None:
    """Count a ``TransformerEncoderLayer`` that ran as one fused kernel, child by child."""
    x = first_tensor(args, kwargs, "src")
    if x is None:
        return
    prefix = "" if name == "(model)" else f"{name}."
    hidden = x.new_empty((*x.shape[:-1], m.linear1.out_features))
    children: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = [
        ("self_attn", m.self_attn, x, x),
        ("linear1", m.linear1, x, hidden),
        ("linear2", m.linear2, hidden, x),
        ("norm1", m.norm1, x, x),
        ("norm2", m.norm2, x, x),
    ]
    for child_name, child, c_in, c_out in children:
        if isinstance(child, nn.MultiheadAttention):
            item: Item | None = mha_item(child, x, x, x)
        else:
            item = module_item(child, (c_in,), {}, c_out)
        if item is not None:
            r = rec.row(prefix + child_name, type(child).__name__, role_of(type(child).__name__))
            r.add(item)
            r.output(c_out, moves_data=True, activation=False)
    act = rec.row(prefix + "activation", "activation", "op")
    act.add(Item(other={"activation": hidden.numel()}))
    res = rec.row(name, "aten.elementwise", "op")
    res.add(Item(other={"elementwise": 2 * x.numel()}))  # two residual adds


def peak_live(life: dict[int, list[float]]) -> tuple[int, float, int]:
    """Peak of live activation storage over the op sequence: (elements, bytes, step).

    A storage is live from the op that produced it (step 0 for the model input) to the last op that
    read it; views and in-place results share their storage. The peak is the largest sum of live
    storages at any step: an estimate of what a memory planner without in-place reuse needs.
    """
    if not life:
        return 0, 0.0, -1
    events: dict[int, list[float]] = {}
    for first, last, elements, nbytes in life.values():
        events.setdefault(int(first), [0.0, 0.0])
        events.setdefault(int(last) + 1, [0.0, 0.0])
        events[int(first)][0] += elements
        events[int(first)][1] += nbytes
        events[int(last) + 1][0] -= elements
        events[int(last) + 1][1] -= nbytes
    live_e = live_b = 0.0
    best = (0.0, 0.0, -1)
    for step in sorted(events):
        live_e += events[step][0]
        live_b += events[step][1]
        if live_e > best[0]:
            best = (live_e, live_b, step)
    return round(best[0]), best[1], best[2]


def iter_param_owners(
    module: nn.Module, analytic: set[str], types: dict[str, str] | None = None
) -> Iterator[tuple[str, str, list[tuple[str, torch.Tensor]]]]:
    """(row name, class name, its parameters) for every parameter, each tensor once.

    Parameters belong to the outermost analytic layer holding them (``out_proj`` belongs to its
    attention layer); the rest to the module that holds them directly. ``types`` gives class names
    of modules known by name only (graphs); module trees use the modules' own classes.
    """
    seen: set[int] = set()
    owned: list[str] = []
    for name, m in module.named_modules():
        if any(a == "" or name.startswith(a + ".") for a in owned):
            continue
        if name in analytic:
            owned.append(name)
            params = [(n, p) for n, p in m.named_parameters() if id(p) not in seen]
        else:
            params = [(n, p) for n, p in m.named_parameters(recurse=False) if id(p) not in seen]
        for _, p in params:
            seen.add(id(p))
        if params:
            type_name = types.get(name, type(m).__name__) if types is not None else type(m).__name__
            yield name or "(model)", type_name, params
