"""Which standard ``torch.nn`` modules are activations, softmaxes and pools.

One vocabulary for everything that classifies layers (the energy counter's line items, a target's
why-not rules), so they cannot disagree about what counts as an activation or a pool.
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
