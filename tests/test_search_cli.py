"""`edgec search` on the command line: the reference lines and the live table of finished trials (a terminal
only; a pipe or a log file gets one plain line per trial, --json nothing but the document)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

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


def test_a_terminal_gets_a_live_table_of_finished_trials(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=160, color_system=None)
    monkeypatch.setattr(sys.modules["edgec.cli.search"], "err", terminal)
    r = run(cli, tmp_path)
    assert r.exit_code == 0, r.stderr
    shown = screen.getvalue()
    assert "edgec search: finished trials" in shown and "2 finished" in shown
    doc = json.loads((tmp_path / "out" / "search.json").read_text())
    for t in doc["trials"]:  # every finished trial is a row with its recipe and deployed accuracy
        row = next(ln for ln in shown.splitlines() if f"│ {t['recipes'][0]}" in ln and "complete" in ln)
        assert f"{t['targets']['loihi']['accuracy']:.2%}" in row
    assert not any(ln.startswith("trial ") for ln in shown.splitlines())  # the table, not the lines
    assert "Pareto front on loihi" in r.stdout  # the result itself is unchanged
