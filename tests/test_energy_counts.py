"""Dense counts: MACs against independent counters, parameters and memory at every bit width.

The independent references are ``torch.utils.flop_counter.FlopCounterMode`` (whose conv / linear
count / 2 is exactly the weight MACs, when nothing runs a fused kernel it cannot see), closed-form
attention MACs written out here from the model's own hyper-parameters, and torchvision's published
``_ops`` metadata.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgec.energy.analyze import apply_bits, count_program, energy_section
from edgec.energy.tables import get_table
from edgec.program import Program


def flop_counter_macs(module: nn.Module, x: torch.Tensor) -> int:
    """conv + linear MACs by PyTorch's own counter (its convolution / addmm / mm counts, over 2).

    Gradients on and dropout off: ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` then
    take their slow paths, whose projections run as visible ``addmm``. Attention's ``bmm`` is left
    out here (the counter sees it only on some paths) and added in closed form by the tests.
    """
    was = module.training
    module.eval()
    counter = FlopCounterMode(display=False)
    with torch.enable_grad(), counter:
        module(x)
    module.train(was)
    per_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    return sum(per_op.get(op, 0) for op in ("aten.convolution", "aten.addmm", "aten.mm")) // 2


def attention_macs(module: nn.Module, batch: int, seq: int) -> int:
    """q k^T and attn v of every self-attention: 2 * B * L * S * E each, from the module's config."""
    return sum(
        2 * batch * seq * seq * m.embed_dim for m in module.modules() if isinstance(m, nn.MultiheadAttention)
    )


def macs_of(module: nn.Module, x: torch.Tensor) -> int:
    return int(count_program(Program(module=module.eval(), example_input=x)).total("macs"))


@pytest.mark.parametrize(
    ("name", "published_gops"),
    [("resnet18", 1.814), ("mobilenet_v2", 0.301)],
    ids=["resnet18", "mobilenet_v2"],
)
def test_torchvision_cnn_macs_equal_independent_count(name: str, published_gops: float):
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    x = torch.rand(1, 3, 224, 224)
    macs = macs_of(model, x)
    assert macs == flop_counter_macs(model, x)
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]
    assert round(macs / 1e9, 3) == published == published_gops


@pytest.mark.slow
def test_vit_b_16_macs_include_attention_and_survive_inference_mode():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.vit_b_16().eval()
    x = torch.rand(1, 3, 224, 224)
    seq = (224 // 16) ** 2 + 1  # patches + class token
    expected = flop_counter_macs(model, x) + attention_macs(model, batch=1, seq=seq)
    with torch.inference_mode():
        under_inference = macs_of(model, x)
    with torch.no_grad():
        under_no_grad = macs_of(model, x)
    assert under_inference == under_no_grad == expected == 17_563_828_224
    published = torchvision.models.ViT_B_16_Weights.DEFAULT.meta["_ops"]
    assert round(under_inference / 1e9, 3) == published
    # PyTorch's own counter under inference_mode misses the fused attention blocks entirely
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    assert counter.get_total_flops() // 2 < 0.7 * expected


def test_fused_transformer_encoder_layers_are_counted():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    x = torch.rand(2, 10, 32)
    x1 = x[:1]
    per_sample = flop_counter_macs(model, x1) + attention_macs(model, batch=1, seq=10)
    assert flop_counter_macs(model, x) + attention_macs(model, batch=2, seq=10) == 2 * per_sample
    with torch.inference_mode():  # the fused path; a report counts one inference (the first sample)
        assert macs_of(model, x) == per_sample
    rows = count_program(Program(module=model, example_input=x1)).layers
    names = {r.name for r in rows if r.macs}
    assert {"layers.0.self_attn", "layers.0.linear1", "layers.0.linear2"} <= names


class FunctionalAttention(nn.Module):
    """Attention three ways: matmuls, F.scaled_dot_product_attention, einsum (no nn.MultiheadAttention)."""

    def __init__(self, dim: int = 24, heads: int = 3) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        manual = (q @ k.transpose(-2, -1)).softmax(-1) @ v
        fused = F.scaled_dot_product_attention(q, k, v)
        scores = torch.einsum("bhld,bhsd->bhls", q, k).softmax(-1)
        summed = torch.einsum("bhls,bhsd->bhld", scores, v)
        return self.proj((manual + fused + summed).transpose(1, 2).reshape(b, n, d))


def test_functional_attention_matmuls_are_counted():
    torch.manual_seed(0)
    model = FunctionalAttention().eval()
    b, n, d = 1, 7, 24
    x = torch.rand(b, n, d)
    linear = n * d * 3 * d + n * d * d
    per_attention = 2 * b * n * n * d  # q k^T and attn v over all heads
    expected = linear + 3 * per_attention
    with torch.inference_mode():  # composite ops (matmul, einsum, sdpa) arrive undecomposed
        assert macs_of(model, x) == expected
    assert macs_of(model, x) == expected  # outside inference_mode: decomposed into bmm


@pytest.mark.parametrize(
    "layer, shape",
    [
        (nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, dilation=1), (1, 8, 15, 15)),
        (nn.Conv2d(4, 6, (3, 5), padding=(2, 1), dilation=(2, 1)), (1, 4, 11, 9)),
        (nn.Conv1d(3, 5, 4, stride=3), (1, 3, 50)),
        (nn.Conv3d(2, 4, 3, padding=1), (1, 2, 5, 6, 7)),
        (nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, groups=2), (1, 6, 5, 5)),
        (nn.Linear(12, 7), (1, 9, 12)),  # a Linear on [B, N, D] does N times the work
    ],
    ids=["conv-group-stride", "conv-dilated", "conv1d", "conv3d", "conv-transpose", "linear-3d"],
)
def test_layer_macs_equal_flop_counter(layer: nn.Module, shape: tuple[int, ...]):
    torch.manual_seed(0)
    x = torch.rand(shape)
    assert macs_of(layer, x) == flop_counter_macs(layer, x) > 0


def test_other_ops_are_separate_line_items():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2)).eval()
    counts = count_program(Program(module=model, example_input=torch.rand(1, 1, 4, 4)))
    rows = {r.name: r for r in counts.layers}
    assert rows["0"].macs == 2 * 4 * 4 * 9  # no bias inside MACs
    assert rows["0"].other_ops == {"bias": 32}
    assert rows["1"].other_ops == {"norm": 64} and rows["1"].macs == 0
    assert rows["2"].other_ops == {"activation": 32}
    assert rows["3"].other_ops == {"pool": 2 * 2 * 2 * 4}


def test_params_and_packed_bytes_at_each_width():
    model = nn.Sequential(nn.Linear(10, 3), nn.BatchNorm1d(3)).eval()
    counts = count_program(Program(module=model, example_input=torch.rand(1, 10)))
    assert counts.total("params") == sum(p.numel() for p in model.parameters()) == 30 + 3 + 6

    def param_bytes(table: str, bits: int | None = None) -> int:
        apply_bits(counts, model, get_table(table), weight_bits=bits)
        return int(counts.total("param_bytes"))

    # Linear weight 30, Linear bias 3, BatchNorm weight + bias 6 (not weights: kept at other width)
    assert param_bytes("cmos45-fp32") == 39 * 4
    assert param_bytes("cmos45-int8") == 30 + 9 * 4  # int8 weights, int32 biases / norm
    assert param_bytes("cmos45-fp16") == 39 * 2
    assert param_bytes("cmos45-fp32", bits=4) == math.ceil(30 * 4 / 8) + 9 * 4
    assert param_bytes("cmos45-fp32", bits=1) == math.ceil(30 / 8) + 9 * 4


def test_weight_bits_from_module_attribute_and_program_metadata():
    model = nn.Sequential(nn.Linear(16, 16, bias=False), nn.Linear(16, 16, bias=False)).eval()
    model[0].weight_bits = 2  # what a compression pass leaves on a layer
    program = Program(module=model, example_input=torch.rand(1, 16), metadata={"weight_bits": {"1": 4}})
    section = energy_section(program, None, table="cmos45-fp32", target="cpu")
    rows = {r["name"]: r for r in section["layers"]}
    assert (rows["0"]["weight_bits"], rows["0"]["param_bytes"]) == (2, 256 * 2 // 8)
    assert (rows["1"]["weight_bits"], rows["1"]["param_bytes"]) == (4, 256 * 4 // 8)


class TwoBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(100, 50)
        self.b = nn.Linear(100, 50)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


def test_peak_activation_memory_follows_tensor_lifetimes():
    counts = count_program(Program(module=TwoBranch().eval(), example_input=torch.rand(1, 100)))
    # while b runs, x (100), a's output (50) and b's output (50) are alive; at the add x is dead
    assert counts.peak_activation_elements == 200
    section = energy_section(
        Program(module=TwoBranch().eval(), example_input=torch.rand(1, 100)),
        None,
        table="cmos45-int8",
        target="cpu",
    )
    assert section["totals"]["peak_activation_bytes"] == 200  # uint8 activations
    assert section["totals"]["peak_activation_at"] == "b"


def test_torchscript_and_export_count_like_eager():
    from edgec.models.digits import DigitsCNN

    torch.manual_seed(0)
    model = DigitsCNN().eval()
    x = torch.rand(1, 1, 8, 8)
    eager = macs_of(model, x)
    assert eager == flop_counter_macs(model, x)
    scripted = torch.jit.script(model)
    assert int(count_program(Program(module=scripted, example_input=x)).total("macs")) == eager
    exported = torch.export.export(model, (x,)).module()
    assert int(count_program(Program(module=exported, example_input=x)).total("macs")) == eager


class FunctionalActivations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(F.selu(self.fc(x)))


def test_energy_and_the_loihi_check_name_activations_alike(tmp_path):
    """One ATen vocabulary (edgec.layers): a functional selu / hardsigmoid is an activation to the
    counter and a non-spiking activation to the Loihi check (it was an "unsupported op" there)."""
    import edgec

    model = FunctionalActivations().eval()
    x = torch.rand(1, 6)
    rows = {(r.name, r.type): r for r in count_program(Program(module=model, example_input=x)).layers}
    assert rows[("(model)", "aten.activation")].other_ops == {"activation": 2 * 6}
    path = tmp_path / "acts.pt2"
    torch.export.save(torch.export.export(model, (x,)), path)
    _, violations = edgec.check(str(path), target="loihi")
    found = {(v.rule, v.detail) for v in violations}
    assert ("non-spiking-activation", "selu") in found and ("non-spiking-activation", "hardsigmoid") in found
    assert not [v for v in violations if v.rule == "unsupported-op"]
