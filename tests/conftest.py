"""Shared fixtures: a CLI runner (in-process and as a real subprocess) and compiled artifacts."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgec.cli import app


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def _invoke(*args: str) -> CliResult:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
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
