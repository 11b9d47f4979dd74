"""`edgec search --reference`: hand-picked recipes measured by the trial code and marked in the reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import edgec
from edgec.errors import UsageError
from edgec.search.references import parse_reference

MODEL = "zoo:digits-snn-mlp"  # T = 16

SPACE = '[space]\nrecipes = ["qp-snn:bits={bits},prune=0"]\n[space.params]\nbits = [4, 8]\n'


def test_reference_syntax() -> None:
    assert parse_reference("qp-snn:bits=4,prune=0.5@8") == {
        "label": "qp-snn:bits=4,prune=0.5@8",
        "recipes": ["qp-snn:bits=4,prune=0.5"],
        "timesteps": 8,
    }
    two = parse_reference("magnitude-prune:prune=0.5,epochs=0;uniform-quant:bits=4")
    assert two["recipes"] == ["magnitude-prune:prune=0.5,epochs=0", "uniform-quant:bits=4"]
    assert two["timesteps"] is None
    with pytest.raises(UsageError, match="time steps 'x'"):
        parse_reference("qp-snn:bits=4@x")
    with pytest.raises(UsageError, match="--reference 'nosuch:bits=4': unknown pass 'nosuch'"):
        parse_reference("nosuch:bits=4")


@pytest.mark.parametrize(
    ("ref", "message"),
    [("qp-snn:bitz=4", "--reference 'qp-snn:bitz=4'"), ("qp-snn:bits=4@0", "not a positive whole number")],
)
def test_bad_reference_is_a_one_line_usage_error_nothing_written(
    cli, tmp_path: Path, ref: str, message: str
) -> None:
    out = tmp_path / "out"
    args = ["search", MODEL, "--target", "loihi", "--train-data", "builtin:digits", "-o", str(out)]
    r = cli(*args, "--reference", ref)
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("refs")
    space = tmp / "space.toml"
    space.write_text(SPACE)
    opts: dict[str, Any] = {
        "target": "loihi",
        "train_data": "builtin:digits",
        "space": str(space),
        "trials": 2,
        "population": 2,
        "epochs": 0,
        "limit": 32,
        "seed": 0,
        # equal to a trial's recipe (prune 0.0 = 0, T 16 = the model's), and one no trial has
        "reference": ["qp-snn:bits=4,prune=0.0@16", "qp-snn:bits=2,prune=0.5@8"],
    }
    out = tmp / "out"
    edgec.search(MODEL, out=out, **opts)
    doc = json.loads((out / "search.json").read_text())
    return {"out": out, "doc": doc, "opts": opts}


@pytest.mark.slow
def test_references_are_measured_by_the_trial_code_and_compared_with_the_front(
    searched: dict[str, Any],
) -> None:
    doc, out = searched["doc"], searched["out"]
    same, other = doc["references"]
    trials = {t["number"]: t for t in doc["trials"]}
    bits4 = [n for n, t in trials.items() if t["params"]["bits"] == 4 and t.get("reused_from") is None]
    all_bits4 = {n for n, t in trials.items() if t["params"]["bits"] == 4}
    assert same["same_as"] and set(same["same_as"]) <= all_bits4
    # the same recipe, seed and data through the same trial code: the same deployed figures
    t = trials[bits4[0]]["targets"]["loihi"]
    r = same["targets"]["loihi"]
    assert (r["accuracy"], r["energy_uj"], r["bytes"]) == (t["accuracy"], t["energy_uj"], t["bytes"])
    assert other["same_as"] == [] and other["timesteps"] == 8
    o = other["targets"]["loihi"]
    assert o["bytes"] < r["bytes"]  # 2 bits and half the hidden channels: a different measurement
    # 'front at least as good' is exactly the front trials with accuracy >= and energy <=
    for ref in (same, other):
        a, e = ref["targets"]["loihi"]["accuracy"], ref["targets"]["loihi"]["energy_uj"]
        rows = {n: trials[n]["targets"]["loihi"] for n in doc["front"]["loihi"]}
        expect = [n for n, row in rows.items() if row["accuracy"] >= a and row["energy_uj"] <= e]
        assert ref["matched_by"]["loihi"] == expect
    assert same["matched_by"]["loihi"]  # its own trial is on the front or beaten by it
    assert (out / "trials" / "reference-1" / "program").is_dir()
    md = (out / "report.md").read_text()
    assert "## Hand-picked references" in md and "`qp-snn:bits=2,prune=0.5@8`" in md
    html = (out / "report.html").read_text()
    assert html.count('stroke="#2c3e50" stroke-width="2"') == 2  # one cross per reference
    assert ">qp-snn:bits=2,prune=0.5@8</text>" in html


@pytest.mark.slow
def test_a_resumed_search_reuses_measured_references(searched: dict[str, Any]) -> None:
    out = searched["out"]
    result = out / "trials" / "reference-0" / "result.json"
    before = result.stat().st_mtime_ns
    edgec.search(MODEL, out=out, **searched["opts"])
    assert result.stat().st_mtime_ns == before
    doc = json.loads((out / "search.json").read_text())
    assert doc["references"][0]["targets"] == searched["doc"]["references"][0]["targets"]
