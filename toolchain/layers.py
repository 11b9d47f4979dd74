"""Which standard ``torch.nn`` modules, and which ATen operators, are activations, softmaxes, norms, pools.

One vocabulary for everything that classifies layers (the energy counter's line items, a target's
why-not rules), so they cannot disagree about what counts as an activation or a pool. The ``*_OPS``
sets name the same things as ATen operators, as a ``torch.export`` or TorchScript graph (or a
functional call) runs them; an in-place variant (``relu_``) is the name with a trailing ``_``.
"""

from __future__ import annotations

from torch import nn

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
)
SOFTMAX: tuple[type[nn.Module], ...] = (nn.Softmax, nn.LogSoftmax)
#: pools with a fixed kernel (their cost follows from kernel size and output size)
POOLS_KERNEL: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
)
#: pools whose kernel follows from the input size
POOLS_ADAPTIVE: tuple[type[nn.Module], ...] = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
POOLS: tuple[type[nn.Module], ...] = (*POOLS_KERNEL, *POOLS_ADAPTIVE, nn.LPPool1d, nn.LPPool2d)

ACTIVATION_OPS: frozenset[str] = frozenset(
    {
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
        "celu",
        "mish",
        "softplus",
        "clamp",
        "clamp_min",
        "clamp_max",
        "threshold",
        "prelu",
        "_prelu_kernel",
    }
)
SOFTMAX_OPS: frozenset[str] = frozenset(
    {"_softmax", "softmax", "_log_softmax", "log_softmax", "_safe_softmax"}
)
BATCHNORM_OPS: frozenset[str] = frozenset(
    {
        "batch_norm",
        "_batch_norm_impl_index",
        "native_batch_norm",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit_functional",
    }
)
