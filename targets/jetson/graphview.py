"""A read-only view of an ONNX graph (producers, consumers, constants) for the Jetson rules.

Shared by :mod:`edgec.targets.jetson.rules` (TensorRT's rules) and :mod:`edgec.targets.jetson.dla`
(the Orin DLA's). Written here because onnx offers no producer/consumer index, and onnx-graphsurgeon
(which has one) is not a dependency of edgec.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx


def op_names(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: resolved at build time, never run on an engine (same source: "can be inferred at build time")
BUILD_TIME_OPS = frozenset({"Constant", "Shape", "ConstantOfShape", "Identity"})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclass
class GraphView:
    """Producers, consumers and constant values of one ONNX graph."""

    model: onnx.ModelProto
    producer: dict[str, Any] = field(default_factory=dict)
    consumers: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    const_types: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from onnx import numpy_helper

        g = self.model.graph
        for init in g.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
            self.const_types[init.name] = init.data_type
        for node in g.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                t = node.attribute[0].t
                self.consts[node.output[0]] = numpy_helper.to_array(t)
                self.const_types[node.output[0]] = t.data_type

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def is_constant(self, name: str) -> bool:
        """A tensor computed from constants only through Q/DQ, Identity, Cast or Reshape (a weight)."""
        if name in self.consts:
            return True
        node = self.producer.get(name)
        if node is None:
            return False
        if node.op_type in ("Identity", "Cast", "QuantizeLinear", "DequantizeLinear", "Reshape", "Transpose"):
            return all(self.is_constant(i) for i in node.input if i)
        return False

    def dtype(self, name: str) -> int | None:
        """Element type of a constant, or of a graph input / value_info entry."""
        if name in self.const_types:
            return self.const_types[name]
        g = self.model.graph
        for vi in [*g.input, *g.value_info, *g.output]:
            if vi.name == name:
                return int(vi.type.tensor_type.elem_type)
        return None


def node_name(node: Any) -> str:
    return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"


def node_attr(node: Any, key: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == key:
            return helper.get_attribute_value(a)
    return default


def weight_value(g: GraphView, name: str) -> np.ndarray | None:
    """The constant a weight Q/DQ node works on (through a Q feeding the DQ)."""
    if name in g.consts:
        return g.consts[name]
    node = g.producer.get(name)
    if node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear", "Identity", "Cast"):
        return weight_value(g, node.input[0])
    return None
