"""Structured pruning surgery: remove output channels of a synapse, and the inputs that read them.

A *channel group* is a synapse (``nn.Conv2d`` / ``nn.Linear``, also inside ``TimeDistributed``) whose
output reaches exactly one consumer synapse through channel-wise layers only (spiking neurons,
BatchNorm, activations, dropout, pooling, one flatten). Removing output channel ``c`` then removes
the producer's row ``c`` (weight and bias), channel ``c`` of every layer in between (a neuron's
per-channel bias, BatchNorm statistics) and the consumer's input channel ``c`` (for a ``Linear``
after a flatten, the block of features that channel occupied). The network computes exactly what it
computed before with those channels' outputs set to zero -- and is physically smaller.

Synapses whose output is added to or concatenated with another branch, read by two layers, or that
are grouped convolutions are not prunable here (the reason is reported).

The graph is read with ``torch.fx`` (spiking neurons and ``TimeDistributed`` kept as leaves, as the
Loihi target reads it); the change is applied to the eager modules in place.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from edgec.layers import ACTIVATIONS, POOLS
from edgec.snn import TimeDistributed, is_spiking_neuron

_CHANNELWISE = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    *ACTIVATIONS,
    *POOLS,
)
_ELEMENTWISE_FN = {torch.relu, nn.functional.relu, torch.sigmoid, torch.tanh, nn.functional.gelu}


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if is_spiking_neuron(m) or isinstance(m, TimeDistributed):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _inner(m: nn.Module) -> Any:  # the wrapped layer (typed loosely: its attributes are read)
    return m.module if isinstance(m, TimeDistributed) else m


def _is_synapse(m: nn.Module) -> bool:
    return isinstance(_inner(m), nn.Conv2d | nn.Linear)


@dataclass
class ChannelGroup:
    """A prunable synapse and what reads its output channels."""

    producer: str
    consumer: str
    channels: int
    between: list[str] = field(default_factory=list)  # channel-wise modules between them
    features_per_channel: int = 1  # > 1: the consumer is a Linear after a flatten
    activity: str | None = None  # the module whose output is the channels' (spike) activity

    def to_dict(self) -> dict[str, Any]:
        return {
            "producer": self.producer,
            "consumer": self.consumer,
            "channels": self.channels,
            "between": list(self.between),
            "features_per_channel": self.features_per_channel,
        }


def trace(module: nn.Module, example: torch.Tensor) -> tuple[fx.GraphModule, dict[str, nn.Module]]:
    """A read-only fx view of ``module`` with tensor shapes of one run on ``example``."""
    graph = _Tracer().trace(module)
    gm = fx.GraphModule(module, graph)
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    return gm, dict(module.named_modules())


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def channel_groups(module: nn.Module, example: torch.Tensor) -> tuple[list[ChannelGroup], dict[str, str]]:
    """Prunable groups of ``module`` (``example``: one input batch as the module receives it), and
    for every other synapse the reason it is not prunable."""
    gm, mods = trace(module, example)
    groups: list[ChannelGroup] = []
    skipped: dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not _is_synapse(mods[node.target]):
            continue
        name = str(node.target)
        inner = _inner(mods[name])
        if isinstance(inner, nn.Conv2d) and inner.groups != 1:
            skipped[name] = "grouped convolution"
            continue
        out_shape = _shape(node)
        channels = inner.out_channels if isinstance(inner, nn.Conv2d) else inner.out_features
        # channel dim of the tensor: the last for Linear, [.., C, H, W] (C third from the end) for Conv2d
        between: list[str] = []
        activity: str | None = None
        cur = node
        flat_features = 1
        reason = None
        while True:
            users = list(cur.users)
            if len(users) != 1:
                reason = "its output is read by several layers" if users else "its output is the model output"
                break
            nxt = users[0]
            if nxt.op == "call_module":
                m = mods[str(nxt.target)]
                if _is_synapse(m):
                    cons = _inner(m)
                    if isinstance(cons, nn.Conv2d) and (cons.groups != 1 or flat_features != 1):
                        reason = "its consumer is a grouped convolution"
                        break
                    groups.append(
                        ChannelGroup(name, str(nxt.target), channels, between, flat_features, activity)
                    )
                    break
                if is_spiking_neuron(m) or isinstance(_inner(m), _CHANNELWISE):
                    between.append(str(nxt.target))
                    if is_spiking_neuron(m):
                        activity = str(nxt.target)
                    cur = nxt
                    continue
                if isinstance(m, nn.Flatten) and flat_features == 1 and isinstance(inner, nn.Conv2d):
                    in_shape, out = _shape(cur), _shape(nxt)
                    if in_shape is None or out is None or m.start_dim % len(in_shape) != len(in_shape) - 3:
                        reason = "a flatten that does not start at the channel dimension"
                        break
                    flat_features = in_shape[-1] * in_shape[-2]
                    cur = nxt
                    continue
                reason = f"its output goes through {type(m).__name__}"
                break
            if nxt.op == "call_function" and nxt.target in _ELEMENTWISE_FN:
                cur = nxt
                continue
            if nxt.op == "call_function" and nxt.target in (operator.add, torch.add, torch.cat):
                reason = "its output joins another branch (residual add / concat)"
                break
            reason = f"its output goes through {nxt.target}"
            break
        if reason is not None:
            skipped[name] = reason
        del out_shape
    return groups, skipped


def _set_param(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
    if value is None:
        return
    setattr(module, name, nn.Parameter(value.clone(), requires_grad=True))


def _slice_out(m: nn.Module, keep: torch.Tensor) -> None:
    inner = _inner(m)
    with torch.no_grad():
        _set_param(inner, "weight", inner.weight[keep])
        if getattr(inner, "bias", None) is not None:
            _set_param(inner, "bias", inner.bias[keep])
    if isinstance(inner, nn.Conv2d):
        inner.out_channels = len(keep)
    else:
        inner.out_features = len(keep)


def _slice_in(m: nn.Module, keep: torch.Tensor, per_channel: int) -> None:
    inner = _inner(m)
    if per_channel > 1:
        idx = (keep.reshape(-1, 1) * per_channel + torch.arange(per_channel).reshape(1, -1)).reshape(-1)
    else:
        idx = keep
    with torch.no_grad():
        _set_param(inner, "weight", inner.weight[:, idx])
    if isinstance(inner, nn.Conv2d):
        inner.in_channels = len(keep)
    else:
        inner.in_features = len(idx)


def _slice_between(m: nn.Module, keep: torch.Tensor) -> None:
    inner: Any = _inner(m)
    with torch.no_grad():
        if is_spiking_neuron(inner):
            if getattr(inner, "bias", None) is not None and inner.bias.numel() > 1:
                _set_param(inner, "bias", inner.bias[keep])
            if getattr(inner, "features", None) is not None:
                inner.features = len(keep)
        elif isinstance(inner, nn.BatchNorm1d | nn.BatchNorm2d):
            if inner.affine:
                _set_param(inner, "weight", inner.weight[keep])
                _set_param(inner, "bias", inner.bias[keep])
            if inner.running_mean is not None and inner.running_var is not None:
                inner.running_mean = inner.running_mean[keep].clone()
                inner.running_var = inner.running_var[keep].clone()
            inner.num_features = len(keep)


def prune_group(module: nn.Module, group: ChannelGroup, keep: list[int]) -> None:
    """Keep only output channels ``keep`` (sorted, unique, non-empty) of ``group``, in place."""
    if not keep or sorted(set(keep)) != list(keep) or keep[0] < 0 or keep[-1] >= group.channels:
        raise ValueError(f"bad channel list for {group.producer}: {keep[:8]}...")
    idx = torch.tensor(keep, dtype=torch.long)
    _slice_out(module.get_submodule(group.producer), idx)
    for name in group.between:
        _slice_between(module.get_submodule(name), idx)
    _slice_in(module.get_submodule(group.consumer), idx, group.features_per_channel)
    group.channels = len(keep)
