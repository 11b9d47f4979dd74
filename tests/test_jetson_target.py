"""The Jetson target end to end on CPU: graphs for every zoo CNN and a user's torch.export model pass
the TensorRT rules, INT8 / FP16 / INT4 graphs agree with PyTorch in ONNX Runtime, the builder settings
and buffers handed to TensorRT are right, and what needs TensorRT says so (exit 7). Tests of the
device path itself are marked ``gpu`` and run only where TensorRT imports (a Jetson or GPU machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import edgec
from edgec.artifact import Artifact
from edgec.errors import ConstraintViolation, MissingDependency, UsageError
from edgec.targets.jetson import engine_settings
from edgec.targets.jetson.rules import check_graph
from edgec.targets.jetson.settings import check_batch, io_buffers, parser_error_rows


def _graph_ok(art: Path, precision: str) -> onnx.ModelProto:
    model = onnx.load(str(art / "model.onnx"))
    assert check_graph(model, precision=precision) == []
    return model


@pytest.fixture(scope="module")
def digits_jetson_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("jetson") / "digits-int8"
    edgec.compile("zoo:digits-cnn", target="jetson", quantize="int8", calib="builtin:digits", out=out)
    return out


def test_digits_int8_agrees_with_pytorch(digits_jetson_int8):
    """Must show: >= 99 % top-1 agreement on the holdout, accuracy within 0.5 points."""
    m = edgec.verify(digits_jetson_int8).metrics
    assert m["samples"] == 540
    assert m["top1_agreement"] >= 0.99
    assert abs(m["accuracy_artifact"] - m["accuracy_source"]) <= 0.005
    model = _graph_ok(digits_jetson_int8, "int8")
    ops = [n.op_type for n in model.graph.node]
    # 2 Conv + 2 Gemm: one activation Q/DQ pair and one weight DQ each
    assert ops.count("QuantizeLinear") == 4 and ops.count("DequantizeLinear") == 8
    rep = json.loads((digits_jetson_int8 / "report.json").read_text())
    assert rep["target_report"]["quantization"]["calibration_samples"] == 128
    assert rep["energy"]["headline"]["table"] == "orin-nano-int8@1"


@pytest.mark.parametrize("name", ["resnet20", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_zoo_resnets_int8_pass_the_rules(name, tmp_path):
    shape = {"resnet20": (3, 32, 32), "resnet18": (3, 224, 224)}[name]
    x = np.random.default_rng(0).random((8, *shape), dtype=np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    out = tmp_path / name
    edgec.compile(f"zoo:{name}", target="jetson", quantize="int8", calib=str(tmp_path / "calib.npz"), out=out)
    model = _graph_ok(out, "int8")
    q = json.loads((out / "report.json").read_text())["target_report"]["quantization"]
    # every residual Add got TensorRT's Conv+Add pattern: the conv branch direct, the skip via Q/DQ
    assert q["residual_adds_fused_pattern"] == {"resnet20": 9, "resnet18": 8}[name]
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert all(sorted(producers[i] for i in a.input) == ["Conv", "DequantizeLinear"] for a in adds)
    res = edgec.verify(out, data=str(tmp_path / "calib.npz"))
    assert res.metrics["top1_agreement"] == 1.0


@pytest.mark.parametrize("batch", ["static-1", "dynamic"])
def test_user_torch_export_model_int8(tmp_path, batch):
    """A user's model saved with torch.export the way the README says (batch 1) or with a dynamic
    batch: compiles to explicit Q/DQ, and `edgec verify` runs the artifact against the exported program."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.conv(x))
            y = torch.relu(self.conv2(y) + y)
            return self.fc(y.mean((2, 3)))

    torch.manual_seed(0)
    path = tmp_path / "net.pt2"
    if batch == "dynamic":
        dim = torch.export.Dim("batch")
        ep = torch.export.export(Net().eval(), (torch.rand(2, 3, 16, 16),), dynamic_shapes=({0: dim},))
    else:
        ep = torch.export.export(Net().eval(), (torch.rand(1, 3, 16, 16),))
    torch.export.save(ep, path)
    x = np.random.default_rng(1).random((32, 3, 16, 16), dtype=np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    out = tmp_path / "out"
    edgec.compile(str(path), target="jetson", quantize="int8", calib=str(tmp_path / "data.npz"), out=out)
    _graph_ok(out, "int8")
    m = edgec.verify(out, data=str(tmp_path / "data.npz")).metrics
    assert m["samples"] == 32
    assert m["top1_agreement"] >= 0.95
    y = edgec.run(out, x[:1])["output"]  # one sample, as a batch-1 engine takes it
    with torch.no_grad():
        ref = torch.export.load(path).module()(torch.from_numpy(x[:1])).numpy()
    assert y.shape == ref.shape == (1, 5)
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max()


def test_fp16_graph(tmp_path):
    out = tmp_path / "fp16"
    edgec.compile("zoo:digits-cnn", target="jetson", quantize="fp16", out=out)
    model = _graph_ok(out, "fp16")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stay FP32
    conv_w = next(i for i in model.graph.initializer if len(i.dims) == 4)
    assert conv_w.data_type == onnx.TensorProto.FLOAT16
    m = edgec.verify(out).metrics
    assert m["top1_agreement"] >= 0.99 and m["max_abs_error"] < 0.05


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x).mean(1))


def test_int4_weights_transformer(tmp_path):
    torch.manual_seed(0)
    module = _Tiny().eval()
    out = tmp_path / "int4"
    x = np.random.default_rng(0).random((16, 16, 64), dtype=np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    cfg = edgec.config.load_config(target="jetson", quantize="int4-weights", input_shape=(1, 16, 64))
    cfg.target_options["jetson"] = {"int4_block": 32}
    edgec.api.compile(module, out=out, config=cfg)
    model = onnx.load(str(out / "model.onnx"))
    assert check_graph(model, precision="int4-weights") == []
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    inits = {i.name: i for i in model.graph.initializer}
    # the three MatMul weights of the layer (in-projection, linear1, linear2) as int4 blocks of 32
    assert len(dqs) == 3
    for dq in dqs:
        assert inits[dq.input[0]].data_type == onnx.TensorProto.INT4
        assert onnx.helper.get_attribute_value(dq.attribute[1]) == 32
        assert (onnx.numpy_helper.to_array(inits[dq.input[1]]) > 0).all()  # TensorRT: positive scales
    y = edgec.run(out, x)["output"]
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert np.abs(y - ref).max() < 0.1 * np.abs(ref).max()


def test_int4_on_a_cnn_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no MatMul"):
        edgec.compile("zoo:digits-cnn", target="jetson", quantize="int4-weights", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_dla_compile_and_rules(tmp_path, cli):
    out = tmp_path / "dla"
    r = cli("compile", "zoo:digits-cnn", "--target", "jetson", "--quantize", "fp16", "--dla", "-o", out)
    assert r.exit_code == 0, r.stderr
    model = onnx.load(str(out / "model.onnx"))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 1, 8, 8]
    rep = json.loads((out / "report.json").read_text())["target_report"]
    assert rep["dla"] == {"layers_on_dla": 9, "gpu_fallback_layers": []}
    # a fixed-batch graph still verifies on any number of samples (run in chunks of its batch)
    assert edgec.verify(out).metrics["top1_agreement"] >= 0.99
    # ResNet-20 ends in GlobalAveragePool, which the Orin DLA does not take through TensorRT
    r = cli(
        "compile", "zoo:resnet20", "--target", "jetson", "--quantize", "fp16", "--dla", "-o", tmp_path / "r"
    )
    assert r.exit_code == 4 and not (tmp_path / "r").exists()
    cfg = edgec.config.load_config(target="jetson", quantize="fp16")
    cfg.target_options["jetson"] = {"dla": True}
    with pytest.raises(ConstraintViolation) as exc:
        edgec.api.compile("zoo:resnet20", out=tmp_path / "r", config=cfg)
    assert [(v.rule, v.layer) for v in exc.value.violations] == [
        ("dla-unsupported-op", "/pool/GlobalAveragePool")
    ]
    (tmp_path / "edgec.toml").write_text("[target.jetson]\ngpu_fallback = true\n")
    r = cli(
        "compile", "zoo:resnet20", "--target", "jetson", "--quantize", "fp16", "--dla",
        "--config", tmp_path / "edgec.toml", "-o", tmp_path / "r",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    fallback = json.loads((tmp_path / "r/report.json").read_text())["target_report"]["dla"][
        "gpu_fallback_layers"
    ]
    assert fallback == ["/pool/GlobalAveragePool"]


def test_precisions_and_models_the_target_refuses(cli, tmp_path):
    r = cli("compile", "zoo:digits-cnn", "--target", "cpu", "--quantize", "fp16", "-o", tmp_path / "a")
    assert r.exit_code == 2 and "no precision 'fp16'" in r.stderr
    # a spiking network runs as its float graph (FP32 / FP16); its 0/1 spikes are not re-quantized
    r = cli("compile", "zoo:digits-snn-mlp", "--target", "jetson", "--quantize", "int8", "-o", tmp_path / "b")
    assert r.exit_code == 4 and "snn-precision" in r.stderr and not (tmp_path / "b").exists()
    (tmp_path / "edgec.toml").write_text("[target.jetson]\nbatch = 'one'\n")
    r = cli(
        "compile",
        "zoo:digits-cnn",
        "--target",
        "jetson",
        "--config",
        tmp_path / "edgec.toml",
        "-o",
        tmp_path / "c",
    )
    assert r.exit_code == 2 and "batch must be int" in r.stderr


def test_without_tensorrt_device_verbs_exit_7(digits_jetson_int8, cli):
    pytest.importorskip("numpy")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    r = cli("build-engine", digits_jetson_int8)
    assert (
        r.exit_code == 7 and "TensorRT is not installed" in r.stderr and "--backend onnxruntime" in r.stderr
    )
    r = cli("bench", digits_jetson_int8, "--backend", "tensorrt")
    assert r.exit_code == 7
    r = cli("bench", digits_jetson_int8, "--iterations", "5", "--json")  # the same graph on ONNX Runtime
    assert r.exit_code == 0 and json.loads(r.stdout)["backend"] == "onnxruntime"


def test_build_engine_refuses_other_targets(digits_int8, cli):
    r = cli("build-engine", digits_int8)
    assert r.exit_code == 2 and "no device engine" in r.stderr


# ---- what the TensorRT layer is handed ---------------------------------------------------------
def test_builder_settings_for_both_generations(digits_jetson_int8):
    art = Artifact.open(digits_jetson_int8)
    for version, gen in (("10.3.0", 10), ("11.4.1", 11)):
        s = engine_settings(art, version, workspace_mb=512, dla_core=None, max_batch=32)
        assert s.api_generation == gen
        assert s.network_flags == ("STRONGLY_TYPED",) and s.builder_flags == ()  # no precision flag
        assert s.workspace_bytes == 512 * 2**20 and s.device == "GPU"
        assert s.profile == {"input": ((1, 1, 8, 8), (1, 1, 8, 8), (32, 1, 8, 8))}
    with pytest.raises(MissingDependency, match="too old"):
        engine_settings(art, "8.6.1", workspace_mb=512, dla_core=None, max_batch=32)
    with pytest.raises(UsageError, match="implicit quantization"):
        engine_settings(art, "10.3.0", workspace_mb=512, dla_core=0, max_batch=32)


def test_builder_settings_for_the_dla(tmp_path):
    out = tmp_path / "dla16"
    cfg = edgec.config.load_config(target="jetson", quantize="fp16")
    cfg.target_options["jetson"] = {"dla": True, "gpu_fallback": True}
    edgec.api.compile("zoo:digits-cnn", out=out, config=cfg)
    art = Artifact.open(out)
    s = engine_settings(art, "10.3.0", workspace_mb=256, dla_core=1, max_batch=8)
    assert (s.device, s.dla_core, s.builder_flags) == ("DLA", 1, ("GPU_FALLBACK",))
    assert s.profile == {"input": ((1, 1, 8, 8),) * 3}  # static: the DLA takes no dynamic shapes
    with pytest.raises(UsageError, match="no DLA support"):
        engine_settings(art, "11.2.0", workspace_mb=256, dla_core=0, max_batch=8)
    assert engine_settings(art, "11.4.1", workspace_mb=256, dla_core=0, max_batch=8).device == "DLA"


def test_io_buffers_and_batches():
    bufs = io_buffers([("input", True, "FLOAT", (-1, 1, 8, 8)), ("output", False, "HALF", (-1, 10))], 4)
    assert [(b.name, b.shape, np.dtype(b.dtype).name, b.nbytes) for b in bufs] == [
        ("input", (4, 1, 8, 8), "float32", 4 * 64 * 4),
        ("output", (4, 10), "float16", 4 * 10 * 2),
    ]
    with pytest.raises(UsageError, match="dynamic non-batch"):
        io_buffers([("x", True, "FLOAT", (1, -1))], 1)
    with pytest.raises(UsageError, match="cannot feed"):
        io_buffers([("x", True, "BF16", (1, 2))], 1)
    check_batch(8, 8, None)
    with pytest.raises(UsageError, match="exceeds"):
        check_batch(9, 8, None)
    with pytest.raises(UsageError, match="built for batch 1"):
        check_batch(2, 1, 1)


def test_parser_errors_become_rows():
    rows = parser_error_rows([("/conv/Conv", "Conv", "UNSUPPORTED_NODE", "bad pads"), ("", "", "", "x")])
    assert [(r.layer, r.rule, r.detail) for r in rows] == [
        ("/conv/Conv", "trt-parser-unsupported_node", "Conv: bad pads"),
        ("(graph)", "trt-parser", "x"),
    ]


# ---- on a device with TensorRT -------------------------------------------------------------------
@pytest.mark.gpu
def test_engine_builds_and_matches_onnxruntime(digits_jetson_int8, tmp_path):
    pytest.importorskip("tensorrt")
    import shutil

    art_dir = tmp_path / "art"
    shutil.copytree(digits_jetson_int8, art_dir)
    engine = edgec.api.build_engine(art_dir, workspace_mb=256)
    assert engine["built"] and (art_dir / "model.plan").stat().st_size > 0
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    y_trt = edgec.run(art_dir, x, backend="tensorrt")["output"]
    y_ort = edgec.run(art_dir, x, backend="onnxruntime")["output"]
    assert (y_trt.argmax(1) == y_ort.argmax(1)).mean() >= 0.99
    assert edgec.verify(art_dir, backend="tensorrt").metrics["top1_agreement"] >= 0.99


@pytest.mark.gpu
def test_bench_on_the_engine_measures_energy(digits_jetson_int8, tmp_path):
    pytest.importorskip("tensorrt")
    import shutil

    from edgec.targets.jetson.measure import default_sampler

    try:
        default_sampler()
    except MissingDependency:
        pytest.skip("no Jetson power rails here (a GPU machine, not a Jetson)")
    art_dir = tmp_path / "art"
    shutil.copytree(digits_jetson_int8, art_dir)
    edgec.api.build_engine(art_dir)
    res = edgec.bench(art_dir, backend="tensorrt", iterations=2000, batch_size=64)
    assert res.energy is not None and res.energy["energy_j"] > 0
    head = json.loads((art_dir / "report.json").read_text())["energy"]["headline"]
    assert head["source"] == "measured" and head["energy_j"] == res.energy["energy_j"]


def test_learned_scales_are_kept_not_recalibrated(tmp_path):
    """A program whose quantization record (QAT) has 8-bit input scales keeps them in the graph."""
    from edgec.loading import load_program
    from edgec.quant import LayerQuant

    prog = load_program("zoo:digits-cnn")
    learned = {"features.0": 0.0123, "features.3": 0.0456, "classifier.1": 0.0789, "classifier.3": 0.0321}
    prog.quant.update(
        {
            name: LayerQuant(method="test", act_bits=8, act_scale=s, act_zero_point=0)
            for name, s in learned.items()
        }
    )
    cfg = edgec.config.load_config(target="jetson", quantize="int8")
    out = tmp_path / "qat"
    edgec.api.compile(prog, out=out, config=cfg)
    model = _graph_ok(out, "int8")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    written = sorted(float(inits[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear")
    assert written == pytest.approx(sorted(learned.values()))
    q = json.loads((out / "report.json").read_text())["target_report"]["quantization"]
    assert q["activation_scales"].startswith("learned") and q["calibration_samples"] == 0


def test_engine_is_recorded_in_the_artifact(digits_jetson_int8, tmp_path):
    """What build-engine writes besides the plan: the file with its sha256, the settings, report.md."""
    import hashlib
    import shutil

    from edgec.targets.jetson import record_engine

    art_dir = tmp_path / "art"
    shutil.copytree(digits_jetson_int8, art_dir)
    art = Artifact.open(art_dir)
    settings = engine_settings(art, "10.3.0", workspace_mb=64, dla_core=None, max_batch=16)
    plan = b"serialized engine bytes"
    record_engine(art, plan, settings)
    rep = json.loads((art_dir / "report.json").read_text())
    assert rep["files"]["engine"] == {
        "path": "model.plan",
        "bytes": len(plan),
        "sha256": hashlib.sha256(plan).hexdigest(),
    }
    eng = rep["target_report"]["engine"]
    assert eng["built"] and eng["max_batch"] == 16 and eng["fixed_batch"] is None
    assert eng["settings"]["network_flags"] == ["STRONGLY_TYPED"]
    assert "model.plan" in (art_dir / "report.md").read_text()


def test_int4_weights_of_a_small_transformer_name_the_block_that_fits(cli, tmp_path):
    """The digits ViT's projections have K = 32 / 64 rows, not whole 128-row blocks: the error said
    "found no MatMul with a constant weight" (there are eight) and gave no way out."""
    out = tmp_path / "v4"
    res = cli("compile", "zoo:digits-vit", "--target", "jetson", "--quantize", "int4-weights", "-o", out)
    assert res.exit_code == 2
    assert "none of the 8 constant MatMul weights" in res.stderr and "(K = 32, 64)" in res.stderr
    assert "--target-option int4_block=32" in res.stderr
    assert not out.exists()
    res = cli(
        "compile", "zoo:digits-vit", "--target", "jetson", "--quantize", "int4-weights",
        "--target-option", "int4_block=32", "-o", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert ".tmp" not in report["target_report"]["engine"]["how"]  # named the writer's temporary folder
    model = onnx.load(str(out / "model.onnx"))
    blocks = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(blocks) == 8 and all(a.i == 32 for n in blocks for a in n.attribute if a.name == "block_size")
    m = edgec.verify(out, data="builtin:digits").metrics
    assert m["top1_agreement"] >= 0.98


def test_target_options_are_a_keyword_of_the_api_too(tmp_path):
    """--target-option int4_block=32 had no Python keyword (``target_options=`` was "unknown option")."""
    art = edgec.compile(
        "zoo:digits-vit", target="jetson", quantize="int4-weights", target_options={"int4_block": 32},
        out=tmp_path / "a",
    )  # fmt: skip
    assert art.report["target_report"]["options"]["int4_block"] == 32
    with pytest.raises(UsageError, match="int4_blok"):
        edgec.compile("zoo:digits-vit", target="jetson", target_options={"int4_blok": 32}, out=tmp_path / "b")
    assert not (tmp_path / "b").exists()
