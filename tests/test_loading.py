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
    y = edgec.run(art, holdout[0])["output"]
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
    with pytest.raises(
        edgec.DataError, match=r"artifact damaged: source/sd\.pt changed since compile"
    ) as info:
        edgec.verify(art.path)
    assert info.value.exit_code == 3


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
    with pytest.raises(edgec.DataError, match=r"artifact damaged: model\.onnx changed since compile"):
        edgec.verify(art.path)  # an edited file is caught on open
    # a compiler bug would write a wrong model with a matching sha256: verify catches that too
    rep = json.loads((art.path / "report.json").read_text())
    rep["files"]["model"]["sha256"] = sha256_of(art.file("model"))
    (art.path / "report.json").write_text(json.dumps(rep))
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


# ---- models exported the way the README says (issue 7 item 1, item 2) --------------------------------
@pytest.fixture(scope="module")
def user_cnn(tmp_path_factory: pytest.TempPathFactory):
    from user_models import CNN_SHAPE, save_data, save_export, save_torchscript, small_cnn

    d = tmp_path_factory.mktemp("user")
    m = small_cnn()
    return {
        "module": m,
        "export-batch1": save_export(m, d / "cnn.pt2", CNN_SHAPE),
        "export-dynamic": save_export(m, d / "cnn_dyn.pt2", CNN_SHAPE, dynamic=True),
        "torchscript": save_torchscript(m, d / "cnn_ts.pt", CNN_SHAPE),
        "data": save_data(d / "data.npz", CNN_SHAPE),
    }


@pytest.mark.parametrize("fmt", ["export-batch1", "export-dynamic", "torchscript"])
def test_user_export_compiles_int8_verifies_reports_and_benches_from_the_cli(fmt, user_cnn, cli, tmp_path):
    """`torch.export.export(m, (torch.rand(1, ...),))` fixes batch == 1 in the graph's guards: calibration,
    the energy estimate, verify, report and bench all feed batches, split into what the graph takes."""
    src, data = user_cnn[fmt], user_cnn["data"]
    shape = ["--input-shape", "1,3,16,16"] if fmt == "torchscript" else []
    out = tmp_path / "out"
    res = cli("compile", src, "--quantize", "int8", "--calib", data, *shape, "-o", out, "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["program"]["static_batch"] == (1 if fmt == "export-batch1" else None)
    assert rep["program"]["outputs"] == [{"name": "output", "shape": [10]}]
    assert rep["target_report"]["quantization"]["calibration_samples"] == 40
    assert rep["energy"]["workload"]["samples"] == 32  # activity counted on 32 calibration samples
    res = cli("verify", out, "--data", data, "--json")
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["samples"] == 40 and m["top1_agreement"] >= 0.95
    res = cli("verify", out, "--json")  # no --data: 64 random samples, in batches
    assert res.exit_code == 0, res.stderr
    res = cli("report", src, "--data", data, "--format", "json", *shape)
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["energy"]["workload"]["samples"] == 32
    res = cli("bench", out, "--batch-size", "4", "--iterations", "3", "--warmup", "1", "--json")
    assert res.exit_code == 0, res.stderr
    x = np.random.default_rng(1).random((5, 3, 16, 16), dtype=np.float32)
    y = edgec.run(out, x)["output"]
    with torch.no_grad():
        ref = user_cnn["module"](torch.from_numpy(x)).numpy()
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max()  # int8 within 5 % of the range


def test_batch1_export_runs_batches_in_pieces(user_cnn):
    """run_model splits a batch for a batch-1 graph (padding nothing) and gives the module's own outputs."""
    from edgec.snn import run_outputs

    program = load_program(str(user_cnn["export-batch1"]))
    assert program.static_batch == 1
    x = torch.rand(7, 3, 16, 16)
    with pytest.raises(AssertionError, match="Guard failed"):
        program.module(x)  # what happened before: the graph's guard
    got = run_outputs(program, x)["output"]
    with torch.no_grad():
        np.testing.assert_allclose(got, user_cnn["module"](x).numpy(), atol=1e-5)


def test_verify_of_an_export_artifact_needs_no_train_eval_switch(user_cnn, tmp_path):
    """torch.export's module raises on .eval(); verify used to call it (issue 7 item 2)."""
    art = edgec.compile(str(user_cnn["export-batch1"]), out=tmp_path / "o")
    result = edgec.verify(art.path)
    assert result.passed and result.metrics["max_abs_error"] < 1e-4


def test_export_in_training_mode_is_refused(tmp_path, cli):
    from user_models import CNN_SHAPE, save_export, small_cnn

    path = save_export(small_cnn().train(), tmp_path / "train.pt2", CNN_SHAPE)
    res = cli("compile", path, "-o", tmp_path / "o")
    assert res.exit_code == 3
    assert "exported in training mode" in res.stderr and "m.eval()" in res.stderr


# ---- the Python API (issue 15 item 13) -----------------------------------------------------------------
def test_api_compiles_an_exported_program_and_verifies_an_in_memory_module(tmp_path):
    """`edgec.compile(torch.export.export(...))` was a bare TypeError; after compiling a module in memory,
    `edgec.verify(art)` said "no copy of its source model"; printing an Artifact dumped the report."""
    from user_models import CNN_SHAPE, small_cnn

    m = small_cnn()
    ep = torch.export.export(m, (torch.rand(1, *CNN_SHAPE),))
    art = edgec.compile(ep, out=tmp_path / "ep")
    assert (
        art.report["program"]["static_batch"] == 1 and art.report["program"]["source"]["format"] == "export"
    )
    x = np.random.default_rng(0).random((3, *CNN_SHAPE), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(edgec.run(art, x)["output"], m(torch.from_numpy(x)).numpy(), atol=1e-4)
    assert edgec.verify(art).passed
    art = edgec.compile(m, input_shape=(1, *CNN_SHAPE), out=tmp_path / "mod")
    assert edgec.verify(art).passed  # the Artifact compile returned knows its module
    # a later session (the directory only): the module was saved as a torch.export program, no pickle
    assert art.report["files"]["source_model"]["path"] == "source/model.pt2"
    again = edgec.verify(str(tmp_path / "mod"))
    assert again.passed and again.metrics["max_abs_error"] < 1e-4
    text = repr(art)
    assert text.startswith(f"Artifact('{tmp_path / 'mod'}', target='cpu'") and len(text) < 300
    assert "files=['model', 'source_model']" in text
    with pytest.raises(edgec.UsageError, match="cannot compile a dict"):
        edgec.compile({"weights": 1}, out=tmp_path / "bad")


def test_building_a_zoo_model_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    ZOO["resnet20"].build()
    assert torch.equal(torch.rand(3), want)
    a, b = ZOO["resnet20"].build(), ZOO["resnet20"].build()  # random-init entries stay reproducible
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
