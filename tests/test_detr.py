"""The tiny DETR end to end: shipped weights detect shapes, 4-bit LSQ / Q-DETR compress it, the 4-bit
program compiles for the CPU and runs in ONNX Runtime within 1 mAP point of PyTorch, the report prices
its low-bit operations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgec
from edgec.data import from_targets, open_dataset
from edgec.errors import UsageError
from edgec.loading import load_program
from edgec.store import load_program_dir
from edgec.tasks import task_for

pytestmark = pytest.mark.slow

#: the shipped zoo:detr-shapes weights measure above these on the holdout (see models/detr.py)
FP_MAP, FP_MAP50 = 0.40, 0.70


def _holdout() -> tuple[np.ndarray, list[Any]]:
    return open_dataset("builtin:shapes:holdout").targets()


@pytest.fixture(scope="module")
def lsq_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4-bit LSQ from the shipped DETR, fine-tuned briefly (one epoch on 256 training images)."""
    x, t = open_dataset("builtin:shapes:train").targets(limit=256)
    out = tmp_path_factory.mktemp("detr") / "lsq"
    edgec.compress(
        "zoo:detr-shapes",
        passes=["lsq:bits=4"],
        train=from_targets(x, t, name="shapes-256"),
        data=from_targets(*_holdout_slice(64), name="holdout-64"),  # compress's before / after figures
        epochs=1,
        lr=1e-4,
        batch_size=32,
        seed=0,
        out=out,
    )
    return out


def test_shipped_detr_detects_the_holdout_shapes() -> None:
    from edgec.detection import mean_ap

    prog = load_program("zoo:detr-shapes")
    assert prog.metadata["task"] == "detection"
    x, targets = _holdout()
    scores = mean_ap(task_for(prog).predictions(prog.module, x), targets)  # type: ignore[attr-defined]
    assert scores["map"] >= FP_MAP and scores["map_50"] >= FP_MAP50


def test_4bit_detr_runs_in_onnx_runtime_within_one_map_point(lsq_dir: Path, tmp_path: Path) -> None:
    program = load_program_dir(lsq_dir)
    art = edgec.compile(str(lsq_dir), target="cpu", quantize="int8", out=tmp_path / "cpu")
    q = art.report["target_report"]["quantization"]
    assert q["calibrated_tensors"] == 0 and q["learned_activation_points"] >= 60
    assert q["weights_stored"].startswith("int8 carrying the 4/8-bit grids")
    # every 4-bit layer's int8 weights take levels in [-7, 7] only: the 4-bit grid, carried in int8
    model = onnx.load(str(art.file("model")))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    int8 = [v for v in inits.values() if v.dtype == np.int8 and v.ndim >= 2]
    four_bit = [v for v in int8 if np.abs(v.astype(int)).max() <= 7]
    assert len(four_bit) >= 30 and len(int8) - len(four_bit) <= 3  # first conv / last box layer at 8 bits
    res = edgec.verify(art, data="builtin:shapes:holdout")
    m = res.metrics
    assert m["task"] == "detection" and m["samples"] == 500
    # the PyTorch 4-bit model detects shapes (after one short epoch: well below full precision's 0.44)
    assert m["map_source"] > 0.1 and m["map50_source"] > 0.3
    assert abs(m["map_artifact"] - m["map_source"]) <= 0.01
    # the reference is the compressed PyTorch model, measured here independently
    x, targets = _holdout()
    from edgec.detection import mean_ap

    own = mean_ap(task_for(program).predictions(program.module, x), targets)  # type: ignore[attr-defined]
    assert own["map"] == pytest.approx(m["map_source"], abs=1e-6)


def test_compressed_detr_reloads_with_its_activation_quantizers(lsq_dir: Path) -> None:
    import torch

    from edgec.lsq import input_quantizers

    program = load_program_dir(lsq_dir)
    quantizers = input_quantizers(program.module)
    assert len(quantizers) >= 60
    rec = program.quant["encoder.0.attn.q_proj"]
    assert (
        rec.weight_bits == 4
        and rec.act_bits == 4
        and rec.act_scale == pytest.approx(quantizers["encoder.0.attn.q_proj"].scale())
    )
    assert program.quant["encoder.0.attn.k_in"].act_bits == 4  # attention inputs are quantized too
    # the reloaded module computes on the 4-bit grid: its q_proj input takes at most 16 values
    seen: list[torch.Tensor] = []
    layer = program.module.get_submodule("encoder.0.attn.q_proj")
    handle = layer.register_forward_hook(lambda m, a, o: seen.append(a[0]))
    x, _ = _holdout()
    with torch.no_grad():
        program.module(torch.from_numpy(x[:4]))
    handle.remove()
    assert len(torch.unique(seen[0].float())) > 2
    # the pre-hook quantizes before the layer's own forward hooks see the input
    levels = torch.unique(torch.round(seen[0] / rec.act_scale))
    assert len(levels) <= 16 and levels.min() >= -8 and levels.max() <= 7


def test_report_prices_4bit_operations_as_a_theoretical_estimate(lsq_dir: Path) -> None:
    rep = edgec.energy_report(str(lsq_dir), target="cpu")
    low = rep.energy["low_bit_ops"]
    assert low["source"] == "theoretical estimate" and "BOPs / 64" in low["convention"]
    rows = {r["name"]: r for r in low["layers"]}
    q = rows["encoder.0.attn.q_proj"]
    assert q["bops"] == q["macs"] * 16
    assert low["ops"] == pytest.approx(low["full_precision_macs"] + low["bops"] / 64)
    assert low["theoretical_speedup"] == pytest.approx(low["macs"] / low["ops"])
    assert 2.5 < low["theoretical_speedup"] < 4.0  # mostly 4 x 4 bits (a quarter), 8-bit edges count 1
    from edgec.report import render_markdown

    assert "theoretical speed-up" in render_markdown(rep)


def test_q_detr_distils_the_teacher_queries() -> None:
    x, t = open_dataset("builtin:shapes:train").targets(limit=64)
    res = edgec.compress(
        "zoo:detr-shapes",
        passes=["q-detr:bits=4,lam=2.0"],
        train=from_targets(x, t, name="shapes-64"),
        data=from_targets(*_holdout_slice(64), name="holdout-64"),
        epochs=1,
        lr=1e-4,
        batch_size=16,
        seed=0,
    )
    stats = res.program.history[-1].stats
    terms = stats["finetune"]["curve"][0]["terms"]
    assert terms["drd"] > 0 and terms["task"] > 0
    assert res.report["accuracy"]["metric"] == "mAP@[.5:.95]"
    assert res.program.quant["decoder.1.cross_attn.attn_in"].act_bits == 4


def _holdout_slice(n: int) -> tuple[np.ndarray, list[Any]]:
    x, t = _holdout()
    return x[:n], t[:n]


def test_q_detr_refuses_a_classifier_before_training() -> None:
    with pytest.raises(UsageError, match="no detector"):
        edgec.compress("zoo:digits-cnn", passes=["q-detr"], train="builtin:digits", epochs=1)
