"""The typed quantization hand-off: what a compression pass learned, in a form every target reads.

A quantization-aware pass leaves each compressed layer's weights *on their grid* (the float values
are exactly ``scale * level``) and records the grid here, on :attr:`Program.quant`, keyed by the
layer's module name. Targets, the energy report and the program store read this record; nothing
reads module attributes.

One :class:`LayerQuant` per layer::

    weight = scale[c] * (levels[c] - zero_point)      c = output channel (axis 0) or one per tensor

* ``weight_bits``    width of the weight levels (1..8); ``levels`` are integers in the range below;
* ``symmetric``      zero_point 0 and levels in ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (or the odd-integer
  grid of ReScaW, ``odd_levels``: ``{-s, -s+2, ..., s}``, ``s = 2^b - 1``, which has no zero);
* ``weight_scale``   one float (per tensor) or one per output channel (``per_channel``);
* ``act_bits`` / ``act_scale`` / ``act_zero_point``  the layer's input activation quantizer, if any;
* ``state_bits``     membrane-potential width a spiking neuron was trained with (Q-SNN), if any;
* ``method``         which pass and scheme produced it (``qp-snn/rescaw``, ``uniform/maxabs``...).

The record is plain data (JSON in program.json and report.json).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LayerQuant:
    method: str
    weight_bits: int | None = None  # None: the record is about something else (a neuron's state)
    weight_scale: tuple[float, ...] = ()  # one value (per tensor) or one per output channel
    per_channel: bool = False
    symmetric: bool = True
    odd_levels: bool = False  # ReScaW: levels are odd integers in [-(2^b - 1), 2^b - 1]
    weight_zero_point: int = 0
    act_bits: int | None = None
    act_scale: float | None = None
    act_zero_point: int | None = None
    act_signed: bool = False
    state_bits: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weight_bits is None:
            return
        if not 1 <= self.weight_bits <= 16:
            raise ValueError(f"weight_bits must be 1..16, got {self.weight_bits}")
        if not self.weight_scale or any(not (s > 0) for s in self.weight_scale):
            raise ValueError(f"weight_scale must be positive, got {self.weight_scale}")

    @property
    def max_level(self) -> int:
        """Largest |level| of the weight grid."""
        if self.weight_bits is None:
            raise ValueError(f"{self.method}: no weight grid recorded")
        if self.weight_bits == 1:
            return 1
        if self.odd_levels:
            return (1 << self.weight_bits) - 1
        return (1 << (self.weight_bits - 1)) - 1

    def scales(self, channels: int) -> np.ndarray:
        """The scale of every output channel (a per-tensor scale repeated)."""
        s = np.asarray(self.weight_scale, dtype=np.float64)
        if s.size == 1:
            return np.full(channels, float(s[0]))
        if s.size != channels:
            raise ValueError(f"{s.size} weight scales for {channels} output channels")
        return s

    def levels(self, weight: np.ndarray) -> np.ndarray:
        """Integer levels of ``weight`` on this grid (raises if the weight is not on it)."""
        w = np.asarray(weight, dtype=np.float64)
        s = self.scales(w.shape[0]).reshape(-1, *([1] * (w.ndim - 1)))
        q = w / s + self.weight_zero_point
        r = np.rint(q)
        if np.abs(q - r).max(initial=0.0) > 1e-3 or np.abs(r).max(initial=0) > self.max_level:
            raise ValueError("the weight is not on its recorded grid")
        return r.astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["weight_scale"] = [float(s) for s in self.weight_scale]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerQuant:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown quantization field(s): {', '.join(sorted(unknown))}")
        values = dict(d)
        values["weight_scale"] = tuple(float(s) for s in values["weight_scale"])
        return cls(**values)


QuantRecord = dict[str, LayerQuant]


def record_to_dict(record: QuantRecord) -> dict[str, Any]:
    return {name: q.to_dict() for name, q in record.items()}


def record_from_dict(d: dict[str, Any]) -> QuantRecord:
    return {name: LayerQuant.from_dict(q) for name, q in d.items()}


def weight_bits_by_layer(record: QuantRecord) -> dict[str, int]:
    """Storage width of each quantized layer's weights (the energy report's memory column)."""
    return {name: q.weight_bits for name, q in record.items() if q.weight_bits is not None}
