"""Binarization (``binarize`` recipe): estimators by hand, the binarized digits CNN and its artifacts
(ONNX Runtime, bit-packed weights, energy report), a binarized SNN on Loihi, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import edgec
from edgec.binary import (
    BinaryActivation,
    BinaryWeight,
    binary_sign,
    read_packed,
    write_packed,
)
from edgec.errors import ModelError, UsageError
from edgec.fakequant import attach, bake
from edgec.passes.binarize import PowerSchedule
from edgec.store import load_program_dir

BINARIZED = ("features.3", "classifier.1")  # the digits CNN's middle synapses; first / last stay 8-bit


def _holdout() -> tuple[np.ndarray, np.ndarray]:
    x, y = edgec.open_dataset("builtin:digits:holdout").arrays()
    assert y is not None
    return x, y


# ---- estimators, by hand ----------------------------------------------------------------------------
def test_reste_gradient_matches_the_formula_by_hand():
    """ReSTE with o = 3, t = 1.5 (the official code): (1/o) |x|^((1-o)/o) on 0.1 < |x| <= t, the constant
    0.1^(1/o) / 0.1 on |x| <= 0.1, 0 beyond t. The values are the formula evaluated independently
    (``math``, six digits), not read back from the implementation."""
    x = torch.tensor([-2.0, -1.5, -0.8, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 1.0, 1.5, 1.6], requires_grad=True)
    out = binary_sign(x, "reste", o=3.0, t=1.5)
    out.backward(torch.ones_like(x))
    flat = 4.641589  # 0.1 ** (1/3) / 0.1
    expected = [
        0.0,  # |x| > t
        0.254381,  # (1/3) * 1.5 ** (-2/3)
        0.386799,  # (1/3) * 0.8 ** (-2/3)
        flat,
        flat,
        flat,
        flat,
        flat,  # |x| = 0.1 is in the constant region (the code's interval test is strict above it)
        0.974673,  # (1/3) * 0.2 ** (-2/3)
        0.333333,  # (1/3) * 1 ** (-2/3)
        0.254381,
        0.0,
    ]
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5)
    assert out.tolist() == [-1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1]  # sign with b(0) = +1: two values


def test_reste_at_o_1_is_the_ste_clipped_at_t_and_ste_bireal_by_hand():
    x = torch.tensor([-1.6, -1.2, -0.5, 0.0, 0.5, 0.99, 1.0, 1.2, 1.5, 1.6], requires_grad=True)

    def grad(kind: str, **kw: float) -> list[float]:
        x.grad = None
        binary_sign(x, kind, **kw).sum().backward()
        assert x.grad is not None
        return [round(v, 6) for v in x.grad.tolist()]

    assert grad("reste", o=1.0) == [0, 1, 1, 1, 1, 1, 1, 1, 1, 0]  # flat 0.1 / 0.1 = 1 too
    assert grad("ste") == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0]  # |x| <= 1
    # Bi-Real: 2 - 2|x| inside (-1, 1)
    assert grad("bireal") == [0, 0, 1.0, 2.0, 1.0, 0.02, 0, 0, 0, 0]


def test_reste_power_follows_the_quarter_cosine_schedule():
    w = BinaryWeight("reste")
    a = BinaryActivation(4, estimator="reste")
    hook = PowerSchedule([w, a], o_end=3.0)
    seen = []
    for epoch in range(4):
        hook.on_epoch_start(epoch, 4)
        seen.append((w.o, a.o))
    # o = 1 + 2 (1 - cos(pi/2 * e/4)): e = 0, 1, 2, 3
    expected = [1.0, 1.0 + 2 * (1 - math.cos(math.pi / 8)), 1.0 + 2 * (1 - math.cos(math.pi / 4)), 1.0]
    expected[3] = 1.0 + 2 * (1 - math.cos(3 * math.pi / 8))
    assert [s[0] for s in seen] == pytest.approx(expected) and [s[1] for s in seen] == pytest.approx(expected)
    assert PowerSchedule.power(4, 4, 3.0) == pytest.approx(3.0)


def test_binary_weight_is_alpha_times_sign_per_channel_and_bakes_onto_two_values():
    conv = torch.nn.Conv2d(3, 4, 3)
    w = conv.weight.detach().clone()
    attach(conv, "weight", BinaryWeight("ste"))
    alpha = w.abs().mean(dim=(1, 2, 3))
    expected = alpha.reshape(-1, 1, 1, 1) * torch.where(w >= 0, 1.0, -1.0)
    assert torch.equal(conv.weight, expected)
    rec = bake(conv)
    assert rec is not None and rec.weight_bits == 1 and rec.per_channel
    np.testing.assert_allclose(rec.weight_scale, alpha.numpy(), rtol=1e-6)
    for c in range(4):
        assert sorted(set(conv.weight[c].flatten().tolist())) == pytest.approx(
            [-float(alpha[c]), float(alpha[c])]
        )
    assert set(np.unique(rec.levels(conv.weight.detach().numpy()))) == {-1, 1}


def test_packed_file_round_trips_and_rejects_weights_that_are_not_binary(tmp_path):
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.1, 1.0, 5).astype(np.float32)
    w = (np.where(rng.normal(size=(5, 3, 3, 3)) >= 0, 1.0, -1.0) * scale.reshape(-1, 1, 1, 1)).astype(
        np.float32
    )
    info = write_packed(tmp_path / "w.safetensors", {"conv": (w, scale)})
    assert np.array_equal(read_packed(tmp_path / "w.safetensors")["conv"], w)
    assert info["fp32_bytes_of_those_layers"] == 5 * 27 * 4
    with pytest.raises(ValueError, match="not scale"):
        write_packed(tmp_path / "x.safetensors", {"conv": (w * 1.5 + 0.01, scale)})


# ---- the binarized digits CNN -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def binarized(tmp_path_factory: pytest.TempPathFactory) -> tuple[edgec.compression.CompressResult, Path]:
    """zoo:digits-cnn, binarize (ReSTE, 1W/1A), 3 epochs, written as a compressed program."""
    out = tmp_path_factory.mktemp("bin") / "cnn"
    res = edgec.compress(
        "zoo:digits-cnn", passes=["binarize"], train="builtin:digits", epochs=3, lr=1e-3, seed=0, out=out
    )
    return res, out


@pytest.fixture(scope="module")
def artifacts(binarized, tmp_path_factory) -> dict[str, edgec.Artifact]:
    _, program = binarized
    root = tmp_path_factory.mktemp("bin-cpu")
    return {q: edgec.compile(program, target="cpu", quantize=q, out=root / q) for q in ("none", "int8")}


def test_binarized_cnn_records_1_bit_layers_and_reloads_without_pickle(binarized):
    res, out = binarized
    quant = res.program.quant
    assert {n: q.weight_bits for n, q in quant.items()} == {
        "features.0": 8, "features.3": 1, "classifier.1": 1, "classifier.3": 8,
    }  # fmt: skip
    assert all(quant[n].act_bits == 1 and quant[n].act_signed for n in BINARIZED)
    assert quant["features.0"].act_bits is None and quant["classifier.3"].act_bits is None
    reloaded = load_program_dir(out)
    assert reloaded.quant == quant
    assert [e["op"] for e in json.loads((out / "program.json").read_text())["edits"]] == [
        "binarize-input"
    ] * 2
    x, _ = _holdout()
    with torch.no_grad():
        a = res.program.module(torch.from_numpy(x))
        b = reloaded.module(torch.from_numpy(x))
        # the binarized layers see +-1 only
        seen = []
        h = reloaded.module.get_submodule("features.3").register_forward_pre_hook(
            lambda m, args: seen.append(args[0])
        )
        reloaded.module(torch.from_numpy(x[:8]))
        h.remove()
    assert torch.equal(a, b)
    assert set(torch.unique(seen[0]).tolist()) == {-1.0, 1.0}


def test_binarized_cnn_counts_bops_and_1_bit_bytes(binarized):
    after = binarized[0].report["after"]
    # BOPs: conv 16 -> 32, 3x3 on 8x8 (8*8*32 outputs x 16*9) + FC 512 -> 64
    bops = 8 * 8 * 32 * 16 * 9 + 512 * 64
    assert after["bops"] == bops == 327_680
    assert after["macs"] == 337_536  # + first conv 9,216 and last FC 640
    assert after["ops_bop64"] == pytest.approx(bops / 64 + (337_536 - bops))
    # bytes (cmos45-fp32 table: other parameters fp32), by layer:
    #   features.0 8-bit: 144 + 16 scales * 4 = 208; BatchNorm 16: 2 * 16 * 4 = 128
    #   features.3 1-bit: 4608 / 8 = 576 + 16 thresholds * 4 + 32 scales * 4 = 768; BatchNorm 32: 256
    #   classifier.1 1-bit: 32768 / 8 = 4096 + 64 bias * 4 + 512 thresholds * 4 + 64 scales * 4 = 6656
    #   classifier.3 8-bit: 640 + 10 bias * 4 + 10 scales * 4 = 720
    assert after["param_bytes"] == 208 + 128 + 768 + 256 + 6656 + 720 == 8736


def _binarized_weights_in_onnx(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per binarized layer: its int8 weight initializer and the dequantized weight, from model.onnx."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    out = {}
    for node in g.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        layer = next((b for b in BINARIZED if f"/{b}/" in node.name), None)
        dq = producer.get(node.input[1])
        if layer is None:
            continue
        assert dq is not None and dq.op_type == "DequantizeLinear", f"{layer}: weights not int8"
        q, scale = init[dq.input[0]], init[dq.input[1]]
        zero = init[dq.input[2]] if len(dq.input) > 2 else np.zeros_like(scale)
        assert q.dtype == np.int8 and not np.any(zero)
        out[layer] = (q, q.astype(np.float32) * scale.reshape(-1, *([1] * (q.ndim - 1))))
    assert set(out) == set(BINARIZED)
    return out


@pytest.mark.parametrize("precision", ["none", "int8"])
def test_compiled_binarized_cnn_runs_on_ort_with_two_values_per_channel(binarized, artifacts, precision):
    art = artifacts[precision]
    for layer, (q, w) in _binarized_weights_in_onnx(art.file("model")).items():
        assert set(np.unique(q)) == {-1, 1}, layer
        for c in range(len(w)):
            values = np.unique(w[c])
            assert len(values) == 2 and values[0] == -values[1], (layer, c)
    tr = art.report["target_report"]
    if precision == "int8":  # every Conv / Gemm an integer kernel
        assert tr["precision"] == "int8"
        assert tr["ort_fusion"]["fused_quantized_ops"] == 4 and tr["ort_fusion"]["float_compute_ops"] == 0
    else:
        assert tr["precision"] == "learned"
    import onnxruntime as ort

    x, _ = _holdout()
    sess = ort.InferenceSession(str(art.file("model")), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {"input": x})[0].argmax(1)
    with torch.no_grad():
        ref = binarized[0].program.module(torch.from_numpy(x)).argmax(1).numpy()
    agreement = (pred == ref).mean()
    # the default artifact computes what the program computes (binary inputs exact, int8 weights): the
    # issue's bar of 99 %; --quantize int8 also requantizes every conv / linear output to a calibrated
    # uint8 grid, where a value near a binarizer's threshold can change sign: verify's 98 % bar
    # (measured 98.9-99.6 % on these models, benchmarks/results/binarization.md)
    assert agreement >= (0.99 if precision == "none" else 0.98)


def test_packed_1_bit_file_holds_the_deployed_weights_in_at_most_1_25_of_fp32(artifacts):
    art = artifacts["none"]
    packed = art.file("weights_1bit")
    weights = read_packed(packed)
    deployed = _binarized_weights_in_onnx(art.file("model"))
    fp32 = 0
    for layer in BINARIZED:
        w = deployed[layer][1]
        assert np.array_equal(weights[layer], w if w.ndim == 4 else w.reshape(weights[layer].shape))
        fp32 += 4 * w.size
    assert fp32 == 4 * (4608 + 32768)
    assert packed.stat().st_size <= fp32 / 25
    assert art.report["target_report"]["quantization"]["packed_weights"]["bytes"] == packed.stat().st_size


def test_a_1_bit_runtime_computes_a_binarized_layer_from_the_packed_file_by_xnor_popcount(
    binarized, artifacts
):
    """The documented layout (docs/binarization.md), read with safetensors alone: bit 1 = +1, rows of
    ceil(n / 8) bytes, most significant bit first. A binarized Linear on +-1 inputs is then
    ``scale[c] * (n - 2 popcount(w_bits[c] XOR x_bits)) + bias[c]``: what the PyTorch layer computes."""
    from safetensors import safe_open

    with safe_open(str(artifacts["none"].file("weights_1bit")), framework="numpy") as f:
        assert f.metadata()["format"] == "edgec-1bit" and f.metadata()["version"] == "1"
        assert json.loads(f.metadata()["shapes"])["classifier.1"] == [64, 512]
        bits, scale = f.get_tensor("classifier.1.bits"), f.get_tensor("classifier.1.scale")
    assert bits.dtype == np.uint8 and bits.shape == (64, 64)
    module = binarized[0].program.module
    layer = module.get_submodule("classifier.1")
    seen: dict[str, torch.Tensor] = {}
    h_in = layer.input_quantizer.register_forward_hook(lambda _m, _a, o: seen.__setitem__("x", o))
    h_out = layer.register_forward_hook(lambda _m, _a, o: seen.__setitem__("y", o))
    x, _ = _holdout()
    with torch.no_grad():
        module(torch.from_numpy(x[:64]))
    h_in.remove()
    h_out.remove()
    xb = seen["x"].numpy()
    assert set(np.unique(xb)) == {-1.0, 1.0}
    x_bits = np.packbits(xb >= 0, axis=1, bitorder="big")  # [N, 64]
    popcount = np.unpackbits(x_bits[:, None, :] ^ bits[None], axis=2).sum(axis=2, dtype=np.int64)  # [N, 64]
    y = scale * (512 - 2 * popcount) + layer.bias.detach().numpy()
    np.testing.assert_allclose(y, seen["y"].numpy(), rtol=1e-5, atol=1e-5)


def test_compiled_binarized_cnn_verifies_and_reports_bops(artifacts):
    art = artifacts["int8"]
    res = edgec.verify(art)
    assert res.passed and res.metrics["reference"] == "the compressed model"
    energy = art.report["energy"]
    assert energy["totals"]["bops"] == 327_680
    assert any("binary operations" in n for n in energy["notes"])
    assert "bops" in energy["conventions"] and "Bi-Real" in energy["conventions"]["ops_bop64"]


def test_1w_32a_keeps_real_inputs_and_has_no_bops(tmp_path):
    res = edgec.compress(
        "zoo:digits-cnn", passes=["binarize:estimator=ste,activations=32"], train="builtin:digits",
        epochs=1, seed=0,
    )  # fmt: skip
    assert all(
        res.program.quant[n].weight_bits == 1 and res.program.quant[n].act_bits is None for n in BINARIZED
    )
    assert res.report["after"]["bops"] == 0 and not res.program.edits
    art = edgec.compile(res.program, target="cpu", out=tmp_path / "cpu")  # in-memory program
    assert set(_binarized_weights_in_onnx(art.file("model"))) == set(BINARIZED)  # int8 + DequantizeLinear


def test_compress_force_replaces_an_earlier_compressed_program_only(tmp_path):
    """Machinery fix: `compress --force` into its own earlier output was refused ("holds other files"),
    as the compressed program's report names its files as plain paths and has no target."""
    out = tmp_path / "out"
    for _ in range(2):
        edgec.compress(
            "zoo:digits-cnn", passes=["binarize:epochs=0"], train="builtin:digits", out=out, force=True
        )
    assert sorted(p.name for p in out.iterdir()) == [
        "program.json",
        "report.json",
        "report.md",
        "weights.safetensors",
    ]
    (out / "mine.txt").write_text("a user's file")
    with pytest.raises(UsageError, match="holds other files"):
        edgec.compress(
            "zoo:digits-cnn", passes=["binarize:epochs=0"], train="builtin:digits", out=out, force=True
        )
    assert (out / "mine.txt").read_text() == "a user's file"


# ---- a binarized spiking network on Loihi -----------------------------------------------------------
@pytest.mark.slow
def test_binarized_snn_compiles_to_loihi_with_two_weights_per_neuron(tmp_path):
    import h5py

    res = edgec.compress(
        "zoo:digits-snn-cnn",
        passes=["binarize"],
        train="builtin:digits",
        epochs=1,
        seed=0,
        out=tmp_path / "c",
    )
    assert res.program.quant["net.2.module"].weight_bits == 1 and not res.program.edits  # spikes stay
    art = edgec.compile(tmp_path / "c", target="loihi", out=tmp_path / "loihi")
    with h5py.File(art.file("network"), "r") as f:
        w = f["layer/2/weight"][()]
    assert w.shape == (32, 16, 3, 3)
    for c in range(32):
        values = np.unique(w[c])
        assert len(values) == 2 and values[0] == -values[1]
    assert edgec.verify(art).passed


def test_binarized_snn_compiles_for_the_cpu_with_int8_weights_and_the_packed_file(tmp_path):
    """The CPU target runs a spiking network inside a wrapper module (graph paths ``snn.net.2.module``):
    the binarized layer is still found, stored int8 with two values per channel and bit-packed."""
    from onnx import load, numpy_helper

    edgec.compress(
        "zoo:digits-snn-cnn", passes=["binarize:epochs=0"], train="builtin:digits", out=tmp_path / "c"
    )
    art = edgec.compile(tmp_path / "c", target="cpu", out=tmp_path / "cpu")
    packed = read_packed(art.file("weights_1bit"))
    assert list(packed) == ["net.2.module"] and packed["net.2.module"].shape == (32, 16, 3, 3)
    init = {i.name: numpy_helper.to_array(i) for i in load(str(art.file("model"))).graph.initializer}
    q = init["snn.net.2.module.weight_int8"]
    assert q.dtype == np.int8 and set(np.unique(q)) == {-1, 1}
    scale = init["snn.net.2.module.weight_int8_scale"]
    assert np.array_equal(q.astype(np.float32) * scale.reshape(-1, 1, 1, 1), packed["net.2.module"])
    assert edgec.verify(art).metrics["top1_agreement"] == 1.0


# ---- bad input: one line, exit 2, nothing written ---------------------------------------------------
@pytest.mark.parametrize(
    ("model", "recipe", "words"),
    [
        ("zoo:digits-snn-mlp", "binarize", "no layer of the model would be binarized"),
        ("zoo:digits-cnn", "binarize:weights=2", "binarize:weights=2 contradicts binarization"),
        ("zoo:digits-cnn", "binarize:estimator=ste,o_end=3", "o_end set with estimator=ste"),
        ("zoo:digits-cnn", "binarize:activations=8", "activations=8 is not a width binarize trains"),
        (
            "zoo:digits-cnn",
            "binarize:layers=features.3:12",
            "layer width 12 for 'features.3' is out of range",
        ),
        ("zoo:digits-snn-cnn", "binarize:activations=32", "activations=32 on a spiking network"),
        ("zoo:digits-cnn", "bi-vit", "bi-vit binarizes q, k, v and the attention map where the model marks"),
        ("zoo:digits-vit", "bi-vit:attention=false,ranking=1", "ranking distillation with attention=false"),
        ("zoo:digits-snn-cnn", "bi-vit", "compresses non-spiking networks (ANNs); this model is an SNN"),
    ],
)
def test_binarize_bad_input(cli, tmp_path, monkeypatch, model, recipe, words):
    monkeypatch.chdir(tmp_path)
    done = cli(
        "compress", model, "-r", recipe, "--train-data", "builtin:digits", "--epochs", "1", "-o", "out"
    )
    assert done.exit_code == 2, done.stdout + done.stderr
    assert words in " ".join(done.stderr.split())
    assert len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_binarize_edit_is_a_one_line_model_error(binarized, tmp_path):
    import shutil

    src = binarized[1]
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    doc = json.loads((bad / "program.json").read_text())
    doc["edits"][0]["quantizer"]["kind"] = "ternary"
    (bad / "program.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"cannot replay binarize-input on 'features\.3'"):
        load_program_dir(bad)


def test_compress_prints_the_binary_operations_of_a_binarized_program(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = cli(
        "compress", "zoo:digits-cnn", "-r", "binarize:epochs=0", "--train-data", "builtin:digits", "-o", "out"
    )  # fmt: skip
    assert done.exit_code == 0, done.stdout + done.stderr
    cells = [line.split("│") for line in done.stdout.splitlines() if "│" in line]
    rows = {c[1].strip(): c[2:4] for c in cells}
    assert [c.strip() for c in rows["of which binary ops (BOPs)"]] == ["0", "327,680"]
    assert [c.strip() for c in rows["BOPs / 64 + FLOPs"]] == ["337,536", f"{327_680 / 64 + 9_856:,.0f}"]
