"""Artifact directories: written atomically, read back with their report.

An artifact directory holds the target's files (model.onnx, network.net, ...), ``report.json``
(starting with ``schema_version``), ``report.md`` and ``source/`` (a copy of the source model with
its sha256, so ``edgec verify`` works even after the original file moved).

Writing happens in a hidden temporary sibling directory that is renamed into place only when
everything succeeded: a failed compile leaves no half-written output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from edgec.errors import UsageError

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
SCHEMA_VERSION = 1


@dataclass
class Artifact:
    path: Path
    report: dict[str, Any]

    @property
    def target(self) -> str:
        return str(self.report["target"])

    def file(self, role: str) -> Path:
        files = self.report.get("files", {})
        if role not in files:
            raise UsageError(f"artifact '{self.path}' has no '{role}' file (it has: {', '.join(files)})")
        return self.path / files[role]["path"]

    @classmethod
    def open(cls, path: str | Path) -> Artifact:
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
        return cls(path, report)


def check_output_dir(out: Path, *, force: bool) -> None:
    """Fail early (before any work) if ``out`` cannot become a fresh artifact directory."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise UsageError(
                f"output path '{out}' exists and is not a directory", hint="choose another -o path"
            )
        if not force:
            raise UsageError(f"output directory '{out}' already exists", hint="pass --force to replace it")
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


class ArtifactWriter:
    """``with ArtifactWriter(out, force=...) as tmp:`` write into ``tmp``; moved to ``out`` on success."""

    def __init__(self, out: Path, *, force: bool) -> None:
        self.out = Path(out)
        self.force = force
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        check_output_dir(self.out, force=self.force)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.parent))
        return self.tmp

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.tmp is not None
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
