"""Sampling rail power during a timed run, and turning it into energy per inference.

A sampler runs in a background thread between ``start()`` and ``stop()`` and returns a
:class:`~edgec.targets.jetson.power.PowerTrace` stamped with ``time.monotonic()``:

* :class:`SysfsSampler` polls the INA3221 hwmon files (fast: a few ms per sample, no root).
* :class:`TegrastatsSampler` reads ``tegrastats --interval MS`` line by line (run through
  ``stdbuf -oL`` when available: tegrastats writes through stdio, which a pipe would block-buffer,
  and a line's arrival time is its timestamp; a trace whose lines arrived in bursts is refused).

:func:`measure_energy` samples an idle window, runs the warm-up and the timed run, and integrates
the chosen rail (:func:`~edgec.targets.jetson.power.energy_per_inference`).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgec.errors import MissingDependency, UsageError
from edgec.targets.jetson.power import (
    EnergyResult,
    Ina3221Channel,
    PowerTrace,
    choose_rail,
    energy_per_inference,
    find_ina3221,
    parse_tegrastats,
    read_ina3221,
)


class Sampler(Protocol):
    source: str
    interval_s: float

    def start(self) -> None: ...

    def stop(self) -> PowerTrace: ...


class SysfsSampler:
    """Polls INA3221 channels every ``interval_s`` seconds in a thread."""

    source = "ina3221 sysfs"

    def __init__(self, channels: Sequence[Ina3221Channel], interval_s: float = 0.005) -> None:
        if not channels:
            raise MissingDependency("no INA3221 power channels found in sysfs", hint="use tegrastats")
        self.channels = list(channels)
        self.interval_s = interval_s
        self._trace = PowerTrace(self.source)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _loop(self) -> None:
        try:
            while True:
                self._trace.add(time.monotonic(), read_ina3221(self.channels))
                if self._stop.wait(self.interval_s):
                    break
        except (OSError, ValueError) as exc:  # a file vanished or held garbage: reported by stop()
            self._error = exc

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="edgec-ina3221", daemon=True)
        self._thread.start()

    def stop(self) -> PowerTrace:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise UsageError(f"reading the INA3221 rails failed: {self._error}")
        return self._trace


class TegrastatsSampler:
    """Runs ``tegrastats --interval MS`` and parses its lines as they arrive."""

    source = "tegrastats"

    def __init__(self, interval_ms: int = 50, command: Sequence[str] = ("tegrastats",)) -> None:
        if interval_ms < 1:
            raise UsageError(f"tegrastats interval must be >= 1 ms, got {interval_ms}")
        exe = shutil.which(command[0])
        if exe is None:
            raise MissingDependency(
                f"'{command[0]}' is not on PATH", hint="tegrastats comes with JetPack (Jetson Linux)"
            )
        line_buffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
        self.argv = [*line_buffered, exe, *command[1:], "--interval", str(interval_ms)]
        self.interval_s = interval_ms / 1000.0
        self._trace = PowerTrace(self.source)
        self._arrivals: list[float] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None  # set by start()
        for line in self._proc.stdout:
            t = time.monotonic()
            try:
                parsed = parse_tegrastats(line)
            except ValueError:
                continue  # a banner or a line without rails
            self._trace.add(t, {name: r.current_mw / 1000.0 for name, r in parsed.rails.items()})
            self._arrivals.append(t)

    def start(self) -> None:
        self._proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self._thread = threading.Thread(target=self._read, name="edgec-tegrastats", daemon=True)
        self._thread.start()

    def stop(self) -> PowerTrace:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        check_arrivals(self._arrivals, self.interval_s)
        return self._trace


def check_arrivals(arrivals: Sequence[float], interval_s: float) -> None:
    """Refuse a trace whose lines arrived in bursts (block-buffered output: arrival times are wrong)."""
    if len(arrivals) < 3:
        return  # too few to judge; energy_per_inference refuses short traces itself
    gaps = np.diff(np.asarray(arrivals))
    if float(np.median(gaps)) < 0.5 * interval_s:
        raise UsageError(
            f"tegrastats lines arrived in bursts (median gap {np.median(gaps) * 1000:.1f} ms for a "
            f"{interval_s * 1000:.0f} ms interval): its output is buffered, so their times are wrong",
            hint="install coreutils' stdbuf, or read the INA3221 rails in sysfs instead",
        )


def default_sampler(sysfs: Path = Path("/sys"), *, tegrastats_interval_ms: int = 50) -> Sampler:
    """The INA3221 sysfs rails when readable, else tegrastats; MissingDependency when neither exists."""
    channels = find_ina3221(sysfs)
    if channels:
        try:
            read_ina3221(channels)
            return SysfsSampler(channels)
        except OSError:
            pass  # present but not readable by this user: tegrastats may still work
    if shutil.which("tegrastats"):
        return TegrastatsSampler(tegrastats_interval_ms)
    raise MissingDependency(
        "no power source on this machine: neither INA3221 rails in sysfs nor tegrastats",
        hint="measured energy needs a Jetson module (docs/jetson.md)",
    )


@dataclass(frozen=True)
class TimedRun:
    """Latencies of each timed call and the energy of the whole run."""

    latencies_s: list[float]
    energy: EnergyResult


def measure_energy(
    fn: Callable[[], object],
    *,
    sampler: Sampler,
    iterations: int,
    batch_size: int = 1,
    warmup: int = 10,
    idle_s: float = 2.0,
    rail: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TimedRun:
    """Idle window, warm-up, then ``iterations`` timed calls of ``fn`` while ``sampler`` records power.

    Energy per inference counts ``iterations * batch_size`` inferences. The idle window comes first
    (two sampling intervals in, and two before the warm-up, so idle samples lie on both sides of it);
    the sampler runs two intervals past the run's end so the run's right edge has a sample after it.
    """
    if iterations < 1 or batch_size < 1 or warmup < 0 or idle_s <= 0:
        raise UsageError("iterations and batch size must be >= 1, warm-up >= 0, idle time > 0")
    settle = max(2 * sampler.interval_s, 0.05)  # a sample on both sides of each window edge, even
    sampler.start()  # when the sampler thread is slow to get the CPU
    try:
        time.sleep(settle)
        i0 = clock()
        time.sleep(idle_s)
        i1 = clock()
        time.sleep(settle)  # an idle sample after i1 too: its edge stays idle
        for _ in range(warmup):
            fn()
        latencies: list[float] = []
        t0 = clock()
        for _ in range(iterations):
            s = clock()
            fn()
            latencies.append(clock() - s)
        t1 = clock()
        time.sleep(settle)
    finally:
        trace = sampler.stop()
    choice = choose_rail(trace.rails_w, rail)
    energy = energy_per_inference(
        trace,
        rail=choice.rail,
        run=(t0, t1),
        idle=(i0, i1),
        inferences=iterations * batch_size,
        rail_note=choice.note,
    )
    return TimedRun(latencies, energy)


def parse_nvpmodel(text: str) -> str | None:
    """The power mode name from ``nvpmodel -q`` output (``NV Power Mode: 15W``), or None."""
    for line in text.splitlines():
        if line.strip().startswith("NV Power Mode:"):
            return line.split(":", 1)[1].strip() or None
    return None


def device_name(root: Path = Path("/")) -> str:
    """The module (device tree model) and its nvpmodel power mode, for the measurement's record."""
    model_file = root / "proc/device-tree/model"
    model = (
        model_file.read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
        if model_file.is_file()
        else ""
    )
    mode = None
    if shutil.which("nvpmodel"):
        try:
            q = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10, check=False)
            mode = parse_nvpmodel(q.stdout)
        except (OSError, subprocess.TimeoutExpired):
            mode = None
    return (model or "unknown device") + (f", nvpmodel {mode}" if mode else "")


@dataclass
class RailProbe:
    """Energy per inference of ``bench``'s timed run, for :meth:`edgec.target.Target.energy_probe`."""

    sampler: Sampler
    rail: str | None = None
    idle_s: float = 2.0
    device: str = ""

    def measure(
        self, fn: Callable[[], object], *, iterations: int, warmup: int, batch_size: int
    ) -> tuple[list[float], Any]:
        from edgec.energy.measured import Measurement

        run = measure_energy(
            fn,
            sampler=self.sampler,
            iterations=iterations,
            batch_size=batch_size,
            warmup=warmup,
            idle_s=self.idle_s,
            rail=self.rail,
        )
        e = run.energy
        method = e.method + (f" ({e.rail_note})" if e.rail_note else "")
        return run.latencies_s, Measurement(
            energy_j=e.energy_j,
            method=method,
            device=self.device or device_name(),
            idle_power_w=e.idle_power_w,
            inferences=e.inferences,
        )
