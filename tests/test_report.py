"""`edgec report`: report.json schema, Markdown / HTML / terminal output, artifacts, the CI gate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgec.energy.gate import compare
from edgec.energy.measured import Measurement, attach_measurement
from edgec.report import Report, render_markdown


def report_json(cli, *args: str) -> dict:
    res = cli("report", *args, "--format", "json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)  # stdout is pure JSON


@pytest.fixture(scope="module")
def digits_fp32_report(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from edgec.cli import app

    path = tmp_path_factory.mktemp("reports") / "digits-fp32.json"
    res = CliRunner().invoke(app, ["report", "zoo:digits-cnn", "-o", str(path)])
    assert res.exit_code == 0, res.stderr
    return path


# zoo:digits-cnn by hand, from its layers (models/digits.py): an 8x8 input, conv3x3 pad 1 (1 -> 16), BN,
# ReLU, conv3x3 pad 1 (16 -> 32), BN, ReLU, maxpool 2, FC 512 -> 64, ReLU, FC 64 -> 10
MACS = {
    "features.0": 8 * 8 * 16 * 1 * 9,
    "features.3": 8 * 8 * 32 * 16 * 9,
    "classifier.1": 512 * 64,
    "classifier.3": 64 * 10,
}
WEIGHTS = 16 * 9 + 32 * 16 * 9 + 512 * 64 + 64 * 10  # conv and linear weights
OTHER_PARAMS = 2 * 16 + 2 * 32 + 64 + 10  # BN scale and shift, linear biases
OTHER_OPS = (
    (2 + 1) * (16 + 32) * 64 + 4 * 512 + 64 + (64 + 10)
)  # BN 2 + ReLU 1 per element, pool 2x2, ReLU, biases
OUTPUTS = (
    3 * 16 * 64 + 3 * 32 * 64 + 512 + 64 + 64 + 10
)  # elements written: conv, BN, ReLU x2, pool, FC, ReLU, FC
# cited prices (pJ): Horowitz ISSCC 2014, 45 nm: fp32 multiply 3.7, add 0.9; int8 multiply 0.2, add 0.03;
# SRAM 10 pJ per 64-bit read; Han et al. NIPS 2015: DRAM 640 pJ per 32-bit access
DRAM_BIT, SRAM_BIT = 640 / 32, 10 / 64


def hand_energy_pj(
    mac: float, add: float, weight_bits: int, other_bits: int, act_bits: int
) -> tuple[float, float]:
    """(compute, memory) in pJ: weight bits read once from DRAM, every output written and read in SRAM."""
    compute = sum(MACS.values()) * mac + OTHER_OPS * add
    memory = (
        WEIGHTS * weight_bits + OTHER_PARAMS * other_bits
    ) * DRAM_BIT + 2 * OUTPUTS * act_bits * SRAM_BIT
    return compute, memory


FP32 = hand_energy_pj(3.7 + 0.9, 0.9, 32, 32, 32)
INT8 = hand_energy_pj(0.2 + 0.03, 0.03, 8, 32, 8)  # int8 weights and activations, int32 biases


def test_json_report_matches_the_model_counted_by_hand(digits_fp32_report):
    rep = json.loads(digits_fp32_report.read_text())
    assert rep["schema_version"] == 1
    assert rep["target"] == "cpu" and rep["compiled"] is False
    energy = rep["energy"]
    assert energy["version"] == 1
    assert any("Horowitz" in c for c in energy["table"]["citations"])
    layers = {r["name"]: r for r in energy["layers"]}
    assert {n: r["macs"] for n, r in layers.items() if r["macs"]} == MACS
    assert layers["features.1"]["other_ops"] == {"norm": 2 * 16 * 64}
    assert layers["features.6"]["other_ops"] == {"pool": 4 * 512}
    assert layers["classifier.1"]["params"] == 512 * 64 + 64
    totals = energy["totals"]
    assert totals["macs"] == 337_536 and totals["params"] == WEIGHTS + OTHER_PARAMS == 38_330
    assert totals["other_ops"] == OTHER_OPS and totals["param_bytes"] == 4 * 38_330
    compute, memory = FP32
    assert energy["estimate"]["compute_j"] == pytest.approx(compute * 1e-12, rel=1e-12)
    assert energy["estimate"]["memory_j"] == pytest.approx(memory * 1e-12, rel=1e-12)
    assert energy["headline"] == {
        "energy_j": pytest.approx((compute + memory) * 1e-12, rel=1e-12),
        "source": "estimate",
        "table": "cmos45-fp32@1",
        "complete": True,
    }
    assert energy["workload"]["samples"] == 32 and energy["workload"]["data"] == "builtin:digits:train"
    densities = {n: r["output_density"] for n, r in layers.items() if r["type"] == "ReLU"}
    assert densities == pytest.approx(relu_densities(32), rel=1e-12)  # measured on real digits


def relu_densities(n: int) -> dict[str, float]:
    """Non-zero fraction of the zoo model's ReLU outputs on the first ``n`` training digits, plain torch."""
    import torch

    import edgec
    from edgec.models import ZOO

    model = ZOO["digits-cnn"].build().eval()
    x, _ = edgec.open_dataset("builtin:digits:train").arrays(n)
    counts: dict[str, tuple[int, int]] = {}

    def hook(name: str):
        def record(module, args, y) -> None:
            counts[name] = (int((y != 0).sum()), y.numel())

        return record

    hooks = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)
    ]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    return {name: nz / total for name, (nz, total) in counts.items()}


def test_int8_prices_and_stores_what_the_hand_count_says(cli, digits_fp32_report):
    fp32 = json.loads(digits_fp32_report.read_text())["energy"]
    int8 = report_json(cli, "zoo:digits-cnn", "--quantize", "int8")["energy"]
    assert int8["headline"]["table"] == "cmos45-int8@1"
    assert int8["totals"]["macs"] == 337_536
    assert sum(r["weight_params"] for r in int8["layers"]) == WEIGHTS
    assert (
        int8["totals"]["param_bytes"] == WEIGHTS + 4 * OTHER_PARAMS == 38_840
    )  # int8 weights, int32 the rest
    assert (
        int8["totals"]["peak_activation_bytes"] * 4 == fp32["totals"]["peak_activation_bytes"]
    )  # uint8 vs fp32
    compute, memory = INT8
    assert int8["estimate"]["compute_j"] == pytest.approx(compute * 1e-12, rel=1e-12)
    assert int8["estimate"]["memory_j"] == pytest.approx(memory * 1e-12, rel=1e-12)
    # the comparison prices the same counts with every target's tables
    by_table = {c["table"]: c for c in fp32["comparison"]}
    assert by_table["cmos45-int8@1"]["energy_j"] == pytest.approx((compute + memory) * 1e-12, rel=1e-12)
    assert by_table["cmos45-fp32@1"]["current"] and not by_table["cmos45-int8@1"]["current"]


def test_energy_of_a_tiny_users_model_by_hand(cli, tmp_path):
    """An independent ANN CPU energy figure: Linear(4 -> 3) and ReLU, counted and priced by hand."""
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    path = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(model, (torch.rand(1, 4),)), path)
    for flags, (mac, add, weight_bits, other_bits, act_bits) in {
        (): (3.7 + 0.9, 0.9, 32, 32, 32),
        ("--quantize", "int8"): (0.2 + 0.03, 0.03, 8, 32, 8),
    }.items():
        energy = report_json(cli, str(path), *flags)["energy"]
        # 12 MACs; 3 bias adds and 3 ReLUs; 12 weights and 3 biases from DRAM; 3 + 3 outputs in SRAM
        compute = 12 * mac + (3 + 3) * add
        memory = (12 * weight_bits + 3 * other_bits) * 640 / 32 + 2 * (3 + 3) * act_bits * 10 / 64
        assert energy["estimate"]["compute_j"] == pytest.approx(compute * 1e-12, rel=1e-12), flags
        assert energy["estimate"]["memory_j"] == pytest.approx(memory * 1e-12, rel=1e-12), flags
        assert energy["headline"]["energy_j"] == pytest.approx((compute + memory) * 1e-12, rel=1e-12), flags
        rows = {r["name"]: r for r in energy["layers"]}
        assert rows["0"]["energy"]["compute_pj"] == pytest.approx(12 * mac + 3 * add, rel=1e-12)
        assert rows["1"]["energy"]["memory_pj"] == pytest.approx(2 * 3 * act_bits * 10 / 64, rel=1e-12)


def test_samples_without_data_is_refused_not_a_silent_single_input(cli, tmp_path):
    import torch

    path = tmp_path / "mlp.pt2"
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    torch.export.save(torch.export.export(model, (torch.rand(1, 4),)), path)
    res = cli("report", path, "--samples", "16")
    assert res.exit_code == 2
    assert "--samples 16 needs inputs to measure activity on" in res.stderr and "--data" in res.stderr
    without = report_json(cli, str(path))["energy"]["workload"]  # no --samples: it says what it used
    assert without == {
        **without,
        "samples": 1,
        "data": "the program's example input (uniform random, seed 0)",
    }
    own = report_json(cli, "zoo:digits-cnn", "--samples", "16")["energy"]["workload"]  # the model's data
    assert (own["samples"], own["data"]) == (16, "builtin:digits:train")


def test_markdown_and_terminal_output(cli, tmp_path):
    md = tmp_path / "r.md"
    res = cli("report", "zoo:digits-cnn", "-o", md)
    assert res.exit_code == 0, res.stderr
    text = md.read_text()
    assert text.startswith("# edgec report: digits-cnn -> cpu")
    assert "## Energy:" in text and "estimate (table cmos45-fp32@1)" in text
    assert "| `classifier.1` | Linear |" in text
    assert "Horowitz" in text
    res = cli("report", "zoo:digits-cnn")
    assert res.exit_code == 0, res.stderr
    assert "per inference" in res.stdout and "classifier.1" in res.stdout and "cmos45-fp32@1" in res.stdout
    res = cli("report", "zoo:digits-cnn", "-o", tmp_path / "r.txt")
    assert res.exit_code == 2 and "--format" in res.stderr


def test_html_is_self_contained_with_three_charts(cli, tmp_path):
    out = tmp_path / "r.html"
    res = cli("report", "zoo:digits-cnn", "-o", out)
    assert res.exit_code == 0, res.stderr
    html = out.read_text()
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    for chart in ("chart-energy", "chart-rate", "chart-compare"):
        svg = re.search(rf'<svg id="{chart}".*?</svg>', html, re.S)
        assert svg is not None, chart
        assert svg.group(0).count('class="bar"') >= 2, chart
    assert "Activation density" in html  # an ANN has no spikes: labelled as its counterpart


def test_report_of_compiled_artifact(digits_int8, cli):
    for name in ("report.json", "report.md", "report.html"):
        assert (digits_int8 / name).is_file(), name
    stored = json.loads((digits_int8 / "report.json").read_text())
    assert stored["energy"]["headline"]["table"] == "cmos45-int8@1"
    res = cli("report", digits_int8, "--format", "md")
    assert res.exit_code == 0, res.stderr
    assert "cmos45-int8@1" in res.stdout and "## Files" in res.stdout
    rendered = report_json(cli, str(digits_int8))  # read back from the artifact, counted by hand here
    assert rendered["artifact"] == str(digits_int8) and rendered["compiled"] is True
    totals = rendered["energy"]["totals"]
    assert (totals["macs"], totals["params"], totals["param_bytes"]) == (337_536, 38_330, 38_840)
    compute, memory = INT8
    assert rendered["energy"]["headline"]["energy_j"] == pytest.approx((compute + memory) * 1e-12, rel=1e-12)
    assert rendered["energy"]["workload"]["data"] == "builtin:digits:train"  # the compile's calibration data


def _edited(src: Path, dest: Path, **totals: float) -> Path:
    """A copy of the baseline ``src`` with some energy totals (or ``energy_j``) replaced."""
    doc = json.loads(src.read_text())
    for key, value in totals.items():
        if key == "energy_j":
            doc["energy"]["headline"]["energy_j"] = value
        else:
            doc["energy"]["totals"][key] = value
    dest.write_text(json.dumps(doc))
    return dest


def test_gate_passes_against_itself_and_holds_counts_exactly(cli, tmp_path, digits_fp32_report):
    res = cli("report", "zoo:digits-cnn", "--baseline", digits_fp32_report, "--max-increase", "0%")
    assert res.exit_code == 0, res.stderr
    base = json.loads(digits_fp32_report.read_text())["energy"]
    macs = base["totals"]["macs"]
    # a count that changed in either direction fails, however small: a counting bug that lowers MACs
    # must not pass CI
    for wrong in (macs + 1, macs - 1):
        edited = _edited(digits_fp32_report, tmp_path / f"macs-{wrong}.json", macs=wrong)
        res = cli("report", "zoo:digits-cnn", "--baseline", edited, "--max-increase", "400%")
        assert res.exit_code == 6, res.stderr
        assert "baseline changed: run with --update if intended" in res.stderr
        assert f"macs {(macs - wrong) / wrong:+.2%} ({wrong:,} -> {macs:,} MAC)" in res.stderr
    edited = _edited(digits_fp32_report, tmp_path / "params.json", params=base["totals"]["params"] + 7)
    res = cli("report", "zoo:digits-cnn", "--baseline", edited)
    assert res.exit_code == 6 and "params" in res.stderr and "macs" not in res.stderr


def test_gate_energy_keeps_its_increase_tolerance(cli, tmp_path, digits_fp32_report):
    energy = json.loads(digits_fp32_report.read_text())["energy"]["headline"]["energy_j"]
    grew_3 = _edited(digits_fp32_report, tmp_path / "e3.json", energy_j=energy / 1.03)
    grew_10 = _edited(digits_fp32_report, tmp_path / "e10.json", energy_j=energy / 1.10)
    fell = _edited(digits_fp32_report, tmp_path / "fell.json", energy_j=energy * 2)
    assert cli("report", "zoo:digits-cnn", "--baseline", grew_3, "--max-increase", "5%").exit_code == 0
    assert cli("report", "zoo:digits-cnn", "--baseline", fell, "--max-increase", "0%").exit_code == 0
    md = tmp_path / "gate.md"
    res = cli("report", "zoo:digits-cnn", "--baseline", grew_10, "--max-increase", "5%", "-o", md)
    assert res.exit_code == 6, res.stderr
    assert "1 metric(s) grew more than 5.0%" in res.stderr and "energy_j +10.00%" in res.stderr
    assert "baseline changed" not in res.stderr  # every count is equal
    text = md.read_text()  # the Markdown for the CI comment is written even when the gate fails
    assert "## Regression gate: FAILED" in text and "| energy_j |" in text and "**regressed**" in text


def test_gate_update_rewrites_the_baseline(cli, tmp_path, digits_fp32_report):
    stale = _edited(digits_fp32_report, tmp_path / "base.json", macs=1, energy_j=1e-12)
    res = cli("report", "zoo:digits-cnn", "--baseline", stale, "--update", "-o", tmp_path / "r.md")
    assert res.exit_code == 0, res.stderr
    assert f"updated baseline {stale}" in res.stderr
    assert "baseline changed" in (tmp_path / "r.md").read_text()  # the report shows what changed
    updated = json.loads(stale.read_text())
    assert updated["energy"]["totals"] == json.loads(digits_fp32_report.read_text())["energy"]["totals"]
    assert not list(tmp_path.glob(".base.json*"))  # no temporary file left behind
    assert cli("report", "zoo:digits-cnn", "--baseline", stale, "--max-increase", "0%").exit_code == 0
    fresh = tmp_path / "new.json"  # --update also writes the first baseline
    assert cli("report", "zoo:digits-cnn", "--baseline", fresh, "--update").exit_code == 0
    assert json.loads(fresh.read_text())["energy"]["totals"] == updated["energy"]["totals"]
    foreign = tmp_path / "notes.json"  # a file edgec did not write is never overwritten
    foreign.write_text('{"mine": true}')
    res = cli("report", "zoo:digits-cnn", "--baseline", foreign, "--update")
    assert res.exit_code == 2 and "not an edgec report" in res.stderr
    assert foreign.read_text() == '{"mine": true}'
    res = cli("report", "zoo:digits-cnn", "--update")
    assert res.exit_code == 2 and "--baseline" in res.stderr


def test_gate_usage_errors(cli, tmp_path, digits_fp32_report):
    res = cli("report", "zoo:digits-cnn", "--baseline", tmp_path / "missing.json")
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = cli("report", "zoo:digits-cnn", "--baseline", digits_fp32_report, "--max-increase", "five")
    assert res.exit_code == 2 and "percentage" in res.stderr
    other = json.loads(digits_fp32_report.read_text())
    other["target"] = "loihi"
    (tmp_path / "other.json").write_text(json.dumps(other))
    res = cli("report", "zoo:digits-cnn", "--baseline", tmp_path / "other.json")
    assert res.exit_code == 2 and "same target" in res.stderr


def test_measured_energy_replaces_the_estimate(digits_fp32_report):
    rep = json.loads(digits_fp32_report.read_text())
    measured = dict(rep)
    measured["energy"] = attach_measurement(
        rep["energy"],
        Measurement(energy_j=2.5e-6, method="tegrastats VDD_IN over 1000 runs", device="Orin Nano"),
    )
    assert measured["energy"]["headline"]["source"] == "measured"
    assert measured["energy"]["estimate"] == rep["energy"]["estimate"]  # the estimate stays, beside it
    text = render_markdown(Report.from_dict(measured))
    assert "2.5 µJ per inference, measured (tegrastats VDD_IN over 1000 runs, Orin Nano)" in text
    gate = compare(measured, rep, max_increase=0.05)
    assert "energy_j" not in [d.metric for d in gate.deltas]  # measured vs estimate is not compared
    assert any("energy not compared" in n for n in gate.notes)
    assert gate.passed


@pytest.mark.slow
def test_loihi_artifact_carries_the_loihi_estimate(cli, tmp_path):
    import edgec

    out = tmp_path / "snn-loihi"
    edgec.compile("zoo:digits-snn-mlp", target="loihi", out=out)
    for name in ("report.json", "report.md", "report.html"):
        assert (out / name).is_file(), name
    energy = json.loads((out / "report.json").read_text())["energy"]
    assert energy["headline"]["table"] == "loihi1-davies2018@1" and energy["headline"]["complete"]
    assert any("assumption" in c for c in energy["table"]["caveats"])
    sops = energy["totals"]["sops"]
    assert sops["effective_macs"] == 0 and sops["effective_acs"] == sops["exact"] > 0  # rate-coded input
    assert energy["estimate"]["parts_j"]["synaptic_acs"] == pytest.approx(23.6e-12 * sops["exact"])
    assert energy["estimate"]["memory_j"] == 0
    by_label = {c["label"]: c for c in energy["comparison"]}
    assert by_label["loihi"]["current"] and by_label["cpu (fp32)"]["energy_j"] > 0
    res = cli("report", out, "--format", "md")
    assert res.exit_code == 0, res.stderr
    assert "loihi1-davies2018@1" in res.stdout and "Firing" not in res.stdout  # md has no charts
    assert "| spikes |" in res.stdout


def test_ann_on_loihi_has_no_figure_to_quote(cli):
    rep = report_json(cli, "zoo:digits-cnn", "--target", "loihi")
    assert rep["check"]["ok"] is False  # the Loihi target cannot take an ANN
    assert rep["energy"]["headline"]["energy_j"] is None
    assert set(rep["energy"]["estimate"]["unpriced"]) == {"mac", "add"}
    assert any("cannot compile" in n for n in rep["energy"]["notes"])
