"""`edgec search` on the command line: the reference lines and the live table of finished trials (a terminal
only; a pipe or a log file gets one plain line per trial, --json nothing but the document)."""

from __future__ import annotations

import json
from pathlib import Path

MODEL = "zoo:digits-snn-mlp"
SPACE = '[space]\nrecipes = ["qp-snn:bits={bits},prune=0"]\n[space.params]\nbits = [4, 8]\n'


def run(cli, tmp_path: Path, *extra: str):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    return cli(
        "search", MODEL, "--target", "loihi", "--train-data", "builtin:digits", "--space", str(space),
        "--trials", "2", "--population", "2", "--epochs", "0", "--limit", "16",
        "-o", str(tmp_path / "out"), *extra,
    )  # fmt: skip


def test_cli_prints_each_reference_against_the_front(cli, tmp_path: Path) -> None:
    r = run(cli, tmp_path, "--reference", "qp-snn:bits=2,prune=0.5@8")
    assert r.exit_code == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("reference "))
    doc = json.loads((tmp_path / "out" / "search.json").read_text())
    ref = doc["references"][0]["targets"]["loihi"]
    assert line.startswith(f"reference qp-snn:bits=2,prune=0.5@8: loihi: {ref['accuracy']:.2%}")
    assert "front trials at least as good:" in line
    # not a terminal: one plain line per finished trial on stderr, no live table, no escape codes
    trial_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("trial ")]
    assert [ln.split(":")[0].split()[1] for ln in trial_lines] == ["0", "1"]
    assert "\x1b[" not in r.stderr and "finished trials" not in r.stderr
    assert not any(c in r.stderr for c in "┏━┃│")


def test_json_output_is_the_document_alone(cli, tmp_path: Path) -> None:
    r = run(cli, tmp_path, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["kind"] == "search"
    assert "trial " not in r.stderr and "finished trials" not in r.stderr
