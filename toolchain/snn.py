"""Spiking-network vocabulary shared by the core, the zoo and the targets.

Time-major convention
---------------------
A spiking module maps ``[T, B, *features] -> [T, B, *out]``. Raw input ``[B, *features]`` becomes
that tensor through an *encoder* recorded in the program (and in every artifact), so the host-side
encoding that Loihi needs is explicit:

* ``direct``  : the real-valued input repeated for T steps (CPU only, or graded spikes);
* ``rate``    : Bernoulli spikes, ``s[t] = 1`` where ``U[t] < clip(gain * x, 0, 1)``. The uniform
  noise ``U`` (shape ``[T, *features]``) is drawn once from ``seed`` and shared by every sample, so
  a sample's spikes do not depend on the batch it is in (reproducible on every target);
* ``latency`` : one spike per input at step ``round((1 - x) * (T - 1))`` for ``x > threshold``.

Layers
------
Synapses are standard modules, so hooks (energy counting, quantization) see them as such:
``nn.Linear`` works on ``[T, B, F]`` directly; ``nn.Conv2d`` and other per-step modules are wrapped
in :class:`TimeDistributed`, which folds time into the batch (the wrapped ``nn.Conv2d`` receives
``[T*B, C, H, W]``). ``nn.Flatten(start_dim=2)`` flattens the features of a time-major tensor.

:class:`CubaLIF` is the current-based leaky integrate-and-fire neuron with Loihi's semantics. With
synaptic input ``x[t]`` (the synapse output at step t)::

    u[t] = (1 - du) * u[t-1] + x[t]                  current, decay du in [0, 1]
    v[t] = (1 - dv) * v[t-1] + u[t] + b              voltage, decay dv in [0, 1], bias b
    s[t] = 1 if v[t] > threshold else 0              strictly greater, as on Loihi
    v[t] = 0 where s[t] = 1                          reset to zero

This is Lava's ``LIF`` process (``floating_pt``); the Loihi target maps it to the 12-bit decays,
17-bit threshold mantissa and 24-bit state of the ``fixed_pt`` model (docs/loihi.md). Training uses
a surrogate gradient (:class:`SpikeFunction`): the forward pass is the Heaviside step above, the
backward pass the fast-sigmoid derivative ``1 / (1 + slope * |v - threshold| / threshold)**2``
(SuperSpike, Zenke & Ganguli 2018).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from edgec.program import OutputSpec, Program

log = logging.getLogger(__name__)

ENCODERS = ("direct", "rate", "latency")
DEFAULT_TIMESTEPS = 16
DEFAULT_ENCODER: dict[str, Any] = {"kind": "rate", "gain": 1.0, "seed": 0}


# ---- encoders -----------------------------------------------------------------------------------
def encode(x: torch.Tensor, timesteps: int, encoder: dict[str, Any] | None) -> torch.Tensor:
    """Raw input ``[B, ...]`` -> ``[T, B, ...]`` following ``encoder`` (see the module docstring)."""
    spec = encoder or {"kind": "direct"}
    kind = spec.get("kind", "direct")
    if kind == "direct":
        return x.unsqueeze(0).expand(timesteps, *x.shape).clone()
    if kind == "rate":
        gen = torch.Generator().manual_seed(int(spec.get("seed", 0)))
        p = (float(spec.get("gain", 1.0)) * x).clamp(0.0, 1.0)
        u = torch.rand((timesteps, *x.shape[1:]), generator=gen, dtype=torch.float32)
        return (u.unsqueeze(1) < p.unsqueeze(0)).to(x.dtype)
    if kind == "latency":
        thr = float(spec.get("threshold", 0.0))
        step = torch.round((1.0 - x.clamp(0.0, 1.0)) * (timesteps - 1)).long()
        t = torch.arange(timesteps).reshape(timesteps, *([1] * x.dim()))
        return ((t == step.unsqueeze(0)) & (x.unsqueeze(0) > thr)).to(x.dtype)
    raise ValueError(f"unknown encoder kind {kind!r}; expected one of {ENCODERS}")


class EncodedSNN(nn.Module):
    """A spiking module with its host-side encoder in front: raw input ``[B, ...]`` -> output spikes
    ``[B, T, ...]`` (batch first, as every target's session returns them).

    The same computation as :func:`encode` then the module, written with tensor operations only (the
    rate encoder's noise is a buffer drawn from the recorded seed), so ONNX exporters can take it and
    the exported graph gives the PyTorch model's spikes bit for bit.
    """

    snn: nn.Module
    noise: torch.Tensor

    def __init__(
        self, module: nn.Module, timesteps: int, encoder: dict[str, Any] | None, input_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.snn = module
        self.timesteps = timesteps
        self.spec = dict(encoder or {"kind": "direct"})
        kind = self.spec.get("kind", "direct")
        if kind not in ENCODERS:
            raise ValueError(f"unknown encoder kind {kind!r}; expected one of {ENCODERS}")
        gen = torch.Generator().manual_seed(int(self.spec.get("seed", 0)))
        noise = torch.rand((timesteps, *input_shape), generator=gen) if kind == "rate" else torch.zeros(0)
        self.register_buffer("noise", noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind = self.spec.get("kind", "direct")
        t = self.timesteps
        if kind == "rate":
            p = (float(self.spec.get("gain", 1.0)) * x).clamp(0.0, 1.0)
            s = (self.noise.unsqueeze(1) < p.unsqueeze(0)).to(x.dtype)
        elif kind == "latency":
            thr = float(self.spec.get("threshold", 0.0))
            step = torch.round((1.0 - x.clamp(0.0, 1.0)) * (t - 1))
            steps = torch.arange(t, dtype=x.dtype).reshape(t, *([1] * x.dim()))
            s = ((steps == step.unsqueeze(0)) & (x.unsqueeze(0) > thr)).to(x.dtype)
        else:
            s = x.unsqueeze(0).expand(t, *x.shape)
        out: torch.Tensor = self.snn(s)
        return out.transpose(0, 1)


def is_binary_encoder(encoder: dict[str, Any] | None) -> bool:
    """Whether the encoder emits binary spikes (what a Loihi artifact takes)."""
    return (encoder or {}).get("kind", "direct") in ("rate", "latency")


def run_model(program: Program, x: torch.Tensor) -> Any:
    """The program's own output for raw input ``x`` ``[B, *input_shape]`` (an SNN's is ``[T, B, ...]``).

    The one place edgec runs a program on a batch. A graph traced for a fixed batch
    (``program.static_batch``, e.g. a ``torch.export`` program exported at batch 1) gets ``x`` in
    pieces of that size (the last one padded by repeating its last sample, the padding dropped
    again) and the outputs are joined; other programs get the whole batch at once.
    """
    size = program.static_batch
    if size is None or int(x.shape[0]) == size:
        return _forward(program, x)
    n = int(x.shape[0])
    bdim = 1 if program.kind == "snn" else 0
    outs = []
    for start in range(0, n, size):
        chunk = x[start : start + size]
        real = int(chunk.shape[0])
        if real < size:
            pad = chunk[-1:].expand(size - real, *chunk.shape[1:])
            chunk = torch.cat([chunk, pad])
        outs.append(_take(_forward(program, chunk), bdim, real, size))
    return _join(outs, bdim)


def _forward(program: Program, x: torch.Tensor) -> Any:
    if program.kind == "snn":
        return program.module(encode(x, program.timesteps, program.encoder))
    return program.module(x)


def _take(out: Any, dim: int, n: int, size: int) -> Any:
    """The first ``n`` samples along ``dim`` of every tensor in ``out`` (a batch of ``size``)."""
    if isinstance(out, torch.Tensor):
        if out.dim() <= dim or int(out.shape[dim]) != size:
            from edgec.errors import ModelError

            raise ModelError(
                f"an output of shape {tuple(out.shape)} has no batch dimension of size {size} "
                f"(dimension {dim}); edgec cannot split batches for this fixed-batch graph",
                hint="export the model with a dynamic batch: torch.export.export(m, (x,), "
                "dynamic_shapes=({0: torch.export.Dim('batch')},))",
            )
        return out.narrow(dim, 0, n)
    if isinstance(out, dict):
        return {k: _take(v, dim, n, size) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        items = [_take(v, dim, n, size) for v in out]
        return type(out)(*items) if hasattr(out, "_fields") else type(out)(items)
    return out


def _join(outs: list[Any], dim: int) -> Any:
    first = outs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(outs, dim)
    if isinstance(first, dict):
        return {k: _join([o[k] for o in outs], dim) for k in first}
    if isinstance(first, (tuple, list)):
        items = [_join([o[i] for o in outs], dim) for i in range(len(first))]
        return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)
    return first


def named_outputs(out: Any) -> dict[str, torch.Tensor]:
    """A model's output as ``{name: tensor}`` (edgec.program: ``output``, ``output_0``, dict keys)."""
    named: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str | None) -> None:
        if isinstance(value, torch.Tensor):
            named[path or "output"] = value
        elif isinstance(value, dict) or hasattr(value, "_fields"):
            items = value.items() if isinstance(value, dict) else zip(value._fields, value, strict=True)
            for k, v in items:
                walk(v, str(k) if path is None else f"{path}.{k}")
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                walk(v, f"output_{i}" if path is None else f"{path}.{i}")
        # anything else (None, numbers, strings) is not an output array

    walk(out, None)
    return named


@contextlib.contextmanager
def inference(module: nn.Module) -> Iterator[None]:
    """``no_grad`` and eval mode for the duration, restoring the module's own mode afterwards."""
    was_training = module.training
    try:
        module.eval()
    except NotImplementedError:  # a module that cannot switch (runs as it was traced)
        was_training = False
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            module.train(True)


def run_outputs(program: Program, x: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """The program's outputs for raw input ``x`` ``[N, *input_shape]`` by name, batch first, in
    inference mode: what every target's session is compared with. An SNN's output is its spikes
    ``[N, T, *out]``."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x
    with inference(program.module):
        named = named_outputs(run_model(program, xt))
    if program.kind == "snn":
        named = {k: v.transpose(0, 1) for k, v in named.items()}
    return {k: v.detach().cpu().numpy() for k, v in named.items()}


def output_specs(program: Program) -> tuple[OutputSpec, ...]:
    """The program's outputs by name and per-sample shape, from one run on its example input."""
    from edgec.program import OutputSpec

    outs = run_outputs(program, program.example_input)
    return tuple(OutputSpec(name, tuple(int(d) for d in v.shape[1:])) for name, v in outs.items())


def predict(program: Program, x: torch.Tensor) -> torch.Tensor:
    """Class scores ``[B, C]`` of the first output: an ANN's output, or an SNN's spikes summed over time."""
    out = next(iter(named_outputs(run_model(program, x)).values()))
    return out.sum(0) if program.kind == "snn" else out


# ---- surrogate gradient ------------------------------------------------------------------------
class SpikeFunction(torch.autograd.Function):
    """Heaviside ``x > 0`` forward; fast-sigmoid surrogate ``1 / (1 + slope * |x|)**2`` backward.

    ``x`` is the threshold-normalised distance ``(v - threshold) / threshold``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        grad = grad_outputs[0] / (1.0 + ctx.slope * x.abs()) ** 2
        return grad, None


def spike(x: torch.Tensor, slope: float = 10.0) -> torch.Tensor:
    out: torch.Tensor = SpikeFunction.apply(x, slope)
    return out


# ---- layers ------------------------------------------------------------------------------------
class CubaLIF(nn.Module):
    """Current-based LIF neuron with Loihi semantics over time-major input (module docstring).

    Args:
        features: neurons (``Linear`` output) or channels (``Conv2d`` output); needed only with
            ``bias=True`` (one bias per neuron, or per channel shared over the spatial positions).
        du: current decay per step, in [0, 1] (0: no decay; 1: the current is this step's input).
        dv: voltage decay per step, in [0, 1].
        threshold: spike when ``v > threshold`` (> 0).
        bias: learn a bias added to the voltage every step (Loihi's ``bias_mant``).
        slope: steepness of the surrogate gradient.
        detach_reset: do not backpropagate through the reset (common practice; stabler training).

    Decays and the threshold are per-layer scalars, as netx stores them.
    """

    is_spiking_neuron = True

    du: torch.Tensor
    dv: torch.Tensor
    threshold: torch.Tensor

    def __init__(
        self,
        features: int | None = None,
        *,
        du: float = 0.5,
        dv: float = 0.25,
        threshold: float = 1.0,
        bias: bool = False,
        slope: float = 10.0,
        detach_reset: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= du <= 1.0 or not 0.0 <= dv <= 1.0:
            raise ValueError(f"CubaLIF decays must lie in [0, 1], got du={du}, dv={dv}")
        if not threshold > 0.0:
            raise ValueError(f"CubaLIF threshold must be > 0, got {threshold}")
        if bias and features is None:
            raise ValueError("CubaLIF(bias=True) needs `features` (neurons or channels)")
        self.features = features
        self.register_buffer("du", torch.tensor(float(du)))
        self.register_buffer("dv", torch.tensor(float(dv)))
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.bias = nn.Parameter(torch.zeros(features)) if bias and features is not None else None
        self.slope = slope
        self.detach_reset = detach_reset

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, du={float(self.du):g}, dv={float(self.dv):g}, "
            f"threshold={float(self.threshold):g}, bias={self.bias is not None}"
        )

    def _bias(self, x: torch.Tensor) -> torch.Tensor | float:
        if self.bias is None:
            return 0.0
        if x.dim() > 3:  # [T, B, C, *spatial]: one bias per channel
            return self.bias.reshape(-1, *([1] * (x.dim() - 3)))
        return self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Synaptic input ``[T, B, ...]`` -> spikes ``[T, B, ...]`` (0/1, same dtype)."""
        if x.dim() < 2:
            raise ValueError(f"CubaLIF takes time-major input [T, B, ...], got shape {tuple(x.shape)}")
        bias = self._bias(x)
        keep_u, keep_v = 1.0 - self.du, 1.0 - self.dv
        u = torch.zeros_like(x[0])
        v = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            u = keep_u * u + x[t]
            v = keep_v * v + u + bias
            s = spike((v - self.threshold) / self.threshold, self.slope)
            v = v * (1.0 - (s.detach() if self.detach_reset else s))
            out.append(s)
        return torch.stack(out)


class TimeDistributed(nn.Module):
    """Apply a per-step module (e.g. ``nn.Conv2d``) to every step of ``[T, B, ...]`` at once.

    Time is folded into the batch: the wrapped module receives ``[T*B, ...]``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[0], x.shape[1]
        y = self.module(x.reshape(t * b, *x.shape[2:]))
        return y.reshape(t, b, *y.shape[1:])


class LIF(CubaLIF):
    """Leaky integrate-and-fire without a current state: :class:`CubaLIF` with ``du = 1``.

    Per step ``v[t] = (1 - dv) v[t-1] + x[t] + b``, spike ``v > threshold``, reset to 0 -- Loihi's CUBA
    neuron with ``iDecay = 4096`` (the current is each step's input). NIR's ``LIF`` maps here
    (docs/nir.md: ``dv = dt / tau``, the input scaled by ``dv r``, ``b = dv v_leak``).
    """

    def __init__(
        self,
        features: int | None = None,
        *,
        dv: float = 0.25,
        threshold: float = 1.0,
        bias: bool = False,
        slope: float = 10.0,
        detach_reset: bool = True,
    ) -> None:
        super().__init__(
            features, du=1.0, dv=dv, threshold=threshold, bias=bias, slope=slope, detach_reset=detach_reset
        )


class IF(LIF):
    """Integrate-and-fire: :class:`LIF` with ``dv = 0`` (no leak): ``v[t] = v[t-1] + x[t] + b``."""

    def __init__(
        self,
        features: int | None = None,
        *,
        threshold: float = 1.0,
        bias: bool = False,
        slope: float = 10.0,
        detach_reset: bool = True,
    ) -> None:
        super().__init__(
            features, dv=0.0, threshold=threshold, bias=bias, slope=slope, detach_reset=detach_reset
        )


class LI(nn.Module):
    """Leaky integrator, a non-spiking readout: ``v[t] = (1 - dv) v[t-1] + x[t] + b``, output ``v``.

    NIR's ``LI`` (``dv = dt / tau``) and ``I`` (``dv = 0``) map here. Loihi's netx layers end in a
    spiking neuron, so the Loihi target refuses it as a readout (``edgec check`` says so); the CPU
    runs it.
    """

    is_spiking_neuron = True  # a neuron layer of the vocabulary (state over time), though it emits voltages

    dv: torch.Tensor

    def __init__(self, features: int | None = None, *, dv: float = 0.25, bias: bool = False) -> None:
        super().__init__()
        if not 0.0 <= dv <= 1.0:
            raise ValueError(f"LI decay must lie in [0, 1], got dv={dv}")
        if bias and features is None:
            raise ValueError("LI(bias=True) needs `features` (neurons or channels)")
        self.features = features
        self.register_buffer("dv", torch.tensor(float(dv)))
        self.bias = nn.Parameter(torch.zeros(features)) if bias and features is not None else None

    def extra_repr(self) -> str:
        return f"features={self.features}, dv={float(self.dv):g}, bias={self.bias is not None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input ``[T, B, ...]`` -> voltages ``[T, B, ...]``."""
        if x.dim() < 2:
            raise ValueError(f"LI takes time-major input [T, B, ...], got shape {tuple(x.shape)}")
        bias: torch.Tensor | float = 0.0
        if self.bias is not None:
            bias = self.bias.reshape(-1, *([1] * (x.dim() - 3))) if x.dim() > 3 else self.bias
        keep = 1.0 - self.dv
        v = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            v = keep * v + x[t] + bias
            out.append(v)
        return torch.stack(out)


#: neuron classes of the vocabulary (targets and the energy counter look them up here)
NEURON_TYPES: tuple[type[nn.Module], ...] = (CubaLIF, LIF, IF, LI)


def is_spiking_neuron(module: nn.Module) -> bool:
    """A spiking neuron layer: ours, or any class that declares ``is_spiking_neuron = True``."""
    return isinstance(module, NEURON_TYPES) or bool(getattr(type(module), "is_spiking_neuron", False))


def is_spiking(module: nn.Module) -> bool:
    """Whether ``module`` contains spiking neurons (then it runs time-major, as an SNN)."""
    return any(is_spiking_neuron(m) for m in module.modules())


def snn_defaults(module: nn.Module) -> dict[str, Any]:
    """Timesteps and encoder of a spiking module that came without a zoo entry.

    A model may declare them as attributes ``timesteps`` and ``encoder`` (a dict as in
    :func:`encode`); otherwise :data:`DEFAULT_TIMESTEPS` steps and :data:`DEFAULT_ENCODER`.
    """
    timesteps = getattr(module, "timesteps", None)
    encoder = getattr(module, "encoder", None)
    if not isinstance(timesteps, int) or timesteps < 1:
        log.info(
            "spiking model without a `timesteps` attribute: using %d (override with --timesteps)",
            DEFAULT_TIMESTEPS,
        )
        timesteps = DEFAULT_TIMESTEPS
    if not isinstance(encoder, dict) or encoder.get("kind") not in ENCODERS:
        encoder = dict(DEFAULT_ENCODER)
    return {"kind": "snn", "timesteps": timesteps, "encoder": encoder}
