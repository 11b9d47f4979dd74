"""edgec's uniform weight quantizer against brevitas, the maintained QAT library, as an independent reference.

edgec writes its quantizers by hand (toolchain/fakequant.py says why: brevitas swaps modules for its own
QuantConv2d / QuantLinear, and the spiking passes attach quantizers to edgec.snn layers); the symmetric
max-abs grid of ``uniform-quant`` and QP-SNN's baseline is the one brevitas's Int8Weight*Float quantizers
compute at any bit width (narrow range, scale = max|W| / (2^(b-1) - 1)), so brevitas checks it.
"""

from __future__ import annotations

import pytest
import torch
from brevitas.nn import QuantConv2d, QuantLinear  # the compress extra: make setup installs it
from brevitas.quant import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat

from edgec.fakequant import UniformWeight


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_uniform_weight_equals_brevitas(bits, per_channel, layer):
    quant = Int8WeightPerChannelFloat if per_channel else Int8WeightPerTensorFloat
    torch.manual_seed(bits)
    if layer == "linear":
        ref = QuantLinear(24, 7, bias=False, weight_quant=quant, weight_bit_width=bits)
    else:
        ref = QuantConv2d(3, 5, 3, bias=False, weight_quant=quant, weight_bit_width=bits)
    with torch.no_grad():
        ref.weight.mul_(torch.linspace(0.2, 3.0, ref.weight.shape[0]).view(-1, *[1] * (ref.weight.dim() - 1)))
    w = ref.weight.detach().clone()
    expected = ref.quant_weight()
    ours = UniformWeight(bits, per_channel=per_channel)
    got = ours(w).detach()
    assert torch.equal(got, expected.value.detach()), (got - expected.value).abs().max()
    record = ours.record(w)
    assert record.weight_scale == pytest.approx(expected.scale.detach().flatten().tolist(), rel=1e-6)
    levels = (got / expected.scale.detach()).round()
    assert levels.abs().max() == (1 << (bits - 1)) - 1  # narrow range: +-(2^(b-1) - 1), reached
