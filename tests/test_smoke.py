"""The end-to-end path a user takes first: compile the zoo digits model for the CPU and check it."""

from __future__ import annotations

import json

import numpy as np


def test_int8_artifact_is_fast_graph_and_accurate(digits_int8, cli):
    report = json.loads((digits_int8 / "report.json").read_text())
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


def test_run_writes_outputs(digits_int8, cli, tmp_path):
    from edgec.data import open_dataset

    x, _ = open_dataset("builtin:digits:holdout").arrays(8)
    np.save(tmp_path / "x.npy", x)
    res = cli("run", digits_int8, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert res.exit_code == 0, res.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (8, 10)
