"""Detection building blocks: matching, loss, decoding, mAP, LSQ quantizers, DRD's query matching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgec.detection import decode, detection_loss, hungarian_match, mean_ap, to_relative
from edgec.lsq import InputQuantizer, LsqWeight, attach_input_quantizer, input_quantizers
from edgec.passes.q_detr import QueryRectifier, foreground_matches


def _target(boxes: list[list[float]], labels: list[int]) -> dict[str, np.ndarray]:
    return {"boxes": np.asarray(boxes, np.float32), "labels": np.asarray(labels, np.int64)}


def test_hungarian_match_pairs_each_box_with_the_query_that_predicts_it() -> None:
    t = to_relative([_target([[0, 0, 32, 32], [32, 32, 64, 64]], [2, 0])], (64, 64), torch.device("cpu"))
    boxes = torch.tensor([[[0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 0.1, 0.1], [0.25, 0.25, 0.5, 0.5]]])
    logits = torch.zeros(1, 3, 4)
    q, g = hungarian_match(logits, boxes, t)[0]
    assert dict(zip(g.tolist(), q.tolist(), strict=True)) == {0: 2, 1: 0}


def test_loss_is_small_for_the_right_answer_and_large_for_a_wrong_one() -> None:
    t = to_relative([_target([[8, 8, 24, 24]], [1])], (64, 64), torch.device("cpu"))
    good_logits = torch.tensor([[[-9.0, 9.0, -9.0, -9.0], [-9.0, -9.0, -9.0, 9.0]]])
    good_boxes = torch.tensor([[[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.2, 0.2]]])
    good = detection_loss({"logits": good_logits, "boxes": good_boxes}, t)
    wrong_class = detection_loss({"logits": good_logits[:, :, [0, 2, 1, 3]], "boxes": good_boxes}, t)
    wrong_box = detection_loss({"logits": good_logits, "boxes": good_boxes.flip(1)}, t)
    assert float(good) < 0.01
    assert float(wrong_class) > 5 and float(wrong_box) > 1


def test_decode_and_map_of_a_perfect_and_a_shifted_prediction() -> None:
    targets = [_target([[8, 8, 24, 24], [40, 30, 60, 50]], [1, 2])]
    logits = np.full((1, 3, 4), -9.0, np.float32)
    logits[0, 0, 1] = logits[0, 1, 2] = 9.0
    logits[0, 2, 3] = 9.0  # no object
    boxes = np.array(
        [[[0.25, 0.25, 0.25, 0.25], [50 / 64, 40 / 64, 20 / 64, 20 / 64], [0.5, 0.5, 0.1, 0.1]]], np.float32
    )
    preds = decode(logits, boxes, (64, 64))
    torch.testing.assert_close(preds[0]["boxes"][0], torch.tensor([8.0, 8.0, 24.0, 24.0]))
    assert preds[0]["labels"][:2].tolist() == [1, 2]
    assert mean_ap(preds, targets)["map"] == pytest.approx(1.0)
    shifted = boxes.copy()
    shifted[0, :2, 0] += 4 / 64  # 4 pixels to the right: IoU 0.6 (16 px box), 0.67 (20 px box)
    res = mean_ap(decode(logits, shifted, (64, 64)), targets)
    assert res["map_50"] == pytest.approx(1.0)
    assert 0.1 < res["map"] < 0.5


def test_lsq_weight_levels_and_step_gradient() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 5, requires_grad=True)
    q = LsqWeight(4, w)
    wq = q(w)
    k = wq.detach() / q.steps().detach()[:, None]
    assert torch.allclose(k, k.round(), atol=1e-5) and k.abs().max() <= 7
    # LSQ's initial step: 2 mean|w| / sqrt(7) per output channel
    torch.testing.assert_close(q.steps().detach(), 2 * w.detach().abs().mean(1) / 7**0.5)
    wq.sum().backward()
    assert q.step.grad is not None and q.step.grad.abs().sum() > 0
    rec = q.record(w.detach())
    assert rec.weight_bits == 4 and rec.per_channel and len(rec.weight_scale) == 6


def test_input_quantizer_observes_sign_and_clamps_to_its_range() -> None:
    lin = torch.nn.Linear(4, 2)
    q = attach_input_quantizer(lin, 4)
    assert input_quantizers(lin) == {"": q}
    q.observe()
    x = torch.relu(torch.randn(64, 4))
    lin(x)
    assert q.signed is False and q.qn == 0 and q.qp == 15
    assert q.scale() == pytest.approx(float(2 * x.abs().mean() / 15**0.5), rel=1e-5)
    q.eval()
    y = q(torch.tensor([-1.0, 0.26 * q.scale(), 100.0]))
    assert y.tolist() == pytest.approx([0.0, 0.0, 15 * q.scale()])
    signed = InputQuantizer(4, signed=True)
    signed.step.data.fill_(0.5)
    signed.eval()
    assert signed(torch.tensor([-100.0, 100.0])).tolist() == [-4.0, 3.5]


def test_foreground_matching_keeps_the_queries_on_objects_and_pairs_them_with_the_teacher() -> None:
    gt = torch.tensor([[0.25, 0.25, 0.2, 0.2]])
    student = torch.tensor([[0.25, 0.26, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1], [0.27, 0.25, 0.2, 0.2]])
    teacher = torch.tensor([[0.8, 0.8, 0.1, 0.1], [0.25, 0.25, 0.2, 0.2], [0.5, 0.5, 0.3, 0.3]])
    js, ks = foreground_matches(gt, student, teacher, tau=0.5, mu1=2.0, mu2=5.0)
    assert js.tolist() == [0, 2] and ks.tolist() == [1, 1]
    # a strict threshold keeps only the box's best query
    js, _ = foreground_matches(gt, student, teacher, tau=0.999, mu1=2.0, mu2=5.0)
    assert js.tolist() == [0]


def test_query_rectifier_normalises_each_query() -> None:
    r = QueryRectifier(8)
    q = torch.randn(2, 5, 8) * 3 + 1
    out = r(q)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)


def test_lsq_on_a_classifier_bakes_the_grid_and_round_trips_through_the_store(tmp_path) -> None:
    """lsq is any ANN's recipe: on the digits CNN the weights end on their recorded grid, the input
    quantizers are replayed from the `quantize-inputs` edit, and the reloaded program computes the same."""
    import edgec
    from edgec.data import from_arrays, open_dataset
    from edgec.store import load_program_dir

    x, y = open_dataset("builtin:digits:train").arrays(limit=96)
    res = edgec.compress(
        "zoo:digits-cnn", passes=["lsq:bits=4"], train=from_arrays(x, y), epochs=1, seed=0, out=tmp_path / "p"
    )
    prog = res.program
    assert res.report["accuracy"]["metric"] == "top-1 accuracy" and res.report["accuracy"]["compressed"] > 0.5
    edit = prog.edits[-1]
    assert edit["op"] == "quantize-inputs" and len(edit["layers"]) == len(prog.quant)
    for name, rec in prog.quant.items():
        w = prog.module.get_submodule(name).weight.detach().numpy()
        levels = rec.levels(w)  # raises unless the weight is on its grid
        assert np.abs(levels).max() <= (7 if rec.weight_bits == 4 else 127)
        assert rec.act_bits in (4, 8) and rec.act_scale > 0
    first = next(iter(prog.quant))
    assert prog.quant[first].act_signed is False  # images in [0, 1]: an unsigned input grid
    again = load_program_dir(tmp_path / "p")
    xb = torch.from_numpy(x[:16])
    with torch.no_grad():
        torch.testing.assert_close(again.module(xb), prog.module(xb))
    # the energy report prices its low-bit operations in the papers' BOPs convention, as an estimate
    low = edgec.energy_report(str(tmp_path / "p"), target="cpu").energy["low_bit_ops"]
    assert low["source"] == "theoretical estimate"
    rows = {r["name"]: r for r in low["layers"]}
    assert set(rows) == set(prog.quant)  # every conv / linear of the digits CNN is low-bit
    for name, r in rows.items():
        rec = prog.quant[name]
        assert (r["weight_bits"], r["act_bits"]) == (rec.weight_bits, rec.act_bits)
        assert r["bops"] == r["macs"] * rec.weight_bits * rec.act_bits
    assert low["bops"] == sum(r["bops"] for r in rows.values())
    assert low["ops"] == pytest.approx(low["full_precision_macs"] + low["bops"] / 64)
    assert low["theoretical_speedup"] == pytest.approx(low["macs"] / low["ops"])
    # an 8 x 8-bit MAC counts one full-precision MAC, a 4 x 4-bit one a quarter
    eight = [r for r in rows.values() if r["weight_bits"] == 8 and r["act_bits"] == 8]
    assert eight and all(r["bops"] / 64 == r["macs"] for r in eight)


def test_no_low_bit_row_without_activation_quantization() -> None:
    from edgec.energy.analyze import count_program
    from edgec.energy.bops import low_bit_ops
    from edgec.loading import load_program
    from edgec.quant import LayerQuant

    prog = load_program("zoo:digits-cnn")
    counts = count_program(prog, None)
    assert low_bit_ops(counts, {}) is None
    weights_only = {"features.3": LayerQuant("uniform", weight_bits=4, weight_scale=(0.1,))}
    assert low_bit_ops(counts, weights_only) is None  # weight-only quantization saves memory, not operations


def test_low_bit_ops_agree_with_the_binary_bops_on_a_binarized_network() -> None:
    """For 1-bit weights and inputs, b_w x b_a BOPs are the binarization's BOPs (one a MAC) and the two
    OPs figures of the report (energy.low_bit_ops.ops, totals.ops_bop64) are the same number."""
    from edgec.energy.analyze import energy_section
    from edgec.loading import load_program
    from edgec.quant import LayerQuant

    prog = load_program("zoo:digits-cnn")
    record = {
        "features.0": LayerQuant("lsq", weight_bits=8, weight_scale=(0.1,), act_bits=8, act_scale=0.1),
        "features.3": LayerQuant("binarize", weight_bits=1, weight_scale=(0.1,), act_bits=1),
        "classifier.1": LayerQuant("binarize", weight_bits=1, weight_scale=(0.1,), act_bits=1),
    }
    energy = energy_section(prog.replace(quant=record), None, table="cmos45-fp32", target="cpu")
    low, totals = energy["low_bit_ops"], energy["totals"]
    assert low["bops"] - 64 * 9_216 == totals["bops"] == 8 * 8 * 32 * 16 * 9 + 512 * 64  # + the 8-bit conv
    assert low["ops"] == pytest.approx(totals["ops_bop64"])
    assert {r["name"] for r in low["layers"]} == set(record)  # classifier.3 stays full precision


def test_compress_prints_a_detectors_metric_and_layers_per_width() -> None:
    from edgec.cli.compress import pass_summary

    widths = {f"layer{i}": 4 for i in range(37)} | {"first": 8, "last": 8}
    line = pass_summary(
        {
            "stats": {
                "weight_bits": widths,
                "accuracy_before": 0.1,
                "accuracy_after": 0.32,
                "best_epoch": 1,
                "finetune": {"metric": "mAP@[.5:.95]"},
            }
        }
    )
    assert line.startswith("validation mAP@[.5:.95] 10.00% -> 32.00% (best epoch 1)")
    assert "weight bits: 37 layers at 4 bits, 2 layers at 8 bits" in line and "layer0" not in line


def test_an_8bit_learned_quantizer_folds_into_integer_kernels_on_the_cpu(tmp_path) -> None:
    """lsq:bits=8's input quantizers (Div -> Clip(0, 255) -> Round -> Mul) are exactly their uint8 Q/DQ:
    the CPU graph drops the chains so ONNX Runtime fuses the convs / linears into integer kernels (it
    fused 1 of 4 with the chains left in), with the same outputs as the compressed model."""
    import edgec
    from edgec.data import from_arrays, open_dataset

    x, y = open_dataset("builtin:digits:train").arrays(limit=96)
    edgec.compress(
        "zoo:digits-cnn", passes=["lsq:bits=8"], train=from_arrays(x, y), epochs=1, seed=0, out=tmp_path / "p"
    )
    art = edgec.compile(
        tmp_path / "p", target="cpu", quantize="int8", backend="onnxruntime", out=tmp_path / "a"
    )
    tr = art.report["target_report"]
    q = tr["quantization"]
    assert q["quantizer_chains_folded"] == q["learned_activation_points"] == 4
    # the second conv stays float: its output reaches the next quantizer through ReLU, MaxPool and
    # Flatten, and the learned graph has no quantizer on the conv's own output (QLinearConv needs one)
    assert tr["ort_fusion"]["fused_quantized_ops"] == 3 and tr["ort_fusion"]["float_compute_ops"] == 1
    m = edgec.verify(art, data="builtin:digits").metrics
    assert m["top1_agreement"] >= 0.99
