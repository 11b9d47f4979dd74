"""The rules the suite runs under (tests/conftest.py): what may skip, what must fail, where files go."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from conftest import c_kernel_or_skip, require_module, seeded_and_restored

from edgec.targets.loihi import ckernel


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """ckernel as if nothing had been built yet in this process, caching into ``tmp_path``."""
    monkeypatch.setattr(ckernel, "_TRIED", False)
    monkeypatch.setattr(ckernel, "_LIB", None)
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path))
    monkeypatch.delenv("EDGEC_NO_CKERNEL", raising=False)
    monkeypatch.delenv("EDGEC_REQUIRE_CKERNEL", raising=False)
    return tmp_path


def test_a_kernel_that_fails_to_compile_fails_the_test(fresh_kernel, monkeypatch, tmp_path):
    broken = tmp_path / "cc"
    broken.write_text("#!/bin/sh\necho 'cuba.c:1: error: expected identifier' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    with pytest.raises(pytest.fail.Exception, match=r"did not build.*expected identifier"):
        c_kernel_or_skip()


def test_no_compiler_skips_unless_required(fresh_kernel, monkeypatch, tmp_path):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc / gcc / clang
    with pytest.raises(pytest.skip.Exception, match="no C compiler"):
        c_kernel_or_skip()
    monkeypatch.setenv("EDGEC_REQUIRE_CKERNEL", "1")
    with pytest.raises(pytest.fail.Exception, match="EDGEC_REQUIRE_CKERNEL"):
        c_kernel_or_skip()


def test_a_working_compiler_builds_into_the_given_cache(fresh_kernel, c_kernel):
    assert c_kernel_or_skip() is not None
    assert [p.name for p in fresh_kernel.glob("edgec_cuba_*.so")]


def test_a_missing_sdk_skips_unless_required(monkeypatch):
    monkeypatch.delenv("EDGEC_REQUIRE_X", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_module("edgec_no_such_sdk", "EDGEC_REQUIRE_X", "test")
    monkeypatch.setenv("EDGEC_REQUIRE_X", "1")
    with pytest.raises(pytest.fail.Exception, match="EDGEC_REQUIRE_X is set"):
        require_module("edgec_no_such_sdk", "EDGEC_REQUIRE_X", "test")
    assert require_module("json", "EDGEC_REQUIRE_X", "test").dumps([1]) == "[1]"


def test_the_kernel_cache_is_a_temporary_folder_during_tests():
    cache = Path(os.environ["EDGEC_CACHE"])
    assert cache.is_relative_to(tempfile.gettempdir())
    assert ckernel._cache_dir() == cache
    assert not cache.is_relative_to(Path.home() / ".cache")


def test_each_test_is_seeded_by_its_id_and_gets_torchs_threads_back():
    import numpy as np
    import torch

    threads = torch.get_num_threads()
    draws = []
    for _ in range(2):
        with seeded_and_restored("tests/test_x.py::test_y"):
            draws.append((np.random.rand(), torch.rand(1).item()))
            torch.set_num_threads(1)
        assert torch.get_num_threads() == threads
    assert draws[0] == draws[1]
    with seeded_and_restored("tests/test_x.py::test_z"):
        assert (np.random.rand(), torch.rand(1).item()) != draws[0]
