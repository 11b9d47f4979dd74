"""edgec.onnxlib.qdq: the Q/DQ writer with the scheme as data, learned scales emitted as given,
the presets' rules, ORT's pre-processing on graphs its symbolic shape inference gives up on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgec.errors import UsageError
from edgec.onnxlib import (
    S8S8,
    U8S8,
    TensorQuant,
    export_onnx,
    layer_tensors,
    preprocess,
    quantize_ptq,
    resolve_params,
    write_qdq,
)


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


class ConvFc(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


CONV_W = np.array([0.05, 0.04, 0.03, 0.06], np.float32)
FC_W = np.full(3, 0.02, np.float32)


def _learned(scheme_dtype: str) -> dict[str, TensorQuant]:
    """Hand-set scales, coarse on purpose (4 levels over the [0, 1) input) so that the quantized
    model differs clearly from the float one. 0.0731 is not commensurate with the conv's output grid
    (0.25 x weight scales), so no value falls exactly half-way between two levels."""
    zp_fc = 10 if scheme_dtype == "uint8" else 0
    return {
        "conv:input": TensorQuant.per_tensor(0.25, 0, scheme_dtype),  # type: ignore[arg-type]
        "conv:weight": TensorQuant.per_channel(CONV_W, axis=0),
        "fc:input": TensorQuant.per_tensor(0.0731, zp_fc, scheme_dtype),  # type: ignore[arg-type]
        "fc:weight": TensorQuant.per_channel(FC_W, axis=0),
    }


@pytest.mark.parametrize("scheme", [U8S8, S8S8], ids=lambda s: s.name)
def test_learned_scales_are_emitted_as_given(tmp_path, scheme):
    """The QAT hand-off: scales and zero-points as data become Q/DQ nodes, nothing re-calibrated;
    ONNX Runtime's output equals the fake-quantized PyTorch model's."""
    torch.manual_seed(0)
    model = ConvFc().eval()
    if scheme.quantize_bias:  # int32 bias (scale = input x weight scale): put biases on that grid
        with torch.no_grad():
            for layer, s_in, s_w in ((model.conv, 0.25, CONV_W), (model.fc, 0.0731, FC_W)):
                grid = torch.from_numpy(s_in * s_w)
                layer.bias.copy_(torch.round(layer.bias / grid) * grid)
    fp32 = tmp_path / "fp32.onnx"
    export_onnx(model, torch.rand(1, 2, 6, 6), fp32)
    params = _learned(scheme.activation_dtype)
    resolved = resolve_params(fp32, params)
    assert set(resolved) == {"input", "conv.weight", "/Flatten_output_0", "fc.weight"}
    stats = write_qdq(fp32, tmp_path / "q.onnx", scheme, params=resolved)
    assert stats.learned_tensors == 4 and stats.calibrated_tensors == 0

    def fq(t: torch.Tensor, key: str) -> torch.Tensor:
        return torch.from_numpy(params[key].fake_quantize(t.detach().numpy()))

    x = torch.rand(6, 2, 6, 6)
    with torch.no_grad():
        h = torch.relu(
            nn.functional.conv2d(fq(x, "conv:input"), fq(model.conv.weight, "conv:weight"), model.conv.bias)
        )
        ref = nn.functional.linear(
            fq(h.flatten(1), "fc:input"), fq(model.fc.weight, "fc:weight"), model.fc.bias
        )
        flt = model(x)
    got = _run(tmp_path / "q.onnx", x.numpy())
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-5)
    assert np.abs(got - flt.numpy()).max() > 0.02  # really quantized, coarsely
    # the weight scales in the graph are the given ones, per output channel
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    dq_scales = [inits[n.input[1]] for n in graph.node if n.op_type == "DequantizeLinear"]
    assert any(s.shape == (4,) and np.allclose(s, CONV_W) for s in dq_scales)
    assert any(s.shape == (3,) and np.allclose(s, FC_W) for s in dq_scales)


def _calib(n: int = 8) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"input": rng.random((1, 2, 6, 6), dtype=np.float32)} for _ in range(n)]


def _qdq_facts(path: Path) -> dict[str, set]:
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    facts: dict[str, set] = {"zp_dtypes": set(), "zp_values": set(), "dq_input_dtypes": set()}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = inits[node.input[2]]
            facts["zp_dtypes"].add(str(zp.dtype))
            facts["zp_values"].update(int(v) for v in np.ravel(zp))
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            facts["dq_input_dtypes"].add(str(inits[node.input[0]].dtype))
    return facts


def test_s8s8_preset_follows_tensorrt_rules(tmp_path):
    """Symmetric int8 everywhere (every zero-point 0), no int32 bias DequantizeLinear."""
    export_onnx(ConvFc().eval(), torch.rand(1, 2, 6, 6), tmp_path / "fp32.onnx")
    quantize_ptq(tmp_path / "fp32.onnx", tmp_path / "q.onnx", _calib(), S8S8)
    facts = _qdq_facts(tmp_path / "q.onnx")
    assert facts["zp_dtypes"] == {"int8"} and facts["zp_values"] == {0}
    assert "int32" not in facts["dq_input_dtypes"]


def test_u8s8_preset_is_the_ort_x86_graph(tmp_path):
    """uint8 activations, int8 weights, int32 bias: what ORT fuses into QLinearConv / QGemm."""
    export_onnx(ConvFc().eval(), torch.rand(1, 2, 6, 6), tmp_path / "fp32.onnx")
    quantize_ptq(tmp_path / "fp32.onnx", tmp_path / "q.onnx", _calib(), U8S8)
    facts = _qdq_facts(tmp_path / "q.onnx")
    assert {"uint8", "int8"} <= facts["zp_dtypes"]
    assert {"int8", "int32"} <= facts["dq_input_dtypes"]


class Gru(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(10, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.fc(out[:, -1])


def test_preprocess_survives_incomplete_symbolic_shape_inference(tmp_path, monkeypatch):
    """Before: ORT's symbolic shape inference gave up ("Incomplete symbolic shape inference") on the
    GRU graph edgec exported for a dynamic-batch GRU, and compile ended as an internal error. Now
    ONNX's own shape inference is used and the report says so. (The graph is the one the old export
    wrote: the TorchScript exporter traced the GRU's initial state at the example's batch of 2.)"""
    x = torch.rand(2, 12, 10)
    ep = torch.export.export(Gru().eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    axes = {"input": {0: "batch"}, "output": {0: "batch"}}
    module = ep.module()
    for attr in ("train", "eval"):  # torch.export modules refuse mode switches the exporter asks for
        module.__dict__.pop(attr, None)
    torch.onnx.export(
        module,
        (x,),
        str(tmp_path / "fp32.onnx"),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes=axes,
    )
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    notes = preprocess(tmp_path / "fp32.onnx", tmp_path / "pre.onnx")
    assert len(notes) == 1 and "symbolic shape inference failed" in notes[0]
    onnx.checker.check_model(str(tmp_path / "pre.onnx"))
    assert list(work.iterdir()) == []  # ORT's temporary files did not land in the user's directory


def test_given_scales_must_fit_the_scheme(tmp_path):
    export_onnx(ConvFc().eval(), torch.rand(1, 2, 6, 6), tmp_path / "fp32.onnx")
    fp32 = tmp_path / "fp32.onnx"
    with pytest.raises(UsageError, match="non-zero zero-point; scheme s8s8 is symmetric"):
        write_qdq(fp32, tmp_path / "q.onnx", S8S8, params={"input": TensorQuant.per_tensor(0.1, 3)})
    with pytest.raises(UsageError, match="scheme u8s8 quantizes activations to uint8"):
        write_qdq(fp32, tmp_path / "q.onnx", U8S8, params={"input": TensorQuant.per_tensor(0.1, 0)})
    with pytest.raises(UsageError, match="no tensor 'input' of layer 'head'") as err:
        resolve_params(fp32, {"head:input": TensorQuant.per_tensor(0.1)})
    assert err.value.hint == "layers with weights: conv, fc"
    with pytest.raises(ValueError, match="scales must be finite and > 0"):
        TensorQuant.per_tensor(0.0)
    assert set(layer_tensors(fp32)) == {"conv", "fc"}


def test_fake_quantize_is_onnx_rounding():
    """Round half to even, saturate, per channel along the axis."""
    tq = TensorQuant.per_tensor(0.5, 0, "int8")
    np.testing.assert_array_equal(
        tq.fake_quantize(np.array([0.25, 0.75, 100.0, -100.0])), [0.0, 1.0, 63.5, -64.0]
    )
    pc = TensorQuant.per_channel([1.0, 0.1], axis=1)
    np.testing.assert_allclose(pc.fake_quantize(np.array([[1.26, 1.26]])), [[1.0, 1.3]])


def test_layer_names_are_module_paths(tmp_path):
    """Learned scales are keyed by the PyTorch module path, also for nested modules."""
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), nn.Flatten(), nn.Linear(32, 3))
    export_onnx(model.eval(), torch.rand(1, 1, 6, 6), tmp_path / "m.onnx")
    layers = layer_tensors(tmp_path / "m.onnx")
    assert set(layers) == {"0.0", "2"}
    assert layers["0.0"]["weight"] == "0.0.weight" and layers["0.0"]["input"] == "input"
    assert layers["2"]["weight"] == "2.weight"


def test_layer_names_of_attribute_modules_are_full_paths(tmp_path):
    """A module held as an attribute inside a Sequential's child (a transformer block's ``attn.qkv``),
    and a Sequential's child inside such an attribute (``mlp.0``), are named by their whole path, not by
    their attribute name alone (two blocks would collide)."""

    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.qkv(x)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = Attn()
            self.mlp = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mlp(x + self.attn(x))

    model = nn.Sequential(Block(), Block())
    export_onnx(model.eval(), torch.rand(1, 3, 4), tmp_path / "m.onnx")
    layers = layer_tensors(tmp_path / "m.onnx")
    assert set(layers) == {f"{b}.{m}" for b in "01" for m in ("attn.qkv", "mlp.0", "mlp.2.0")}
