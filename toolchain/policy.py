"""Per-layer policy: which synapses a compression pass touches, and at which width.

Defaults follow the papers: every synapse (``nn.Conv2d`` / ``nn.Linear``) is compressed at the pass's
``bits``, except the first and the last, which stay at ``edge_bits`` (8) -- the input layer sees
real-valued or densely coded input and the classifier decides the answer, so both are the most
sensitive to quantization (QP-SNN, Q-SNN, ReSTE and Bi-ViT all keep them wider).

Overrides name a layer (its module name, e.g. ``net.0``) or a layer type (``Conv2d``, ``Linear``); a
name wins over a type. A width of ``0`` (or the word ``skip``) leaves the layer uncompressed::

    --recipe qp-snn:bits=4,layers=net.3:6+Linear:8
    [passes.qp-snn]                      # edgec.toml
    bits = 4
    layers = { "net.3" = 6, Linear = 8 }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from edgec.errors import UsageError


def parse_layers(value: Any) -> dict[str, int]:
    """``"net.3:6+Linear:8"`` or ``{"net.3": 6, "Linear": 8}`` -> ``{"net.3": 6, "Linear": 8}``."""
    if value is None or value == "":
        return {}
    items: list[tuple[str, Any]]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, str):
        items = []
        for part in value.split("+"):
            name, sep, bits = part.rpartition(":")
            if not sep or not name:
                raise UsageError(
                    f"bad layer override '{part}'",
                    hint="write NAME:BITS joined by '+', e.g. net.3:6+Linear:8",
                )
            items.append((name, bits))
    else:
        raise UsageError(f"bad layers option {value!r}", hint="e.g. layers=net.3:6+Linear:8")
    out: dict[str, int] = {}
    for name, bits in items:
        text = str(bits).strip().lower()
        if text == "skip":
            out[str(name)] = 0
            continue
        try:
            out[str(name)] = int(text)
        except ValueError:
            raise UsageError(
                f"bad width '{bits}' for layer '{name}'", hint="a number of bits, or skip"
            ) from None
    return out


@dataclass(frozen=True)
class LayerPolicy:
    bits: int
    edge_bits: int | None = 8  # first and last synapse; None: treated like the rest
    overrides: dict[str, int] = field(default_factory=dict)

    def plan(self, synapses: list[tuple[str, nn.Module]]) -> dict[str, int]:
        """Width for each synapse (execution order); layers left out are not compressed."""
        if self.overrides:
            known = {n for n, _ in synapses} | {type(_inner(m)).__name__ for _, m in synapses}
            unknown = sorted(set(self.overrides) - known)
            if unknown:
                raise UsageError(
                    f"layer override(s) {', '.join(unknown)} match no synapse of the model",
                    hint=f"synapses: {', '.join(n for n, _ in synapses)}",
                )
        out: dict[str, int] = {}
        for i, (name, m) in enumerate(synapses):
            bits = self.bits
            if self.edge_bits is not None and i in (0, len(synapses) - 1):
                bits = self.edge_bits
            type_name = type(_inner(m)).__name__
            if type_name in self.overrides:
                bits = self.overrides[type_name]
            if name in self.overrides:
                bits = self.overrides[name]
            if bits:
                out[name] = bits
        return out


def _inner(m: nn.Module) -> Any:
    from edgec.snn import TimeDistributed

    return m.module if isinstance(m, TimeDistributed) else m


def synapses_in_order(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``nn.Conv2d`` / ``nn.Linear`` (named by the module that holds its weight), in execution
    order when torch.fx can trace the model, else in registration order."""
    from edgec.surgery import _Tracer

    weighted = {
        name: m for name, m in module.named_modules() if isinstance(m, nn.Conv2d | nn.Linear) and name
    }
    try:
        graph = _Tracer().trace(module)
    except Exception:  # untraceable control flow: registration order is the best we know
        return list(weighted.items())
    order: list[str] = []
    mods = dict(module.named_modules())
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        target = str(node.target)
        inner = _inner(mods[target])
        name = f"{target}.module" if inner is not mods[target] else target
        if name in weighted and name not in order:
            order.append(name)
    order += [n for n in weighted if n not in order]
    return [(n, weighted[n]) for n in order]
