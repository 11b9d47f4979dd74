"""Build a :class:`~edgec.report.document.Report`: the one builder of ``edgec compile`` and ``edgec report``.

The API loads the model, runs the target's passes and counts the energy; this module only
assembles what they produced, so it never imports the API (the views below it neither).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import TYPE_CHECKING, Any

from edgec.report.document import Report

if TYPE_CHECKING:
    from edgec.artifact import Artifact
    from edgec.config import CompileConfig
    from edgec.program import Program
    from edgec.target import Violation


def _version() -> str:
    from edgec import __version__

    return __version__


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def build_report(
    program: Program,
    *,
    target: str,
    config: CompileConfig,
    energy: dict[str, Any] | None,
    violations: list[Violation] | None = None,
    files: dict[str, dict[str, Any]] | None = None,
    target_report: dict[str, Any] | None = None,
    stages: dict[str, Any] | None = None,
) -> Report:
    """The report of ``program`` for ``target``: compiled when ``files`` are given, else counted only.

    ``violations`` (a model counted without compiling) are what the target could not take as it
    is; the energy section then says so in its notes, since the counts are of a model that would
    not compile.
    """
    compiled = files is not None
    if energy is not None and violations:
        energy = dict(energy)
        energy["notes"] = [
            *energy.get("notes", []),
            f"target '{target}' cannot compile this model as it is ({len(violations)} violation(s), "
            f"e.g. {violations[0].layer}: {violations[0].rule}); `edgec check` lists them",
        ]
    return Report(
        target=target,
        program=program.describe(),
        config=config.to_dict(),
        passes=[r.to_dict() for r in program.history],
        energy=energy,
        edgec_version=_version(),
        created=_now(),
        compiled=compiled,
        check=None
        if compiled
        else {"ok": not violations, "violations": [v.to_dict() for v in violations or []]},
        stages=stages,
        files=files,
        target_report=target_report,
    )


def artifact_report(artifact: Artifact, *, energy: dict[str, Any] | None = None) -> Report:
    """An artifact's stored report; ``energy`` (recounted) replaces its energy section when given."""
    report = Report.from_dict(artifact.report)
    report.artifact = str(artifact.path)
    if energy is not None:
        report.energy = energy
    return report


def stored_config(report: Report) -> CompileConfig:
    """The configuration an artifact was compiled with, as its report recorded it."""
    from edgec.config import CompileConfig

    known = {f.name for f in dataclasses.fields(CompileConfig)}
    values = {k: v for k, v in report.config.items() if k in known}
    if values.get("input_shape") is not None:
        values["input_shape"] = tuple(values["input_shape"])
    return CompileConfig(**values)
