"""The report as typed data: the ``report.json`` document (docs/report-schema.md, docs/report-schema.json).

One :class:`Report` is built once (:mod:`edgec.report.build`) by ``edgec compile`` and by
``edgec report`` (for a model or an artifact) and every view renders it. The envelope is typed;
the ``energy`` section is the one :func:`edgec.energy.analyze.energy_section` returns, described
field by field in docs/report-schema.md.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgec.artifact import SCHEMA_VERSION, json_default

if TYPE_CHECKING:
    from edgec.energy.gate import GateResult

#: envelope keys in the order report.json writes them (the energy section last but verify)
_ORDER = (
    "schema_version",
    "edgec_version",
    "created",
    "target",
    "compiled",
    "program",
    "config",
    "passes",
    "check",
    "stages",
    "files",
    "target_report",
    "artifact",
    "energy",
    "verify",
)


@dataclass
class Report:
    """One report: what was compiled (or counted), how, from what, and what it costs."""

    target: str
    program: dict[str, Any]  # Program.describe(): name, kind, input_shape, timesteps, encoder, source
    config: dict[str, Any]  # CompileConfig.to_dict()
    passes: list[dict[str, Any]]  # PassRecord.to_dict() per pass
    energy: dict[str, Any] | None  # None when the target declares no cost table
    edgec_version: str
    created: str  # ISO 8601, UTC
    compiled: bool
    schema_version: int = SCHEMA_VERSION
    check: dict[str, Any] | None = None  # a model counted without compiling: ok, violations
    stages: dict[str, Any] | None = None  # artifacts: lowering and total time
    files: dict[str, dict[str, Any]] | None = None  # artifacts: role -> path, bytes, sha256
    target_report: dict[str, Any] | None = None  # artifacts: the target's own section
    artifact: str | None = None  # read from this artifact directory
    verify: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this edgec does not know, kept as read

    @property
    def spiking(self) -> bool:
        return self.program.get("kind") == "snn"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in _ORDER:
            value = getattr(self, key)
            if value is not None or key == "energy":
                out[key] = value
        out.update(self.extra)
        return out

    def to_json(self, *, gate: GateResult | None = None) -> str:
        doc = self.to_dict()
        if gate is not None:
            doc["gate"] = gate.to_dict()
        return json.dumps(doc, indent=2, default=json_default) + "\n"

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Report:
        """The report of a report.json document (an artifact's, or a baseline)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in doc.items() if k in names}
        known.setdefault("compiled", "files" in doc)  # reports before `compiled` was written always
        known.setdefault("passes", [])
        known.setdefault("config", {})
        known.setdefault("energy", None)
        extra = {k: v for k, v in doc.items() if k not in names and k != "gate"}
        return cls(**known, extra=extra)
