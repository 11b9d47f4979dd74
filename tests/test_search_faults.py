"""A trial that fails (raises, runs out of memory, ends with NaN accuracy) is recorded as failed with its
reason, and the search goes on: the issue's fault list, beside the killed-worker and Ctrl-C tests of
tests/test_search.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import edgec
from edgec.search.trial import run_trial

SPEC: dict[str, Any] = {
    "model": "zoo:digits-snn-mlp",
    "recipes": ["qp-snn:bits=4"],
    "train": "builtin:digits",
    "targets": ["loihi"],
}


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (RuntimeError("shape mismatch in layer 3"), "RuntimeError: shape mismatch in layer 3"),
        (MemoryError(), "out of memory"),
        (
            RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            "out of memory (RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB)",
        ),
    ],
    ids=["raises", "memory-error", "cuda-oom"],
)
def test_a_trial_that_raises_is_a_failed_record_with_its_reason(monkeypatch, tmp_path, fault, reason):
    def compress(*args: Any, **kwargs: Any) -> Any:
        raise fault

    monkeypatch.setattr(edgec, "compress", compress, raising=False)
    record = run_trial({**SPEC, "dir": str(tmp_path)})
    assert record["state"] == "failed" and record["reason"] == reason
    assert record["wall_s"] >= 0


def test_nan_accuracy_is_a_failed_trial_not_a_point_on_the_front(monkeypatch, tmp_path):
    after = {"accuracy": float("nan"), "param_bytes": 10, "sops": 1, "macs": 0, "parameters": 10}
    monkeypatch.setattr(
        edgec, "compress", lambda *a, **k: SimpleNamespace(report={"after": after}), raising=False
    )
    record = run_trial({**SPEC, "dir": str(tmp_path)})
    assert record["state"] == "failed"
    assert record["reason"] == "the compressed model's accuracy is NaN"
    assert "targets" not in record  # nothing was deployed from it


@pytest.mark.slow
def test_a_search_records_the_failed_trial_and_goes_on(tmp_path: Path) -> None:
    # lr=1e38 overflows inside the fine-tuning (a real exception from torch, in the worker process); seed 0
    # proposes it first and lr=0.001 second
    space = tmp_path / "space.toml"
    space.write_text(
        '[space]\nrecipes = ["qp-snn:bits=4,prune=0,lr={lr}"]\n[space.params]\nlr = [0.001, 1e38]\n'
    )
    out = tmp_path / "out"
    result = edgec.search(
        "zoo:digits-snn-mlp",
        out=out,
        target="loihi",
        train_data="builtin:digits",
        trials=2,
        population=2,
        epochs=1,
        limit=32,
        seed=0,
        space=str(space),
    )
    doc = json.loads((out / "search.json").read_text())
    by_lr = {t["params"]["lr"]: t for t in doc["trials"]}
    failed, good = by_lr[1e38], by_lr[0.001]
    assert failed["state"] == "failed" and "overflow" in failed["reason"] and failed["attempts"] == 1
    assert good["state"] == "complete" and good["targets"]["loihi"]["feasible"] is True
    assert doc["counts"] == {"complete": 1, "failed": 1, "interrupted": 0, "queued": 0, "running": 0}
    assert doc["front"] == {"loihi": [good["number"]]}
    assert [t.number for t in result.front_trials("loihi")] == [good["number"]]
    report = (out / "report.md").read_text()
    assert "1 complete, 1 failed" in report and failed["reason"] in report
    # nothing of the failed trial is left half-written in OUT
    assert not list((out / "trials").glob(f"trial-{failed['number']:04d}/**/report.json"))
