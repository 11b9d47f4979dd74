"""A vectorized, bit-exact emulator of a netx network in Lava's ``fixed_pt`` simulation.

It runs a :class:`~.netlist.Netlist` (usually read from ``network.net``) on a batch of binary input
spikes ``[T, B, *input_shape]`` and returns the output spikes ``[T, B, *output_shape]``, with the
integer arithmetic of lava-nc 0.10 / lava-dl 0.6. What it reproduces, and where it was read:

Loading (lava-dl ``netx/hdf5.py``, ``netx/utils.py``; lava-nc ``proc/dense/models.py``,
``utils/weightutils.py``) -- :func:`netx_dense_load`:
    netx passes every dense weight matrix through ``optimize_weight_bits``: clip to [-256, 254] if
    it cannot be optimized, sign mode from the extremes (mixed / excitatory / inhibitory),
    ``scale_bits = floor(log2(scale)) + is_signed`` with ``scale = min(127/max, -128/min)`` (mixed),
    ``255/max`` (excitatory) or ``-256/min`` (inhibitory), the count ``n`` of trailing zero bits,
    ``num_weight_bits = 8 - scale_bits - (n - is_signed)``, ``weight_exp = -scale_bits`` and
    ``weight <<= scale_bits``. On its first step Lava's fixed-point Dense then takes the sign mode
    of the shifted weights again (``determine_sign_mode``: min >= 0 excitatory, max <= 0
    inhibitory), clips them to 8 bits for that mode and truncates ``8 - num_weight_bits (+1 if
    mixed)`` low bits. Conv weights skip all of this (netx never optimizes them). Two corners are
    lossy in Lava and reproduced as such: an all-non-positive matrix holding -256 is clipped to -255
    before truncation, and a matrix whose largest weight is 0 is "mixed" for netx but "inhibitory"
    for Lava, which can make the truncation count negative (every weight then becomes 0). edgec's
    lowering never writes either (symmetric grids; see :mod:`.lowering`).

Synapses, per step:
    Dense  ``a = W[:, s].sum(1)``, then ``a << weight_exp`` (``>> -weight_exp``, an arithmetic
           shift, for negative exponents).
    Conv   ``a = conv(s, W)`` (correlation, PyTorch layout), wrapped to signed 24 bit
           (``signed_clamp``).
    Both send ``a`` one step later (``a_buff``); see "time" below.

CUBA LIF (``proc/lif/models.py``, ``AbstractPyLifModelFixed``), int64 intermediates::

    u = rtz(u * (4096 - iDecay) / 4096) + (a << 6)        rtz: round toward zero (sign * (|x| >> 12))
    u = u - 2^24 if u > 2^23;  u = u + 2^24 if u <= -2^23  (24-bit wrap, as Lava writes it)
    v = rtz(v * (4096 - vDecay) / 4096) + u + (bias << 6)
    v = clip(v, -(2^23 - 1), 2^23 - 1)
    s = v > (vThMant << 6);  v = 0 where s

Time. In Lava every Dense / Conv delivers its input one step late, so layer l sees the sample's
first input spikes at step l (1-based). edgec runs Lava with netx's ``reset_interval = T``, which
resets layer l at step ``l + k T`` -- exactly when sample k's first spikes reach it -- so each sample
starts from zero state in every layer and the only effect of the buffering is a constant latency of
L = (number of synapse layers) steps. The emulator therefore computes each layer over the whole
time axis at once, with the sample's steps aligned (output step t depends on input steps 0..t), and
:mod:`.lava_backend` reads Lava's output L steps later. The buffered values themselves are
reproduced bit for bit; only the bookkeeping of the delay differs.

Speed: each layer runs for all T steps and all samples at once. With a C compiler present
(:mod:`.ckernel`, built on first use) the synapses are event driven -- every input spike adds its
weights, single-threaded, as Loihi does -- and the neuron recurrence is one vectorized C loop over T;
without one, the synapses are one float32 / float64 matrix product or convolution (every sum exact)
and the recurrence a loop over T of numpy operations. Both paths are tested to give identical spikes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import DataError, ModelError

from .netlist import DECAY_UNITY, STATE_BITS, STATE_SHIFT, Layer, Netlist

log = logging.getLogger(__name__)

_M = 1 << (STATE_BITS - 1)  # 2^23
_F32_EXACT = 1 << 24  # integers up to 2^24 are exact in float32


@dataclass(frozen=True)
class DenseLoad:
    """What netx (``optimize_weight_bits``) and Lava's fixed-point Dense make of a weight matrix."""

    weight: np.ndarray  # int64, as Lava multiplies it (after shift, clip and truncation)
    weight_exp: int
    num_weight_bits: int
    sign_mode: str  # netx's decision: mixed | excitatory | inhibitory
    clipped: bool  # netx clipped the stored weights (it prints a warning then)

    def effective(self) -> np.ndarray:
        """The integer each synapse adds per input spike, after the weight exponent."""
        w = self.weight
        return w << self.weight_exp if self.weight_exp >= 0 else w >> -self.weight_exp


def netx_dense_load(stored: np.ndarray) -> DenseLoad:
    """Reproduce netx's ``optimize_weight_bits`` and Lava's Dense weight clip / truncation.

    Raises :class:`ModelError` where netx itself would fail or shift by a negative amount (an
    all-zero matrix, or excitatory weights above 255).
    """
    w = np.asarray(stored, dtype=np.int64)
    w_max, w_min = int(w.max()), int(w.min())
    clipped = False
    if (w_max > 254 and w_min < 0) or (w_min < -256 and w_max > 0):
        w = np.clip(w, -256, 254)
        w_max, w_min = int(w.max()), int(w.min())
        clipped = True
    if w_max == 0 and w_min == 0:
        raise ModelError("a dense layer has only zero weights: netx's optimize_weight_bits fails on it")
    if w_max < 0:
        mode, signed = "inhibitory", 0
        scale = -256 / w_min
    elif w_min >= 0:
        mode, signed = "excitatory", 0
        scale = 255 / w_max
    else:
        mode, signed = "mixed", 1
        scale = min(127 / w_max if w_max > 0 else math.inf, -128 / w_min)
    scale_bits = math.floor(math.log2(scale)) + signed
    if scale_bits < 0:
        raise ModelError(
            f"dense weights up to {w_max} do not fit Loihi's 8-bit {mode} synapse "
            "(netx would shift them by a negative amount)"
        )
    n = 8
    while n > 0 and np.any(w % (1 << n)):  # trailing zero bits shared by every weight
        n -= 1
    n -= signed
    num_weight_bits = 8 - scale_bits - n
    weight_exp = -scale_bits
    w = w << scale_bits
    # Lava PyDenseModelBitAcc: sign mode again (on the shifted weights), clip to 8 bits, truncate
    if int(w.min()) >= 0:
        lava_mode, mixed = "excitatory", 0
    elif int(w.max()) <= 0:
        lava_mode, mixed = "inhibitory", 0
    else:
        lava_mode, mixed = "mixed", 1
    if lava_mode == "inhibitory":
        w = -w
    w = np.clip(w, -256 * mixed, 255)
    drop = 8 - num_weight_bits + mixed
    if drop < 0:
        # netx saw mixed signs (max == 0 counts as mixed there) but Lava sees inhibitory weights and
        # shifts by a negative count: numpy's `(w >> -1) << -1` is 0 for every weight.
        w = np.zeros_like(w)
    elif drop > 0:
        w = (w >> drop) << drop
    if lava_mode == "inhibitory":
        w = -w
    return DenseLoad(w, weight_exp, num_weight_bits, mode, clipped)


def _wrap24(x: np.ndarray) -> np.ndarray:
    """Lava's ``signed_clamp(x, 24)``: two's-complement wrap to [-2^23, 2^23)."""
    return ((x + _M) & ((1 << STATE_BITS) - 1)) - _M


@dataclass
class _Stage:
    layer: Layer
    kind: str
    # synapse: float32 / float64 operands whose products and sums are exact integers
    dense: DenseLoad | None = None
    matrix: np.ndarray | None = None  # [in, out] effective weights
    floor_shift: int = 0  # a dense layer whose sums are not multiples of 2^-weight_exp (rare)
    conv_weight: Any = None  # torch tensor [out, in/g, kH, kW]
    conv_wraps: bool = False  # some conv sum can leave signed 24 bit (Lava wraps it)
    bound_a: float = 0.0  # largest |a << 6| one step can bring
    # neuron (float64 holds all of these exactly)
    keep_u: float = 1.0  # (4096 - iDecay) / 4096
    keep_v: float = 1.0  # (4096 - vDecay) / 4096
    vth: float = 0.0  # vThMant << 6
    bias: np.ndarray | None = None  # (bias << 6) broadcast to one sample's neuron shape
    bias_full: np.ndarray | None = None  # the same, zeros where there is no bias (C kernel)
    c_dense: Any = None  # ckernel.Dense bound to this layer
    c_conv: Any = None  # ckernel.Conv bound to this layer
    c_cuba: Any = None  # ckernel.Cuba bound to this layer


class Emulator:
    """Load a netlist the way netx + Lava do, then run batches of spikes (see the module docstring).

    Arithmetic: the neuron state is kept in float64, which holds every 24-bit state, every product
    with a 12-bit decay (< 2^36) and every sum exactly, so ``trunc(v * (4096 - d) / 4096)`` is Lava's
    ``sign(x) * (|x| >> 12)`` bit for bit; synaptic sums run in float32 where every possible sum is
    below 2^24 (float64 otherwise). The recurrence runs in a small C kernel compiled on first use
    (:mod:`.ckernel`) or, without a C compiler, in numpy (``kernel="numpy"`` forces it); both are
    tested to give identical spikes. Synapses: event-driven C kernels for small batches, one BLAS
    matmul / oneDNN convolution from ``BLAS_MIN_ROWS`` rows on (``kernel="c"`` keeps C throughout).
    """

    def __init__(self, net: Netlist, *, kernel: str = "auto") -> None:
        if kernel not in ("auto", "c", "numpy"):
            raise ValueError(f"kernel must be auto | c | numpy, got {kernel!r}")
        self.net = net
        self.stages: list[_Stage] = [self._stage(la) for la in net.layers]
        # "c" forces the event-driven C synapses at every size (tests compare them with numpy);
        # "auto" hands big batches to BLAS / oneDNN, which is faster there (see BLAS_MIN_ROWS)
        self._blas_min_rows = BLAS_MIN_ROWS if kernel == "auto" else np.iinfo(np.int64).max
        self._c: Any = None
        if kernel != "numpy":
            from .ckernel import kernel as load_kernel

            self._c = load_kernel()
            if self._c is None and kernel == "c":
                raise RuntimeError(
                    "the C kernel is not available (no C compiler, or EDGEC_NO_CKERNEL is set)"
                )
        if self._c is not None:
            from .ckernel import Conv, Cuba, Dense

            for st in self.stages:
                if st.kind == "flatten":
                    continue
                assert st.bias_full is not None  # _stage sets it for every non-flatten stage
                st.c_cuba = Cuba(self._c, st.keep_u, st.keep_v, st.vth, st.bias_full)
                la = st.layer
                if st.matrix is not None and not st.floor_shift:
                    st.c_dense = Dense(self._c, st.matrix)
                elif st.kind == "conv" and la.weight is not None:
                    st.c_conv = Conv(
                        self._c,
                        st.conv_weight.numpy(),
                        la.in_shape,
                        la.out_shape,
                        la.stride,
                        la.padding,
                        la.dilation,
                        la.groups,
                    )

    @property
    def kernel(self) -> str:
        """Which implementation runs the neuron recurrence: ``c`` or ``numpy``."""
        return "numpy" if self._c is None else "c"

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Emulator:
        from .netlist import read_netx

        return cls(read_netx(path), **kwargs)

    # ---- loading --------------------------------------------------------------------------------
    def _stage(self, la: Layer) -> _Stage:
        if la.kind == "flatten":
            return _Stage(la, "flatten")
        assert la.weight is not None and la.neuron is not None  # every netlist builder sets both
        st = _Stage(la, la.kind)
        if la.kind == "dense":
            st.dense = netx_dense_load(la.weight)
            w, exp = st.dense.weight, st.dense.weight_exp
            if exp >= 0:
                eff = w << exp
            elif np.all(w % (1 << -exp) == 0):
                eff = w >> -exp  # every sum stays a multiple of 2^-exp: the shift is exact per weight
            else:
                eff, st.floor_shift = w, -exp  # floor the sum itself, as Lava does
            dtype = np.float32 if int(np.abs(eff).sum(1).max()) < _F32_EXACT else np.float64
            st.matrix = np.ascontiguousarray(eff.T.astype(dtype))
            st.bound_a = float(np.abs(eff).sum(1).max()) * (1 << STATE_SHIFT)
        else:
            import torch

            bound = int(np.abs(la.weight).reshape(la.weight.shape[0], -1).sum(1).max())
            st.conv_weight = torch.from_numpy(la.weight.astype(np.float64)).to(
                torch.float32 if bound < _F32_EXACT else torch.float64
            )
            st.conv_wraps = bound >= _M
            st.bound_a = float(min(bound, _M)) * (1 << STATE_SHIFT)
        n = la.neuron
        # netx: LIF(du = iDecay - 1, dv = vDecay); Lava: decay_const_u = du + 1, decay_const_v = dv
        st.keep_u = (DECAY_UNITY - n.i_decay) / DECAY_UNITY
        st.keep_v = (DECAY_UNITY - n.v_decay) / DECAY_UNITY
        st.vth = float(n.vth_mant << STATE_SHIFT)
        shape = la.out_shape
        if n.bias is not None:
            # netx casts bias_mant to int32; Lava scales it by bias_exp = 6
            b = n.bias.astype(np.int32).astype(np.int64) << STATE_SHIFT
            b = b.reshape(shape[0], *([1] * (len(shape) - 1))) if la.kind == "conv" else b.reshape(shape)
            st.bias = np.broadcast_to(b, shape).astype(np.float64)
        st.bias_full = st.bias if st.bias is not None else np.zeros(shape, dtype=np.float64)
        return st

    def load_report(self) -> list[dict[str, Any]]:
        """Per dense layer: the weight bits and exponent netx derives on load (``optimize_weight_bits``)."""
        return [
            {
                "layer": st.layer.name,
                "num_weight_bits": st.dense.num_weight_bits,
                "weight_exp": st.dense.weight_exp,
                "sign_mode": st.dense.sign_mode,
                "clipped_by_netx": st.dense.clipped,
                "lossless": bool(np.array_equal(st.dense.effective(), st.layer.weight)),
            }
            for st in self.stages
            if st.dense is not None and st.layer.weight is not None
        ]

    # ---- running --------------------------------------------------------------------------------
    def run(self, spikes: np.ndarray, *, record: bool = False, buffered: bool = False) -> Any:
        """Binary spikes ``[T, B, *input_shape]`` -> output spikes ``[T, B, *output_shape]`` (uint8).

        With ``record=True`` returns ``(output, [spikes of every neuron layer, in order])``.
        ``buffered=True`` gives Lava's raw timeline of a fresh network without resets: every synapse
        delivers its input one step late (Dense / Conv ``a_buff``), every layer integrates from step 0
        (its bias included) -- pad the input with L zero steps to see its last steps through.
        """
        x = np.asarray(spikes)
        shape = tuple(self.net.input_shape)
        if x.ndim != len(shape) + 2 or tuple(x.shape[2:]) != shape:
            raise DataError(
                f"spikes of shape {tuple(x.shape)} do not fit the network: it takes [T, B, "
                f"{', '.join(map(str, shape))}]"
            )
        binary = x.dtype == np.bool_ or (x.dtype == np.uint8 and (x.size == 0 or x.max() <= 1))
        if not binary:
            if x.size and not ((x == 0) | (x == 1)).all():
                raise DataError(
                    "the network takes binary spikes (0 / 1); encode real-valued input on the host"
                )
            x = x.astype(np.uint8)
        recorded: list[np.ndarray] = []
        cur = x.view(np.uint8)
        for st in self.stages:
            cur = self._run_stage(st, cur, buffered)
            if record and st.kind != "flatten":
                recorded.append(cur)
        return (cur, recorded) if record else cur

    def _run_stage(self, st: _Stage, s: np.ndarray, buffered: bool = False) -> np.ndarray:
        t_steps, batch = s.shape[:2]
        if st.kind == "flatten":
            return s.reshape(t_steps, batch, -1)
        sums: np.ndarray
        if st.kind == "dense":
            assert st.dense is not None and st.matrix is not None  # _stage sets both for dense
            flat = s.reshape(t_steps * batch, -1)
            # few rows (batch 1): the event-driven C kernel; many rows: BLAS (exact, multi-threaded, faster)
            small = flat.shape[0] < self._blas_min_rows
            sums = st.c_dense(flat) if st.c_dense is not None and small else _matmul(flat, st.matrix)
            if st.floor_shift:  # Lava: the sum >> k, an arithmetic (floor) shift
                sums = np.floor(sums.astype(np.float64) / (1 << st.floor_shift))
        elif st.c_conv is not None and t_steps * batch < self._blas_min_rows:
            out = st.c_conv(s.reshape(t_steps * batch, *s.shape[2:]))
            sums = _wrap24(out.astype(np.int64)).astype(np.float64) if st.conv_wraps else out
        else:
            import torch
            import torch.nn.functional as F

            la = st.layer
            inp = torch.from_numpy(s.reshape(t_steps * batch, *s.shape[2:])).to(st.conv_weight.dtype)
            out = F.conv2d(
                inp,
                st.conv_weight,
                stride=la.stride,
                padding=la.padding,
                dilation=la.dilation,
                groups=la.groups,
            ).numpy()
            sums = _wrap24(out.astype(np.int64)).astype(np.float64) if st.conv_wraps else out
        sums = sums.reshape(t_steps, batch, *st.layer.out_shape)
        if buffered:  # the synapse's one-step buffer: step t integrates what arrived at t - 1
            sums = np.concatenate([np.zeros_like(sums[:1]), sums[:-1]])
        if st.c_cuba is not None:
            spikes: np.ndarray = st.c_cuba(sums, _saturating(st, t_steps))
            return spikes
        return self._lif(st, sums.astype(np.float64) * (1 << STATE_SHIFT))

    @staticmethod
    def _lif(st: _Stage, a: np.ndarray) -> np.ndarray:
        """The CUBA recurrence over T in numpy on float64 state; ``a`` is the input << 6.

        ``u`` and ``v`` live in one ``[2, *shape]`` array so both decays cost one multiply and one
        truncation per step. Lava's 24-bit wrap of ``u`` and clip of ``v`` are applied only when
        the layer's worst case can reach them (static bounds), i.e. whenever Lava could apply them.
        """
        t_steps = a.shape[0]
        spikes = np.zeros(a.shape, dtype=np.bool_)
        state = np.zeros((2, *a.shape[1:]), dtype=np.float64)
        u, v = state[0], state[1]
        ku, kv, vth, bias = st.keep_u, st.keep_v, st.vth, st.bias
        keep = np.array([ku, kv], dtype=np.float64).reshape(2, *([1] * (a.ndim - 1)))
        decays = ku != 1.0 or kv != 1.0
        saturating = _saturating(st, t_steps)
        lo, hi = float(-_M + 1), float(_M - 1)
        for t in range(t_steps):
            if decays:
                np.multiply(state, keep, out=state)
                np.trunc(state, out=state)
            np.add(u, a[t], out=u)
            if saturating:
                u[u > _M] -= 2 * _M  # Lava: u > 2^23 -> u - 2^24; u <= -2^23 -> u + 2^24
                u[u <= -_M] += 2 * _M
            np.add(v, u, out=v)
            if bias is not None:
                np.add(v, bias, out=v)
            if saturating:
                np.clip(v, lo, hi, out=v)
            s_t = spikes[t]
            np.greater(v, vth, out=s_t)
            np.copyto(v, 0.0, where=s_t)
        return spikes.view(np.uint8)


#: from this many rows (timesteps x samples) on, a synapse runs as one BLAS matmul / oneDNN conv
#: instead of the event-driven C kernel: measured 5x (dense) and 2-4x (conv) faster at 1024 rows of
#: the zoo SNNs (~10-30 % input activity); below it the C kernel's lower call overhead wins
BLAS_MIN_ROWS = 256


def _matmul(s: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Binary spikes [rows, in] x integer weights [in, out], exact (every sum fits the dtype's mantissa)."""
    if s.shape[0] * matrix.shape[1] < 4096:  # tiny: numpy's call overhead is lower
        return np.matmul(s.astype(matrix.dtype), matrix)
    import torch

    return (
        torch.from_numpy(s)
        .to(torch.float32 if matrix.dtype == np.float32 else torch.float64)
        .matmul(torch.from_numpy(matrix))
        .numpy()
    )


def _saturating(st: _Stage, t_steps: int) -> bool:
    """Whether the layer's worst case can reach Lava's 24-bit wrap of u or clip of v.

    ``|u| <= A / (1 - ku)`` and ``|v| <= (|u|max + |b|max) / (1 - kv)`` with A the largest synaptic
    input of one step (every input spiking); without decay, T steps of growth.
    """
    b_max = float(np.abs(st.bias).max()) if st.bias is not None else 0.0
    u_max = st.bound_a / (1.0 - st.keep_u) if st.keep_u < 1.0 else st.bound_a * t_steps
    v_max = (u_max + b_max) / (1.0 - st.keep_v) if st.keep_v < 1.0 else (u_max + b_max) * t_steps
    return u_max >= _M or v_max >= _M - 1


def lif_bound(layer: Layer) -> int:
    """Largest |synaptic input << 6| one step can bring (every input spiking): the 24-bit headroom check."""
    if layer.weight is None:
        return 0
    w = np.abs(layer.weight.reshape(layer.weight.shape[0], -1)).sum(1)
    return int(w.max()) << STATE_SHIFT
