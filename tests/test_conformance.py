"""Every registered target passes the same contract (tests/conformance.py, docs/adding-a-target.md);
a deliberately broken toy target fails it, readably."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conformance import (
    ContractError,
    backends_to_run,
    check_deterministic,
    check_failure_leaves_nothing,
    check_files,
    check_golden,
    check_rows,
    check_run_cli,
    check_session,
    check_verify,
    compile_twice,
    pick_model,
)

import edgec
from edgec.target import Lowered, Target, target_names

pytestmark = pytest.mark.slow


@dataclass
class Compiled:
    target: str
    backend: str | None
    model: str
    refused: str | None
    first: Any
    second: Any
    samples: np.ndarray


#: every target, on each backend its artifacts can be compiled for here (the CPU target: each runtime)
RUNS = [(t, b) for t in target_names() for b in backends_to_run(t)]


@pytest.fixture(scope="module", params=RUNS, ids=[t if b is None else f"{t}-{b}" for t, b in RUNS])
def compiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    target, backend = request.param
    model, refused = pick_model(target)
    a, b = compile_twice(target, model, tmp_path_factory.mktemp(f"conformance-{target}"), backend)
    if backend is not None:  # its artifacts run on the backend they were compiled for
        assert a.report["target_report"]["backend"] == backend
    x, _ = edgec.open_dataset("builtin:digits:holdout").arrays(7)
    return Compiled(target, backend, model, refused, a, b, x)


def test_check_rows_say_what_to_do(compiled: Compiled) -> None:
    if compiled.refused is None:
        pytest.skip(f"target '{compiled.target}' takes every candidate model")
    check_rows(compiled.target, compiled.refused)


def test_lowered_files_are_the_ones_listed(compiled: Compiled) -> None:
    check_files(compiled.target, compiled.first)


def test_session_returns_outputs_by_name_for_any_batch(compiled: Compiled, cli: Any, tmp_path: Path) -> None:
    got = check_session(compiled.target, compiled.first, compiled.samples)
    check_run_cli(compiled.target, compiled.first, compiled.samples, got, tmp_path, cli)


def test_verify_passes_on_its_own_artifact(compiled: Compiled) -> None:
    check_verify(compiled.target, compiled.first)


def test_compiling_twice_writes_the_same_files(compiled: Compiled) -> None:
    check_deterministic(compiled.target, compiled.first, compiled.second)


def test_emitted_structure_is_the_golden_one(compiled: Compiled) -> None:
    check_golden(compiled.target, compiled.first, compiled.model)


def test_a_failed_compile_leaves_nothing(compiled: Compiled, tmp_path: Path, monkeypatch: Any) -> None:
    check_failure_leaves_nothing(compiled.target, compiled.model, tmp_path, monkeypatch)


# ---- a toy target that breaks the contract: the suite says how ----------------------------------
class ToyTarget(Target):
    """Takes ANNs; writes an ONNX export but also a file it does not list; its session returns a bare
    array (the contract before issue 7), not outputs by name."""

    name = "toy"
    description = "a broken toy target"
    backends = ("default",)

    def lower(self, program: Any, out_dir: Path, ctx: Any) -> Lowered:
        (out_dir / "model.bin").write_bytes(b"toy")
        (out_dir / "scratch.tmp").write_bytes(b"forgotten")
        return Lowered(files={"model": "model.bin"})

    def session(self, artifact: Any, *, backend: str | None = None, threads: int | None = None) -> Any:
        return lambda x: np.zeros((len(x), 10), np.float32)


@pytest.fixture
def toy(monkeypatch: Any, tmp_path: Path) -> Any:
    from edgec import target as target_module

    monkeypatch.setitem(target_module.TARGETS, "toy", f"{__name__}:ToyTarget")
    return edgec.compile("zoo:digits-cnn", target="toy", out=tmp_path / "toy")


def test_a_broken_target_fails_the_suite_readably(toy: Any) -> None:
    lower = r"target 'toy' breaks the contract: lower: wrote files its report does not list: scratch\.tmp"
    with pytest.raises(ContractError, match=lower):
        check_files("toy", toy)
    x, _ = edgec.open_dataset("builtin:digits:holdout").arrays(3)
    session = r"target 'toy' breaks the contract: session: returned a ndarray; it must return \{output name"
    with pytest.raises(ContractError, match=session):
        check_session("toy", toy, x)
    with pytest.raises(ContractError, match="verify: its own artifact does not verify"):
        check_verify("toy", toy)
