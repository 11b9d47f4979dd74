"""Jetson power: tegrastats lines, the INA3221 rails in sysfs, and energy per inference.

Two sources of rail power, both on the module itself (nothing here needs TensorRT):

``tegrastats --interval MS``  prints one line per interval; each rail as ``NAME <current>mW/<average>mW``
    (the current value is the reading at that sample, the average is since tegrastats started). Rail
    names differ by module: Orin Nano / NX ``VDD_IN`` (the module's input, which already contains every
    other rail), ``VDD_CPU_GPU_CV``, ``VDD_SOC``; AGX Orin ``VDD_GPU_SOC``, ``VDD_CPU_CV``,
    ``VIN_SYS_5V0``, ``VDDQ_VDD2_1V8AO`` and ``NC`` (not connected) channels.
INA3221 hwmon (JetPack 6)     ``/sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmon*/in<k>_label`` names
    channel k, ``in<k>_input`` is its bus voltage in mV and ``curr<k>_input`` its current in mA (the
    kernel's Documentation/hwmon/ina3221.rst); power = V * I. Read directly, it samples far faster than
    tegrastats and needs no root.

Energy per inference (what the report's measured figure is)::

    E = ( integral_{t0}^{t1} P_rail(t) dt  -  P_idle * (t1 - t0) ) / N

over the timed run [t0, t1] of N inferences, trapezoids between samples with the power linearly
interpolated at t0 and t1; ``P_idle`` is the time-weighted mean power of an idle window sampled just
before the run. Both the net figure and the idle baseline are reported, with the rail named. Rails
are never added to a module-input rail (``VDD_IN`` contains them); sub-rails that do not overlap may
be summed (``VDD_GPU_SOC+VDD_CPU_CV``).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import UsageError

#: rails that carry the whole module's input power: nothing may be added to them
MODULE_INPUT_RAILS = ("VDD_IN",)
#: AGX Orin has no single module-input rail: its default is the compute rails (GPU + SoC, CPU + CV);
#: VIN_SYS_5V0 is the 5 V system supply (I/O, carrier) and is left out unless asked for
AGX_COMPUTE_RAILS = ("VDD_GPU_SOC", "VDD_CPU_CV")
#: channel names meaning "not connected"
UNCONNECTED = ("NC",)
#: fewest power samples inside the timed run for an energy figure (fewer: the run is too short)
MIN_RUN_SAMPLES = 5


# ---- tegrastats --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rail:
    """One rail of a tegrastats line, in milliwatts."""

    name: str
    current_mw: int
    average_mw: int


@dataclass(frozen=True)
class EngineState:
    """A unit such as ``GR3D_FREQ 84%@[713]``, ``VIC_FREQ 729``, ``NVJPG off``."""

    load_pct: int | None  # None when only a frequency is printed, or the unit is off
    freqs_mhz: tuple[int, ...]  # several for per-GPC GPU clocks (``@[0,0]``)
    off: bool = False


@dataclass(frozen=True)
class TegrastatsLine:
    timestamp: _dt.datetime | None
    ram_used_mb: int | None
    ram_total_mb: int | None
    cpus: tuple[tuple[int, int] | None, ...]  # (load %, MHz) per core; None for an offline core
    engines: dict[str, EngineState]
    temps_c: dict[str, float | None]  # lower-case sensor name -> degrees C; None: absent (-256C)
    rails: dict[str, Rail]

    def power_w(self, rail: str) -> float:
        """Instantaneous power of ``rail`` (or ``A+B``) in watts."""
        return sum(self.rails[r].current_mw for r in split_rail(rail)) / 1000.0


_TIMESTAMP = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_RAIL = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*) (\d+)mW/(\d+)mW")
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_LOAD = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)%@\[?([\d,]+)\]?")
_OFF = re.compile(r"\b([A-Z][A-Z0-9_]*) off\b")
_FREQ_ONLY = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?=\s|$)")
_NOT_UNITS = ("RAM", "SWAP", "CPU", "IRAM")
ABSENT_SENSOR_C = -256.0


def parse_tegrastats(line: str) -> TegrastatsLine:
    """Parse one tegrastats line (JetPack 5 / 6 Orin formats). Raises ValueError if it has no rails.

    Handles the leading ``MM-DD-YYYY HH:MM:SS`` timestamp (optional), ``GR3D_FREQ`` with and without
    brackets, temperature names in either case (keys are lower-cased), ``-256C`` for absent sensors,
    ``off`` units, and rails as ``NAME <current>mW/<average>mW`` (``NC`` channels are dropped).
    """
    ts = None
    m = _TIMESTAMP.match(line)
    if m:
        ts = _dt.datetime.strptime(m.group(1), "%m-%d-%Y %H:%M:%S")
    rails: dict[str, Rail] = {}
    for name, cur, avg in _RAIL.findall(line):
        if name not in UNCONNECTED:
            rails[name] = Rail(name, int(cur), int(avg))
    if not rails:
        raise ValueError(f"not a tegrastats line with power rails: {line.strip()[:80]!r}")
    ram = _RAM.search(line)
    cpus: list[tuple[int, int] | None] = []
    cpu = _CPU.search(line)
    if cpu:
        for core in cpu.group(1).split(","):
            core = core.strip()
            load, _, mhz = core.partition("%@")
            cpus.append((int(load), int(mhz)) if mhz else None)  # "off": offline core
    engines: dict[str, EngineState] = {}
    for name, load, freqs in _LOAD.findall(line):
        engines[name] = EngineState(int(load), tuple(int(f) for f in freqs.split(",") if f))
    for name in _OFF.findall(line):
        engines[name] = EngineState(None, (), off=True)
    for name, freq in _FREQ_ONLY.findall(line):
        if name not in engines and name not in _NOT_UNITS:
            engines[name] = EngineState(None, (int(freq),))
    temps: dict[str, float | None] = {}
    for name, value in _TEMP.findall(line):
        c = float(value)
        temps[name.lower()] = None if c == ABSENT_SENSOR_C else c
    return TegrastatsLine(
        timestamp=ts,
        ram_used_mb=int(ram.group(1)) if ram else None,
        ram_total_mb=int(ram.group(2)) if ram else None,
        cpus=tuple(cpus),
        engines=engines,
        temps_c=temps,
        rails=rails,
    )


# ---- INA3221 in sysfs --------------------------------------------------------------------------
INA3221_GLOB = "bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"


@dataclass(frozen=True)
class Ina3221Channel:
    """One labelled INA3221 channel: bus voltage (mV) and current (mA) files."""

    label: str
    voltage_file: Path
    current_file: Path
    device: str  # i2c device, e.g. "1-0040"

    def power_w(self) -> float:
        mv = int(self.voltage_file.read_text().strip())
        ma = int(self.current_file.read_text().strip())
        return mv * ma / 1e6


def find_ina3221(sysfs: Path = Path("/sys")) -> list[Ina3221Channel]:
    """Every labelled, connected INA3221 channel under ``sysfs`` (the hwmon number varies: globbed)."""
    channels: list[Ina3221Channel] = []
    for label_file in sorted(sysfs.glob(INA3221_GLOB)):
        m = re.fullmatch(r"in(\d+)_label", label_file.name)
        if not m:
            continue
        k = m.group(1)
        label = label_file.read_text().strip()
        volt, curr = label_file.parent / f"in{k}_input", label_file.parent / f"curr{k}_input"
        if label in UNCONNECTED or not volt.is_file() or not curr.is_file():
            continue
        device = label_file.parents[2].name  # .../<device>/hwmon/hwmonN/inK_label
        channels.append(Ina3221Channel(label, volt, curr, device))
    return channels


def read_ina3221(channels: Iterable[Ina3221Channel]) -> dict[str, float]:
    """Power of each channel now, in watts, by label."""
    return {ch.label: ch.power_w() for ch in channels}


# ---- which rail ----------------------------------------------------------------------------------
def split_rail(rail: str) -> tuple[str, ...]:
    return tuple(r.strip() for r in rail.split("+") if r.strip())


@dataclass(frozen=True)
class RailChoice:
    rail: str  # "VDD_IN" or "A+B"
    note: str


def choose_rail(available: Iterable[str], requested: str | None = None) -> RailChoice:
    """The rail energy is integrated over: ``requested`` (checked), else the module's default.

    Default: the module-input rail ``VDD_IN`` where it exists (Orin Nano / NX); on AGX Orin, which has
    none, the compute rails ``VDD_GPU_SOC+VDD_CPU_CV``. A module-input rail is never summed with others.
    """
    have = [r for r in available if r not in UNCONNECTED]
    if requested is not None:
        parts = split_rail(requested)
        missing = [p for p in parts if p not in have]
        if not parts or missing:
            raise UsageError(
                f"rail '{requested}' is not on this device",
                hint=f"rails here: {', '.join(have) or 'none'} (sum disjoint ones with +)",
            )
        if len(parts) > 1 and any(p in MODULE_INPUT_RAILS for p in parts):
            raise UsageError(
                f"rail '{requested}' adds rails to the module input rail, which already contains them",
                hint="measure VDD_IN alone, or sum only sub-rails (e.g. VDD_CPU_GPU_CV+VDD_SOC)",
            )
        return RailChoice("+".join(parts), "chosen with --rail")
    for r in MODULE_INPUT_RAILS:
        if r in have:
            return RailChoice(r, f"{r}: the module's input power (every other rail is part of it)")
    if all(r in have for r in AGX_COMPUTE_RAILS):
        return RailChoice(
            "+".join(AGX_COMPUTE_RAILS),
            "AGX Orin has no module-input rail: GPU+SoC and CPU+CV compute rails summed; "
            "VIN_SYS_5V0 (the 5 V system supply) is not included",
        )
    raise UsageError(
        f"no known total rail among {', '.join(have) or 'no rails'}",
        hint="name the rail(s) to integrate with --rail (sum disjoint ones with +)",
    )


# ---- traces and energy -------------------------------------------------------------------------
@dataclass
class PowerTrace:
    """Power samples: monotonic seconds and watts per rail (one value per rail per sample)."""

    source: str  # "tegrastats" | "ina3221 sysfs"
    times_s: list[float] = field(default_factory=list)
    rails_w: dict[str, list[float]] = field(default_factory=dict)

    def add(self, t: float, watts: Mapping[str, float]) -> None:
        n = len(self.times_s)
        for name, w in watts.items():
            self.rails_w.setdefault(name, [float("nan")] * n).append(float(w))
        self.times_s.append(float(t))
        for values in self.rails_w.values():  # a rail missing from this sample: NaN, caught later
            if len(values) < n + 1:
                values.append(float("nan"))

    def series(self, rail: str) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(self.times_s, dtype=np.float64)
        p = np.zeros_like(t)
        for part in split_rail(rail):
            if part not in self.rails_w:
                raise UsageError(f"rail '{part}' was not sampled", hint=f"sampled: {', '.join(self.rails_w)}")
            p = p + np.asarray(self.rails_w[part], dtype=np.float64)
        keep = np.isfinite(p)
        return t[keep], p[keep]


def integrate(t: np.ndarray, p: np.ndarray, t0: float, t1: float) -> float:
    """Joules: the trapezoid integral of power ``p`` (W) at times ``t`` (s) over [t0, t1].

    Power at t0 and t1 is linearly interpolated between the neighbouring samples, so a run that
    starts or ends between two samples is counted exactly for piecewise-linear power.
    """
    if t1 <= t0:
        raise UsageError(f"an empty time window [{t0}, {t1}]")
    if len(t) < 2 or t[0] > t0 or t[-1] < t1:
        span = f"[{t[0]:.3f}, {t[-1]:.3f}]" if len(t) else "no samples"
        raise UsageError(
            f"the power samples ({span}) do not cover the window [{t0:.3f}, {t1:.3f}]",
            hint="the sampler must start before and stop after the timed run",
        )
    inside = (t > t0) & (t < t1)
    ts = np.concatenate(([t0], t[inside], [t1]))
    ps = np.concatenate(([np.interp(t0, t, p)], p[inside], [np.interp(t1, t, p)]))
    return float(np.sum((ts[1:] - ts[:-1]) * (ps[1:] + ps[:-1]) / 2.0))


@dataclass(frozen=True)
class EnergyResult:
    """Energy per inference from one timed run, with the idle baseline it was corrected by."""

    rail: str
    source: str
    inferences: int
    duration_s: float
    energy_j: float  # per inference, idle subtracted
    gross_energy_j: float  # per inference, idle included
    idle_power_w: float
    run_power_w: float  # mean over the run
    run_samples: int
    idle_samples: int
    rail_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @property
    def method(self) -> str:
        return (
            f"{self.source} rail {self.rail}: power integrated over {self.inferences} inferences "
            f"({self.duration_s:.3f} s, {self.run_samples} samples), minus the idle baseline "
            f"{self.idle_power_w:.3f} W ({self.idle_samples} samples); "
            f"mean run power {self.run_power_w:.3f} W"
        )


def energy_per_inference(
    trace: PowerTrace,
    *,
    rail: str,
    run: tuple[float, float],
    idle: tuple[float, float],
    inferences: int,
    rail_note: str = "",
) -> EnergyResult:
    """Net energy per inference over the ``run`` window, the ``idle`` window's mean power subtracted."""
    if inferences < 1:
        raise UsageError(f"energy per inference needs >= 1 inference, got {inferences}")
    t, p = trace.series(rail)
    (t0, t1), (i0, i1) = run, idle
    run_j = integrate(t, p, t0, t1)
    idle_w = integrate(t, p, i0, i1) / (i1 - i0)
    run_samples = int(np.sum((t >= t0) & (t <= t1)))
    if run_samples < MIN_RUN_SAMPLES:
        raise UsageError(
            f"the timed run ({t1 - t0:.3f} s) holds only {run_samples} power samples "
            f"(at least {MIN_RUN_SAMPLES} are needed)",
            hint="run more iterations, or sample faster",
        )
    duration = t1 - t0
    net = run_j - idle_w * duration
    if net <= 0:
        raise UsageError(
            f"the run drew no more power on {rail} than idle ({run_j / duration:.3f} W vs {idle_w:.3f} W)",
            hint="the work is below the rail's noise: run more iterations or a larger batch",
        )
    return EnergyResult(
        rail=rail,
        source=trace.source,
        inferences=inferences,
        duration_s=duration,
        energy_j=net / inferences,
        gross_energy_j=run_j / inferences,
        idle_power_w=idle_w,
        run_power_w=run_j / duration,
        run_samples=run_samples,
        idle_samples=int(np.sum((t >= i0) & (t <= i1))),
        rail_note=rail_note,
    )
