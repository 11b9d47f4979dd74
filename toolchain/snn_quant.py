"""A CUBA LIF neuron whose membrane potential is stored at low precision (Q-SNN).

Q-SNN (Wei et al., 2024; ../shared/reference/methods.md) quantizes the membrane potential as well as
the weights, so the neuron state fits a few bits of memory. :class:`QuantStateCubaLIF` computes the
step of :class:`~edgec.snn.CubaLIF` and then stores ``v`` on a ``state_bits``-bit grid::

    v <- clamp(round(v / s_v), -L, L) * s_v,   s_v = threshold / L,   L = 2^(state_bits - 1) - 1

i.e. ``2L + 1`` levels spanning ``[-threshold, threshold]`` (after the reset, a stored potential never
exceeds the threshold). Rounding uses the straight-through estimator. The current ``u`` stays at full
precision.

Loihi keeps 24-bit ``u`` and ``v`` and has no way to round ``v`` to a coarser grid each step: a network
trained with this neuron runs on Loihi with its full-precision state, which is a different network.
The Loihi target says so as a check row (``membrane-quantization``) instead of deploying it silently.
"""

from __future__ import annotations

import torch

from edgec.fakequant import ste_round
from edgec.snn import CubaLIF, spike


class QuantStateCubaLIF(CubaLIF):
    """:class:`~edgec.snn.CubaLIF` with its membrane potential stored on a ``state_bits`` grid."""

    state_bits: int = 8

    def extra_repr(self) -> str:
        return super().extra_repr() + f", state_bits={self.state_bits}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"CubaLIF takes time-major input [T, B, ...], got shape {tuple(x.shape)}")
        bias = self._bias(x)
        keep_u, keep_v = 1.0 - self.du, 1.0 - self.dv
        levels = (1 << (self.state_bits - 1)) - 1
        step = self.threshold / levels
        u = torch.zeros_like(x[0])
        v = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            u = keep_u * u + x[t]
            v = keep_v * v + u + bias
            s = spike((v - self.threshold) / self.threshold, self.slope)
            v = v * (1.0 - (s.detach() if self.detach_reset else s))
            v = torch.clamp(ste_round(v / step), -levels, levels) * step
            out.append(s)
        return torch.stack(out)


def quantize_state(neuron: CubaLIF, bits: int) -> None:
    """Turn ``neuron`` (in place) into a :class:`QuantStateCubaLIF` with ``bits``-bit state."""
    if not 2 <= bits <= 16:
        raise ValueError(f"membrane state width must be 2..16 bits, got {bits}")
    neuron.__class__ = QuantStateCubaLIF
    setattr(neuron, "state_bits", bits)  # noqa: B010 - the class was just swapped
