"""Optional compiled kernels (CUBA recurrence, event-driven dense synapse); numpy / torch are the fallback.

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

/* Dense synapse, event driven: for every input that spiked, add its weight column (what Loihi does).
 * s: spikes [R, IN] (0/1); wt: weights transposed [IN, OUT]; a: sums [R, OUT], zeroed by the caller.
 * Integer sums: exact in float32 below 2^24 (the caller picks the type). */
#define EDGEC_DENSE(NAME, T)                                                                         \
void NAME(const uint8_t *restrict s, int64_t R, int64_t IN, const T *restrict wt, int64_t OUT,      \
          T *restrict a, int64_t *restrict idx) {                                                   \
    for (int64_t r = 0; r < R; r++) {                                                               \
        const uint8_t *sr = s + r * IN;                                                             \
        T *restrict ar = a + r * OUT;                                                               \
        int64_t n = 0;                                                                              \
        for (int64_t i = 0; i < IN; i++) { idx[n] = i; n += sr[i] != 0; } /* branch-free list */    \
        for (int64_t k = 0; k < n; k++) {                                                           \
            const T *restrict w = wt + idx[k] * OUT;                                                \
            for (int64_t o = 0; o < OUT; o++) ar[o] += w[o];                                        \
        }                                                                                           \
    }                                                                                               \
}
EDGEC_DENSE(edgec_dense_f32, float)
EDGEC_DENSE(edgec_dense_f64, double)

/* 2-D convolution (PyTorch correlation: stride, zero padding, dilation, groups), event driven: every
 * input spike adds its kernel taps to the outputs it reaches. s: spikes [R, C, H, W]; wt: weights
 * rearranged [C, KH, KW, O/G] (for input channel c, the taps of its group's outputs); a: sums
 * [R, OH, OW, O] (channels last), zeroed by the caller. */
#define EDGEC_CONV(NAME, T)                                                                          \
void NAME(const uint8_t *restrict s, int64_t R, int64_t C, int64_t H, int64_t W,                    \
          const T *restrict wt, int64_t O, int64_t KH, int64_t KW, int64_t SH, int64_t SW,          \
          int64_t PH, int64_t PW, int64_t DH, int64_t DW, int64_t G, int64_t OH, int64_t OW,        \
          T *restrict a) {                                                                          \
    const int64_t cg = C / G, og = O / G;                                                           \
    for (int64_t r = 0; r < R; r++)                                                                 \
    for (int64_t c = 0; c < C; c++) {                                                               \
        const int64_t g = c / cg;                                                                   \
        const uint8_t *sc = s + (r * C + c) * H * W;                                                \
        for (int64_t iy = 0; iy < H; iy++)                                                          \
        for (int64_t ix = 0; ix < W; ix++) {                                                        \
            if (!sc[iy * W + ix]) continue;                                                         \
            for (int64_t ky = 0; ky < KH; ky++) {                                                   \
                const int64_t ty = iy + PH - ky * DH;                                               \
                if (ty < 0 || ty % SH) continue;                                                    \
                const int64_t oy = ty / SH;                                                         \
                if (oy >= OH) continue;                                                             \
                for (int64_t kx = 0; kx < KW; kx++) {                                               \
                    const int64_t tx = ix + PW - kx * DW;                                           \
                    if (tx < 0 || tx % SW) continue;                                                \
                    const int64_t ox = tx / SW;                                                     \
                    if (ox >= OW) continue;                                                         \
                    const T *restrict w = wt + ((c * KH + ky) * KW + kx) * og;                      \
                    T *restrict ap = a + ((r * OH + oy) * OW + ox) * O + g * og;                    \
                    for (int64_t o = 0; o < og; o++) ap[o] += w[o];                                 \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
}
EDGEC_CONV(edgec_conv_f32, float)
EDGEC_CONV(edgec_conv_f64, double)
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
    for fn in (lib.edgec_dense_f32, lib.edgec_dense_f64):
        fn.argtypes = [ptr, i64, i64, ptr, i64, ptr, ptr]
        fn.restype = None
    for fn in (lib.edgec_conv_f32, lib.edgec_conv_f64):
        fn.argtypes = [ptr, i64, i64, i64, i64, ptr, *([i64] * 12), ptr]
        fn.restype = None
    _LIB = lib
    return lib


class Cuba:
    """The compiled recurrence bound to one layer (constants and their pointers prepared once).

    ``__call__(a, saturating)``: synaptic sums ``a`` [T, B, *shape] (C-contiguous float32 or float64, before
    the << 6 shift) -> spikes uint8 of the same shape. ``saturating=False`` skips the 24-bit wrap and
    clip: only for layers whose worst case cannot reach them.
    """

    def __init__(self, lib: Any, keep_u: float, keep_v: float, vth: float, bias: np.ndarray) -> None:
        self.fns = {
            (np.dtype(np.float32), False): lib.edgec_cuba_f32,
            (np.dtype(np.float64), False): lib.edgec_cuba_f64,
            (np.dtype(np.float32), True): lib.edgec_cuba_f32_sat,
            (np.dtype(np.float64), True): lib.edgec_cuba_f64_sat,
        }
        self.consts = (keep_u, keep_v, vth)
        self.bias = np.ascontiguousarray(bias, dtype=np.float64).reshape(-1)
        self.bias_ptr = self.bias.ctypes.data
        self.n_per = self.bias.size

    def __call__(self, a: np.ndarray, saturating: bool) -> np.ndarray:
        if a.dtype != np.float32:
            a = a.astype(np.float64, copy=False)
        a = np.ascontiguousarray(a)
        if a.size != a.shape[0] * a.shape[1] * self.n_per:
            raise ValueError(f"input of shape {a.shape} for {self.n_per} neurons per sample")
        out = np.empty(a.shape, dtype=np.uint8)
        fn = self.fns[(a.dtype, saturating)]
        fn(a.ctypes.data, a.shape[0], a.shape[1], self.n_per, *self.consts, self.bias_ptr, out.ctypes.data)
        return out


class Dense:
    """Event-driven dense synapse bound to one weight matrix ``[IN, OUT]`` (float32 or float64).

    ``__call__(spikes)``: binary spikes [R, IN] (uint8) -> sums [R, OUT]: for every input that spiked,
    its weight column is added (what Loihi does), single-threaded.
    """

    def __init__(self, lib: Any, matrix: np.ndarray) -> None:
        self.w = np.ascontiguousarray(matrix)
        self.fn = lib.edgec_dense_f32 if self.w.dtype == np.float32 else lib.edgec_dense_f64
        self.w_ptr = self.w.ctypes.data
        self.n_in, self.n_out = self.w.shape
        self.idx = np.empty(self.n_in, dtype=np.int64)  # scratch: the active inputs of one row
        self.idx_ptr = self.idx.ctypes.data

    def __call__(self, spikes: np.ndarray) -> np.ndarray:
        s = np.ascontiguousarray(spikes, dtype=np.uint8)
        out = np.zeros((s.shape[0], self.n_out), dtype=self.w.dtype)
        self.fn(s.ctypes.data, s.shape[0], self.n_in, self.w_ptr, self.n_out, out.ctypes.data, self.idx_ptr)
        return out


class Conv:
    """Event-driven 2-D convolution bound to one kernel ``[O, C/G, KH, KW]`` (integers as float32/64).

    ``__call__(spikes)``: binary spikes [R, C, H, W] (uint8) -> sums [R, O, OH, OW], single-threaded.
    """

    def __init__(
        self,
        lib: Any,
        weight: np.ndarray,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
    ) -> None:
        o, _, kh, kw = weight.shape
        og = o // groups
        # [C, KH, KW, O/G]: for input channel c of group g, the taps of outputs g*og .. (g+1)*og
        parts = [weight[g * og : (g + 1) * og].transpose(1, 2, 3, 0) for g in range(groups)]
        self.wt = np.ascontiguousarray(np.concatenate(parts, axis=0))
        self.fn = lib.edgec_conv_f32 if weight.dtype == np.float32 else lib.edgec_conv_f64
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.args = (
            self.wt.ctypes.data,
            o,
            kh,
            kw,
            *stride,
            *padding,
            *dilation,
            groups,
            out_shape[1],
            out_shape[2],
        )

    def __call__(self, spikes: np.ndarray) -> np.ndarray:
        s = np.ascontiguousarray(spikes, dtype=np.uint8)
        r = s.shape[0]
        c, h, w = self.in_shape
        o, oh, ow = self.out_shape
        out = np.zeros((r, oh, ow, o), dtype=self.wt.dtype)
        self.fn(s.ctypes.data, r, c, h, w, *self.args, out.ctypes.data)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
