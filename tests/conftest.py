"""Shared fixtures: a CLI runner (in-process and as a real subprocess) and compiled artifacts; the rules
every test runs under (a temporary kernel cache, a seed per test, torch's thread count restored) and
the skips CI cannot take silently (Lava, the C kernel).

Environment a run can set:

- ``EDGEC_REQUIRE_LAVA=1``: Lava missing fails the Lava tests instead of skipping them (CI sets it).
- ``EDGEC_REQUIRE_CKERNEL=1``: no C compiler fails the C-kernel tests instead of skipping them (CI
  sets it). A compiler that is there but fails to build the kernel always fails them.
- ``EDGEC_REQUIRE_BROWSER=1``: see test_report_browser.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from edgec.cli import app

# ---- the rules every test runs under ------------------------------------------------------------
_CACHE_OWNER = "EDGEC_TEST_CACHE_OWNER"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("timeout_slow", "pytest-timeout limit (s) for tests marked slow", default="900")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = float(config.getini("timeout_slow"))
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(slow))


def pytest_configure(config: pytest.Config) -> None:
    # The C kernel compiles into EDGEC_CACHE (default ~/.cache/edgec): during tests it goes to a fresh
    # temporary folder, shared by xdist workers and subprocesses (they inherit the environment).
    if not os.environ.get(_CACHE_OWNER):
        os.environ["EDGEC_CACHE"] = tempfile.mkdtemp(prefix="edgec-test-cache-")
        os.environ[_CACHE_OWNER] = str(os.getpid())


def pytest_unconfigure(config: pytest.Config) -> None:
    if os.environ.get(_CACHE_OWNER) == str(os.getpid()):
        shutil.rmtree(os.environ["EDGEC_CACHE"], ignore_errors=True)


def test_seed(nodeid: str) -> int:
    """The seed of one test: a stable hash of its id, so a failure replays alone, in any order or worker."""
    return zlib.crc32(nodeid.encode())


@contextlib.contextmanager
def seeded_and_restored(nodeid: str) -> Iterator[None]:
    """Seed Python, numpy and torch for one test; restore torch's thread count after it."""
    import numpy as np
    import torch

    seed = test_seed(nodeid)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _replayable_and_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    with seeded_and_restored(request.node.nodeid):
        yield


# ---- what every artifact promises ----------------------------------------------------------------
def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_files_hashed(artifact_dir: Path) -> dict[str, Any]:
    """Every file report.json lists has the size and sha256 it states (recomputed here), and every file
    in the artifact but the reports themselves is listed. Returns the report."""
    import json

    report = json.loads((artifact_dir / "report.json").read_text())
    listed = set()
    for role, entry in report["files"].items():
        path = artifact_dir / entry["path"]
        assert path.is_file(), f"{role}: {path} is missing"
        assert entry["sha256"] == sha256_of(path), f"{role}: sha256 of {path} differs from the report"
        assert entry["bytes"] == path.stat().st_size, role
        listed.add(path.resolve())
    present = {p.resolve() for p in artifact_dir.rglob("*") if p.is_file()}
    reports = {(artifact_dir / f"report.{ext}").resolve() for ext in ("json", "md", "html")}
    assert present - reports == listed, "files in the artifact that report.json does not list"
    return report


# ---- skips CI cannot take silently --------------------------------------------------------------
def interruptible() -> None:
    """``preexec_fn`` of a child a test sends Ctrl-C (SIGINT): a shell's background job (CI started
    with ``&``) inherits SIGINT *ignored*, Python keeps an inherited SIG_IGN, and the child would
    never see the signal; the child gets the default disposition back, as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def require_module(name: str, env: str, why: str) -> ModuleType:
    """Import ``name``; skip if it is missing, unless ``env`` is set: then fail (CI cannot skip it)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get(env):
            pytest.fail(f"{name} is required here ({env} is set) but does not import: {exc}", pytrace=False)
        pytest.skip(f"{name} is not installed ({why})", allow_module_level=True)


def c_kernel_or_skip() -> Any:
    """The Loihi emulator's C kernel. Skips only where there is no C compiler (and EDGEC_REQUIRE_CKERNEL
    is unset); a compiler that fails to build the source fails the test, with the compiler's message."""
    from edgec.targets.loihi import ckernel

    if os.environ.get("EDGEC_NO_CKERNEL"):
        pytest.skip("EDGEC_NO_CKERNEL is set: the emulator runs its numpy path only")
    lib = ckernel.kernel()
    if lib is not None:
        return lib
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        if os.environ.get("EDGEC_REQUIRE_CKERNEL"):
            pytest.fail("no C compiler here, but EDGEC_REQUIRE_CKERNEL is set", pytrace=False)
        pytest.skip("no C compiler here: the emulator runs its numpy path only")
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(ckernel.__name__)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        ckernel._build()  # again, to get its message
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    pytest.fail(f"the C kernel did not build with {compiler}: {' '.join(messages)}", pytrace=False)


@pytest.fixture(scope="session")
def c_kernel() -> Any:
    return c_kernel_or_skip()


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


class _StderrAtEmit(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record arrives (the runner's, during an invoke)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


def _invoke(*args: str) -> CliResult:
    # as `edgec` itself (cli.main) does: log records of WARNING and up go to stderr, so an in-process
    # run shows what a user sees whether or not pytest's logging capture holds the root logger
    handler = _StderrAtEmit(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    finally:
        root.removeHandler(handler)
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli():
    """Run `edgec ARGS` in-process (fast); returns exit code, stdout and stderr."""
    return _invoke


@pytest.fixture
def cli_proc(tmp_path: Path):
    """Run `python -m edgec ARGS` as a real subprocess in ``tmp_path``."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "edgec", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd or tmp_path,
            env={**os.environ, **(env or {})},
            timeout=600,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture(scope="session")
def digits_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zoo:digits-cnn compiled for the CPU in INT8, calibrated on builtin:digits (compiled once)."""
    import edgec

    out = tmp_path_factory.mktemp("artifacts") / "digits-int8"
    edgec.compile("zoo:digits-cnn", target="cpu", quantize="int8", calib="builtin:digits", out=out)
    return out


@pytest.fixture(scope="session")
def digits_fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import edgec

    out = tmp_path_factory.mktemp("artifacts") / "digits-fp32"
    edgec.compile("zoo:digits-cnn", target="cpu", out=out)
    return out


@pytest.fixture(scope="session")
def loihi_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zoo:digits-snn-mlp compiled for Loihi (calibrated on builtin:digits; compiled once)."""
    import edgec

    out = tmp_path_factory.mktemp("artifacts") / "snn-mlp-loihi"
    edgec.compile("zoo:digits-snn-mlp", target="loihi", out=out)
    return out


@pytest.fixture(scope="session")
def loihi_cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zoo:digits-snn-cnn compiled for Loihi (compiled once)."""
    import edgec

    out = tmp_path_factory.mktemp("artifacts") / "snn-cnn-loihi"
    edgec.compile("zoo:digits-snn-cnn", target="loihi", out=out)
    return out
