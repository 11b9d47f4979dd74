"""The Jetson target exports through edgec.onnxlib, the neutral helper it shares with the CPU target
(issue 7, house item 2): it imports nothing from the CPU target, a model with several outputs keeps
them by name as on the CPU target, a torch.export model at batch 1 and one with a dynamic batch both
compile, a fixed batch (the DLA's) is asked of onnxlib, and a spiking program compiles through its
encoder (EncodedSNN) in FP32 / FP16.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from user_models import save_export, two_heads

import edgec
import edgec.api
import edgec.config
from edgec.errors import UsageError

JETSON = Path(edgec.__file__).resolve().parent / "targets" / "jetson"


def test_jetson_imports_nothing_from_the_cpu_target():
    """No module of the Jetson target names edgec.targets.cpu, and importing all of them (and
    exporting through them) loads none of it; the export and calibration come from edgec.onnxlib."""
    for path in sorted(JETSON.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not any(n.startswith("edgec.targets.cpu") for n in names), path.name
    code = (
        "import sys, tempfile, pathlib, edgec.targets.jetson as j, edgec.targets.jetson.graph as g\n"
        "import edgec.targets.jetson.qdq, edgec.targets.jetson.rules, edgec.targets.jetson.dla\n"
        "from edgec.loading import load_program\n"
        "p = load_program('zoo:digits-cnn')\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        "    info = g.export_fp32(p, pathlib.Path(d) / 'm.onnx')\n"
        "print(info.batch, info.opset, type(info).__module__)\n"
        "print(sorted(m for m in sys.modules if m.startswith('edgec.targets.cpu')))\n"
    )
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.splitlines() == ["None 17 edgec.onnxlib.export", "[]"]


def _io(out: Path) -> tuple[list[str], list[str]]:
    g = onnx.load(str(out / "model.onnx")).graph
    init = {i.name for i in g.initializer}
    return [i.name for i in g.input if i.name not in init], [o.name for o in g.output]


@pytest.mark.parametrize("as_dict", [True, False], ids=["dict", "tuple"])
def test_several_outputs_are_named_as_on_the_cpu_target(tmp_path, as_dict):
    """Before, the Jetson exporter named one output ``output`` whatever the model returned: a dict
    model lost its keys (and the second output its name). Now both targets name them alike, and the
    Jetson graph (FP32 and INT8) returns each output by name with the model's values."""
    torch.manual_seed(0)
    model = two_heads(as_dict).eval()
    names = ["cls", "box"] if as_dict else ["output_0", "output_1"]
    x = np.random.default_rng(0).random((16, 20), dtype=np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    ref = {k: v.numpy() for k, v in (ref.items() if as_dict else zip(names, ref, strict=True))}
    for target, quantize in (("cpu", "none"), ("jetson", "none"), ("jetson", "int8")):
        out = tmp_path / f"{target}-{quantize}"
        cfg = edgec.config.load_config(target=target, quantize=quantize, input_shape=(1, 20))
        cfg.calib = str(tmp_path / "x.npz") if quantize == "int8" else None
        edgec.api.compile(model, out=out, config=cfg)
        assert _io(out) == (["input"], names), (target, quantize)
        rep = json.loads((out / "report.json").read_text())
        assert [o["name"] for o in rep["target_report"]["export"]["outputs"]] == names
        y = edgec.run(out, x)
        assert list(y) == names
        tol = 1e-5 if quantize == "none" else 0.05
        for k in names:
            assert np.abs(y[k] - ref[k]).max() <= tol * max(1.0, float(np.abs(ref[k]).max())), (target, k)


@pytest.mark.parametrize("dynamic", [False, True], ids=["batch-1", "dynamic"])
def test_torch_export_models_compile_fp32_and_fixed_batch(tmp_path, dynamic):
    """A torch.export model at batch 1 (the README's way) and one with a dynamic batch compile for
    Jetson; a fixed batch asked for (the DLA's) is declared in the graph and used by the engine's
    profile; a batch the model cannot take is a one-line usage error, with nothing written."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    pt2 = save_export(model, tmp_path / "m.pt2", (3, 8, 8), dynamic=dynamic)
    x = np.random.default_rng(1).random((5, 3, 8, 8), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = tmp_path / "fp32"
    edgec.compile(str(pt2), target="jetson", out=out)
    np.testing.assert_allclose(edgec.run(out, x)["output"], ref, rtol=1e-4, atol=1e-5)
    batch = json.loads((out / "report.json").read_text())["target_report"]["export"]["batch"]
    assert batch in ("dynamic", 1)  # batch 1: the ONNX Runtime check found the batch traced in
    if dynamic:
        assert batch == "dynamic"
    for fixed in (1, 2):
        cfg = edgec.config.load_config(target="jetson", quantize="none")
        cfg.target_options["jetson"] = {"batch": fixed}
        dst = tmp_path / f"b{fixed}"
        if fixed == 2 and not dynamic:
            with pytest.raises(UsageError, match="takes batch 1 only"):
                edgec.api.compile(str(pt2), out=dst, config=cfg)
            assert not dst.exists()
            continue
        edgec.api.compile(str(pt2), out=dst, config=cfg)
        dims = onnx.load(str(dst / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_value for d in dims] == [fixed, 3, 8, 8]
        rep = json.loads((dst / "report.json").read_text())["target_report"]["export"]
        assert rep["batch"] == fixed and rep["opset"] == 17
        np.testing.assert_allclose(edgec.run(dst, x)["output"], ref, rtol=1e-4, atol=1e-5)  # in chunks


@pytest.mark.parametrize("quantize", ["none", "fp16"])
def test_spiking_program_compiles_through_its_encoder(tmp_path, quantize):
    """A spiking program (kind snn) compiles for Jetson as on the CPU target, through EncodedSNN: the
    graph takes raw input and returns output spikes [N, T, classes] equal to the program's own (FP32)
    or nearly so (FP16); verify compares spike counts. Before, the target refused every SNN."""
    from edgec.loading import load_program
    from edgec.snn import run_outputs

    out = tmp_path / quantize
    edgec.compile("zoo:digits-snn-mlp", target="jetson", quantize=quantize, out=out)
    prog = load_program("zoo:digits-snn-mlp")
    x = np.random.default_rng(0).random((8, *prog.input_shape), dtype=np.float32)
    y, ref = edgec.run(out, x)["output"], run_outputs(prog, x)["output"]
    assert y.shape == ref.shape == (8, prog.timesteps, 10)
    assert set(np.unique(y)) <= {0.0, 1.0}
    same = float((y == ref).mean())
    assert same == 1.0 if quantize == "none" else same >= 0.95
    m = edgec.verify(out).metrics
    assert m["top1_agreement"] >= 0.98 and m["outputs_identical"] >= (1.0 if quantize == "none" else 0.98)


# ---- Q/DQ numbers from edgec.onnxlib -----------------------------------------------------------
def test_weight_and_activation_quant_are_onnxlib_tensorquant():
    """The Jetson writer's numbers are onnxlib's: symmetric per-channel weight scales max|w_c| / 127
    (an all-zero channel gets scale 1), int8 values rounded half to even, activation scales
    max(|lo|, |hi|) / 127 with zero-point 0 (S8S8)."""
    from edgec.onnxlib import S8S8, TensorQuant
    from edgec.targets.jetson.qdq import act_quant

    w = np.array([[0.5, -1.27, 0.0], [0.0, 0.0, 0.0], [2.54, 0.01, -0.03]], np.float32)
    tq = TensorQuant.symmetric_for(w, 0)
    np.testing.assert_allclose(tq.scale, [0.01, 1.0, 0.02], rtol=1e-6)
    assert tq.axis == 0 and not tq.zero_point.any()
    q = tq.quantize(w)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [[50, -127, 0], [0, 0, 0], [127, 0, -2]])  # 0.5 and -1.5 to even
    assert float(TensorQuant.symmetric_for(w, None).scale) == pytest.approx(2.54 / 127)
    acts = act_quant({"t": (-0.5, 2.54)}, ["t"])
    assert float(acts["t"].scale) == pytest.approx(0.02) and int(acts["t"].zero_point) == 0
    assert acts["t"].dtype == S8S8.activation_dtype
    with pytest.raises(edgec.errors.DataError, match="no range for tensor 'u'"):
        act_quant({"t": (0.0, 1.0)}, ["t", "u"])


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class _Nested(nn.Module):
    """Layers below attributes (``body.conv``, ``head.fc``): their graph nodes are ``/body/conv/Conv``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential()
        self.body.add_module("conv", nn.Conv2d(3, 8, 3))
        self.head = _Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


def test_learned_scales_of_nested_layers_are_found_by_onnxlib(tmp_path):
    """Learned (QAT) input scales are matched to graph tensors by onnxlib's params path
    (resolve_params). Before, the Jetson target took a node's second-to-last scope as the layer
    (``/head/fc/Gemm`` -> ``fc``), missed ``head.fc``, and asked for calibration data instead."""
    from edgec.loading import load_program
    from edgec.quant import LayerQuant

    torch.manual_seed(0)
    prog = load_program(_Nested().eval(), input_shape=(1, 3, 6, 6))
    learned = {"body.conv": 0.0125, "head.fc": 0.0375}
    prog.quant.update(
        {n: LayerQuant(method="test", act_bits=8, act_scale=s, act_zero_point=0) for n, s in learned.items()}
    )
    out = tmp_path / "qat"
    edgec.api.compile(prog, out=out, config=edgec.config.load_config(target="jetson", quantize="int8"))
    model = onnx.load(str(out / "model.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert sorted(float(inits[n.input[1]]) for n in qs) == pytest.approx(sorted(learned.values()))
    q = json.loads((out / "report.json").read_text())["target_report"]["quantization"]
    assert q["activation_scales"].startswith("learned") and q["scheme_name"] == "s8s8"
