"""Run ``torch.export`` and TorchScript programs node by node, knowing which layer runs each node.

A module tree is counted with forward hooks. The programs the README recommends first have no
hooks to offer: ``ExportedProgram.module()`` is one flat graph whose submodules are empty
containers, and a TorchScript module runs in C++. Both keep what is needed to give every operator
its layer back:

* torch.export: each node's ``meta["nn_module_stack"]`` lists the modules the call was made in,
  innermost last: ``{"L__self___layer1.0.relu@1": ("layer1.0.relu", "torch.nn...ReLU"), ...}``
  (the key names one call, ``@1`` the second call of the same module). The graph runs through
  :class:`torch.fx.Interpreter`, one node at a time.
* TorchScript: the inlined graph's nodes carry their module hierarchy
  (``"layer1(Sequential).0(BasicBlock).relu(ReLU)"``), and the module keeps its submodule tree (names,
  ``original_name`` types, parameters). The graph runs here, one node at a time (:class:`ScriptGraph`);
  its output is compared with the module's own before any count is trusted.

A :class:`Listener` hears, for every operator node, the layer about to run it and then the
operator's name, operands and result: all the counter needs to count it as its layer's work.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


class Unsupported(Exception):
    """This graph cannot be run node by node here (the reason is the message)."""


@dataclass(frozen=True)
class Layer:
    """The innermost module a node was called in."""

    name: str  # module path, "" for the top level
    type: str  # class name
    key: str  # one call of that module (consecutive nodes with the same key are one call)


class Listener(Protocol):
    def before(self, layer: Layer) -> None: ...

    def after(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None: ...


class CallTracker:
    """A :class:`Listener` that groups the consecutive nodes of one call of a layer: :meth:`op` hears
    every operator, :meth:`call` every finished call with the last tensor it produced."""

    def __init__(self) -> None:
        self.open: Layer | None = None
        self.last: torch.Tensor | None = None

    def before(self, layer: Layer) -> None:
        if self.open is not None and layer.key != self.open.key:
            self.finish()
        self.open = layer

    def after(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        self.op(op, args, kwargs, out)
        outs = [t for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor)]
        if outs:
            self.last = outs[0]

    def finish(self) -> None:
        """Close the call in progress (also at the end of a run)."""
        layer, last = self.open, self.last
        self.open, self.last = None, None
        if layer is not None:
            self.call(layer, last)

    def op(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """One operator node has run (``out`` its result)."""

    def call(self, layer: Layer, output: torch.Tensor | None) -> None:
        """One call of ``layer`` has finished; ``output`` is the last tensor it produced."""


class GraphProgram(ABC):
    """A program held as a graph of operators, runnable node by node."""

    kind: str

    @abstractmethod
    def run(self, x: torch.Tensor, listener: Listener) -> Any:
        """Run one input through the graph, telling ``listener`` about every operator node."""

    @abstractmethod
    def layer_types(self) -> dict[str, str]:
        """Module path -> class name of every module the graph knows (the top level is ``""``)."""


def graph_of(module: nn.Module) -> GraphProgram | None:
    """The graph view of ``module`` if it is a torch.export program or a TorchScript module, else None
    (a module tree, counted with hooks)."""
    if isinstance(module, torch.jit.ScriptModule):
        return ScriptGraph(module)
    if isinstance(module, torch.fx.GraphModule):
        nodes = list(module.graph.nodes)
        exported = any("nn_module_stack" in n.meta for n in nodes if n.op == "call_function")
        # an fx-traced module calls its real layers (call_module, with parameters): a module tree;
        # an exported one calls at most helpers without parameters (its input guards, _guards_fn)
        calls_layers = any(
            n.op == "call_module" and any(True for _ in module.get_submodule(str(n.target)).parameters())
            for n in nodes
        )
        if exported and not calls_layers:
            return ExportGraph(module)
    return None


def _class_name(cls: Any) -> str:
    return (cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))).rpartition(".")[2]


# ---- torch.export ---------------------------------------------------------------------------------------
class ExportGraph(GraphProgram):
    kind = "export"

    def __init__(self, module: torch.fx.GraphModule) -> None:
        self.module = module
        root = next(
            (s[next(iter(s))] for n in module.graph.nodes if (s := n.meta.get("nn_module_stack"))),
            ("", type(module).__name__),
        )
        self.root = Layer("", _class_name(root[1]), "")

    def layer_of(self, node: torch.fx.Node) -> Layer:
        stack = node.meta.get("nn_module_stack")
        if not stack:
            return self.root
        key, (path, cls) = list(stack.items())[-1]
        return Layer(str(path), _class_name(cls), str(key)) if path else self.root

    def layer_types(self) -> dict[str, str]:
        types = {"": self.root.type}
        for node in self.module.graph.nodes:
            for path, cls in (node.meta.get("nn_module_stack") or {}).values():
                types.setdefault(str(path), _class_name(cls))
        return types

    def run(self, x: torch.Tensor, listener: Listener) -> Any:
        graph = self

        class _Interpreter(torch.fx.Interpreter):
            def run_node(self, n: torch.fx.Node) -> Any:
                if n.op != "call_function":
                    return super().run_node(n)
                with self._set_current_node(n):
                    args, kwargs = self.fetch_args_kwargs_from_env(n)
                    listener.before(graph.layer_of(n))
                    out = self.call_function(n.target, args, kwargs)
                    listener.after(_op_name(n.target), tuple(args), dict(kwargs), out)
                    return out

        return _Interpreter(self.module).run(x)


def _op_name(target: Any) -> str:
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:
        return str(packet.__name__)
    return str(getattr(target, "__name__", target))


# ---- TorchScript ------------------------------------------------------------------------------------------
_HIERARCHY = re.compile(r"([^.()]+)\(([^()]*)\)")


def _range_length(lo: int, hi: int, step: int) -> int:
    return max(0, math.ceil((hi - lo) / step))


#: list / scalar operators of the TorchScript runtime, done in Python (they have no tensors to count)
_PY_OPS: dict[str, Callable[..., Any]] = {
    "aten::__getitem__": lambda seq, i: seq[i],
    "aten::len": len,
    "aten::append": lambda seq, v: (seq.append(v), seq)[1],
    "aten::__is__": lambda a, b: a is b,
    "aten::__isnot__": lambda a, b: a is not b,
    "aten::__not__": lambda a: not a,
    "aten::Int": lambda v: int(v),
    "aten::Float": lambda v: float(v),
    "aten::Bool": lambda v: bool(v),
    "aten::ScalarImplicit": lambda v: v.item(),
    "aten::dim": lambda t: t.dim(),
    "aten::__range_length": _range_length,
    "aten::__derive_index": lambda index, start, step: start + index * step,
    "prim::unchecked_cast": lambda v: v,
    "prim::TupleIndex": lambda t, i: t[i],
    "prim::NumToTensor": lambda v: torch.scalar_tensor(v, dtype=torch.long if isinstance(v, int) else None),
    "prim::device": lambda t: t.device,
    "prim::dtype": lambda t: t.dtype,
    "prim::min": min,
    "prim::max": max,
    "prim::Uninitialized": lambda: None,
    "prim::ListConstruct": lambda *v: list(v),
    "prim::TupleConstruct": lambda *v: tuple(v),
}


class ScriptGraph(GraphProgram):
    """A TorchScript module's inlined graph, interpreted node by node."""

    kind = "torchscript"

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        self.module = module
        self.graph = module.inlined_graph
        self.root = Layer("", str(getattr(module, "original_name", type(module).__name__)), "")
        self._ops: dict[str, tuple[Callable[..., Any], list[str], bool]] = {}
        self._layers: dict[str, Layer] = {}

    def layer_types(self) -> dict[str, str]:
        return {
            name: str(getattr(m, "original_name", type(m).__name__))
            for name, m in self.module.named_modules()
        }

    def layer_of(self, node: torch._C.Node) -> Layer:
        hierarchy = node.getModuleHierarchy()
        if hierarchy not in self._layers:
            self._layers[hierarchy] = self._resolve(hierarchy)
        return self._layers[hierarchy]

    def _resolve(self, hierarchy: str) -> Layer:
        """The module path of a hierarchy such as ``"layer1(Sequential).0(BasicBlock).relu(ReLU)"``.

        TorchScript names a call of a module's own method ``SELF`` (skipped), and names the items of
        a ``ModuleList`` iterated in ``forward`` without the list (``"0(Linear)"`` for
        ``blocks.0``): such a part is found among the current module's descendants by name and type.
        """
        path: list[str] = []
        current: Any = self.module
        for part, type_name in _HIERARCHY.findall(hierarchy):
            if part == "SELF":
                continue
            children = dict(current.named_children())
            if part in children:
                path.append(part)
                current = children[part]
                continue
            found = next(
                (
                    (sub, m)
                    for sub, m in current.named_modules()
                    if sub.rpartition(".")[2] == part and getattr(m, "original_name", None) == type_name
                ),
                None,
            )
            if found is None:
                raise Unsupported(f"cannot find the module of hierarchy '{hierarchy}'")
            path.append(found[0])
            current = found[1]
        if not path:
            return self.root
        name = ".".join(path)
        return Layer(name, str(getattr(current, "original_name", type(current).__name__)), name)

    def run(self, x: torch.Tensor, listener: Listener) -> Any:
        inputs = list(self.graph.inputs())
        if len(inputs) != 2:
            raise Unsupported(f"the TorchScript forward takes {len(inputs) - 1} inputs; one is supported")
        env: dict[Any, Any] = {inputs[0]: self.module, inputs[1]: x}
        outs = self._block(self.graph, env, listener)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _block(self, block: Any, env: dict[Any, Any], listener: Listener) -> list[Any]:
        for node in block.nodes():
            self._node(node, env, listener)
        ret = block.returnNode() if hasattr(block, "returnNode") else None
        values = list(ret.inputs()) if ret is not None else list(block.outputs())
        return [env[v] for v in values]

    def _node(self, node: Any, env: dict[Any, Any], listener: Listener) -> None:
        kind = node.kind()
        args = [env[v] for v in node.inputs()]
        outs = list(node.outputs())
        if kind == "prim::Constant":
            env[outs[0]] = outs[0].toIValue()
        elif kind == "prim::GetAttr":
            env[outs[0]] = getattr(args[0], node.s("name"))
        elif kind in ("prim::ListUnpack", "prim::TupleUnpack"):
            for v, value in zip(outs, args[0], strict=True):
                env[v] = value
        elif kind == "prim::If":
            then, other = list(node.blocks())
            values = self._block(then if args[0] else other, env, listener)
            env.update(zip(outs, values, strict=True))
        elif kind == "prim::Loop":
            self._loop(node, args, env, listener)
        elif kind == "prim::RaiseException":
            raise Unsupported(f"the TorchScript graph raised: {args[0] if args else 'an exception'}")
        elif kind in _PY_OPS:
            result = _PY_OPS[kind](*args)
            if len(outs) == 1:
                env[outs[0]] = result
        elif kind.startswith("aten::"):
            self._aten(node, kind, args, outs, env, listener)
        else:
            raise Unsupported(f"TorchScript node {kind} is not interpreted here")

    def _loop(self, node: Any, args: list[Any], env: dict[Any, Any], listener: Listener) -> None:
        trips, cond, carried = args[0], args[1], list(args[2:])
        (body,) = list(node.blocks())
        params = list(body.inputs())
        i = 0
        while cond and i < trips:
            env.update(zip(params, [i, *carried], strict=True))
            cond, *carried = self._block(body, env, listener)
            i += 1
        env.update(zip(node.outputs(), carried, strict=True))

    def _aten(
        self, node: Any, kind: str, args: list[Any], outs: list[Any], env: dict[Any, Any], listener: Listener
    ) -> None:
        op, names, has_kwargs = self._operator(node, kind)
        kwargs: dict[str, Any] = {}
        if has_kwargs:
            positional = [a for a, n in zip(args, names, strict=True) if not n.startswith("*")]
            kwargs = {n[1:]: a for a, n in zip(args, names, strict=True) if n.startswith("*")}
            args = positional
        listener.before(self.layer_of(node))
        out = op(*args, **kwargs)
        listener.after(kind.partition("::")[2], tuple(args), kwargs, out)
        if len(outs) == 1:
            env[outs[0]] = out
        else:
            env.update(zip(outs, out, strict=True))

    def _operator(self, node: Any, kind: str) -> tuple[Callable[..., Any], list[str], bool]:
        """The callable of an ATen node and its argument names (kwarg-only ones starred)."""
        schema_text = node.schema()
        cache_key = f"{kind}|{schema_text}"
        if cache_key not in self._ops:
            found = torch._C._jit_get_operation(kind)
            op = found[0] if isinstance(found, tuple) else found
            names: list[str] = []
            if schema_text and schema_text != "(no schema)":
                schema = torch._C.parse_schema(schema_text)
                names = [("*" if a.kwarg_only else "") + a.name for a in schema.arguments]
            self._ops[cache_key] = (op, names, any(n.startswith("*") for n in names))
        return self._ops[cache_key]
