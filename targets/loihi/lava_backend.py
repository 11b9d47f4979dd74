"""Run ``network.net`` in real Lava: lava-dl ``netx.hdf5.Network`` in ``Loihi2SimCfg(select_tag='fixed_pt')``.

How samples are separated: all N samples stream through ONE network, back to back, T steps each,
built with netx's ``reset_interval=T`` (and ``reset_offset=1``). netx then resets layer l's neurons
(``LIFReset``: u = v = 0) at every step ``1 + l + k T`` -- the step at which sample k's first input
spikes reach layer l through the l one-step Dense / Conv buffers before it -- so no state of sample
k-1 survives into sample k, in any layer, and no idle steps are needed between samples. The run
lasts ``N T + L`` steps (L = number of synapse layers, the pipeline latency); sample k's output at
its step t is Lava's output at step ``1 + k T + L + t`` (the sink's column ``k T + L + t``).

Data layout: Lava's conv layers are ``(W, H, C)``; the source ring buffer gets the spikes transposed
to that order (flat inputs unchanged) and the sink's output is transposed back.

Where Lava runs: in a fresh interpreter of its own (``spawn``), never in edgec's process. Lava's
runtime forks one OS process per process model (it forces the ``fork`` start method). Forked from a
process in which torch has run (its OpenMP / intra-op thread pool is up) and in which earlier Lava
networks left their channel threads, a child gets a copy of only the forking thread: a lock another
thread held at that instant (an allocator's, OpenMP's, Python's import lock) is never released in
the child, which then waits forever while the parent waits for it, idle. That is how ``make test``
stalled for over ten minutes in tests/test_loihi_lava.py (in-process ``verify --backend lava`` after
the suite's torch work; reproduced here: an in-process Lava run after torch convolutions hung in
Lava's ``_get_resp_for_run``, the 28th of 30). A spawned worker starts single-threaded, has run no
torch, and puts itself and every process Lava forks in a process group of its own; the parent waits
at most :func:`lava_timeout` seconds, then ends the whole group and raises :class:`LavaTimeout`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import DataError, EdgecError, UsageError

from .lava_compat import load_lava, quiet_stdout, require_lava
from .netlist import Netlist

log = logging.getLogger(__name__)


class LavaRunError(EdgecError):
    """Lava itself failed while simulating the network (exit code 1: report it with the message)."""


class LavaTimeout(LavaRunError):
    """A Lava run did not finish in time; its processes were ended."""


#: a Lava run may take this long plus its steps at :data:`LAVA_MIN_STEPS_PER_S` (Lava's CPU simulation of
#: the zoo networks runs hundreds of steps per second here; its start, imports and compile take ~10 s)
LAVA_TIMEOUT_FLOOR_S = 120.0
LAVA_MIN_STEPS_PER_S = 20.0
TIMEOUT_ENV = "EDGEC_LAVA_TIMEOUT"


def lava_timeout(steps: int) -> float:
    """Seconds a Lava run of ``steps`` steps may take (``EDGEC_LAVA_TIMEOUT`` overrides)."""
    override = os.environ.get(TIMEOUT_ENV)
    if override is not None:
        try:
            value = float(override)
        except ValueError:
            raise UsageError(f"{TIMEOUT_ENV}={override!r} is not a number of seconds") from None
        if value <= 0:
            raise UsageError(f"{TIMEOUT_ENV} must be > 0 seconds, got {override}")
        return value
    return LAVA_TIMEOUT_FLOOR_S + steps / LAVA_MIN_STEPS_PER_S


def _to_lava(x: np.ndarray) -> np.ndarray:
    """[steps, *shape] in edgec order -> [*lava_shape, steps]."""
    if x.ndim == 4:  # (C, H, W) -> (W, H, C)
        return np.ascontiguousarray(x.transpose(3, 2, 1, 0))
    return np.ascontiguousarray(np.moveaxis(x, 0, -1))


def _from_lava(y: np.ndarray) -> np.ndarray:
    """[*lava_shape, steps] -> [steps, *shape] in edgec order."""
    if y.ndim == 4:  # (W, H, C, steps) -> (steps, C, H, W)
        return y.transpose(3, 2, 1, 0)
    return np.moveaxis(y, -1, 0)


def _simulate(
    net_path: str | Path, in_shape: tuple[int, ...], stream: np.ndarray, *, reset_interval: int | None
) -> tuple[np.ndarray, float, float]:
    """Run ``stream`` [steps, *in_shape] through netx in fixed_pt; returns the output [steps, *out] and
    the seconds of the whole run and of the steps after the first (Lava compiles on the first)."""
    lava = load_lava()
    steps = stream.shape[0]
    started = time.perf_counter()
    with quiet_stdout():
        kwargs: dict[str, Any] = (
            {"reset_interval": reset_interval, "reset_offset": 1} if reset_interval else {}
        )
        network = lava.Network(net_config=str(net_path), **kwargs)
        if tuple(network.inp.shape) != _to_lava(stream[:1]).shape[:-1]:
            raise DataError(f"netx built an input port of shape {network.inp.shape} for input {in_shape}")
        source = lava.Source(data=_to_lava(stream))
        sink = lava.Sink(shape=network.out.shape, buffer=steps)
        source.s_out.connect(network.inp)
        network.out.connect(sink.a_in)
        try:
            cfg = lava.Loihi2SimCfg(select_tag="fixed_pt")
            network.run(condition=lava.RunSteps(num_steps=1), run_cfg=cfg)  # compiles and builds processes
            first = time.perf_counter()
            if steps > 1:
                network.run(condition=lava.RunSteps(num_steps=steps - 1), run_cfg=cfg)
            steady = time.perf_counter() - first
            data = sink.data.get()
        except Exception as exc:
            raise LavaRunError(f"Lava failed to simulate '{net_path}': {type(exc).__name__}: {exc}") from exc
        finally:
            try:
                network.stop()
            except Exception as exc:  # the run already failed or finished; stopping is cleanup
                log.debug("network.stop(): %s", exc)
    return _from_lava(np.asarray(data)), time.perf_counter() - started, steady


def _lava_input_shape(net: Netlist) -> tuple[int, ...]:
    # a leading flatten is not a Lava process: netx's first dense takes the flat vector itself
    return net.layers[0].out_shape if net.layers and net.layers[0].kind == "flatten" else net.input_shape


def _check(net: Netlist, x: np.ndarray) -> None:
    if x.ndim != len(net.input_shape) + 2 or tuple(x.shape[2:]) != tuple(net.input_shape):
        raise DataError(f"spikes of shape {tuple(x.shape)} do not fit the network input {net.input_shape}")


def run_lava(net_path: str | Path, net: Netlist, spikes: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Binary spikes ``[T, N, *input_shape]`` -> Lava's output spikes ``[T, N, *output_shape]`` (uint8),
    all samples in one network separated by ``reset_interval = T`` (module docstring).

    Returns the spikes and timing facts (steps, seconds, steps per second with and without Lava's compile
    and first step, Lava versions). The run is one step, then the rest: the same simulation, timed apart.
    """
    x = np.asarray(spikes)
    _check(net, x)
    t_steps, n = int(x.shape[0]), int(x.shape[1])
    latency = net.latency
    steps = n * t_steps + latency
    in_shape = _lava_input_shape(net)
    stream = np.zeros((steps, *in_shape), dtype=np.float64)
    stream[: n * t_steps] = x.transpose(1, 0, *range(2, x.ndim)).reshape(n * t_steps, *in_shape)
    versions = require_lava()  # Lava itself is imported only in the worker
    ((out, elapsed, steady),) = simulate_isolated(net_path, in_shape, [(stream, t_steps)])
    windows = np.stack(
        [out[k * t_steps + latency : k * t_steps + latency + t_steps] for k in range(n)], axis=1
    )
    facts = {
        "steps": steps,
        "samples": n,
        "seconds": round(elapsed, 3),
        "steps_per_s": round(steps / elapsed, 2) if elapsed > 0 else None,
        # after Lava's compile and the first step: the simulator's own speed
        "steady_steps_per_s": round((steps - 1) / steady, 2) if steps > 1 and steady > 0 else None,
        "separation": f"netx reset_interval={t_steps}, reset_offset=1 (layer l resets at step 1 + l + kT)",
        "versions": versions,
    }
    return windows.astype(np.uint8), facts


def run_lava_fresh(net_path: str | Path, net: Netlist, spikes: np.ndarray) -> np.ndarray:
    """Each sample in a fresh netx network without resets: Lava's raw timeline (uint8).

    ``spikes`` [H, N, *input_shape] (pad with zero steps to see the last inputs through the L buffered
    synapses) -> output spikes [H, N, *output_shape], step for step as Lava produces them; compare
    with ``Emulator.run(spikes, buffered=True)``. Slow: one Lava compile per sample.
    """
    x = np.asarray(spikes)
    _check(net, x)
    require_lava()
    in_shape = _lava_input_shape(net)
    jobs: list[tuple[np.ndarray, int | None]] = [
        (x[:, k].reshape(x.shape[0], *in_shape).astype(np.float64), None) for k in range(x.shape[1])
    ]
    outs = [out for out, _, _ in simulate_isolated(net_path, in_shape, jobs)]
    return np.stack(outs, axis=1).astype(np.uint8)


# ---- Lava in a process of its own (module docstring) ---------------------------------------------
def simulate_isolated(
    net_path: str | Path, in_shape: tuple[int, ...], jobs: list[tuple[np.ndarray, int | None]]
) -> list[tuple[np.ndarray, float, float]]:
    """:func:`_simulate` for each ``(stream, reset_interval)`` in a spawned worker, one after another,
    within :func:`lava_timeout` of all their steps; the worker's process group is ended afterwards."""
    timeout = lava_timeout(sum(int(stream.shape[0]) for stream, _ in jobs))
    with tempfile.TemporaryDirectory(prefix="edgec-lava-") as tmp:
        work = Path(tmp)
        np.savez(work / "in.npz", *[stream for stream, _ in jobs])
        (work / "jobs.json").write_text(json.dumps({"resets": [r for _, r in jobs], "shape": list(in_shape)}))
        worker = mp.get_context("spawn").Process(
            target=_worker, args=(str(net_path), str(work)), name="edgec-lava", daemon=False
        )
        sys.stdout.flush()
        sys.stderr.flush()
        worker.start()
        worker.join(timeout)
        timed_out = worker.is_alive()
        _end_group(worker)
        if timed_out:
            steps = sum(int(s.shape[0]) for s, _ in jobs)
            raise LavaTimeout(
                f"Lava did not finish simulating {steps} steps of '{Path(net_path).name}' within "
                f"{timeout:.0f} s; its processes were stopped",
                hint=f"Lava's CPU simulation stalled: run again, allow more time with {TIMEOUT_ENV}=SECONDS, "
                "or use --backend emulator (bit-exact with Lava fixed_pt)",
            )
        error = work / "error.json"
        if error.is_file():
            doc = json.loads(error.read_text())
            cls = {"DataError": DataError, "UsageError": UsageError}.get(doc["type"], LavaRunError)
            raise cls(doc["message"], hint=doc.get("hint"))
        if worker.exitcode != 0 or not (work / "out.npz").is_file():
            raise LavaRunError(f"the Lava worker ended with exit code {worker.exitcode} and no result")
        with np.load(work / "out.npz") as outs:
            arrays = [outs[f"arr_{i}"] for i in range(len(jobs))]
        times = json.loads((work / "times.json").read_text())
    return [(a, float(t[0]), float(t[1])) for a, t in zip(arrays, times, strict=True)]


def _end_group(worker: Any) -> None:
    """End the worker and every process Lava forked from it (they share its process group): SIGTERM
    to the worker, which kills and reaps its children (:func:`_stop_children`); then SIGKILL to the
    whole group for whatever is left."""
    if worker.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)
        worker.join(5.0)
    if _group_alive(worker.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.pid, signal.SIGKILL)
    worker.join(5.0)


def _stop_children(signum: int, frame: Any) -> None:
    """In the worker, on SIGTERM: kill Lava's processes (its children) and reap them, then exit."""
    for child in mp.active_children():
        child.kill()
    for child in mp.active_children():
        child.join(1.0)
    os._exit(128 + signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _worker(net_path: str, work_dir: str) -> None:
    """The spawned worker: its own process group, then each job through :func:`_simulate`."""
    os.setsid()  # Lava's processes (forked from here) join this group: the parent can end them all
    signal.signal(signal.SIGTERM, _stop_children)
    work = Path(work_dir)
    try:
        doc = json.loads((work / "jobs.json").read_text())
        with np.load(work / "in.npz") as streams:
            inputs = [streams[f"arr_{i}"] for i in range(len(doc["resets"]))]
        shape = tuple(doc["shape"])
        results = [
            _simulate(net_path, shape, x, reset_interval=r)
            for x, r in zip(inputs, doc["resets"], strict=True)
        ]
        np.savez(work / "out.npz", *[out for out, _, _ in results])
        (work / "times.json").write_text(json.dumps([[t, steady] for _, t, steady in results]))
    except BaseException as exc:  # reported to the parent, which raises it as an EdgecError
        from edgec.errors import first_line

        hint = exc.hint if isinstance(exc, EdgecError) else None
        message = exc.message if isinstance(exc, EdgecError) else f"{type(exc).__name__}: {first_line(exc)}"
        kind = type(exc).__name__ if isinstance(exc, (DataError, UsageError)) else "LavaRunError"
        (work / "error.json").write_text(json.dumps({"type": kind, "message": message, "hint": hint}))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
