"""The command line as users and CI scripts drive it: real subprocesses, real stdout / stderr."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

BLOCK_SDKS = textwrap.dedent(
    """
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        # simulates a machine where lava and tensorrt are not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("lava", "tensorrt"):
                raise ModuleNotFoundError(f"No module named {name!r}")
    sys.meta_path.insert(0, Block())
    """
)


def test_import_and_help_are_light_and_work_without_sdks(tmp_path):
    import subprocess

    code = BLOCK_SDKS + textwrap.dedent(
        """
        import edgec, edgec.cli
        heavy = ("torch", "onnxruntime", "onnx", "lava", "tensorrt", "matplotlib")
        heavy = [m for m in heavy if m in sys.modules]
        assert not heavy, heavy
        sys.argv = ["edgec", "--help"]
        try:
            edgec.cli.main()
        except SystemExit as e:
            assert e.code in (0, None), e.code
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "compile" in proc.stdout and "verify" in proc.stdout


def test_targets_lists_availability_without_sdks(tmp_path):
    import subprocess

    code = BLOCK_SDKS + "import sys, edgec.cli; sys.argv = ['edgec', 'targets', '--json']; edgec.cli.main()"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["cpu"]["usable"] is True and rows["cpu"]["missing"] == []
    # Loihi stays usable (the emulator needs no SDK); only its lava backend is missing, and it says so
    assert rows["loihi"]["usable"] is True and rows["loihi"]["backends"] == ["emulator", "lava"]
    assert "backend lava (needs lava)" in rows["loihi"]["note"]


def test_no_top_level_models_or_targets_package(tmp_path):
    import subprocess

    names = ("models", "targets", "toolchain", "calibration")
    code = f"import importlib.util as u; print([m for m in {names!r} if u.find_spec(m)])"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.stdout.strip() == "[]", proc.stdout


def test_json_outputs_are_pure_json(cli_proc, tmp_path):
    out = tmp_path / "art"
    res = cli_proc(
        "compile", "zoo:digits-cnn", "--quantize", "int8", "--calib", "builtin:digits", "-o", out, "--json"
    )
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["target"] == "cpu"
    for args in (
        ["verify", out, "--json"],
        ["bench", out, "--iterations", "20", "--json"],
        ["models", "--json"],
    ):
        res = cli_proc(*args)
        assert res.exit_code == 0, res.stderr
        json.loads(res.stdout)  # nothing but JSON on stdout


def test_bench_reports_percentiles(cli, digits_fp32):
    res = cli("bench", digits_fp32, "--iterations", "30", "--batch-size", "4", "--json")
    assert res.exit_code == 0, res.stderr
    b = json.loads(res.stdout)
    assert b["batch_size"] == 4 and b["iterations"] == 30
    assert 0 < b["p50_ms"] <= b["p90_ms"]
    assert b["throughput_per_s"] == pytest.approx(4 * 1000 / b["mean_ms"], rel=1e-3)
    # the figures are milliseconds of this model at batch 4: an independent timing of the same ONNX
    # Runtime model agrees within a factor of 10 (a unit or batch mistake is off by 1000 or more)
    import statistics
    import time

    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(digits_fp32 / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    name = sess.get_inputs()[0].name
    times = []
    for _ in range(40):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1000)
    ours = statistics.median(times[10:])
    assert ours / 10 < b["p50_ms"] < ours * 10, (b["p50_ms"], ours)


def test_config_file_is_read_and_flags_override_it(cli_proc, tmp_path):
    (tmp_path / "edgec.toml").write_text(
        '[compile]\ntarget = "cpu"\nquantize = "int8"\ncalib = "builtin:digits"\ncalib_samples = 16\n'
    )
    res = cli_proc("compile", "zoo:digits-cnn", "-o", "a", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["target_report"]["precision"] == "int8"
    assert rep["target_report"]["quantization"]["calibration_samples"] == 16
    res = cli_proc("compile", "zoo:digits-cnn", "-o", "b", "--quantize", "none", "--json")
    assert json.loads(res.stdout)["target_report"]["precision"] == "fp32"
    (tmp_path / "edgec.toml").write_text('[compile]\nquantise = "int8"\n')
    res = cli_proc("compile", "zoo:digits-cnn", "-o", "c")
    assert res.exit_code == 2 and "unknown configuration key(s): quantise" in res.stderr
    assert not (tmp_path / "c").exists()


def test_models_and_targets_tables(cli):
    from edgec.models import ZOO

    res = cli("models")
    assert res.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if line.startswith("│ ")}
    named = {k: v for k, v in rows.items() if k}
    assert set(named) == set(ZOO)  # every zoo entry, once, and nothing else
    for name, entry in ZOO.items():
        cells = [c.strip() for c in named[name].split("│")[1:-1]]
        assert cells[2] == "x".join(map(str, entry.input_shape)), name
        assert cells[1].startswith(entry.kind), name
    as_json = {m["name"]: m for m in json.loads(cli("models", "--json").stdout)}
    assert {k: tuple(v["input_shape"]) for k, v in as_json.items()} == {
        k: tuple(e.input_shape) for k, e in ZOO.items()
    }
    res = cli("targets")
    assert res.exit_code == 0
    from edgec.target import target_names

    listed = {line.split("│")[1].strip() for line in res.stdout.splitlines() if line.startswith("│ ")}
    assert set(target_names()) <= listed


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["verify", "/nonexistent/dir"], 2, "not an artifact directory"),
        (["run", "/nonexistent/dir", "--input", "x.npy", "--output", "y.npy"], 2, "does not exist"),
        (["bench", "/nonexistent/dir"], 2, "not an artifact directory"),
    ],
)
def test_commands_on_missing_artifacts(cli, args, code, words):
    res = cli(*args)
    assert res.exit_code == code
    assert words in res.stderr


def test_run_rejects_wrong_input_shape(cli, digits_fp32, tmp_path):
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((2, 3, 8, 8), np.float32))
    res = cli("run", digits_fp32, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert res.exit_code == 3 and "shape (2, 3, 8, 8)" in res.stderr
    assert not (tmp_path / "y.npy").exists()


def test_run_writes_every_output_by_name(cli, tmp_path):
    """The session contract: outputs by name in report.json order; .npz for several, .npy refused."""
    import numpy as np
    import torch
    from user_models import TwoHeads, save_export

    torch.manual_seed(0)
    model = TwoHeads().eval()
    src = save_export(model, tmp_path / "two.pt2", (20,))
    out = tmp_path / "out"
    assert cli("compile", src, "-o", out).exit_code == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["program"]["outputs"] == [
        {"name": "output_0", "shape": [5]},
        {"name": "output_1", "shape": [3]},
    ]
    x = np.random.default_rng(0).random((6, 20), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    res = cli("run", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert res.exit_code == 2 and "2 outputs (output_0, output_1)" in res.stderr and "y.npz" in res.stderr
    assert not (tmp_path / "y.npy").exists()
    res = cli("run", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npz")
    assert res.exit_code == 0, res.stderr
    got = np.load(tmp_path / "y.npz")
    assert list(got.keys()) == ["output_0", "output_1"]
    with torch.no_grad():
        want = model(torch.from_numpy(x))
    np.testing.assert_allclose(got["output_0"], want[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(got["output_1"], want[1].numpy(), atol=1e-5)
