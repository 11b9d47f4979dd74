"""Which runtime an artifact runs on by default: asked (``--backend``), forced by an option, or timed at
compile on this machine.

Why a timing and not a rule: measured here (benchmarks/results/cpu_backends.md), neither runtime is
faster for every artifact. OpenVINO ran ResNet-18 INT8 about 3x faster than ONNX Runtime on the same
model.onnx (this CPU has AMX and VNNI int8 units) and ResNet-18 FP32 at about the same speed; ONNX
Runtime ran the 8x8 digits CNN 2-5x faster (OpenVINO's fixed cost per call, ~60 us, is larger than
that whole model). A rule would have to know the CPU's int8 units, the model's size and both
runtimes' versions; a timing of the artifact on the machine that compiles it knows them all.
So compile runs both on the artifact, alternately (a burst of load from another process slows one
round of both, not one runtime), and keeps ONNX Runtime unless OpenVINO is faster by more than
:data:`MARGIN`: within that margin the two are equal to the noise of a short timing, and ONNX Runtime
needs no second model file. The timings, the rule and the outputs' difference between the runtimes go
into report.json ``target_report.backend_choice``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

#: OpenVINO is the default when its median latency is at most this share of ONNX Runtime's
MARGIN = 0.90
ROUNDS = 5
#: each round times about this long per runtime (at least MIN_CALLS, at most MAX_CALLS calls)
ROUND_S = 0.03
MIN_CALLS, MAX_CALLS = 3, 40


def time_alternately(
    runs: dict[str, Callable[[], Any]], *, rounds: int = ROUNDS, round_s: float = ROUND_S
) -> dict[str, Any]:
    """Median latency (ms) of each callable over ``rounds`` alternating rounds, and the per-round
    ratios of the second to the first (their median is what decides)."""
    names = list(runs)
    first: dict[str, float] = {}
    for name, fn in runs.items():  # the first call loads / compiles lazily: untimed, then one timed
        fn()
        t0 = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t0
    calls = int(min(MAX_CALLS, max(MIN_CALLS, round_s / max(min(first.values()), 1e-6))))
    per_round: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for name in names:
            fn = runs[name]
            fn()  # settle: the other runtime's threads may still be winding down
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            per_round[name].append(statistics.median(times) * 1e3)
    a, b = names[0], names[1]
    ratios = [y / x for x, y in zip(per_round[a], per_round[b], strict=True)]
    return {
        "rounds": rounds,
        "calls_per_round": calls,
        "median_ms": {n: round(statistics.median(v), 4) for n, v in per_round.items()},
        "ratio": round(statistics.median(ratios), 4),
    }


def choose(
    sessions: dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]], x: np.ndarray, *, threads: int | None
) -> tuple[str, dict[str, Any]]:
    """``(backend, report)`` from timing ``sessions`` (``onnxruntime`` and ``openvino``) on ``x``."""

    def call(session: Callable[[np.ndarray], Any]) -> Callable[[], Any]:
        return lambda: session(x)

    timed = time_alternately({name: call(s) for name, s in sessions.items()})
    ort, ov = (sessions[n](x) for n in ("onnxruntime", "openvino"))
    diff = max(float(np.abs(ov[k].astype(np.float64) - v).max()) for k, v in ort.items())
    backend = "openvino" if timed["ratio"] <= MARGIN else "onnxruntime"
    return backend, {
        "how": "timed at compile",
        "rule": f"openvino when its median latency is at most {MARGIN:g}x ONNX Runtime's, else onnxruntime",
        "input": f"batch {len(x)}, uniform random",
        "threads": threads or "the runtimes' default",
        **timed,
        "ratio": {"openvino_to_onnxruntime": timed["ratio"]},
        "outputs_max_abs_difference": diff,
        "chosen": backend,
    }
