"""Measured energy: when a figure measured on the device exists, it replaces the estimate.

A target that can measure (e.g. Jetson: integrate the ``VDD_IN`` rail of ``tegrastats`` over a
timed run and divide by the inferences) attaches a :class:`Measurement` to the energy section.
The estimate stays in the report next to it; the headline, the Markdown / HTML reports and the
regression gate then use the measured figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgec.errors import UsageError


@dataclass(frozen=True)
class Measurement:
    energy_j: float  # per inference
    method: str  # e.g. "tegrastats VDD_IN, integrated over 1000 runs"
    device: str  # e.g. "Jetson Orin Nano 8GB, nvpmodel 15W"
    idle_power_w: float | None = None  # idle baseline reported next to it
    inferences: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def attach_measurement(section: dict[str, Any], m: Measurement) -> dict[str, Any]:
    """Return a copy of the energy ``section`` whose headline is the measured figure."""
    if not m.energy_j > 0:
        raise UsageError(f"a measured energy must be positive, got {m.energy_j} J")
    out = dict(section)
    out["measured"] = {"kind": "measured", **m.to_dict()}
    out["headline"] = {
        "energy_j": m.energy_j,
        "source": "measured",
        "method": m.method,
        "device": m.device,
        "complete": True,
    }
    return out
