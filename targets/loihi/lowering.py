"""Fixed-point lowering: float synapses and CUBA LIF neurons -> Loihi integers, one scale per layer.

The mapping
-----------
A float layer computes (:mod:`edgec.snn`) ``u <- (1-du) u + W s``, ``v <- (1-dv) v + u + b``, spike
``v > theta``. Loihi computes the same in integers (:mod:`.emulator`) with the synaptic input
shifted left by 6 and the threshold and bias MSB-aligned the same way, so one float unit ``sigma``
per layer (the value of one integer weight step) maps every quantity::

    W_int   = m q                     q = clip(round(W / s), -(2^(B-1) - 1), 2^(B-1) - 1), s = m sigma
    vThMant = round(theta / sigma)    (unsigned 17 bit: <= 131071)
    bias    = round(b / sigma)        (signed 13 bit, applied as bias << 6 every step)
    iDecay  = round(4096 du),  vDecay = round(4096 dv)

so that ``u_int = 64 u / sigma`` and ``v_int = 64 v / sigma`` up to rounding. ``B`` (2..8) is the
layer's weight width; the multiplier ``m = 2 floor(127 / k)`` (``k`` the largest ``|q|``) stretches the
integers over Loihi's 8-bit signed weight (even values in [-254, 254]), which gives the threshold, bias
and decays the finest resolution the 24-bit state allows (``m = 2`` for 8 bits). The grid is symmetric:
Lava clips -256 to -255 in layers without positive weights. For a dense layer the integers must also
survive netx's ``optimize_weight_bits`` and Lava's truncation on load: a layer whose weights are all
<= 0 with its most negative weight a power of two (e.g. ternary {-128, 0}) would be scaled to -256
by netx and clipped by Lava, so such layers fall back to the next multiplier that loads exactly.

netx stores no weight exponent: on load it derives ``num_weight_bits`` and ``weight_exp`` from the
integers (``optimize_weight_bits``). For the integers written here that is lossless (the emulator
checks it: ``netx_load.lossless`` in the report), so the whole scale lives in ``W_int`` and
``vThMant``.

Choosing ``sigma``
------------------
* weights already on a grid (what a compression pass hands over: 2- to 8-bit values ``s * q``) are
  detected and kept exactly, whatever their width (``grid: detected``); a synapse may also declare
  ``weight_scale`` (its weights divided by it are the integers) and ``weight_bits``;
* otherwise ``s = alpha * max|W| / (2^(B-1) - 1)``; with calibration data ``alpha`` is chosen per
  layer among a few clipping fractions by the agreement of the layer's emulated output spikes with
  the float layer's spikes on the same input spikes (``grid: clip alpha (calibrated)``), else 1;
* the threshold and the bias must fit their fields: ``sigma >= theta / 131071`` and
  ``sigma >= max|b| / 4095``; a layer that needs a coarser ``sigma`` than its weights loses weight
  levels (reported as ``effective_weight_bits``), and one left with fewer than 2 levels, or whose
  threshold is below half a weight step, is a violation.

Every layer's quantization error is reported: weight RMS / max error, threshold and decay errors,
bias error, the netx load result, the worst-case synaptic input against the 24-bit state, and with
calibration data the spike agreement with the float layer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgec.target import Violation

from .emulator import Emulator, netx_dense_load
from .graph import FloatLayer
from .netlist import (
    BIAS_MANT_MAX,
    DECAY_UNITY,
    STATE_BITS,
    STATE_SHIFT,
    VTH_MANT_MAX,
    CubaNeuron,
    Layer,
    Netlist,
)
from .options import MAX_BITS, MIN_BITS, LoweringOptions

log = logging.getLogger(__name__)

CLIP_CANDIDATES = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6)
_GRID_ATOL = 1e-3  # |W/s - round(W/s)| for weights that already lie on a grid (float32 rounding ~1e-5)


@dataclass
class _Grid:
    q: np.ndarray  # integers, |q| <= 2^(bits-1) - 1
    mult: int  # W_int = q * mult
    sigma: float  # float value of one unit of W_int
    how: str
    alpha: float = 1.0


@dataclass
class LayerPlan:
    """One quantized layer: the netlist layer, its report row and what it violates."""

    layer: Layer
    row: dict[str, Any]
    violations: list[Violation] = field(default_factory=list)


def _bits_for(k: int) -> int:
    """Signed symmetric width holding integers up to |k|."""
    return max(MIN_BITS, math.ceil(math.log2(k + 1)) + 1)


def detect_grid(weight: np.ndarray, max_bits: int = MAX_BITS) -> tuple[float, np.ndarray] | None:
    """``(s, q)`` with ``weight == s * q`` for integers ``|q| <= 2^(max_bits-1) - 1``, coarsest first.

    Weights from a b-bit quantizer (uniform, zero included) are found for any b up to ``max_bits``.
    """
    m = float(np.abs(weight).max())
    if m == 0.0:
        return None
    flat = weight.reshape(-1)
    for k in range(1, (1 << (max_bits - 1))):
        s = m / k
        q = flat / s
        if np.all(np.abs(q - np.rint(q)) <= _GRID_ATOL):
            return s, np.rint(weight / s).astype(np.int64)
    return None


def multipliers(k: int) -> list[int]:
    """Even multipliers ``m`` keeping integers up to ``|k|`` within Loihi's 8-bit weight (|m k| <= 254),
    largest first (the finest threshold resolution)."""
    top = 2 * (127 // k) if k > 0 else 2
    return list(range(top, 1, -2)) if top > 2 else [2]


def _grids(fl: FloatLayer, bits: int, calibrate: bool) -> list[_Grid]:
    """Candidate weight grids of a layer, best guess first."""
    assert fl.weight is not None  # dense / conv FloatLayers carry weights
    w = fl.weight
    if fl.weight_scale is not None:  # the layer's own grid (a quantizer's): W = weight_scale * q, kept
        q = np.rint(w / fl.weight_scale).astype(np.int64)
        k = int(np.abs(q).max())
        m = multipliers(k)[0]  # stored q * m, one unit of it worth weight_scale / m (netx-exact, even)
        return [_Grid(q, m, fl.weight_scale / m, "declared weight_scale")]
    found = detect_grid(w, min(bits, MAX_BITS))
    if found is not None:
        s, q = found
        k = int(np.abs(q).max())
        m = multipliers(k)[0]
        return [_Grid(q, m, s / m, f"detected {_bits_for(k)}-bit grid (lossless)")]
    qmax = (1 << (bits - 1)) - 1
    mult = multipliers(qmax)[0]
    w_max = float(np.abs(w).max())
    out = []
    for alpha in CLIP_CANDIDATES if calibrate else (1.0,):
        s = alpha * w_max / qmax
        q = np.clip(np.rint(w / s), -qmax, qmax).astype(np.int64)
        how = "max-abs" if alpha == 1.0 else f"clip {alpha:g} x max|W|"
        out.append(_Grid(q, mult, s / mult, how, alpha))
    return out


def _fit_ranges(fl: FloatLayer, grid: _Grid, bits: int) -> _Grid:
    """Coarsen ``sigma`` where the threshold or the bias would overflow its field."""
    assert fl.weight is not None  # dense / conv FloatLayers carry weights
    need = fl.threshold / VTH_MANT_MAX
    if fl.bias is not None and np.any(fl.bias):
        need = max(need, float(np.abs(fl.bias).max()) / BIAS_MANT_MAX)
    if grid.sigma >= need:
        return grid
    sigma = need * (1 + 1e-9)
    s = sigma * grid.mult
    qmax = (1 << (bits - 1)) - 1
    q = np.clip(np.rint(fl.weight / s), -qmax, qmax).astype(np.int64)
    return _Grid(q, grid.mult, sigma, grid.how + ", coarsened for the threshold / bias range", grid.alpha)


def _loadable(fl: FloatLayer, grid: _Grid) -> _Grid:
    """A dense layer's integers as netx + Lava load them exactly: try smaller multipliers if needed."""
    if fl.kind != "dense" or grid.how.startswith("declared") or not np.any(grid.q):
        return grid
    s = grid.sigma * grid.mult
    for m in [grid.mult, *(m for m in multipliers(int(np.abs(grid.q).max())) if m < grid.mult)]:
        w = grid.q * m
        if np.array_equal(netx_dense_load(w).effective(), w):
            return (
                grid
                if m == grid.mult
                else _Grid(grid.q, m, s / m, grid.how + f" (x{m}: exact netx load)", grid.alpha)
            )
    return grid  # reported (netx_load.lossless = False) and refused by plan_layer


def build_layer(fl: FloatLayer, grid: _Grid) -> Layer:
    """The netlist layer for ``fl`` on ``grid``."""
    assert fl.weight is not None  # dense / conv FloatLayers carry weights
    weight = grid.q * grid.mult
    bias = None
    if fl.bias is not None and np.any(fl.bias):
        b = np.rint(np.broadcast_to(fl.bias, (fl.out_shape[0],)) / grid.sigma).astype(np.int64)
        bias = b
    neuron = CubaNeuron(
        i_decay=round(fl.du * DECAY_UNITY),
        v_decay=round(fl.dv * DECAY_UNITY),
        vth_mant=round(fl.threshold / grid.sigma),
        bias=bias,
    )
    return Layer(
        fl.kind,
        fl.name,
        fl.in_shape,
        fl.out_shape,
        weight,
        neuron,
        stride=fl.stride,
        padding=fl.padding,
        dilation=fl.dilation,
        groups=fl.groups,
    )


def _row(fl: FloatLayer, grid: _Grid, la: Layer, bits: int) -> dict[str, Any]:
    assert fl.weight is not None and la.weight is not None and la.neuron is not None  # build_layer sets them
    deq = la.weight * grid.sigma
    err = deq - fl.weight
    norm = float(np.sqrt(np.mean(fl.weight**2))) or 1.0
    k = int(np.abs(grid.q).max())
    n = la.neuron
    row: dict[str, Any] = {
        "layer": fl.name,
        "neuron": fl.neuron_name,
        "type": fl.kind,
        "in_shape": list(fl.in_shape),
        "out_shape": list(fl.out_shape),
        "neurons": int(np.prod(fl.out_shape)),
        "weight_bits": bits,
        "effective_weight_bits": _bits_for(k) if k else 0,
        "grid": grid.how,
        "scale": grid.sigma,
        "weight_range": [int(la.weight.min()), int(la.weight.max())],
        "weight_rel_rms_error": float(np.sqrt(np.mean(err**2))) / norm,
        "weight_max_abs_error": float(np.abs(err).max()),
        "threshold": fl.threshold,
        "vThMant": n.vth_mant,
        "threshold_rel_error": abs(n.vth_mant * grid.sigma - fl.threshold) / fl.threshold,
        "du": fl.du,
        "iDecay": n.i_decay,
        "du_error": abs(n.i_decay / DECAY_UNITY - fl.du),
        "dv": fl.dv,
        "vDecay": n.v_decay,
        "dv_error": abs(n.v_decay / DECAY_UNITY - fl.dv),
    }
    if n.bias is not None and fl.bias is not None:
        row["bias_range"] = [int(n.bias.min()), int(n.bias.max())]
        row["bias_max_abs_error"] = float(
            np.abs(n.bias * grid.sigma - np.broadcast_to(fl.bias, n.bias.shape)).max()
        )
    worst = int(np.abs(la.weight.reshape(la.weight.shape[0], -1)).sum(1).max()) << STATE_SHIFT
    row["worst_input_vs_24bit_state"] = worst / (1 << (STATE_BITS - 1))
    if la.kind == "dense":
        try:
            load = netx_dense_load(la.weight)
            row["netx_load"] = {
                "num_weight_bits": load.num_weight_bits,
                "weight_exp": load.weight_exp,
                "sign_mode": load.sign_mode,
                "lossless": bool(np.array_equal(load.effective(), la.weight)),
            }
        except Exception as exc:  # reported as a violation by plan_layer
            row["netx_load"] = {"error": str(exc)}
    return row


def plan_layer(
    fl: FloatLayer,
    options: LoweringOptions,
    calib: tuple[np.ndarray, np.ndarray] | None = None,
) -> LayerPlan:
    """Quantize one float layer; ``calib`` = (input spikes, float output spikes) chooses the clipping."""
    assert fl.weight is not None and fl.kind in ("dense", "conv")  # plan_network skips flattens
    bits = fl.weight_bits if fl.weight_bits is not None else options.weight_bits
    violations: list[Violation] = []
    if not MIN_BITS <= bits <= MAX_BITS:
        violations.append(
            Violation(
                fl.name,
                "weight-bits",
                f"the synapse declares weight_bits={bits}; Loihi weights have "
                "2..8 bits (lava Dense: 8-bit signed mantissa)",
                "requantize the layer to 8 bits or fewer",
            )
        )
        bits = min(max(bits, MIN_BITS), MAX_BITS)
    if not np.any(fl.weight):
        violations.append(
            Violation(
                fl.name,
                "weight-range",
                "every weight is zero (netx's optimize_weight_bits divides by the largest weight)",
                "remove the layer, or keep at least one connection",
            )
        )
        la = build_layer(fl, _Grid(np.zeros_like(fl.weight, dtype=np.int64), 1, 1.0, "zero"))
        return LayerPlan(la, {"layer": fl.name, "type": fl.kind}, violations)
    grids = _grids(fl, bits, options.calibrate and calib is not None)
    candidates = [_loadable(fl, _fit_ranges(fl, g, bits)) for g in grids]
    scored: list[tuple[float, int, _Grid, Layer]] = []
    for i, grid in enumerate(candidates):
        la = build_layer(fl, grid)
        score = _agreement(la, calib) if calib is not None and len(candidates) > 1 else 0.0
        scored.append((score, -i, grid, la))
    score, _, grid, la = max(scored, key=lambda t: (t[0], t[1]))
    row = _row(fl, grid, la, bits)
    if calib is not None:
        row["calibration"] = _layer_stats(la, calib)
        if len(candidates) > 1:
            row["grid"] = grid.how + " (calibrated)"
    violations += _range_violations(fl, grid, la, row)
    if grid.how.startswith("declared") and la.weight is not None:
        exact = np.abs(fl.weight / (grid.sigma * grid.mult) - grid.q).max() <= _GRID_ATOL
        if not exact or int(np.abs(la.weight).max()) > 256:
            violations.append(
                Violation(
                    fl.name,
                    "weight-range",
                    f"weights / weight_scale are not integers within Loihi's "
                    f"8-bit weight (largest {int(np.abs(grid.q).max())})",
                    "declare a weight_scale that makes every weight an integer in [-254, 254]",
                )
            )
    return LayerPlan(la, row, violations)


def _range_violations(fl: FloatLayer, grid: _Grid, la: Layer, row: dict[str, Any]) -> list[Violation]:
    assert la.neuron is not None  # build_layer sets the neuron
    out = []
    n = la.neuron
    if n.vth_mant > VTH_MANT_MAX or n.vth_mant < 1:
        out.append(
            Violation(
                fl.neuron_name or fl.name,
                "threshold-range",
                f"vThMant {n.vth_mant} outside 1..{VTH_MANT_MAX} "
                f"(threshold {fl.threshold:g} is {fl.threshold / float(np.abs(fl.weight).max()):.3g} x the "  # type: ignore[arg-type]
                "largest weight)",
                "retrain with a threshold between 1/254 and ~500 times the largest weight",
            )
        )
    elif row.get("effective_weight_bits", 0) < MIN_BITS:
        out.append(
            Violation(
                fl.name,
                "threshold-range",
                f"fitting the threshold ({fl.threshold:g}) and bias into "
                "vThMant (17 bit) / bias_mant (13 bit) leaves fewer than 2 weight levels",
                "retrain with a smaller threshold / bias relative to the weights",
            )
        )
    if n.bias is not None and (n.bias.max() > BIAS_MANT_MAX or n.bias.min() < -BIAS_MANT_MAX - 1):
        out.append(
            Violation(
                fl.neuron_name or fl.name,
                "bias-range",
                f"bias_mant up to {int(np.abs(n.bias).max())} exceeds 13 bits",
                "retrain with a smaller bias relative to the weights",
            )
        )
    load = row.get("netx_load", {})
    if la.kind == "dense" and "error" in load:
        out.append(Violation(fl.name, "weight-range", load["error"], "requantize the layer"))
    elif la.kind == "dense" and load.get("lossless") is False:
        out.append(
            Violation(
                fl.name,
                "weight-range",
                "netx's optimize_weight_bits and Lava's truncation would change these integers on load",
                "requantize the layer (a different weight scale)",
            )
        )
    return out


def _agreement(la: Layer, calib: tuple[np.ndarray, np.ndarray]) -> float:
    x, ref = calib
    got = Emulator(Netlist(la.in_shape, [la])).run(x)
    assert isinstance(got, np.ndarray)  # run() without record returns the spikes
    return float((got == ref).mean())


def _layer_stats(la: Layer, calib: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    x, ref = calib
    got = Emulator(Netlist(la.in_shape, [la])).run(x)
    assert isinstance(got, np.ndarray)  # run() without record returns the spikes
    return {
        "spike_agreement": float((got == ref).mean()),
        "rate_float": float(ref.mean()),
        "rate_loihi": float(got.mean()),
    }


def plan_network(
    layers: list[FloatLayer],
    input_shape: tuple[int, ...],
    options: LoweringOptions,
    calib: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[Netlist, list[dict[str, Any]], list[Violation]]:
    """Quantize every layer; returns the netlist, the per-layer report rows and the violations."""
    net = Netlist(input_shape=tuple(input_shape))
    rows: list[dict[str, Any]] = []
    violations: list[Violation] = []
    for fl in layers:
        if fl.kind == "flatten":
            net.layers.append(Layer("flatten", fl.name, fl.in_shape, fl.out_shape))
            continue
        plan = plan_layer(fl, options, None if calib is None else calib.get(fl.name))
        net.layers.append(plan.layer)
        rows.append(plan.row)
        violations += plan.violations
    return net, rows, violations
