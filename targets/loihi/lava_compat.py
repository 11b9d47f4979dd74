"""Run lava-nc 0.10 / lava-dl 0.6 on Python 3.11, fenced off from the rest of edgec.

Why this module exists
----------------------
lava-nc 0.10.0 (its last release; the repository is archived) declares dataclass fields such as::

    @dataclass
    class CoreEncoder:
        x: ByteEncoder = ByteEncoder()

in ``lava/magma/compiler/var_model.py``. ``ByteEncoder`` is itself a non-frozen dataclass, hence
unhashable, and Python 3.11 rejects unhashable class-level defaults ("mutable default ... use
default_factory"). Every Lava process import goes through that module, so nothing of Lava loads.

The fix, applied by edgec and nowhere else
------------------------------------------
:func:`install` puts an import hook (a :class:`importlib.abc.MetaPathFinder`) in front of
``sys.meta_path``. When ``lava.magma.compiler.var_model`` is imported, the hook reads the installed
source file, rewrites each ``NAME: ByteEncoder = ByteEncoder()`` default to
``field(default_factory=ByteEncoder)`` (the behaviour Lava's authors meant: one fresh encoder per
instance) and executes the rewritten code as that module. Nothing on disk changes: the installed
file, its ``__pycache__`` and other environments stay untouched, and the rewritten code is never
written to a bytecode cache. If a future Lava no longer has the pattern, the hook loads the file
unchanged.

Lava's runtime starts one OS process per Lava process model with ``multiprocessing`` and forces
the ``fork`` start method at import (``lava/magma/runtime/message_infrastructure/
multiprocessing.py``): children inherit the parent's already-patched modules and its
``sys.meta_path``, so the fix holds in every subprocess Lava spawns (the Lava tests run real
multi-process simulations). Lava calls ``multiprocessing.set_start_method('fork')`` without
``force``, which raises if anything in the process fixed the start method earlier; :func:`load_lava`
clears a previously fixed method first (Lava cannot run with any other).

Fencing
-------
Only :mod:`edgec.targets.loihi` imports Lava, lazily, through :func:`load_lava`. Importing
``lava.lib.dl.netx`` imports ``slayer``, which prints a "Prophesee Dataset Toolbox could not be
found" warning on stdout, and netx's ``optimize_weight_bits`` prints warnings too: while Lava is
imported or run, :func:`quiet_stdout` sends file descriptor 1 (and ``sys.stdout``) to stderr so
machine-readable output on stdout stays clean.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import io
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from edgec.errors import MissingDependency

log = logging.getLogger(__name__)

VAR_MODEL = "lava.magma.compiler.var_model"
# `    x: ByteEncoder = ByteEncoder()`  ->  `    x: ByteEncoder = field(default_factory=ByteEncoder)`
_BYTE_ENCODER_DEFAULT = re.compile(
    r"^(?P<head>[ \t]+\w+[ \t]*:[ \t]*ByteEncoder[ \t]*=[ \t]*)ByteEncoder\(\)[ \t]*$", re.M
)
_FIELD = '__import__("dataclasses").field(default_factory=ByteEncoder)'


def rewrite_var_model(source: str) -> tuple[str, int]:
    """The var_model source with every ``ByteEncoder()`` field default made a ``default_factory``.

    Returns the new source and the number of defaults rewritten (0: nothing to fix).
    """
    return _BYTE_ENCODER_DEFAULT.subn(lambda m: m.group("head") + _FIELD, source)


class _PatchedVarModelLoader(importlib.abc.Loader):
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.rewritten = 0

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        with open(self.origin, encoding="utf-8") as f:
            source, self.rewritten = rewrite_var_model(f.read())
        log.debug("lava compat: rewrote %d ByteEncoder defaults in %s", self.rewritten, self.origin)
        exec(compile(source, self.origin, "exec"), module.__dict__)


class VarModelFinder(importlib.abc.MetaPathFinder):
    """Finds ``lava.magma.compiler.var_model`` and loads it through the rewriting loader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != VAR_MODEL:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            return None
        return importlib.util.spec_from_file_location(
            fullname, spec.origin, loader=_PatchedVarModelLoader(spec.origin)
        )


def install() -> None:
    """Put the var_model fix in front of the import system (idempotent)."""
    if not any(isinstance(f, VarModelFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, VarModelFinder())


def installed() -> bool:
    return any(isinstance(f, VarModelFinder) for f in sys.meta_path)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send everything written to stdout (Python-level and file descriptor 1) to stderr."""
    sys.stdout.flush()
    try:
        fd_out = sys.stdout.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd_out = None  # stdout is not a real file (pytest capture, CliRunner): Python level only
    saved = os.dup(1) if fd_out == 1 else None
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


#: what importing lava-dl prints that says nothing about edgec's use of it (lava-dl's object-detection
#: datasets announce a missing Prophesee toolbox on every import; netx does not use them)
_IMPORT_NOISE = (
    "Prophesee Dataset Toolbox",
    "Only Prophesee DVS demo",
    "prophesee-automotive-dataset-toolbox",
)


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Raise ``name``'s level to ERROR for the block (torch warns 'No CUDA runtime is found' when lava-dl
    imports its C++ extension helpers on a machine without CUDA: true, and no concern of a CPU run)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _forward(text: str) -> None:
    """Lava's import-time output, minus :data:`_IMPORT_NOISE`, to stderr (stdout stays the user's)."""
    for line in text.splitlines():
        if line.strip() and not any(n in line for n in _IMPORT_NOISE):
            print(line, file=sys.stderr)


@dataclass(frozen=True)
class Lava:
    """The Lava names edgec uses, imported once."""

    Network: Any  # lava.lib.dl.netx.hdf5.Network
    Loihi2SimCfg: Any
    RunSteps: Any
    Source: Any  # lava.proc.io.source.RingBuffer
    Sink: Any  # lava.proc.io.sink.RingBuffer
    versions: dict[str, str]


_LAVA: Lava | None = None


def require_lava() -> dict[str, str]:
    """The installed lava-nc / lava-dl versions, without importing Lava; MissingDependency if absent."""
    from importlib.metadata import PackageNotFoundError, distribution

    for mod, dist in (("lava", "lava-nc"), ("lava", "lava-dl")):
        try:
            found = importlib.util.find_spec(mod) is not None  # a top-level name: nothing is imported
            distribution(dist)
        except (ImportError, PackageNotFoundError):
            found = False
        if not found:
            raise MissingDependency(
                f"the Lava backend needs {dist}, which is not installed",
                hint="pip install --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0 "
                "(see docs/loihi.md); the emulator backend needs nothing extra",
            )
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in ("lava-nc", "lava-dl"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


def load_lava() -> Lava:
    """Import Lava and lava-dl netx with the Python 3.11 fix, quietly; raise MissingDependency if absent."""
    global _LAVA
    if _LAVA is not None:
        return _LAVA
    versions = require_lava()
    install()
    import multiprocessing as mp

    if "lava.magma.runtime.message_infrastructure.multiprocessing" not in sys.modules:
        current = mp.get_start_method(allow_none=True)
        if current is not None:  # Lava's own set_start_method('fork') would raise
            log.info("lava compat: resetting multiprocessing start method %r so Lava can set 'fork'", current)
            mp.set_start_method(None, force=True)
    notices = io.StringIO()
    try:
        with quiet_stdout(), contextlib.redirect_stdout(notices), _quiet_logger("torch.utils.cpp_extension"):
            from lava.lib.dl.netx.hdf5 import Network
            from lava.magma.core.run_conditions import RunSteps
            from lava.magma.core.run_configs import Loihi2SimCfg
            from lava.proc.io.sink import RingBuffer as Sink
            from lava.proc.io.source import RingBuffer as Source
    except ImportError as exc:
        raise MissingDependency(
            f"Lava could not be imported: {exc}",
            hint="install lava-nc 0.10.0 / lava-dl 0.6.0 with their real dependencies (docs/loihi.md)",
        ) from None
    _forward(notices.getvalue())
    _LAVA = Lava(Network, Loihi2SimCfg, RunSteps, Source, Sink, versions)
    return _LAVA
