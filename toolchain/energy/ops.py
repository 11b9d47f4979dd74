"""Counting rules of ATen operators: the work done outside any layer with an analytic rule.

A functional ``q @ k.transpose(-2, -1)``, ``F.conv2d``, ``F.scaled_dot_product_attention`` or a
residual ``+``, and every operator of a ``torch.export`` or TorchScript graph, is counted here by
operator, from its operands' shapes. Under ``torch.inference_mode`` (and in TorchScript) composite
operators such as ``linear``, ``matmul`` or ``conv2d`` arrive undecomposed; with autograd on they
arrive as ``addmm``, ``bmm``, ``convolution``. Both levels are handled; one call is never seen at
both.

An operator with no rule here that is not pure data movement (:data:`FREE_OPS`) is *uncounted*:
the report lists it by layer, never as zero work.
"""

from __future__ import annotations

from typing import Any

import torch

from edgec.energy.rules import Item, prod, recurrent_item, tensors
from edgec.layers import ACTIVATION_OPS, BATCHNORM_OPS, SOFTMAX_OPS

_MATMUL_OPS = {"mm", "addmm", "_addmm_activation", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot"}
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
_RECURRENT_OPS = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
_CELL_OPS = {"lstm_cell": "LSTM", "gru_cell": "GRU", "rnn_tanh_cell": "RNN", "rnn_relu_cell": "RNN"}
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
    "sign",
    "floor",
    "ceil",
    "round",
    "trunc",
    "fmod",
    "remainder",
    "masked_fill",
    "gt",
    "ge",
    "lt",
    "le",
    "eq",
    "ne",
    "heaviside",
    "logical_and",
    "logical_or",
    "logical_not",
    "sin",
    "cos",
    "erf",
    "lerp",
}
#: reductions: one operation per input element
_REDUCE_OPS = {
    "sum",
    "prod",
    "amax",
    "amin",
    "max",
    "min",
    "argmax",
    "argmin",
    "var",
    "std",
    "var_mean",
    "std_mean",
    "norm",
    "linalg_vector_norm",
    "logsumexp",
    "cumsum",
    "cumprod",
    "any",
    "all",
}
_ACT_OPS = ACTIVATION_OPS
_SOFTMAX_OPS = SOFTMAX_OPS
_NORM5_OPS = {
    "layer_norm",
    "native_layer_norm",
    "group_norm",
    "native_group_norm",
    "instance_norm",
    "rms_norm",
    "_fused_rms_norm",
}
_BN_OPS = BATCHNORM_OPS
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
#: pure data movement, lookups, creation and metadata: no arithmetic to count
FREE_OPS = {
    "view", "_unsafe_view", "reshape", "_reshape_alias", "flatten", "unflatten", "squeeze", "unsqueeze",
    "t", "transpose", "permute", "expand", "expand_as", "as_strided", "alias", "detach", "lift_fresh",
    "lift_fresh_copy", "clone", "contiguous", "copy", "_to_copy", "to", "_local_scalar_dense", "item",
    "slice", "select", "narrow", "index", "index_select", "gather", "take", "embedding", "split",
    "split_with_sizes", "unsafe_split", "chunk", "unbind", "cat", "stack", "repeat", "tile", "flip", "roll",
    "constant_pad_nd", "pad", "zeros", "ones", "empty", "full", "zeros_like", "ones_like", "empty_like",
    "full_like", "new_zeros", "new_ones", "new_empty", "new_full", "arange", "scalar_tensor", "fill", "zero",
    "empty_strided", "resize", "set", "dropout", "native_dropout", "feature_dropout", "alpha_dropout",
    "lift", "type_as", "scatter", "index_put", "masked_select", "nonzero", "sym_size", "sym_numel",
    "sym_stride", "size", "stride", "numel", "dim", "is_same_size", "_assert_async", "_assert_scalar",
    "_assert_tensor_metadata", "sym_constrain_range_for_size", "_functional_assert_async",
    "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "upsample_nearest1d", "upsample_nearest2d",
    "upsample_nearest3d", "_unsafe_index", "diagonal", "tril", "triu", "movedim", "swapaxes", "unfold",
    "im2col", "bitwise_not", "bernoulli", "rand", "randn", "rand_like", "randn_like", "randint",
    "normal", "uniform", "exponential", "random", "multinomial", "_to_dense", "detach_copy", "view_copy",
    "expand_copy", "permute_copy", "t_copy", "transpose_copy", "unsqueeze_copy", "squeeze_copy",
    "select_copy", "slice_copy", "split_copy", "unbind_copy", "alias_copy", "getitem",
}  # fmt: skip


def einsum_macs(equation: str, operands: list[torch.Tensor]) -> int:
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
        macs += prod(sizes[c] for c in letters)
        cur = "".join(c for c in letters if c in later)
    return macs


def recurrent_op_item(name: str, args: tuple[Any, ...]) -> Item | None:
    """Counts of ``aten::lstm`` / ``gru`` / ``rnn_tanh`` / ``rnn_relu`` (and their ``*_cell``) from the
    operands, as a graph (torch.export, TorchScript) calls them; None for another operator."""
    if name in _CELL_OPS:
        x, w_ih, w_hh = args[0], args[2], args[3]
        biases = [b for b in args[4:6] if isinstance(b, torch.Tensor)]
        return recurrent_item(_CELL_OPS[name], [[w_ih, w_hh]], biases, x.numel() // int(x.shape[-1]))
    if name not in _RECURRENT_OPS:
        return None
    x = args[0]
    packed = isinstance(args[1], torch.Tensor) and args[1].dim() == 1 and not args[1].is_floating_point()
    if packed:  # (data, batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidirectional)
        params, layers, bidirectional = args[3], int(args[5]), bool(args[8])
        positions = int(x.shape[0])
    else:  # (input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
        params, layers, bidirectional = args[2], int(args[4]), bool(args[7])
        positions = x.numel() // int(x.shape[-1])
    weights = [p for p in params if p.dim() == 2]
    n_groups = layers * (2 if bidirectional else 1)
    per = len(weights) // n_groups
    groups = [weights[i * per : (i + 1) * per] for i in range(n_groups)]
    return recurrent_item(_RECURRENT_OPS[name], groups, [p for p in params if p.dim() == 1], positions)


def aten_item(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[str, Item] | None:
    """Counts of one ATen op: (category, counts), or None when no rule applies (see :func:`is_free`)."""
    outs = tensors(out)
    y = outs[0] if outs else None
    item = Item()
    if name in _MATMUL_OPS:
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
        a = args[0]
        k = a.shape[-1] if a.dim() else 1
        item.macs = int(y.numel() * k)
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        if name == "linear" and isinstance(bias, torch.Tensor):
            item.add_other("bias", y.numel())
        return "matmul", item
    if name == "einsum":
        ops = args[1] if len(args) > 1 else kwargs.get("tensors", [])
        item.macs = einsum_macs(str(args[0]), list(ops))
        return "matmul", item
    if (name in _CONV_OPS or name in _CONVT_OPS) and y is not None:
        x, w = args[0], args[1]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        transposed = name in _CONVT_OPS or (name in ("convolution", "_convolution") and bool(args[6]))
        item.macs = (x.numel() if transposed else y.numel()) * prod(w.shape[1:])
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
    recurrent = recurrent_op_item(name, args)
    if recurrent is not None:
        return "recurrent", recurrent
    if y is None:
        return None
    base = name.rstrip("_")
    if base in _ELEMENTWISE_OPS:
        item.add_other("elementwise", y.numel())
        return "elementwise", item
    if base in _REDUCE_OPS and isinstance(args[0], torch.Tensor):
        item.add_other("elementwise", args[0].numel())
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
        item.add_other("pool", y.numel() * prod(k if isinstance(k, (list, tuple)) else [k]))
        return "pool", item
    if base in _POOL_IN_OPS:
        item.add_other("pool", args[0].numel())
        return "pool", item
    return None


def is_free(name: str) -> bool:
    """An operator that moves, selects or creates data without arithmetic (nothing to count)."""
    return name.rstrip("_") in FREE_OPS or name in FREE_OPS
