"""Artifact directories: written atomically, read back with their report.

An artifact directory holds the target's files (model.onnx, network.net, ...), ``report.json``
(starting with ``schema_version``), ``report.md`` and ``source/`` (a copy of the source model with
its sha256, so ``edgec verify`` works even after the original file moved).

Writing happens in a hidden temporary sibling directory that is renamed into place only when
everything succeeded: a failed compile leaves no half-written output. The directory gets the user's
umask like any directory they create.

Data safety: ``--force`` replaces only an earlier edgec artifact, recognised by its report.json and
holding nothing its report does not list; never a directory with other files, the working directory
(``-o .``) or one of its parents, nor one that holds the source model. On open, every file the
report lists is checked against its sha256: a damaged artifact is a one-line
:class:`ArtifactDamaged` (exit 3), not a crash later.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from edgec.errors import DataError, UsageError

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
SCHEMA_VERSION = 1
#: what edgec writes into every artifact besides the files its report lists
OWN_FILES = (REPORT_JSON, REPORT_MD, "report.html")


class ArtifactDamaged(DataError):
    """A file of an artifact is missing or changed since compile (exit code 3)."""


@dataclass
class Artifact:
    path: Path
    report: dict[str, Any]
    #: the program it was compiled from, when compiled in this Python session (not saved; verify uses it)
    source: Any = field(default=None, repr=False, compare=False)

    @property
    def target(self) -> str:
        return str(self.report["target"])

    def file(self, role: str) -> Path:
        files = self.report.get("files", {})
        if role not in files:
            raise UsageError(f"artifact '{self.path}' has no '{role}' file (it has: {', '.join(files)})")
        return self.path / files[role]["path"]

    def __repr__(self) -> str:
        prog = self.report.get("program", {})
        precision = self.report.get("config", {}).get("quantize", "?")
        return (
            f"Artifact('{self.path}', target={self.target!r}, model={prog.get('name')!r}, "
            f"precision={precision!r}, files={sorted(self.report.get('files', {}))})"
        )

    def verify_files(self) -> None:
        """Every file the report lists exists and has the sha256 the report states."""
        from edgec.program import sha256_of

        for role, f in self.report.get("files", {}).items():
            rel = f.get("path", "")
            file = self.path / rel
            if not file.is_file():
                raise ArtifactDamaged(
                    f"artifact damaged: {rel} ({role}) is missing from '{self.path}'",
                    hint="compile the model again",
                )
            if f.get("sha256") is not None and sha256_of(file) != f["sha256"]:
                raise ArtifactDamaged(
                    f"artifact damaged: {rel} changed since compile (sha256 differs from report.json)",
                    hint="compile the model again",
                )

    @classmethod
    def open(cls, path: str | Path, *, check: bool = True) -> Artifact:
        """The artifact in ``path``; with ``check`` (the default) its files are checked against the
        sha256 in its report (:class:`ArtifactDamaged` if one is missing or changed)."""
        path = Path(path)
        report_path = path / REPORT_JSON
        if not path.is_dir():
            raise UsageError(
                f"'{path}' is not an artifact directory",
                hint="give the -o directory written by `edgec compile`",
            )
        if not report_path.is_file():
            raise UsageError(f"'{path}' has no {REPORT_JSON}: it is not an edgec artifact directory")
        try:
            report = json.loads(report_path.read_text())
        except json.JSONDecodeError as exc:
            raise UsageError(f"'{report_path}' is not valid JSON: {exc}") from None
        version = report.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UsageError(
                f"'{report_path}' has schema_version {version!r}; this edgec reads {SCHEMA_VERSION}",
                hint="recompile the model with this version of edgec",
            )
        if not isinstance(report.get("files"), dict) or "target" not in report:
            raise ArtifactDamaged(f"artifact damaged: '{report_path}' lacks its target or files")
        art = cls(path, report)
        if check:
            art.verify_files()
        return art


def check_output_dir(out: Path, *, force: bool, protect: tuple[Path, ...] = ()) -> None:
    """Fail early (before any work) if ``out`` cannot become a fresh artifact directory.

    An existing ``out`` may be replaced only with ``force`` and only if it is an earlier edgec
    artifact holding nothing but what its report lists; never the working directory or one of its
    parents, never a directory holding one of ``protect`` (the source model).
    """
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UsageError(
            f"-o '{out}' is the working directory{'' if resolved == cwd else ' or one above it'}: edgec "
            "writes an artifact into a directory of its own",
            hint="give a new directory, e.g. -o out/model",
        )
    for p in protect:
        source = p.resolve()
        if source == resolved or resolved in source.parents:
            raise UsageError(
                f"-o '{out}' holds the source model '{p}': edgec never replaces it",
                hint="give another output directory",
            )
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise UsageError(
                f"output path '{out}' exists and is not a directory", hint="choose another -o path"
            )
        entries = sorted(p.name for p in out.iterdir())
        if entries and not force:
            raise UsageError(f"output directory '{out}' already exists", hint="pass --force to replace it")
        if entries:
            foreign = _foreign_entries(out, entries)
            if foreign:
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise UsageError(
                    f"--force replaces only an earlier edgec artifact; '{out}' holds other files ({shown})",
                    hint="choose another -o directory (edgec never deletes files it did not write)",
                )
    ancestor = out.parent
    while not ancestor.exists():
        if ancestor.is_symlink() or ancestor == ancestor.parent:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(
            f"cannot create output directory '{out}': '{ancestor}' is not a directory",
            hint="choose an -o path inside a writable directory",
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create output directory '{out}': '{ancestor}' is not writable")


def _foreign_entries(out: Path, entries: list[str]) -> list[str]:
    """The entries of ``out`` that are not part of the edgec artifact its report.json describes
    (all of them when it has no readable report)."""
    try:
        report = json.loads((out / REPORT_JSON).read_text())
        files = report["files"]
        # a compile report describes each file ({"path": ...}); a compressed program's names it
        listed = {str(f if isinstance(f, str) else f["path"]).split("/")[0] for f in files.values()}
        if "schema_version" not in report or ("target" not in report and report.get("kind") != "compression"):
            return entries
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return entries
    return [e for e in entries if e not in listed and e not in OWN_FILES]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ArtifactWriter:
    """``with ArtifactWriter(out, force=...) as tmp:`` write into ``tmp``; moved to ``out`` on success."""

    def __init__(self, out: Path, *, force: bool, protect: tuple[Path, ...] = ()) -> None:
        self.out = Path(out)
        self.force = force
        self.protect = protect
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        check_output_dir(self.out, force=self.force, protect=self.protect)
        self.out = self.out.resolve()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.parent))
        self.tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; an artifact keeps the user's umask
        return self.tmp

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.tmp is None:
            return
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            self.out.rename(old)
        self.tmp.rename(self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    """What report.json writes for values ``json`` does not know: numpy / torch scalars and arrays, paths."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
