"""Analytic counting rules of standard modules: MACs and other operations from shapes and configuration.

A module with a rule here is counted from its input and output *shapes* (and its own weights'),
never from the kernels it happens to run, so fused inference paths cannot hide work; the
operations inside it are not counted again. Rules are looked up by class (module trees) or by
class name (``torch.export`` graphs and TorchScript, whose layers are known by name only).

Recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and their cells) multiply each of their weight
matrices with one vector per timestep, batch element, layer and direction, so their MACs are exactly
``positions * sum(numel(W))`` over the weight matrices ``weight_ih_l*``, ``weight_hh_l*`` (and the
LSTM projection ``weight_hr_l*``), with ``positions = T * B`` (the rows of a packed sequence).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from edgec.layers import ACTIVATIONS, POOLS_ADAPTIVE, POOLS_KERNEL, SOFTMAX

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
NORM5 = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.RMSNorm)
NOOP = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
EMBED = (nn.Embedding,)
RECURRENT = (nn.RNNBase, nn.RNNCellBase)  # LSTM, GRU, RNN and their cells
ANALYTIC: tuple[type[nn.Module], ...] = (
    *CONV,
    *CONVT,
    nn.Linear,
    nn.MultiheadAttention,
    *RECURRENT,
    *BATCHNORM,
    *NORM5,
    *ACTIVATIONS,
    *SOFTMAX,
    *POOLS_KERNEL,
    *POOLS_ADAPTIVE,
    *NOOP,
    *EMBED,
)


def _names(classes: Iterable[type]) -> frozenset[str]:
    return frozenset(c.__name__ for c in classes)


#: the same classes by name, for layers known only by their class name (export graphs, TorchScript);
#: torch's own subclasses are included (MultiheadAttention's NonDynamicallyQuantizableLinear)
ANALYTIC_NAMES = (
    _names(ANALYTIC)
    | {"NonDynamicallyQuantizableLinear", "LSTM", "GRU", "RNN"}
    | _names((nn.LSTMCell, nn.GRUCell, nn.RNNCell))
)
NOOP_NAMES = _names(NOOP)
ACTIVATION_NAMES = _names(ACTIVATIONS)
RECURRENT_NAMES = frozenset({"LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"})
CONV_NAMES = _names((*CONV, *CONVT))
LINEAR_NAMES = frozenset({"Linear", "NonDynamicallyQuantizableLinear", "LazyLinear"})
#: layers whose weights multiply their input (stored at the weight width; the rest at the other width)
WEIGHTED_CLASSES = (*CONV, *CONVT, nn.Linear, *RECURRENT, nn.MultiheadAttention, nn.Embedding)
WEIGHTED_NAMES = CONV_NAMES | LINEAR_NAMES | RECURRENT_NAMES | {"MultiheadAttention", "Embedding"}


def is_synapse(m: nn.Module) -> bool:
    """Layers whose weights multiply their input: the synapses of an SNN."""
    return isinstance(m, (nn.Linear, *CONV, *CONVT))


def is_weight(param_name: str) -> bool:
    """A weight tensor of a weighted layer (stored at the weight width) rather than a bias: ``weight``,
    ``weight_ih_l0`` / ``weight_hh_l0`` / ``weight_hr_l0`` (recurrent), ``in_proj_weight`` (attention)."""
    leaf = param_name.rpartition(".")[2]
    return leaf == "weight" or leaf.startswith("weight_") or leaf.endswith("_proj_weight")


def role_of(type_name: str, *, neuron: bool = False) -> str:
    """The row's role in the report, from the layer's class name."""
    if neuron:
        return "neuron"
    if type_name == "MultiheadAttention":
        return "attention"
    if type_name in RECURRENT_NAMES:
        return "recurrent"
    if type_name in LINEAR_NAMES:
        return "linear"
    if type_name in CONV_NAMES:
        return "conv"
    return "op"


def tensors(obj: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(obj)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any], *names: str) -> torch.Tensor | None:
    for n in names:
        v = kwargs.get(n)
        if isinstance(v, torch.Tensor):
            return v
    ts = tensors(args)
    return ts[0] if ts else None


@dataclass
class Item:
    """Counts of one call (or one functional op)."""

    macs: int = 0
    macs_detail: dict[str, int] = field(default_factory=dict)
    other: dict[str, int] = field(default_factory=dict)

    def add_other(self, key: str, n: int) -> None:
        if n:
            self.other[key] = self.other.get(key, 0) + int(n)


def prod(xs: Any) -> int:
    return int(math.prod(int(x) for x in xs))


def mha_item(m: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Item:
    """Analytic counts of ``nn.MultiheadAttention`` (both its slow and its fused fast path).

    With ``B`` batch, ``L`` target and ``S`` source length, ``E`` embed dim, ``H`` heads:
    projections ``B*L*E*E`` (q) + ``B*S*kdim*E`` (k) + ``B*S*vdim*E`` (v) + ``B*L*E*E`` (out);
    ``q k^T``: ``sum over heads of B*L*S*(E/H) = B*L*S*E``; ``attn v``: the same.
    """
    e = m.embed_dim
    b = (q.shape[0] if m.batch_first else q.shape[1]) if q.dim() == 3 else 1
    bl = q.numel() // e  # B * L
    bs = k.numel() // m.kdim  # B * S (key and value share S)
    s_extra = (1 if m.bias_k is not None else 0) + (1 if m.add_zero_attn else 0)
    bs_att = bs + b * s_extra
    item = Item()
    proj = bl * e * e + bs * m.kdim * e + (v.numel() // m.vdim) * m.vdim * e + bl * e * e
    qk = bl * (bs_att // b) * e
    item.macs = proj + 2 * qk
    item.macs_detail = {"projections": proj, "attention_qk": qk, "attention_av": qk}
    if m.in_proj_bias is not None:
        item.add_other("bias", bl * e + 2 * bs * e)
    if m.out_proj.bias is not None:
        item.add_other("bias", bl * e)
    item.add_other("softmax", 3 * m.num_heads * bl * (bs_att // b))
    return item


#: gates per hidden unit of each recurrent kind
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
#: per hidden unit and step: (activations, element-wise ops) after the gate pre-activations
#: LSTM: sigmoid i, f, o + tanh g + tanh c; gate sums W_i x + W_h h (4), c = f*c + i*g (3), h = o*tanh(c) (1)
#: GRU: sigmoid r, z + tanh n; gate sums (2), n-gate r*(W_hn h) and + W_in x (2), h = (1-z)*n + z*h (4)
#: RNN: tanh / relu; the sum W_i x + W_h h (1)
_PER_UNIT = {"LSTM": (5, 8), "GRU": (3, 8), "RNN": (1, 1)}


def recurrent_item(
    kind: str, groups: Sequence[Sequence[torch.Tensor]], biases: Sequence[torch.Tensor], positions: int
) -> Item:
    """Counts of a recurrent layer from its weights: ``positions * sum(numel(W))`` MACs.

    ``kind`` is ``LSTM``, ``GRU`` or ``RNN`` (cells too); ``groups`` the weight matrices of each
    layer and direction, ``[weight_ih, weight_hh(, weight_hr)]``; ``positions`` the (timestep, batch
    element) pairs processed. Bias adds, activations and element-wise updates are separate line
    items (per hidden unit and step: ``_PER_UNIT``), on the hidden size ``rows(weight_hh) / gates``.
    """
    item = Item()
    item.macs = positions * sum(int(w.numel()) for g in groups for w in g)
    item.macs_detail = {"recurrent": item.macs}
    item.add_other("bias", positions * sum(int(b.numel()) for b in biases))
    acts, elementwise = _PER_UNIT[kind]
    hidden = sum(int(g[1].shape[0]) // _GATES[kind] for g in groups)
    item.add_other("activation", positions * acts * hidden)
    item.add_other("elementwise", positions * elementwise * hidden)
    return item


def recurrent_kind(type_name: str, mode: str = "") -> str | None:
    """``LSTM`` / ``GRU`` / ``RNN`` of a recurrent layer's class name (or an RNNBase ``mode``)."""
    kind = type_name.removesuffix("Cell")
    if kind in _GATES:
        return kind
    return {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode)


def _recurrent_module_item(m: nn.Module, x: torch.Tensor | None, packed: Any) -> Item | None:
    kind = recurrent_kind(type(m).__name__, getattr(m, "mode", ""))
    if kind is None:
        return None
    if packed is not None:
        positions = int(packed.data.shape[0])  # the sum of the batch sizes: one row per (t, b)
    elif x is not None:
        positions = x.numel() // int(x.shape[-1])
    else:
        return None
    params: dict[str, torch.Tensor] = dict(m.named_parameters())
    if isinstance(m, nn.RNNCellBase):
        groups = [[params["weight_ih"], params["weight_hh"]]]
        biases = [p for n, p in params.items() if n.startswith("bias")]
    else:  # _all_weights: per layer and direction [weight_ih, weight_hh, bias_ih, bias_hh(, weight_hr)]
        all_weights: list[list[str]] = list(getattr(m, "_all_weights", []))
        groups = [[params[n] for n in names if n.startswith("weight_")] for names in all_weights]
        biases = [params[n] for names in all_weights for n in names if n.startswith("bias_")]
    return recurrent_item(kind, groups, biases, positions)


def module_item(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Item | None:
    """Analytic counts of one call of ``m``, or None if ``m`` has no rule (its ops get traced)."""
    x = first_tensor(args, kwargs, "input")
    outs = tensors(out)
    y = outs[0] if outs else None
    item = Item()
    if isinstance(m, CONV) and y is not None:
        item.macs = y.numel() * (m.in_channels // m.groups) * prod(m.kernel_size)
        if m.bias is not None:
            item.add_other("bias", y.numel())
    elif isinstance(m, CONVT) and x is not None and y is not None:
        item.macs = x.numel() * (m.out_channels // m.groups) * prod(m.kernel_size)
        if m.bias is not None:
            item.add_other("bias", y.numel())
    elif isinstance(m, nn.Linear) and x is not None and y is not None:
        item.macs = (x.numel() // m.in_features) * m.in_features * m.out_features
        if m.bias is not None:
            item.add_other("bias", y.numel())
    elif isinstance(m, nn.MultiheadAttention):
        q = first_tensor(args, kwargs, "query")
        ts = tensors(args)
        k = kwargs.get("key", ts[1] if len(ts) > 1 else q)
        v = kwargs.get("value", ts[2] if len(ts) > 2 else k)
        if q is None or not isinstance(k, torch.Tensor) or not isinstance(v, torch.Tensor):
            return None
        item = mha_item(m, q, k, v)
    elif isinstance(m, RECURRENT):
        packed = args[0] if args and isinstance(args[0], nn.utils.rnn.PackedSequence) else None
        return _recurrent_module_item(m, x, packed)
    elif isinstance(m, BATCHNORM) and y is not None:
        item.add_other("norm", 2 * y.numel())
    elif isinstance(m, NORM5) and y is not None:
        item.add_other("norm", 5 * y.numel())
    elif isinstance(m, ACTIVATIONS) and y is not None:
        item.add_other("activation", y.numel())
    elif isinstance(m, SOFTMAX) and y is not None:
        item.add_other("softmax", 3 * y.numel())
    elif isinstance(m, POOLS_KERNEL) and y is not None:
        k = m.kernel_size
        ks = k if isinstance(k, tuple) else (k,) * (y.dim() - 2 if y.dim() > 2 else 1)
        item.add_other("pool", y.numel() * prod(ks))
    elif isinstance(m, POOLS_ADAPTIVE) and x is not None:
        item.add_other("pool", x.numel())
    elif isinstance(m, (*NOOP, *EMBED)):
        pass
    else:
        return None
    return item
