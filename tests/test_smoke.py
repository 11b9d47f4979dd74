"""The end-to-end path a user takes first: compile the zoo digits model for the CPU and check it."""

from __future__ import annotations

import json

import numpy as np
from conftest import assert_files_hashed


def test_int8_artifact_is_fast_graph_and_accurate(digits_int8, cli):
    report = assert_files_hashed(digits_int8)
    assert report["schema_version"] == 1
    assert report["target"] == "cpu"
    fusion = report["target_report"]["ort_fusion"]
    # every conv / gemm runs as an integer kernel in ORT's optimized graph
    assert fusion["fused_quantized_ops"] >= 4
    assert fusion["float_compute_ops"] == 0
    res = cli("verify", digits_int8, "--json")
    assert res.exit_code == 0, res.stderr
    metrics = json.loads(res.stdout)["metrics"]
    assert metrics["samples"] == 540  # the digits holdout: 30 % of 1797
    assert metrics["accuracy_artifact"] >= metrics["accuracy_source"] - 0.005


def _model_logits(x: np.ndarray) -> np.ndarray:
    import torch

    from edgec.models import ZOO

    with torch.no_grad():
        return ZOO["digits-cnn"].build().eval()(torch.from_numpy(x)).numpy()


def test_run_outputs_are_the_models_outputs(digits_fp32, digits_int8, cli, tmp_path):
    """`edgec run` writes what the model computes: FP32 to float precision, INT8 within its quantization
    error and with the model's top-1 on nearly every sample."""
    from edgec.data import open_dataset

    x, _ = open_dataset("builtin:digits:holdout").arrays(64)
    np.save(tmp_path / "x.npy", x)
    ref = _model_logits(x)
    for art, name in ((digits_fp32, "fp32"), (digits_int8, "int8")):
        res = cli("run", art, "--input", tmp_path / "x.npy", "--output", tmp_path / f"{name}.npy")
        assert res.exit_code == 0, res.stderr
        y = np.load(tmp_path / f"{name}.npy")
        assert y.shape == ref.shape and y.dtype == np.float32
        if name == "fp32":
            np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
        else:
            assert not np.allclose(y, ref, atol=1e-4), "int8 outputs are the float model's: not quantized?"
            assert np.abs(y - ref).max() < 0.1 * np.abs(ref).max()
            assert (y.argmax(1) == ref.argmax(1)).mean() >= 62 / 64


def test_int8_graph_has_bn_folded_and_u8s8_qdq(digits_int8):
    import onnx
    from onnx import TensorProto

    model = onnx.load(digits_int8 / "model.onnx")
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops
    inits = {i.name: i for i in model.graph.initializer}
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quant
    # activations: uint8 zero points (asymmetric); weights: int8, symmetric, one scale per output channel
    for n in quant:
        assert inits[n.input[2]].data_type == TensorProto.UINT8
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    conv_w = [n for n in weight_dq if len(inits[n.input[0]].dims) == 4]
    assert conv_w
    for n in conv_w:
        w = inits[n.input[0]]
        assert w.data_type == TensorProto.INT8
        assert list(inits[n.input[1]].dims) == [w.dims[0]]  # per-channel scales
        zp = onnx.numpy_helper.to_array(inits[n.input[2]])
        assert (zp == 0).all()


def test_declared_dependencies_are_the_imported_ones():
    """Every third-party package edgec imports is declared in pyproject (dependencies or an extra), and every
    core dependency is imported by edgec (issue 7 item 8: torchvision was imported and undeclared;
    matplotlib, onnxoptimizer were declared and never imported)."""
    import ast
    import re
    import sys
    import tomllib
    from importlib.metadata import packages_distributions
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}

    core = names(meta["dependencies"])
    extras = {k: names(v) for k, v in meta["optional-dependencies"].items()}
    declared = core.union(*extras.values())
    dists = packages_distributions()
    imported: set[str] = set()
    for folder in ("toolchain", "targets", "models", "calibration"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                for mod in mods:
                    top = mod.split(".")[0]
                    # lava: installed --no-deps (the "lava" extra lists its needs); tensorrt, cuda: devices
                    if top in sys.stdlib_module_names or top in ("edgec", "lava", "tensorrt", "cuda"):
                        continue
                    imported |= {d.lower().replace("_", "-") for d in dists.get(top, [top])}
    assert imported - declared == set(), "imported but not declared"
    # core dependencies edgec needs without importing them itself: the dynamo ONNX exporter's runtime
    indirect = {"onnxscript"}
    assert core - imported - indirect == set(), "declared but never imported"
    assert "onnxoptimizer" not in declared and "matplotlib" not in core
    assert extras["lava"] >= {"scipy", "matplotlib", "opencv-python-headless"}  # what lava-dl imports
