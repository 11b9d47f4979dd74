"""OpenVINO is an optional extra: with the module hidden (as on a machine without it), everything but
--backend openvino works, and --backend openvino says how to install it (exit 7, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgec
from edgec.targets.cpu import openvino_backend as ovb

INSTALL = "pip install 'edgec[openvino]'"


@pytest.fixture
def no_openvino(monkeypatch: Any) -> None:
    """``import openvino`` fails and find_spec finds nothing, as where it is not installed."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert not ovb.available()


def test_without_openvino_the_cpu_target_runs_on_onnx_runtime(
    no_openvino: None, cli: Any, tmp_path: Path
) -> None:
    res = cli("compile", "zoo:digits-cnn", "-o", tmp_path / "a", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    tr = rep["target_report"]
    assert tr["backend"] == "onnxruntime" and tr["runtimes"]["openvino"] == "not installed"
    assert tr["backend_choice"]["how"].startswith("the only runtime installed (OpenVINO is not")
    assert set(rep["files"]) == {"model"}  # no IR
    res = cli("compile", "zoo:digits-cnn", "-o", tmp_path / "a2")
    assert res.exit_code == 0 and INSTALL in res.stdout  # rich markup ate "[openvino]" from this line
    res = cli("verify", tmp_path / "a", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["metrics"]["runtime"]["backend"] == "onnxruntime"
    res = cli("bench", tmp_path / "a", "--iterations", "3")
    assert res.exit_code == 0 and "backend onnxruntime" in res.stdout, res.stderr
    res = cli("targets")
    assert res.exit_code == 0 and "backend openvino (also Intel GPU / NPU) (needs openvino)" in res.stdout


def test_backend_openvino_without_it_exits_7_saying_how_to_install(
    no_openvino: None, cli: Any, digits_fp32: Path, tmp_path: Path
) -> None:
    res = cli("compile", "zoo:digits-cnn", "--backend", "openvino", "-o", tmp_path / "b")
    assert res.exit_code == 7
    assert "--backend openvino needs OpenVINO, which is not installed" in res.stderr and INSTALL in res.stderr
    assert not (tmp_path / "b").exists()
    res = cli("compile", "zoo:digits-cnn", "--target-option", "precision=bf16", "-o", tmp_path / "c")
    assert res.exit_code == 7 and "precision bf16 needs OpenVINO" in res.stderr
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    for args in (
        ["run", digits_fp32, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy"],
        ["verify", digits_fp32],
        ["bench", digits_fp32, "--iterations", "2"],
    ):
        res = cli(*args, "--backend", "openvino")
        assert res.exit_code == 7, (args, res.stderr)
        assert INSTALL in res.stderr
    assert not (tmp_path / "y.npy").exists()


def test_an_openvino_artifact_runs_its_model_onnx_where_openvino_is_missing(
    cli: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    if not ovb.available():
        pytest.skip("OpenVINO is not installed: no OpenVINO artifact to compile")
    edgec.compile("zoo:digits-cnn", target="cpu", backend="openvino", out=tmp_path / "ov")
    x, _ = edgec.open_dataset("builtin:digits:holdout").arrays(8)
    want = edgec.run(tmp_path / "ov", x)["output"]
    monkeypatch.setitem(sys.modules, "openvino", None)
    np.save(tmp_path / "x.npy", x)
    res = cli("run", tmp_path / "ov", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert res.exit_code == 0, res.stderr
    assert (
        "compiled to run on OpenVINO, which is not installed here: running its model.onnx on ONNX Runtime"
        in (res.stderr)
    )
    assert np.abs(np.load(tmp_path / "y.npy") - want).max() <= 1e-4 * np.abs(want).max()


def test_a_real_process_without_openvino_exits_7(tmp_path: Path) -> None:
    """The same through a real `edgec` process whose Python cannot import openvino."""
    argv = ["edgec", "compile", "zoo:digits-cnn", "--backend", "openvino", "-o", str(tmp_path / "o")]
    script = (
        f"import sys; sys.modules['openvino'] = None; from edgec.cli import main; sys.argv = {argv!r}; main()"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr.startswith("error: --backend openvino needs OpenVINO") and INSTALL in proc.stderr
    assert not (tmp_path / "o").exists()
