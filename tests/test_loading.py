"""Every accepted model format compiles to the same function as its source."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_files_hashed, sha256_of

import edgec
from edgec.loading import detect_format, load_program
from edgec.models import ZOO


@pytest.fixture(scope="module")
def digits_model():
    return ZOO["digits-cnn"].build()


@pytest.fixture(scope="module")
def holdout():
    x, y = edgec.open_dataset("builtin:digits:holdout").arrays(64)
    return x, y


def _save_all(model, d):
    x = torch.rand(1, 1, 8, 8)
    paths = {}
    paths["state_dict"] = d / "sd.pt"
    torch.save(model.state_dict(), paths["state_dict"])
    paths["checkpoint"] = d / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, paths["checkpoint"])
    paths["torchscript"] = d / "ts.pt"
    torch.jit.save(torch.jit.trace(model, x), paths["torchscript"])
    paths["export"] = d / "ep.pt2"
    torch.export.save(torch.export.export(model, (x,)), paths["export"])
    return paths


def test_formats_detected_by_content(digits_model, tmp_path):
    paths = _save_all(digits_model, tmp_path)
    renamed = tmp_path / "model.bin"  # the extension does not matter
    renamed.write_bytes(paths["export"].read_bytes())
    assert detect_format(paths["state_dict"]) == "torch_save"
    assert detect_format(paths["torchscript"]) == "torchscript"
    assert detect_format(renamed) == "export"


@pytest.mark.parametrize("fmt", ["state_dict", "checkpoint", "torchscript", "export"])
def test_each_format_compiles_and_matches_source(fmt, digits_model, holdout, tmp_path):
    paths = _save_all(digits_model, tmp_path)
    extra: dict = {}
    if fmt in ("state_dict", "checkpoint"):
        extra["arch"] = "digits-cnn"
    if fmt == "torchscript":
        extra["input_shape"] = (1, 1, 8, 8)
    art = edgec.compile(str(paths[fmt]), target="cpu", out=tmp_path / "out", **extra)
    rep = art.report
    assert rep["program"]["input_shape"] == [1, 8, 8]  # export: read from the graph
    # the user's file, its copy in source/ and every other file: the sha256 the report states is the file's
    assert rep["program"]["source"]["sha256"] == sha256_of(paths[fmt])
    assert assert_files_hashed(art.path)["files"]["source_model"]["sha256"] == sha256_of(paths[fmt])
    y = edgec.run(art, holdout[0])
    with torch.no_grad():
        ref = digits_model(torch.from_numpy(holdout[0])).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-4)


def test_verify_detects_changed_source_copy(digits_model, tmp_path):
    paths = _save_all(digits_model, tmp_path)
    art = edgec.compile(str(paths["state_dict"]), arch="digits-cnn", out=tmp_path / "out")
    src = art.file("source_model")
    sd = torch.load(src, weights_only=True)
    sd["classifier.3.bias"] += 1
    torch.save(sd, src)
    with pytest.raises(edgec.VerificationFailed, match="sha256"):
        edgec.verify(art.path)


def test_verify_fails_when_artifact_disagrees(digits_model, tmp_path):
    """An artifact whose weights no longer match its source model fails verification (exit 5)."""
    import onnx
    from onnx import numpy_helper

    art = edgec.compile("zoo:digits-cnn", out=tmp_path / "out")
    model = onnx.load(art.file("model"))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.ndim == 2:  # scramble the classifier
            init.CopyFrom(numpy_helper.from_array(np.random.default_rng(0).permutation(arr), init.name))
    onnx.save(model, art.file("model"))
    with pytest.raises(edgec.VerificationFailed, match="disagrees"):
        edgec.verify(art.path)


def test_zoo_entries_build_with_their_input_shapes():
    for name in ("digits-cnn", "resnet20"):
        program = load_program(f"zoo:{name}")
        assert program.input_shape == ZOO[name].input_shape
        assert program.source.format == "zoo"


def test_report_records_what_was_done(digits_int8):
    rep = json.loads((digits_int8 / "report.json").read_text())
    assert rep["config"]["quantize"] == "int8"
    q = rep["target_report"]["quantization"]
    assert q["calibration_samples"] == 128 and q["calibration_method"] == "minmax"
    assert "uint8" in q["scheme"] and "per channel" in q["scheme"]
    assert (digits_int8 / "report.md").read_text().startswith("# edgec report: digits-cnn -> cpu")
