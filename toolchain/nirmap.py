"""The pieces of the NIR <-> spiking-layer mapping (:mod:`edgec.nirgraph` has the equations): what
one NIR neuron node became (:class:`NeuronMapping`), the imported network (:class:`NirImport`), and
:class:`NetBuilder`, which turns a chain of NIR nodes into edgec layers, folding input scales into the
synapses and collecting the why-not rows. Readers of framework modules (:mod:`edgec.frameworks`) use
the builder directly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from edgec.errors import ConstraintViolation, ModelError, UsageError
from edgec.snn import IF, LI, LIF, CubaLIF, TimeDistributed
from edgec.target import Violation

DEFAULT_DT = 1e-4
DECAY_UNITY = 4096  # Loihi's 12-bit decay fractions (lava-nc proc/lif/models.py)

HINT_REPLACE = (
    "edgec maps Affine, Linear, Conv1d/2d, Flatten, SumPool2d, AvgPool2d, Scale, Threshold, "
    "LIF, CubaLIF, IF, LI, I and nested graphs (docs/nir.md)"
)


class NirUnsupported(Exception):
    """An edgec network holds something NIR's neuron set cannot express exactly (when writing)."""


@dataclass
class NeuronMapping:
    """How one NIR neuron node became an edgec neuron layer (a row of the report)."""

    node: str
    nir_type: str
    edgec_type: str
    layer: str
    du: float | None
    dv: float | None
    threshold: float
    input_scale: tuple[float, float]  # min / max of g (and any nir.Scale) folded into the synapse
    notes: list[str] = field(default_factory=list)

    def to_dict(self, dt: float) -> dict[str, Any]:
        row: dict[str, Any] = {
            "node": self.node,
            "nir": self.nir_type,
            "edgec": self.edgec_type,
            "layer": self.layer,
            "threshold": self.threshold,
            "input_scale_min": self.input_scale[0],
            "input_scale_max": self.input_scale[1],
        }
        for key, d in (("du", self.du), ("dv", self.dv)):
            if d is None:
                continue
            q = round(DECAY_UNITY * d)
            row[key] = d
            row[f"{key}_loihi_12bit"] = q
            row[f"{key}_loihi_error"] = abs(q / DECAY_UNITY - d)
            # Euler's (1 - dt/tau) against the exact exp(-dt/tau) of the continuous equation; a
            # Threshold has no equation in time (its dv = 1 is "no memory", exact by construction)
            ode = d > 0 and self.nir_type != "Threshold"
            row[f"{key}_euler_vs_exact"] = abs((1.0 - d) - math.exp(-d)) if ode else 0.0
        if self.notes:
            row["notes"] = self.notes
        return row


@dataclass
class NirImport:
    module: nn.Sequential
    input_shape: tuple[int, ...]
    dt: float
    dt_source: str
    mappings: list[NeuronMapping]
    timesteps: int | None
    encoder: dict[str, Any] | None

    def report(self) -> dict[str, Any]:
        return {
            "dt": self.dt,
            "dt_source": self.dt_source,
            "discretisation": "forward Euler, current first (docs/nir.md)",
            "layers": [m.to_dict(self.dt) for m in self.mappings],
        }


# ---- parameters ---------------------------------------------------------------------------------
def as_array(v: Any) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float64)


def _uniform(name: str, what: str, value: Any, rows: list[Violation]) -> float:
    a = as_array(value).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        rows.append(Violation(name, "nir-parameter", f"{what} is empty or not finite", ""))
        return 1.0
    if not np.allclose(a, a[0], rtol=1e-6, atol=0.0):
        rows.append(
            Violation(
                name,
                "per-neuron-" + what.replace("_", "-"),
                f"{what} differs between neurons ({a.min():g} .. {a.max():g})",
                "Loihi (and edgec's layers) take one decay per layer: use one value per layer",
            )
        )
    return float(a[0])


def per_feature(value: Any, shape: tuple[int, ...], conv: bool, name: str, what: str) -> np.ndarray:
    """A neuron parameter as one value per neuron (dense) or per channel (conv)."""
    a = as_array(value)
    features = shape[0] if shape else 1
    if a.size == 1:
        return np.full(features, float(a.reshape(-1)[0]))
    if conv:
        if a.ndim != len(shape) and a.size == shape[0]:
            a = a.reshape(-1, *[1] * (len(shape) - 1))
        try:
            full = np.broadcast_to(a, shape)
        except ValueError:
            raise ModelError(f"NIR node {name}: {what} of shape {a.shape} does not fit {shape}") from None
        per = full.reshape(shape[0], -1)
        if not np.allclose(per, per[:, :1], rtol=1e-6):
            raise ConstraintViolation(
                f"NIR node {name}: {what} differs within a channel",
                [Violation(name, "nir-parameter", f"{what} varies over positions", "one value per channel")],
            )
        return per[:, 0].copy()
    if a.size != features:
        raise ModelError(f"NIR node {name}: {what} has {a.size} values for {features} neurons")
    return a.reshape(-1).copy()


def _decay(dt: float, tau: float, name: str, what: str) -> float:
    if not tau > 0:
        raise ModelError(f"NIR node {name}: {what} = {tau:g} is not a positive time constant")
    if math.isinf(tau):
        return 0.0
    d = dt / tau
    if d > 1.0 + 1e-9:
        raise UsageError(
            f"NIR node {name}: dt / {what} = {dt:g} / {tau:g} = {d:g} > 1 (the Euler step would overshoot)",
            hint=f"give the graph's time step with --dt (at most {tau:g} for this node); "
            "frameworks that count time in steps (sinabs) use --dt 1",
        )
    return min(d, 1.0)


# ---- NIR -> edgec -------------------------------------------------------------------------------
class NetBuilder:
    def __init__(self, dt: float) -> None:
        self.dt = dt
        self.layers: list[nn.Module] = []
        self.shape: tuple[int, ...] = ()
        self.pending: nn.Module | None = None  # last synapse with no neuron after it yet
        # the nir.Scale factors already folded into the pending synapse's rows (per output, or 1):
        # the neuron's reported input scale includes them
        self.pending_scale: np.ndarray = np.ones(1)
        self.mappings: list[NeuronMapping] = []
        self.rows: list[Violation] = []

    # shapes: run the layer on zeros (one step, one sample)
    def add(self, layer: nn.Module, *, synapse: bool = False) -> None:
        with torch.no_grad():
            y = layer(torch.zeros(1, 1, *self.shape))
        self.layers.append(layer)
        self.shape = tuple(int(d) for d in y.shape[2:])
        self.pending = layer if synapse else None
        self.pending_scale = np.ones(1)

    def flat(self, name: str, n_in: int) -> None:
        if len(self.shape) > 1 or (self.shape and self.shape[0] != n_in):
            if int(np.prod(self.shape)) != n_in:
                raise ModelError(
                    f"NIR node {name} takes {n_in} inputs; the node before it gives {self.shape}"
                )
            self.add(nn.Flatten(start_dim=2))

    def synapse_rows(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        m = self.pending
        inner = m.module if isinstance(m, TimeDistributed) else m
        assert isinstance(inner, (nn.Linear, nn.Conv1d, nn.Conv2d))  # only synapse() sets pending, to these
        return inner.weight, inner.bias

    def scale_rows(self, name: str, g: np.ndarray) -> bool:
        """Multiply the pending synapse's output rows by ``g`` (per output neuron / channel)."""
        if np.allclose(g, 1.0, rtol=0, atol=0):
            return True
        if self.pending is None:
            self.rows.append(
                Violation(
                    name,
                    "nir-input-scale",
                    f"input scaling {g.min():g}..{g.max():g} with no synapse before it to carry it",
                    "put the neuron after a Linear / Affine / Conv node",
                )
            )
            return False
        w, b = self.synapse_rows()
        gt = torch.as_tensor(g, dtype=w.dtype)
        features = w.shape[0]
        if gt.numel() == 1:
            gt = gt.reshape(1).expand(features)
        if gt.numel() != features:
            raise ModelError(f"NIR node {name}: {gt.numel()} scales for {features} outputs of the synapse")
        with torch.no_grad():
            w.mul_(gt.reshape(-1, *([1] * (w.dim() - 1))))
            if b is not None:
                b.mul_(gt)
        self.pending_scale = self.pending_scale * np.broadcast_to(
            np.asarray(g, dtype=np.float64), (features,)
        )
        return True

    def neuron(self, name: str, kind: str, node: Any, nxt: Any | None) -> int:
        """Map a neuron node (and the LIF / IF after an LI / I); returns how many nodes it used."""
        import nir

        conv = len(self.shape) > 1
        features = self.shape[0] if self.shape else 1
        dt = self.dt
        used = 1
        du: float | None = None
        notes: list[str] = []
        if isinstance(node, (nir.LI, nir.I)) and isinstance(nxt, (nir.LIF, nir.IF)):
            if isinstance(node, nir.LI):
                du = _decay(dt, _uniform(name, "tau", node.tau, self.rows), name, "tau")
                if np.any(as_array(node.v_leak)):
                    self.rows.append(
                        Violation(name, "nir-current-leak", "LI current with v_leak != 0", "v_leak = 0")
                    )
            else:
                du = 0.0
            g_cur = per_feature(node.r, self.shape, conv, name, "r") * (du if du else dt)
            node, used, kind = nxt, 2, f"{kind}+{type(nxt).__name__}"
            notes.append("current node fused into CubaLIF")
        else:
            g_cur = None
        if isinstance(node, nir.CubaLIF):
            du = _decay(dt, _uniform(name, "tau_syn", node.tau_syn, self.rows), name, "tau_syn")
            g_cur = per_feature(node.w_in, self.shape, conv, name, "w_in") * du
        if isinstance(node, (nir.CubaLIF, nir.LIF, nir.LI)):
            what = "tau_mem" if isinstance(node, nir.CubaLIF) else "tau"
            tau = node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau
            dv = _decay(dt, _uniform(name, what, tau, self.rows), name, what)
            g = per_feature(node.r, self.shape, conv, name, "r") * dv
            bias = per_feature(node.v_leak, self.shape, conv, name, "v_leak") * dv
        elif isinstance(node, (nir.IF, nir.I)):
            dv = 0.0
            g = per_feature(node.r, self.shape, conv, name, "r") * dt
            bias = np.zeros(features)
        elif isinstance(node, nir.Threshold):
            dv = 1.0
            g = np.ones(features)
            bias = np.zeros(features)
        else:  # pragma: no cover - the caller dispatches only neuron types
            raise AssertionError(type(node))
        if g_cur is not None:
            g = g * g_cur
        spiking = not isinstance(node, (nir.LI, nir.I))
        # nir.Threshold names its level `threshold`; the spiking neurons name it `v_threshold`
        what = "threshold" if isinstance(node, nir.Threshold) else "v_threshold"
        thr = per_feature(getattr(node, what), self.shape, conv, name, what) if spiking else None
        if spiking and not isinstance(node, nir.Threshold) and np.any(as_array(node.v_reset)):
            self.rows.append(
                Violation(
                    name,
                    "nir-reset",
                    f"v_reset = {as_array(node.v_reset).reshape(-1)[0]:g}",
                    "Loihi and edgec's neurons reset to 0: use v_reset = 0",
                )
            )
        self.place_neuron(name, kind, du, dv, thr, bias, g, notes)
        return used

    def place_neuron(
        self,
        name: str,
        kind: str,
        du: float | None,
        dv: float,
        thr: np.ndarray | None,
        bias: np.ndarray,
        g: np.ndarray,
        notes: list[str] | None = None,
    ) -> None:
        """Add the edgec neuron for ``u <- (1-du) u + g x; v <- (1-dv) v + u + bias`` (``du`` None: no
        current, ``thr`` None: a non-spiking LI), folding ``g`` into the synapse before it."""
        notes = list(notes or [])
        features = self.shape[0] if self.shape else 1
        spiking = thr is not None
        threshold = 1.0
        if thr is not None:
            if np.any(thr <= 0):
                self.rows.append(
                    Violation(name, "nir-threshold", f"v_threshold {thr.min():g} <= 0", "thresholds > 0")
                )
                thr = np.abs(thr) + 1e-12
            if np.allclose(thr, thr[0], rtol=1e-9, atol=0):
                threshold = float(thr[0])
            else:  # per-neuron thresholds: normalise rows and bias by them (threshold 1)
                g, bias = g / thr, bias / thr
                notes.append("per-neuron v_threshold normalised into the synapse (threshold 1)")
        # g times the Scale nodes already folded into the same rows: what the synapse's rows carry
        folded = np.asarray(g, dtype=np.float64) * self.pending_scale
        self.scale_rows(name, g)
        has_bias = bool(np.any(bias))
        bias_features = features if has_bias else None
        layer: nn.Module
        if not spiking:
            layer = LI(bias_features, dv=dv, bias=has_bias)
        elif du is not None:
            layer = CubaLIF(bias_features, du=du, dv=dv, threshold=threshold, bias=has_bias)
        elif dv == 0.0:
            layer = IF(bias_features, threshold=threshold, bias=has_bias)
        else:
            layer = LIF(bias_features, dv=dv, threshold=threshold, bias=has_bias)
        if has_bias:
            with torch.no_grad():
                layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))  # type: ignore[union-attr]
        index = len(self.layers)
        self.add(layer)
        self.mappings.append(
            NeuronMapping(
                name,
                kind,
                type(layer).__name__,
                str(index),
                du,
                dv,
                threshold,
                (float(np.min(folded)), float(np.max(folded))),
                notes,
            )
        )

    def synapse(self, name: str, node: Any) -> None:
        import nir

        if isinstance(node, (nir.Affine, nir.Linear)):
            w = as_array(node.weight)
            if w.ndim != 2:
                raise ModelError(f"NIR node {name}: weight of shape {w.shape} is not a matrix")
            bias = as_array(node.bias) if isinstance(node, nir.Affine) else None
            has_bias = bias is not None and bool(np.any(bias))
            self.flat(name, int(w.shape[1]))
            lin = nn.Linear(int(w.shape[1]), int(w.shape[0]), bias=has_bias)
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(w))
                if has_bias:
                    assert lin.bias is not None and bias is not None  # has_bias implies both
                    lin.bias.copy_(torch.as_tensor(bias.reshape(-1)))
            self.add(lin, synapse=True)
            return
        if isinstance(node, (nir.Conv2d, nir.Conv1d)):
            w = as_array(node.weight)
            two = isinstance(node, nir.Conv2d)
            groups = int(node.groups)
            c_in = int(w.shape[1]) * groups
            if not self.shape:
                raise ModelError(f"NIR node {name}: a convolution needs a shaped input")
            if self.shape[0] != c_in:
                raise ModelError(f"NIR node {name} takes {c_in} channels; its input has shape {self.shape}")
            bias = as_array(node.bias).reshape(-1) if node.bias is not None else None
            has_bias = bias is not None and bool(np.any(bias))
            pad = node.padding if isinstance(node.padding, str) else int_values(node.padding, two)
            conv: Any = (nn.Conv2d if two else nn.Conv1d)(
                c_in,
                int(w.shape[0]),
                tuple(w.shape[2:]),  # type: ignore[arg-type]
                stride=int_values(node.stride, two),
                padding=pad,
                dilation=int_values(node.dilation, two),
                groups=groups,
                bias=has_bias,
            )
            with torch.no_grad():
                conv.weight.copy_(torch.as_tensor(w))
                if has_bias:
                    conv.bias.copy_(torch.as_tensor(bias))
            self.add(TimeDistributed(conv), synapse=True)
            return
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            if len(self.shape) != 3:
                raise ModelError(f"NIR node {name}: 2-D pooling needs a (C, H, W) input, got {self.shape}")
            k = int_values(node.kernel_size, True)
            c = self.shape[0]
            pool = nn.Conv2d(
                c,
                c,
                k,
                stride=int_values(node.stride, True),
                padding=int_values(node.padding, True),
                groups=c,
                bias=False,
            )
            value = 1.0 if isinstance(node, nir.SumPool2d) else 1.0 / (k[0] * k[1])
            with torch.no_grad():
                pool.weight.fill_(value)
            self.add(TimeDistributed(pool), synapse=True)
            return
        raise AssertionError(type(node))  # pragma: no cover


def int_values(v: Any, two: bool) -> Any:
    a = [int(x) for x in np.asarray(v).reshape(-1)]
    if two:
        return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])
    return a[0]
