"""Where trials run: worker processes on this machine, or Ray tasks on a Ray cluster.

Both executors take a batch of trial specs and return one record per spec, in the batch's order, so the
driver tells the sampler in trial-number order whichever way the trials ran (the same seed and space give
the same trials sequentially, with ``--workers K`` and on Ray).

* :class:`LocalExecutor`: each trial in a fresh ``python -m edgec.search.trial`` process, at most
  ``workers`` at once. A process that dies from a signal (SIGKILL, the OOM killer) gets its trial run once
  more from a clean trial directory; a second death records the trial as failed. A trial's own failure
  (an exception) is already a record; a process is never reused, so a trial cannot leak into the next.
* :class:`RayExecutor`: each trial a Ray task declaring ``num_cpus`` / ``num_gpus``, with Ray's
  ``max_retries=1`` (Ray re-runs a task whose worker died, e.g. SIGKILL or a lost node, once; then the
  driver sees the crash and records the trial as failed).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgec.errors import UsageError
from edgec.search.trial import PID, RESULT, SPEC, clear_trial_dir, run_trial, write_atomic

log = logging.getLogger(__name__)

OnDone = Callable[[int, dict[str, Any]], None]
RAY_HINT = "pip install 'edgec[ray]' (or `make setup`, which installs it)"
#: seconds a Ray address has to answer before --ray gives up
RAY_CONNECT_TIMEOUT_S = 10.0


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class LocalExecutor:
    """Trials as worker processes on this machine (see the module docstring)."""

    kind = "local"

    def __init__(self, workers: int, threads: int | None = None) -> None:
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.workers, "threads_per_trial": self.threads}

    def _start(self, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
        trial_dir = Path(spec["dir"])
        trial_dir.mkdir(parents=True, exist_ok=True)
        clear_trial_dir(trial_dir)
        write_atomic(trial_dir / SPEC, {**spec, "threads": self.threads})
        logf = (trial_dir / "worker.log").open("ab")
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        cmd = [sys.executable, "-m", "edgec.search.trial", str(trial_dir / SPEC), str(trial_dir / RESULT)]
        try:
            return subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
        finally:
            logf.close()

    def run_batch(self, specs: list[dict[str, Any]], on_done: OnDone | None = None) -> list[dict[str, Any]]:
        results: list[dict[str, Any] | None] = [None] * len(specs)
        attempts = [0] * len(specs)
        pending = list(range(len(specs)))
        running: dict[int, subprocess.Popen[bytes]] = {}
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    i = pending.pop(0)
                    attempts[i] += 1
                    running[i] = self._start(specs[i])
                finished = [i for i, p in running.items() if p.poll() is not None]
                if not finished:
                    time.sleep(0.05)
                    continue
                for i in finished:
                    proc = running.pop(i)
                    record = self._collect(specs[i], proc.returncode, attempts[i])
                    if record is None:  # died from a signal on the first attempt: run it once more
                        log.warning(
                            "trial %s: worker died (%s); retrying once",
                            specs[i]["number"],
                            _signal_name(proc.returncode),
                        )
                        pending.insert(0, i)
                        continue
                    record["attempts"] = attempts[i]
                    results[i] = record
                    if on_done is not None:
                        on_done(i, record)
        except BaseException:  # Ctrl-C or a bug in the driver: stop the workers this batch started
            for proc in running.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in running.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            raise
        return [r for r in results if r is not None]

    @staticmethod
    def _collect(spec: dict[str, Any], code: int, attempt: int) -> dict[str, Any] | None:
        trial_dir = Path(spec["dir"])
        result = trial_dir / RESULT
        if code == 0 and result.is_file():
            import json

            record: dict[str, Any] = json.loads(result.read_text())
            return record
        if code < 0:
            if attempt < 2:
                return None
            return {"state": "failed", "reason": f"worker killed by {_signal_name(code)} on both attempts"}
        logf = trial_dir / "worker.log"
        lines = [
            ln
            for ln in (logf.read_text(errors="replace").splitlines() if logf.is_file() else [])
            if ln.strip()
        ]
        last = lines[-1].strip() if lines else "(no output)"
        return {"state": "failed", "reason": f"worker exited with code {code}: {last}"}

    def close(self) -> None:
        pass


def ray_trial(spec: dict[str, Any]) -> dict[str, Any]:
    """The body of a Ray task: one trial in the Ray worker's process (counts its attempts in the trial
    directory, so a retried task says so)."""
    trial_dir = Path(spec["dir"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    counter = trial_dir / "attempts"
    attempt = int(counter.read_text()) + 1 if counter.is_file() else 1
    clear_trial_dir(trial_dir)
    counter.write_text(str(attempt))
    write_atomic(trial_dir / SPEC, spec)
    (trial_dir / PID).write_text(str(os.getpid()))
    record = run_trial(spec)
    record["attempts"] = attempt
    write_atomic(trial_dir / RESULT, record)
    return record


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray, which is not installed", hint=RAY_HINT) from None
    return ray


class RayExecutor:
    """Trials as Ray tasks (see the module docstring). ``address``: ``local`` starts a Ray in this
    process with ``workers`` CPUs; ``auto`` joins the cluster of this machine (``ray start --head``) or
    the Ray this process already started; ``HOST:PORT`` joins that head node."""

    kind = "ray"

    def __init__(self, address: str, *, workers: int, num_cpus: float, num_gpus: float) -> None:
        ray = import_ray()
        self.ray = ray
        self.owned = False
        self.address = address
        if not ray.is_initialized():
            if address == "local":
                ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
                self.owned = True
            else:
                if address != "auto":
                    _check_reachable(address)
                try:
                    ray.init(address=address, logging_level=logging.WARNING)
                except Exception as exc:
                    from edgec.errors import first_line

                    raise UsageError(
                        f"--ray {address}: no Ray cluster answers ({first_line(exc)})",
                        hint="start one with `ray start --head` (docs/search.md), or use --ray local",
                    ) from None
        self.remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=1)(ray_trial)
        self.num_cpus, self.num_gpus = num_cpus, num_gpus

    def describe(self) -> dict[str, Any]:
        resources = self.ray.cluster_resources()
        return {
            "kind": self.kind,
            "address": self.address,
            "cluster_cpus": resources.get("CPU"),
            "cluster_gpus": resources.get("GPU", 0),
            "trial_cpus": self.num_cpus,
            "trial_gpus": self.num_gpus,
        }

    def run_batch(self, specs: list[dict[str, Any]], on_done: OnDone | None = None) -> list[dict[str, Any]]:
        ray = self.ray
        refs = [self.remote.remote(s) for s in specs]
        index = {r: i for i, r in enumerate(refs)}
        results: list[dict[str, Any] | None] = [None] * len(specs)
        waiting = list(refs)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for ref in done:
                    i = index[ref]
                    try:
                        record = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died twice, a node was lost
                        from edgec.errors import first_line

                        record = {
                            "state": "failed",
                            "reason": "Ray task lost after its retry "
                            f"({type(exc).__name__}: {first_line(exc)})",
                            "attempts": 2,
                        }
                    results[i] = record
                    if on_done is not None:
                        on_done(i, record)
        except BaseException:
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
        return [r for r in results if r is not None]

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()


def _check_reachable(address: str) -> None:
    """A HOST:PORT that does not answer is a usage error within :data:`RAY_CONNECT_TIMEOUT_S`, not a hang."""
    addr = address.removeprefix("ray://")
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"--ray '{address}' is not auto, local or HOST:PORT",
            hint="e.g. --ray 10.0.0.1:6379 (the head node)",
        )
    try:
        with socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UsageError(
            f"--ray {address}: no Ray head answers there ({exc.strerror or exc})",
            hint="check the address of `ray start --head` (port 6379 by default) and the network",
        ) from None
