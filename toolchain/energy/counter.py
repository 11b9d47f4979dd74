"""Dense counts by tracing one inference: analytic MACs per module, functional matmuls, liveness.

One forward pass (batch 1) runs under two instruments at once:

* forward hooks on every module keep a stack of the modules being executed. Modules with an
  analytic rule (conv, linear, multi-head attention, norms, activations, pooling, spiking
  neurons) are counted from their input and output *shapes*; the operations inside them are not
  counted again. This is why fused inference paths cannot hide work: ``nn.MultiheadAttention``
  under ``torch.inference_mode`` runs one ``_native_multi_head_attention`` kernel, and its hook
  still sees ``query``, ``key`` and ``value``.
* a ``TorchDispatchMode`` sees every ATen operation. Those executed outside any analytic module
  (a functional ``q @ k.transpose(-2, -1)``, ``F.conv2d``, ``F.scaled_dot_product_attention``, a
  residual ``+``) are counted by operator, and attributed to the innermost module running them.
  The same trace gives each tensor's lifetime, from which the peak of live activation memory is
  computed (see :func:`peak_live`).

``nn.TransformerEncoderLayer`` has a fused inference path that bypasses its children's
``forward``; when none of its children ran, its children are counted analytically from the
layer's input shape.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from edgec.energy.counts import LayerCounts
from edgec.layers import ACTIVATIONS, POOLS_ADAPTIVE, POOLS_KERNEL, SOFTMAX

log = logging.getLogger(__name__)

# ---- analytic module rules -----------------------------------------------------------------------
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_NORM5 = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.RMSNorm)
_ACT = ACTIVATIONS
_SOFTMAX = SOFTMAX
_POOL_K = POOLS_KERNEL
_POOL_ADAPTIVE = POOLS_ADAPTIVE
_NOOP = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_EMBED = (nn.Embedding,)


def is_synapse(m: nn.Module) -> bool:
    """Layers whose weights multiply their input: the synapses of an SNN."""
    return isinstance(m, (nn.Linear, *_CONV, *_CONVT))


def _tensors(obj: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(obj)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any], *names: str) -> torch.Tensor | None:
    for n in names:
        v = kwargs.get(n)
        if isinstance(v, torch.Tensor):
            return v
    ts = _tensors(args)
    return ts[0] if ts else None


@dataclass
class _Item:
    """Counts of one call (or one functional op)."""

    macs: int = 0
    macs_detail: dict[str, int] = field(default_factory=dict)
    other: dict[str, int] = field(default_factory=dict)

    def add_other(self, key: str, n: int) -> None:
        if n:
            self.other[key] = self.other.get(key, 0) + int(n)


def _prod(xs: Any) -> int:
    return int(math.prod(int(x) for x in xs))


def _mha_item(m: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> _Item:
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
    item = _Item()
    proj = bl * e * e + bs * m.kdim * e + (v.numel() // m.vdim) * m.vdim * e + bl * e * e
    qk = bl * (bs_att // b) * e
    av = qk
    item.macs = proj + qk + av
    item.macs_detail = {"projections": proj, "attention_qk": qk, "attention_av": av}
    if m.in_proj_bias is not None:
        item.add_other("bias", bl * e + 2 * bs * e)
    if m.out_proj.bias is not None:
        item.add_other("bias", bl * e)
    item.add_other("softmax", 3 * m.num_heads * bl * (bs_att // b))
    return item


def _module_item(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> _Item | None:
    """Analytic counts of one call of ``m``, or None if ``m`` has no rule (its ops get traced)."""
    x = _first_tensor(args, kwargs, "input")
    outs = _tensors(out)
    y = outs[0] if outs else None
    item = _Item()
    if isinstance(m, _CONV) and y is not None:
        item.macs = y.numel() * (m.in_channels // m.groups) * _prod(m.kernel_size)
        if m.bias is not None:
            item.add_other("bias", y.numel())
    elif isinstance(m, _CONVT) and x is not None and y is not None:
        item.macs = x.numel() * (m.out_channels // m.groups) * _prod(m.kernel_size)
        if m.bias is not None:
            item.add_other("bias", y.numel())
    elif isinstance(m, nn.Linear) and x is not None and y is not None:
        item.macs = (x.numel() // m.in_features) * m.in_features * m.out_features
        if m.bias is not None:
            item.add_other("bias", y.numel())
    elif isinstance(m, nn.MultiheadAttention):
        q = _first_tensor(args, kwargs, "query")
        ts = _tensors(args)
        k = kwargs.get("key", ts[1] if len(ts) > 1 else q)
        v = kwargs.get("value", ts[2] if len(ts) > 2 else k)
        if q is None or not isinstance(k, torch.Tensor) or not isinstance(v, torch.Tensor):
            return None
        item = _mha_item(m, q, k, v)
    elif isinstance(m, _BN) and y is not None:
        item.add_other("norm", 2 * y.numel())
    elif isinstance(m, _NORM5) and y is not None:
        item.add_other("norm", 5 * y.numel())
    elif isinstance(m, _ACT) and y is not None:
        item.add_other("activation", y.numel())
    elif isinstance(m, _SOFTMAX) and y is not None:
        item.add_other("softmax", 3 * y.numel())
    elif isinstance(m, _POOL_K) and y is not None:
        k = m.kernel_size
        ks = k if isinstance(k, tuple) else (k,) * (y.dim() - 2 if y.dim() > 2 else 1)
        item.add_other("pool", y.numel() * _prod(ks))
    elif isinstance(m, _POOL_ADAPTIVE) and x is not None:
        item.add_other("pool", x.numel())
    elif isinstance(m, (*_NOOP, *_EMBED)):
        pass
    else:
        return None
    return item


# ---- functional (ATen) rules ------------------------------------------------------------------------
# Under torch.inference_mode (and in TorchScript) composite ops such as ``linear``, ``matmul`` or
# ``conv2d`` reach the dispatch mode undecomposed; with autograd on they arrive as ``addmm``,
# ``bmm``, ``convolution``. Both levels are handled; the mode never sees both for one call.
_CONV_OPS = {"convolution", "_convolution", "conv1d", "conv2d", "conv3d"}
_CONVT_OPS = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_SDPA_OPS = {
    "scaled_dot_product_attention",
    "_scaled_dot_product_attention_math",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
}
_ELEMENTWISE_OPS = {
    "add",
    "sub",
    "mul",
    "div",
    "rsub",
    "addcmul",
    "addcdiv",
    "where",
    "maximum",
    "minimum",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "pow",
    "neg",
    "abs",
    "reciprocal",
}
_ACT_OPS = {
    "relu",
    "relu6",
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "hardswish",
    "hardsigmoid",
    "hardtanh",
    "leaky_relu",
    "elu",
    "selu",
    "mish",
    "softplus",
    "clamp",
    "clamp_min",
    "clamp_max",
    "threshold",
    "prelu",
    "_prelu_kernel",
}
_SOFTMAX_OPS = {"_softmax", "softmax", "_log_softmax", "log_softmax", "_safe_softmax"}
_NORM5_OPS = {
    "layer_norm",
    "native_layer_norm",
    "group_norm",
    "native_group_norm",
    "instance_norm",
    "rms_norm",
    "_fused_rms_norm",
}
_BN_OPS = {
    "batch_norm",
    "_batch_norm_impl_index",
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
}
_POOL_K_OPS = {
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool2d_with_indices",
    "max_pool3d_with_indices",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
}
_POOL_IN_OPS = {
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "_adaptive_avg_pool2d",
    "_adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "mean",
}


def _einsum_macs(equation: str, operands: list[torch.Tensor]) -> int:
    """MACs of an einsum contracted left to right, pairwise: product of the sizes of every index
    of each pair (the indices kept afterwards are those used by later operands or the output)."""
    lhs, _, out_spec = equation.replace(" ", "").partition("->")
    specs = lhs.split(",")
    if len(specs) != len(operands) or "." in equation or len(operands) < 2:
        return 0
    sizes: dict[str, int] = {}
    for spec, op in zip(specs, operands, strict=True):
        for letter, n in zip(spec, op.shape, strict=False):
            sizes[letter] = max(sizes.get(letter, 1), int(n))
    if not out_spec and "->" not in equation:
        out_spec = "".join(sorted(c for c in set(lhs) - {","} if lhs.count(c) == 1))
    macs, cur = 0, specs[0]
    for i, spec in enumerate(specs[1:], start=1):
        later = set(out_spec).union(*specs[i + 1 :]) if i + 1 < len(specs) else set(out_spec)
        letters = set(cur) | set(spec)
        macs += _prod(sizes[c] for c in letters)
        cur = "".join(c for c in letters if c in later)
    return macs


def _aten_item(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> tuple[str, _Item] | None:
    """Counts of one ATen op executed outside any analytic module: (category, counts) or None."""
    outs = _tensors(out)
    y = outs[0] if outs else None
    item = _Item()
    if name in ("mm", "addmm", "_addmm_activation", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot"):
        first = 1 if name.startswith("add") or name == "baddbmm" else 0
        a = args[first]
        if y is not None:
            k = a.shape[-1] if a.dim() else 1
            reduced = y.numel() * (a.shape[0] if name == "addbmm" else 1)
            item.macs = int(reduced * k)
            if first and name != "addbmm":
                item.add_other("bias", y.numel())
        return "matmul", item
    if name in ("matmul", "linear") and y is not None:
        a, b = args[0], args[1]
        k = a.shape[-1] if a.dim() else 1
        item.macs = int(y.numel() * k)
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        if name == "linear" and isinstance(bias, torch.Tensor):
            item.add_other("bias", y.numel())
        del b
        return "matmul", item
    if name == "einsum":
        ops = args[1] if len(args) > 1 else kwargs.get("tensors", [])
        item.macs = _einsum_macs(str(args[0]), list(ops))
        return "matmul", item
    if (name in _CONV_OPS or name in _CONVT_OPS) and y is not None:
        x, w = args[0], args[1]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        transposed = name in _CONVT_OPS or (name in ("convolution", "_convolution") and bool(args[6]))
        item.macs = (x.numel() if transposed else y.numel()) * _prod(w.shape[1:])
        if isinstance(bias, torch.Tensor):
            item.add_other("bias", y.numel())
        return "conv", item
    if name in _SDPA_OPS:
        q, k, v = args[0], args[1], args[2]
        s, ek, ev = k.shape[-2], q.shape[-1], v.shape[-1]
        rows = q.numel() // ek  # B * H * L
        item.macs = rows * s * ek + rows * s * ev
        item.macs_detail = {"attention_qk": rows * s * ek, "attention_av": rows * s * ev}
        item.add_other("softmax", 3 * rows * s)
        return "attention", item
    if y is None:
        return None
    base = name.rstrip("_")
    if base in _ELEMENTWISE_OPS:
        item.add_other("elementwise", y.numel())
        return "elementwise", item
    if base in _ACT_OPS:
        item.add_other("activation", y.numel())
        return "activation", item
    if base in _SOFTMAX_OPS:
        item.add_other("softmax", 3 * y.numel())
        return "softmax", item
    if base in _NORM5_OPS:
        item.add_other("norm", 5 * y.numel())
        return "norm", item
    if base in _BN_OPS:
        item.add_other("norm", 2 * y.numel())
        return "norm", item
    if base in _POOL_K_OPS:
        k = args[1] if len(args) > 1 else kwargs.get("kernel_size", [1])
        item.add_other("pool", y.numel() * _prod(k if isinstance(k, (list, tuple)) else [k]))
        return "pool", item
    if base in _POOL_IN_OPS:
        item.add_other("pool", args[0].numel())
        return "pool", item
    return None


# ---- the trace ----------------------------------------------------------------------------------------
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

    def add(self, item: _Item) -> None:
        self.calls += 1
        self.macs += item.macs
        for k, v in item.macs_detail.items():
            self.macs_detail[k] = self.macs_detail.get(k, 0) + v
        for k, v in item.other.items():
            self.other[k] = self.other.get(k, 0) + v


@dataclass
class Trace:
    """What one traced inference produced."""

    rows: list[_Row]
    peak_elements: int
    peak_bytes: float
    peak_at: str
    analytic_modules: set[str]

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
        self.stack: list[tuple[str, nn.Module, bool]] = []  # (name, module, analytic)
        self.suppress = 0
        self.rows: dict[tuple[str, str], _Row] = {}
        self.param_keys = param_keys
        # liveness: storage key -> [first step, last step, elements, bytes]
        self.life: dict[int, list[float]] = {}
        self.keep: list[torch.Tensor] = []  # keeps storages alive so their addresses stay unique
        self.step = 0
        self.step_owner: list[str] = []
        self.analytic_calls = 0

    def row(self, name: str, type_: str, role: str) -> _Row:
        key = (name, type_)
        if key not in self.rows:
            self.rows[key] = _Row(name, type_, role, order=len(self.rows))
        return self.rows[key]

    def current(self) -> str:
        return self.stack[-1][0] if self.stack else ""

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
        for t in _tensors((args, kwargs)):
            self.touch(t, produced=False)
        for t in _tensors(out):
            self.touch(t, produced=True)
        self.step_owner.append(self.current())
        self.step += 1
        if self.suppress == 0:
            name = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)
            counted = _aten_item(name, args, kwargs, out)
            if counted is not None:
                category, item = counted
                role = "matmul" if category in ("matmul", "conv", "attention") else "op"
                owner = self.current() or "(model)"
                self.row(owner, f"aten.{category}", role).add(item)
        return out


def _role(m: nn.Module, neuron_types: tuple[type[nn.Module], ...]) -> str:
    if isinstance(m, neuron_types):
        return "neuron"
    if isinstance(m, nn.MultiheadAttention):
        return "attention"
    if isinstance(m, nn.Linear):
        return "linear"
    if is_synapse(m):
        return "conv"
    return "op"


def trace_counts(
    module: nn.Module,
    run: Callable[[], Any],
    *,
    neuron_types: tuple[type[nn.Module], ...] = (),
    module_hooks: bool = True,
) -> Trace:
    """Run ``run()`` (one inference of ``module``, batch 1) under the instruments; return counts.

    ``neuron_types`` are spiking neuron classes: each call counts ``numel(output)`` neuron updates
    (neurons x T), and the ops inside them are not counted as element-wise work.
    """
    names = {id(m): n for n, m in module.named_modules(remove_duplicate=False)}
    param_keys = {
        int(p.untyped_storage().data_ptr()) for p in [*module.parameters(), *module.buffers()] if p.numel()
    }
    rec = _Recorder(param_keys)
    handles = []
    fused_parents = (nn.TransformerEncoderLayer,)
    snapshots: dict[int, list[int]] = {}

    def pre(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        analytic = _is_analytic(m, neuron_types)
        rec.stack.append((names.get(id(m), type(m).__name__) or "(model)", m, analytic))
        if analytic:
            rec.suppress += 1
        if isinstance(m, fused_parents):
            snapshots.setdefault(id(m), []).append(rec.analytic_calls)

    def post(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        name, _, analytic = rec.stack.pop()
        if analytic:
            rec.suppress -= 1
            rec.analytic_calls += 1
            item = _neuron_item(out) if isinstance(m, neuron_types) else _module_item(m, args, kwargs, out)
            if item is not None:
                r = rec.row(name, type(m).__name__, _role(m, neuron_types))
                r.add(item)
                outs = _tensors(out)
                if outs:
                    r.output_shape = [int(d) for d in outs[0].shape]
                    if not isinstance(m, _NOOP):  # views and identities move no data
                        r.output_elements += int(outs[0].numel())
                    if isinstance(m, _ACT):
                        r.nonzero_outputs += int(torch.count_nonzero(outs[0]))
                        r.counted_outputs += int(outs[0].numel())
        if isinstance(m, fused_parents):
            before = snapshots[id(m)].pop()
            if rec.analytic_calls == before:  # the fused path skipped every child's forward
                _count_fused_encoder_layer(m, name, args, kwargs, out, rec)

    for m in module.modules() if module_hooks else ():
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True))
    try:
        with rec:
            run()
    finally:
        for h in handles:
            h.remove()
    peak_elements, peak_bytes, peak_step = peak_live(rec.life)
    owner = rec.step_owner[peak_step] if 0 <= peak_step < len(rec.step_owner) else ""
    analytic = (
        {n for n, m in module.named_modules() if _is_analytic(m, neuron_types)} if module_hooks else set()
    )
    return Trace(list(rec.rows.values()), peak_elements, peak_bytes, owner or "(model)", analytic)


def _is_analytic(m: nn.Module, neuron_types: tuple[type[nn.Module], ...]) -> bool:
    if isinstance(m, neuron_types):
        return True
    return isinstance(
        m,
        (
            *_CONV,
            *_CONVT,
            nn.Linear,
            nn.MultiheadAttention,
            *_BN,
            *_NORM5,
            *_ACT,
            *_SOFTMAX,
            *_POOL_K,
            *_POOL_ADAPTIVE,
            *_NOOP,
            *_EMBED,
        ),
    )


def _neuron_item(out: Any) -> _Item:
    return _Item()  # neuron updates are counted from the output size (see LayerCounts.neuron_updates)


def _count_fused_encoder_layer(
    m: nn.TransformerEncoderLayer,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    out: Any,
    rec: _Recorder,
) -> None:
    """Count a ``TransformerEncoderLayer`` that ran as one fused kernel, child by child."""
    x = _first_tensor(args, kwargs, "src")
    if x is None:
        return
    prefix = f"{name}." if name else ""
    children: list[tuple[str, nn.Module, tuple[Any, ...], dict[str, Any], torch.Tensor]] = [
        ("self_attn", m.self_attn, (x,), {}, x),
        ("linear1", m.linear1, (x,), {}, x.new_empty((*x.shape[:-1], m.linear1.out_features))),
    ]
    hidden = children[1][4]
    children += [
        ("linear2", m.linear2, (hidden,), {}, x),
        ("norm1", m.norm1, (x,), {}, x),
        ("norm2", m.norm2, (x,), {}, x),
    ]
    for child_name, child, c_args, c_kwargs, c_out in children:
        if isinstance(child, nn.MultiheadAttention):
            item: _Item | None = _mha_item(child, x, x, x)
        else:
            item = _module_item(child, c_args, c_kwargs, c_out)
        if item is not None:
            r = rec.row(prefix + child_name, type(child).__name__, _role(child, ()))
            r.add(item)
            r.output_shape = [int(d) for d in c_out.shape]
            r.output_elements += int(c_out.numel())
    act = rec.row(prefix + "activation", "activation", "op")
    act.add(_Item(other={"activation": hidden.numel()}))
    res = rec.row(prefix.rstrip(".") or "(model)", "aten.elementwise", "op")
    res.add(_Item(other={"elementwise": 2 * x.numel()}))  # two residual adds


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
    module: nn.Module, analytic: set[str]
) -> Iterator[tuple[str, str, nn.Module, list[tuple[str, nn.Parameter]]]]:
    """(row name, type, module, its parameters) for every parameter, each tensor once.

    Parameters belong to the outermost analytic module holding them (``out_proj`` belongs to its
    attention layer); the rest to the module that holds them directly.
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
            yield name or "(model)", type(m).__name__, m, params
