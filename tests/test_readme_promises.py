"""What the README promises, run from the command line as a user types it (README.md: Quickstart, What
goes in, CLI reference, exit codes). Values are checked against the model, the data or ONNX Runtime."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import edgec
from edgec.models import ZOO
from edgec.program import sha256_of

HOLDOUT = "builtin:digits:holdout"


def _model_logits(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ZOO["digits-cnn"].build().eval()(torch.from_numpy(x)).numpy()


def _input_scale(art: Path) -> float:
    """The scale of the QuantizeLinear that quantizes the model's input (set by calibration)."""
    model = onnx.load(art / "model.onnx")
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    first = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    assert first.input[0] == model.graph.input[0].name
    return float(inits[first.input[1]])


def _activation_scales(art: Path) -> tuple[float, ...]:
    """The scales of every QuantizeLinear of activations, in graph order (what calibration chose)."""
    model = onnx.load(art / "model.onnx")
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return tuple(float(inits[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear")


def _one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    return lines[0]


# ---- compile --calib-method minmax | percentile | entropy -------------------------------------------
@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """zoo:digits-cnn compiled to INT8 by `edgec compile --calib-method M` for each method."""
    from conftest import _invoke as cli

    tmp = tmp_path_factory.mktemp("calib")
    x, _ = edgec.open_dataset("builtin:digits:train").arrays(64)
    np.savez(tmp / "calib.npz", x=x)
    found: dict[str, object] = {"x": x}
    for method in ("minmax", "percentile", "entropy"):
        out = tmp / method
        res = cli(
            "compile", "zoo:digits-cnn", "--quantize", "int8", "--calib", tmp / "calib.npz",
            "--calib-method", method, "-o", out, "--json",
        )  # fmt: skip
        assert res.exit_code == 0, res.stderr
        found[method] = (out, json.loads(res.stdout)["target_report"]["quantization"])
    return found


def test_each_calibration_method_is_used_and_verifies(cli, calibrated):
    for method in ("minmax", "percentile", "entropy"):
        out, q = calibrated[method]
        assert (q["calibration_method"], q["calibration_samples"]) == (method, 64)
        res = cli("verify", out, "--json")
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["metrics"]["top1_agreement"] >= 0.98
    # minmax covers the calibration inputs' whole range [0, max]: its uint8 scale is max / 255
    x = calibrated["x"]
    assert _input_scale(calibrated["minmax"][0]) == pytest.approx(float(x.max()) / 255, rel=1e-6)
    # percentile clips the outliers of the activations: smaller ranges than minmax
    lo, hi = _activation_scales(calibrated["percentile"][0]), _activation_scales(calibrated["minmax"][0])
    assert len(lo) == len(hi) and all(a <= b for a, b in zip(lo, hi, strict=True)) and lo != hi


def test_entropy_calibration_chooses_its_own_ranges(calibrated):
    assert _activation_scales(calibrated["entropy"][0]) != _activation_scales(calibrated["minmax"][0])


# ---- verify --data, --min-agreement, exit 5 ---------------------------------------------------------
def test_verify_on_the_users_data_with_and_without_labels(cli, digits_int8, tmp_path):
    x, y = edgec.open_dataset(HOLDOUT).arrays(40)
    np.savez(tmp_path / "labelled.npz", x=x, y=y)
    np.save(tmp_path / "unlabelled.npy", x[:25])
    res = cli("verify", digits_int8, "--data", tmp_path / "labelled.npz", "--json")
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    ref = _model_logits(x)
    assert m["samples"] == 40
    assert m["accuracy_source"] == pytest.approx(float((ref.argmax(1) == y).mean()))
    out = edgec.run(digits_int8, x)["output"]
    assert m["accuracy_artifact"] == pytest.approx(float((out.argmax(1) == y).mean()))
    assert m["top1_agreement"] == pytest.approx(float((out.argmax(1) == ref.argmax(1)).mean()))
    assert m["max_abs_error"] == pytest.approx(float(np.abs(out - ref).max()), rel=1e-5)
    # no labels: the pass rule is agreement with the source model alone, no accuracy is made up
    res = cli("verify", digits_int8, "--data", tmp_path / "unlabelled.npy", "--json")
    assert res.exit_code == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["passed"] and result["metrics"]["samples"] == 25
    assert "accuracy_artifact" not in result["metrics"] and "accuracy_source" not in result["metrics"]


def test_min_agreement_decides_and_a_failed_verify_exits_5(cli, digits_fp32, tmp_path):
    art = tmp_path / "scrambled"
    shutil.copytree(digits_fp32, art)
    model = onnx.load(art / "model.onnx")
    for init in model.graph.initializer:  # swap the classifier's rows: outputs now disagree
        arr = numpy_helper.to_array(init)
        if arr.ndim == 2:
            init.CopyFrom(numpy_helper.from_array(np.roll(arr, 3, axis=0), init.name))
    onnx.save(model, art / "model.onnx")
    rep = json.loads((art / "report.json").read_text())  # as a compiler bug would write it: sha256 matches
    rep["files"]["model"]["sha256"] = sha256_of(art / "model.onnx")
    (art / "report.json").write_text(json.dumps(rep))
    x, _ = edgec.open_dataset(HOLDOUT).arrays(60)
    agreement = float((edgec.run(art, x)["output"].argmax(1) == _model_logits(x).argmax(1)).mean())
    assert agreement < 0.5
    np.save(tmp_path / "x.npy", x)
    res = cli("verify", art, "--data", tmp_path / "x.npy")
    assert res.exit_code == 5
    assert "disagrees with its source model" in _one_line_error(res.stderr)
    below, above = agreement - 0.01, agreement + 0.01
    res = cli("verify", art, "--data", tmp_path / "x.npy", "--min-agreement", f"{below:.4f}", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["metrics"]["top1_agreement"] == pytest.approx(agreement)
    res = cli("verify", art, "--data", tmp_path / "x.npy", "--min-agreement", f"{above:.4f}")
    assert res.exit_code == 5


# ---- exit codes 1 and 7 -----------------------------------------------------------------------------
def test_internal_error_exits_1_and_edgec_debug_shows_the_traceback(cli_proc, tmp_path):
    (tmp_path / "brokendata.py").write_text("def load():\n    return {'x': 1}['images']\n")
    args = ("compile", "zoo:digits-cnn", "--quantize", "int8", "--calib", "brokendata:load", "-o", "out")
    res = cli_proc(*args)
    assert res.exit_code == 1
    line = _one_line_error(res.stderr)
    assert "internal error (KeyError: 'images')" in line and "EDGEC_DEBUG=1" in line
    res = cli_proc(*args, env={"EDGEC_DEBUG": "1"})
    assert res.exit_code == 1
    assert "Traceback (most recent call last)" in res.stderr and "brokendata.py" in res.stderr
    assert not (tmp_path / "out").exists()


BLOCK_LAVA = textwrap.dedent(
    """
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):  # a machine where lava is not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "lava":
                raise ModuleNotFoundError(f"No module named {name!r}")
    sys.meta_path.insert(0, Block())
    import edgec.cli
    sys.argv = ["edgec", *sys.argv[1:]]
    edgec.cli.main()
    """
)


def test_a_missing_optional_sdk_exits_7(loihi_mlp, tmp_path):
    import subprocess

    x, _ = edgec.open_dataset(HOLDOUT).arrays(2)
    np.save(tmp_path / "x.npy", x)
    for args in (
        ["verify", loihi_mlp, "--backend", "lava", "--limit", "2"],
        [
            "run",
            loihi_mlp,
            "--input",
            tmp_path / "x.npy",
            "--output",
            tmp_path / "y.npy",
            "--backend",
            "lava",
        ],
    ):
        done = subprocess.run(
            [sys.executable, "-c", BLOCK_LAVA, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 7, done.stderr
        assert "lava" in _one_line_error(done.stderr)
    assert not (tmp_path / "y.npy").exists()


# ---- verify after the original model moved ------------------------------------------------------
@pytest.mark.parametrize("fmt", ["state_dict", "export"])
def test_verify_works_after_the_original_model_moved(cli, tmp_path, fmt):
    model = ZOO["digits-cnn"].build().eval()
    src = tmp_path / "mine" / ("model.pt" if fmt == "state_dict" else "model.pt2")
    src.parent.mkdir()
    if fmt == "state_dict":
        torch.save(model.state_dict(), src)
        extra = ["--arch", "digits-cnn"]
    else:
        torch.export.save(torch.export.export(model, (torch.rand(1, 1, 8, 8),)), src)
        extra = []
    out = tmp_path / "art"
    res = cli("compile", src, *extra, "-o", out)
    assert res.exit_code == 0, res.stderr
    shutil.move(src.parent, tmp_path / "elsewhere")  # the user moves their project
    res = cli("verify", out, "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["metrics"]["top1_agreement"] == 1.0


# ---- --config FILE, --pass NAME -----------------------------------------------------------------
def test_config_file_named_on_the_command_line(cli_proc, tmp_path):
    conf = tmp_path / "conf" / "release.toml"
    conf.parent.mkdir()
    conf.write_text(
        '[compile]\nquantize = "int8"\ncalib = "builtin:digits"\ncalib_method = "percentile"\n'
        "calib_samples = 32\n"
    )
    res = cli_proc("compile", "zoo:digits-cnn", "--config", conf, "-o", "a", "--json")
    assert res.exit_code == 0, res.stderr
    q = json.loads(res.stdout)["target_report"]["quantization"]
    assert (q["calibration_method"], q["calibration_samples"]) == ("percentile", 32)
    res = cli_proc(
        "compile", "zoo:digits-cnn", "--config", conf, "--calib-samples", "16", "-o", "b", "--json"
    )
    assert json.loads(res.stdout)["target_report"]["quantization"]["calibration_samples"] == 16
    res = cli_proc("compile", "zoo:digits-cnn", "--config", tmp_path / "missing.toml", "-o", "c")
    assert res.exit_code == 2 and "missing.toml" in _one_line_error(res.stderr)
    assert not (tmp_path / "c").exists()


def test_pass_named_on_the_command_line_runs_and_is_recorded(cli, tmp_path):
    res = cli("compile", "zoo:digits-cnn", "--pass", "fold-bn", "-o", tmp_path / "a", "--json")
    assert res.exit_code == 0, res.stderr
    passes = json.loads(res.stdout)["passes"]
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in ZOO["digits-cnn"].build().modules())
    folded = [p for p in passes if p["name"] == "fold-bn"]
    assert n_bn == 2 and folded and folded[0]["stats"] == {"folded": n_bn}
    res = cli("compile", "zoo:digits-cnn", "--pass", "fold-everything", "-o", tmp_path / "b")
    assert res.exit_code == 2 and "unknown pass 'fold-everything'" in _one_line_error(res.stderr)
    assert not (tmp_path / "b").exists()


# ---- bench --threads --------------------------------------------------------------------------------
def test_bench_threads_reach_onnx_runtime(cli, digits_fp32, monkeypatch):
    import onnxruntime as ort

    seen: list[int] = []
    real = ort.InferenceSession

    class Recording(real):  # the real session; only its options are recorded
        def __init__(self, path, sess_options=None, *args, **kwargs):
            seen.append(sess_options.intra_op_num_threads if sess_options is not None else -1)
            super().__init__(path, sess_options, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Recording)
    for threads in (1, 2):
        res = cli("bench", digits_fp32, "--threads", str(threads), "--iterations", "5", "--json")
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["threads"] == threads
        assert seen[-1] == threads
    res = cli("bench", digits_fp32, "--iterations", "5", "--json")
    assert seen[-1] == 0  # not given: ONNX Runtime's own default


# ---- report --data / --samples ------------------------------------------------------------------
def test_report_counts_activity_on_the_users_data(cli, tmp_path):
    from edgec.targets.loihi import encode_spikes

    x, _ = edgec.open_dataset(HOLDOUT).arrays(5)
    np.savez(tmp_path / "five.npz", x=x)
    np.savez(tmp_path / "zeros.npz", x=np.zeros_like(x))
    reports = {}
    for name in ("five", "zeros"):
        res = cli(
            "report", "zoo:digits-snn-mlp", "--target", "loihi", "--data", tmp_path / f"{name}.npz",
            "--samples", "5", "--format", "json",
        )  # fmt: skip
        assert res.exit_code == 0, res.stderr
        reports[name] = json.loads(res.stdout)["energy"]
    work = reports["five"]["workload"]
    assert work["samples"] == 5 and work["data"].endswith("five.npz")
    # the first synapse (net.1, Linear 64 -> 128) on these 5 samples, counted here: per input spike,
    # the non-zero weights of its column, averaged over the samples
    model = ZOO["digits-snn-mlp"].build()
    w = model.net[1].weight.detach().numpy()
    spikes = encode_spikes(x, 16, work["encoder"]).reshape(16, 5, 64)  # [T, N, 64]
    exact = float((spikes.astype(np.int64) @ (w != 0).sum(0)).sum()) / 5
    layer = {row["name"]: row for row in reports["five"]["layers"]}["net.1"]
    assert layer["sops"]["exact"] == pytest.approx(exact)
    # blank images: rate coding sends no spike, so the first synapse does no work at all
    blank = {row["name"]: row for row in reports["zeros"]["layers"]}["net.1"]
    assert blank["sops"]["exact"] == 0 and blank["input_spikes"] == 0


# ---- INT8 of a user's .pt2, calibrated on an image folder -----------------------------------------
def test_int8_of_a_users_export_calibrated_on_an_image_folder(cli, tmp_path):
    from PIL import Image

    model = ZOO["digits-cnn"].build().eval()
    torch.export.save(torch.export.export(model, (torch.rand(1, 1, 8, 8),)), tmp_path / "digits.pt2")
    x, y = edgec.open_dataset("builtin:digits:train").arrays(60)
    images = tmp_path / "images"
    for i, (img, label) in enumerate(zip(x, y, strict=True)):  # 8-bit greyscale PNGs, a folder per class
        (images / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img[0] * 255).astype(np.uint8), mode="L").save(
            images / str(label) / f"{i}.png"
        )
    out = tmp_path / "art"
    res = cli(
        "compile", tmp_path / "digits.pt2", "--quantize", "int8", "--calib", images, "-o", out, "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["program"]["source"]["format"] == "export"
    assert rep["target_report"]["quantization"]["calibration_samples"] == 60
    # minmax on the folder: the input's range is the images' [0, brightest pixel / 255]
    brightest = max(np.asarray(Image.open(p)).max() for p in images.rglob("*.png"))
    assert _input_scale(out) == pytest.approx(brightest / 255 / 255, rel=1e-5)
    assert rep["target_report"]["ort_fusion"]["float_compute_ops"] == 0
    res = cli("verify", out, "--data", HOLDOUT, "--json")
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["samples"] == 540 and m["top1_agreement"] >= 0.98
    assert m["accuracy_artifact"] >= m["accuracy_source"] - 0.01
