"""An optional compiled kernel for the CUBA recurrence; the emulator's numpy path is the fallback.

The neuron recurrence is sequential in time, so in numpy it costs a handful of array operations per
step, and for small layers (a batch of one sample) numpy's per-call overhead dominates: about 10 us
per layer-step, which caps a 2-layer MLP at a few ten thousand steps per second. This module compiles
the recurrence -- the same integer arithmetic as Lava's ``AbstractPyLifModelFixed`` -- from the C
source below with the system C compiler on first use, caches the shared library under
``$EDGEC_CACHE`` (default ``~/.cache/edgec``), keyed by the source's hash, and calls it through
``ctypes`` (no build step at install time, no new dependency).

Without a C compiler (or with ``EDGEC_NO_CKERNEL=1``) :func:`kernel` returns None and the emulator
uses numpy; tests check both paths give identical spikes, including the 24-bit wrap and clip.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SOURCE = r"""
#include <stdint.h>
#include <math.h>

/* Lava fixed_pt CUBA LIF (lava/proc/lif/models.py, AbstractPyLifModelFixed.subthr_dynamics) for
 * T steps of B samples x N neurons, in double arithmetic: every state (24 bit), every product with a
 * 12-bit decay (< 2^36) and every sum is an integer below 2^53, so each operation is exact and
 * trunc(x * keep) (keep = (4096 - decay) / 4096, a dyadic fraction) is Lava's
 * sign(x) * (|x * (4096 - decay)| >> 12).
 * a: synaptic sums per step [T, B, N] (before the << 6 activation shift); bias: (bias_mant << 6)
 * per neuron [N]; out: spikes [T, B, N]. The state of 256 neurons at a time stays in L1 across T.
 * SAT = 1 applies Lava's 24-bit wrap of u and clip of v every step; SAT = 0 is for layers whose
 * worst case cannot reach them (the caller checks static bounds), and vectorizes. */
#define EDGEC_CUBA(NAME, ATYPE, SAT)                                                                 \
void NAME(const ATYPE *restrict a, int64_t T, int64_t B, int64_t N, double keep_u, double keep_v,   \
          double vth, const double *restrict bias, uint8_t *restrict out) {                         \
    const double M = 8388608.0; /* 2^23 */                                                          \
    const int64_t BN = B * N;                                                                       \
    double u[256], v[256], sp[256];                                                                 \
    for (int64_t b = 0; b < B; b++) {                                                               \
        for (int64_t n0 = 0; n0 < N; n0 += 256) {                                                   \
            const int64_t m = N - n0 < 256 ? N - n0 : 256;                                          \
            const double *restrict bb = bias + n0;                                                  \
            for (int64_t k = 0; k < m; k++) { u[k] = 0.0; v[k] = 0.0; }                             \
            for (int64_t t = 0; t < T; t++) {                                                       \
                const ATYPE *restrict at = a + t * BN + b * N + n0;                                 \
                uint8_t *restrict ot = out + t * BN + b * N + n0;                                   \
                for (int64_t k = 0; k < m; k++) {                                                   \
                    double un = trunc(u[k] * keep_u) + 64.0 * (double)at[k];                        \
                    if (SAT) {                          /* 24-bit wrap as Lava writes it */         \
                        un = un > M ? un - 2.0 * M : un;                                            \
                        un = un <= -M ? un + 2.0 * M : un;                                          \
                    }                                                                               \
                    double vn = trunc(v[k] * keep_v) + un + bb[k];                                  \
                    if (SAT) {                          /* clip to +-(2^23 - 1) */                  \
                        vn = vn > M - 1.0 ? M - 1.0 : vn;                                           \
                        vn = vn < 1.0 - M ? 1.0 - M : vn;                                           \
                    }                                                                               \
                    const double s = vn > vth ? 1.0 : 0.0;                                          \
                    sp[k] = s;                                                                      \
                    u[k] = un;                                                                      \
                    v[k] = vn * (1.0 - s);              /* reset to 0 where it spiked */            \
                }                                                                                   \
                for (int64_t k = 0; k < m; k++) ot[k] = (uint8_t)sp[k];                             \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
}
EDGEC_CUBA(edgec_cuba_f32, float, 0)
EDGEC_CUBA(edgec_cuba_f64, double, 0)
EDGEC_CUBA(edgec_cuba_f32_sat, float, 1)
EDGEC_CUBA(edgec_cuba_f64_sat, double, 1)
"""

# math flags that keep every operation exact (no -ffast-math): they only let gcc vectorize trunc()
_SAFE = ["-fno-math-errno", "-fno-trapping-math"]
_LIB: Any = None
_TRIED = False


def _cache_dir() -> Path:
    return Path(os.environ.get("EDGEC_CACHE") or Path.home() / ".cache" / "edgec")


def _cpu_key() -> str:
    """The CPU the library is built for (it is compiled with -march=native)."""
    import platform

    key = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            key += "".join(line for line in f if line.startswith(("model name", "flags")))[:4096]
    except OSError:
        pass
    return key


def _build() -> Path | None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        log.info("no C compiler found: the Loihi emulator uses numpy for the neuron recurrence")
        return None
    digest = hashlib.sha256((SOURCE + compiler + _cpu_key()).encode()).hexdigest()[:16]
    target = _cache_dir() / f"edgec_cuba_{digest}.so"
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src = Path(tmp) / "cuba.c"
            src.write_text(SOURCE)
            lib = Path(tmp) / "cuba.so"
            for flags in (
                ["-O3", "-march=native", *_SAFE],
                ["-O3", *_SAFE],
            ):  # native: the cache key names the CPU
                done = subprocess.run(
                    [compiler, *flags, "-shared", "-fPIC", "-o", str(lib), str(src), "-lm"],
                    capture_output=True,
                    timeout=120,
                )
                if done.returncode == 0:
                    break
            else:
                raise OSError(done.stderr.decode(errors="replace").strip().splitlines()[-1:] or "cc failed")
            os.replace(lib, target)  # atomic: concurrent builders race harmlessly
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("could not build the C kernel (%s): the Loihi emulator uses numpy", exc)
        return None
    return target


def kernel() -> Any:
    """The loaded library (``edgec_cuba_f32`` / ``_f64``), or None (no compiler, or EDGEC_NO_CKERNEL set)."""
    global _LIB, _TRIED
    if os.environ.get("EDGEC_NO_CKERNEL"):
        return None
    if _TRIED:
        return _LIB
    _TRIED = True
    path = _build()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        log.info("could not load %s (%s): the Loihi emulator uses numpy", path, exc)
        return None
    i64, f64, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
    for fn in (lib.edgec_cuba_f32, lib.edgec_cuba_f64, lib.edgec_cuba_f32_sat, lib.edgec_cuba_f64_sat):
        fn.argtypes = [ptr, i64, i64, i64, f64, f64, f64, ptr, ptr]
        fn.restype = None
    _LIB = lib
    return lib


def cuba(
    lib: Any, a: np.ndarray, keep_u: float, keep_v: float, vth: float, bias: np.ndarray, *, saturating: bool
) -> np.ndarray:
    """Run the compiled recurrence on synaptic sums ``a`` [T, B, *shape] (float32 or float64, before the
    << 6 shift); ``bias`` float64 (bias << 6) of one sample's shape. Returns spikes, uint8, same shape.

    ``saturating=False`` skips the 24-bit wrap and clip: only for layers that cannot reach them.
    """
    suffix = "_sat" if saturating else ""
    if a.dtype == np.float32:
        fn = getattr(lib, "edgec_cuba_f32" + suffix)
    else:
        fn = getattr(lib, "edgec_cuba_f64" + suffix)
        a = a.astype(np.float64, copy=False)
    a = np.ascontiguousarray(a)
    t_steps, batch = a.shape[0], a.shape[1]
    n_per = int(np.prod(a.shape[2:]))
    b = np.ascontiguousarray(bias, dtype=np.float64)
    if b.size != n_per:
        raise ValueError(f"bias of {b.size} values for {n_per} neurons")
    out = np.empty(a.shape, dtype=np.uint8)
    fn(a.ctypes.data, t_steps, batch, n_per, keep_u, keep_v, vth, b.ctypes.data, out.ctypes.data)
    return out
