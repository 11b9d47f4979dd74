"""TorchScript models (``torch.jit.trace`` and ``torch.jit.script``, saved with ``torch.jit.save``) from
the CLI, as a user saves them (issue 15): an LSTM classifier counts its MACs exactly as its .pt2 and
eager forms do (the hand formula of tests/test_energy_recurrent.py), compiles for the CPU in FP32 and
INT8 (the LSTM stays float and the report names it) and verifies; a model with a tuple output keeps
both outputs by name through compile, run and verify."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_energy_recurrent import Seq, hand_macs
from torch import nn
from user_models import TwoHeads

STEPS, FEATURES, CLASSES = 12, 10, 4


def _ok(res) -> None:
    assert res.exit_code == 0, (res.exit_code, res.stdout, res.stderr)


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def save_jit(model: nn.Module, path: Path, how: str, example: torch.Tensor) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        ts = torch.jit.trace(model, example) if how == "trace" else torch.jit.script(model)
        torch.jit.save(ts, str(path))
    return path


def _sequences(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c: feature c is high at every step, over uniform noise (a task an LSTM learns in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = 0.3 * torch.rand(n, STEPS, FEATURES, generator=g)
    x[torch.arange(n), :, y] += 0.7
    return x, y


@pytest.fixture(scope="module")
def lstm() -> nn.Module:
    """Seq(LSTM(10, 16) + Linear(16, 4)) trained 30 Adam steps, so its logits are well separated (an
    untrained one has near-ties that INT8 rounding flips, whatever the format)."""
    torch.manual_seed(0)
    model = Seq(nn.LSTM(FEATURES, 16, batch_first=True))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = _sequences(64, seed=0)
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_lstm_counts_every_step_and_compiles_for_the_cpu(cli, tmp_path, how, lstm):
    path = save_jit(lstm, tmp_path / "lstm.pt", how, torch.rand(1, STEPS, FEATURES))
    shape = ["--input-shape", f"1,{STEPS},{FEATURES}"]
    # energy: the same counts as test_lstm_from_a_users_pt2_counts_every_step (the .pt2 form)
    res = cli("report", path, *shape, "--quantize", "int8", "--format", "json")
    assert res.exit_code == 0, res.stderr
    energy = json.loads(res.stdout)["energy"]
    rows = {r["name"]: r for r in energy["layers"]}
    assert (rows["rnn"]["type"], rows["rnn"]["macs"]) == ("LSTM", hand_macs("LSTM", 10, 16, 1, 1, 0, 12))
    assert rows["rnn"]["macs"] == 19_968 and rows["head"]["macs"] == 16 * CLASSES
    assert energy["totals"]["macs"] == 19_968 + 16 * CLASSES
    assert rows["rnn"]["weight_params"] == 4 * 16 * (10 + 16)  # int8, every gate's weights
    assert rows["rnn"]["param_bytes"] == 4 * 16 * (10 + 16) + 4 * 2 * 4 * 16  # + int32 biases
    assert energy["totals"]["uncounted"] == []

    x, y = _sequences(48, seed=1)
    np.savez(tmp_path / "data.npz", x=x.numpy(), y=y.numpy())
    np.savez(tmp_path / "calib.npz", x=_sequences(32, seed=2)[0].numpy())
    with torch.no_grad():
        ref = lstm(x).numpy()
    assert (ref.argmax(1) == y.numpy()).all()  # the source model is right on every sample
    # FP32: runs as the source model does, verifies
    fp32 = tmp_path / "fp32"
    _ok(cli("compile", path, *shape, "--target", "cpu", "-o", fp32))
    np.save(tmp_path / "x.npy", x.numpy())
    _ok(cli("run", fp32, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, rtol=1e-4, atol=1e-5)
    _ok(cli("verify", fp32, "--data", tmp_path / "data.npz"))
    # INT8: the head runs in integer arithmetic; ORT has no INT8 LSTM kernel, and the report says so
    int8 = tmp_path / "int8"
    res = cli(
        "compile", path, *shape, "--target", "cpu", "--quantize", "int8",
        "--calib", tmp_path / "calib.npz", "-o", int8,
    )  # fmt: skip
    _ok(res)
    assert "1 in float (LSTM x1)" in res.stdout
    tr = _report(int8)["target_report"]
    assert tr["precision"] == "int8" and tr["float_ops"] == {"LSTM": 1}
    assert tr["ort_fusion"]["fused_quantized_ops"] == 1  # the head's Gemm
    res = cli("verify", int8, "--data", tmp_path / "data.npz", "--json")
    _ok(res)
    metrics = json.loads(res.stdout)["metrics"]
    assert metrics["top1_agreement"] == 1.0 and metrics["accuracy_artifact"] == 1.0
    assert 0 < metrics["max_abs_error"] < 0.1  # INT8 rounding of the head, logits ~10 apart


@pytest.mark.parametrize("how", ["trace", "script"])
def test_a_torchscript_tuple_output_keeps_every_output_through_run_and_verify(cli, tmp_path, how):
    """Issue 15.6: verify of a tuple model via TorchScript was an internal error. Both outputs come back
    from `run` by name, and `verify` reports each output's error: the same figure computed here from
    the artifact's own outputs against the source model's."""
    torch.manual_seed(0)
    model = TwoHeads().eval()
    path = save_jit(model, tmp_path / "heads.pt", how, torch.rand(1, 20))
    rng = np.random.default_rng(3)
    x = rng.random((24, 20), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "data.npz", x=x)
    np.savez(tmp_path / "calib.npz", x=rng.random((32, 20), dtype=np.float32))
    with torch.no_grad():
        ref = dict(
            zip(["output_0", "output_1"], (t.numpy() for t in model(torch.from_numpy(x))), strict=True)
        )
    for q in ("none", "int8"):
        out = tmp_path / q
        calib = ["--calib", tmp_path / "calib.npz"] if q == "int8" else []
        _ok(cli("compile", path, "--input-shape", "1,20", "--quantize", q, *calib, "-o", out))
        assert [o["name"] for o in _report(out)["program"]["outputs"]] == ["output_0", "output_1"]
        y = tmp_path / f"y-{q}.npz"
        _ok(cli("run", out, "--input", tmp_path / "x.npy", "--output", y))
        got = np.load(y)
        assert sorted(got.files) == ["output_0", "output_1"]
        assert got["output_0"].shape == (24, 5) and got["output_1"].shape == (24, 3)
        res = cli("verify", out, "--data", tmp_path / "data.npz", "--json")
        _ok(res)
        per = json.loads(res.stdout)["metrics"]["outputs"]
        assert sorted(per) == ["output_0", "output_1"]
        for name in ("output_0", "output_1"):
            err = float(np.abs(got[name].astype(np.float64) - ref[name]).max())
            assert per[name]["max_abs_error"] == pytest.approx(err, rel=1e-6, abs=1e-9)
            assert err < (1e-5 if q == "none" else 0.05)
        assert per["output_0"]["top1_agreement"] == pytest.approx(
            float((got["output_0"].argmax(1) == ref["output_0"].argmax(1)).mean())
        )
        if q == "int8":  # INT8 really changed both outputs: the errors above are measured, not zero
            assert per["output_0"]["max_abs_error"] > 0 and per["output_1"]["max_abs_error"] > 0
