"""Where trials run: worker processes on this machine, or Ray tasks on a Ray cluster.

Both executors take a batch of trial specs and return one record per spec, in the batch's order, so the
driver tells the sampler in trial-number order whichever way the trials ran (the same seed and space give
the same trials sequentially, with ``--workers K`` and on Ray).

* :class:`LocalExecutor`: ``workers`` long-lived ``python -m edgec.search.trial --serve`` processes,
  each running one trial at a time (imports, the model and the data are loaded once per worker: for a
  small model they cost more than the trial). A worker that dies from a signal (SIGKILL, the OOM killer)
  is replaced and its trial run once more from a clean trial directory; a second death records the trial
  as failed. A trial's own failure (an exception) is already a record; trials seed everything they draw,
  so a trial computes the same in a used worker as in a fresh one.
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


class _Worker:
    """A long-lived ``python -m edgec.search.trial --serve`` process: it reads ``SPEC<TAB>RESULT`` lines
    and answers ``done`` once the result file is written. Imports and caches (torch, the zoo model,
    the data) are paid once per worker, not once per trial."""

    def __init__(self, threads: int, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        with log_path.open("ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgec.search.trial", "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logf,
                env=env,
                text=True,
                bufsize=1,
            )
        self.log_path = log_path
        self.index: int | None = None  # the batch index of the trial it runs

    def assign(self, index: int, spec_path: Path, result_path: Path) -> None:
        assert self.proc.stdin is not None  # Popen(stdin=PIPE) in __init__
        self.index = index
        self.proc.stdin.write(f"{spec_path}\t{result_path}\n")
        self.proc.stdin.flush()

    def answered(self) -> bool:
        """The trial it runs is done (its line arrived); False while it runs or when it died."""
        import select

        assert self.proc.stdout is not None  # Popen(stdout=PIPE) in __init__
        ready, _, _ = select.select([self.proc.stdout], [], [], 0)
        return bool(ready) and self.proc.stdout.readline().strip() == "done"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class LocalExecutor:
    """Trials on ``workers`` worker processes on this machine (see the module docstring)."""

    kind = "local"

    def __init__(self, workers: int, threads: int = 1) -> None:
        self.workers = workers
        # one thread per trial by default: trials are the parallelism; intra-op threads of a small model on
        # busy cores spin more than they compute (one worker with 2 threads ran 4x slower than 2 workers)
        self.threads = threads
        self.pool: list[_Worker] = []
        self.started = 0

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.workers, "threads_per_trial": self.threads}

    def _new_worker(self, trials_dir: Path) -> _Worker:
        self.started += 1
        return _Worker(self.threads, trials_dir / f"worker-{self.started}.log")

    def _assign(self, worker: _Worker, index: int, spec: dict[str, Any]) -> None:
        trial_dir = Path(spec["dir"])
        trial_dir.mkdir(parents=True, exist_ok=True)
        clear_trial_dir(trial_dir)
        write_atomic(trial_dir / SPEC, {**spec, "threads": self.threads})
        worker.assign(index, trial_dir / SPEC, trial_dir / RESULT)

    def run_batch(self, specs: list[dict[str, Any]], on_done: OnDone | None = None) -> list[dict[str, Any]]:
        results: list[dict[str, Any] | None] = [None] * len(specs)
        attempts = [0] * len(specs)
        pending = list(range(len(specs)))
        if specs:
            trials_dir = Path(specs[0]["dir"]).parent
            while len(self.pool) < self.workers:
                self.pool.append(self._new_worker(trials_dir))
        try:
            while pending or any(w.index is not None for w in self.pool):
                for w in self.pool:
                    if w.index is None and pending:
                        i = pending.pop(0)
                        attempts[i] += 1
                        self._assign(w, i, specs[i])
                progressed = False
                for k, w in enumerate(self.pool):
                    if w.index is None:
                        continue
                    i = w.index
                    if w.answered():
                        record = self._read(specs[i])
                    elif w.proc.poll() is not None:  # the worker died during the trial
                        died = self._died(specs[i], w, attempts[i])
                        self.pool[k] = self._new_worker(Path(specs[i]["dir"]).parent)
                        if died is None:  # first death: run the trial once more, on a fresh worker
                            pending.insert(0, i)
                            progressed = True
                            continue
                        record = died
                    else:
                        continue
                    w.index = None
                    progressed = True
                    record["attempts"] = attempts[i]
                    results[i] = record
                    if on_done is not None:
                        on_done(i, record)
                if not progressed:
                    time.sleep(0.05)
        except BaseException:  # Ctrl-C or a bug in the driver: stop the workers this search started
            self.close()
            raise
        return [r for r in results if r is not None]

    @staticmethod
    def _read(spec: dict[str, Any]) -> dict[str, Any]:
        import json

        record: dict[str, Any] = json.loads((Path(spec["dir"]) / RESULT).read_text())
        return record

    @staticmethod
    def _died(spec: dict[str, Any], worker: _Worker, attempt: int) -> dict[str, Any] | None:
        code = worker.proc.returncode
        if code < 0:
            log.warning("trial %s: worker died (%s)", spec["number"], _signal_name(code))
            if attempt < 2:
                return None
            return {"state": "failed", "reason": f"worker killed by {_signal_name(code)} on both attempts"}
        text = worker.log_path.read_text(errors="replace") if worker.log_path.is_file() else ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else "(no output)"
        return {"state": "failed", "reason": f"worker exited with code {code}: {last}"}

    def close(self) -> None:
        for w in self.pool:
            w.stop()
        self.pool = []


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
