"""ANN-to-SNN conversion: a trained ReLU network becomes a rate-coded spiking network of IF neurons.

The method is data-based threshold balancing (Diehl et al. 2015, "Fast-classifying, high-accuracy
spiking deep networks through weight and threshold balancing"; the percentile of Rueckauer et al.
2017, "Conversion of continuous-valued deep networks to efficient event-driven networks"): a ReLU's
output ``a = max(0, W x + b)`` is read as a firing rate. With ``lambda_l`` the ``percentile`` of layer
``l``'s ReLU outputs on the calibration data (``lambda_0``: of the input), every layer becomes::

    synapse  W' = W lambda_{l-1} / lambda_l          (bias b' = b / lambda_l, added every step)
    neuron   IF: v <- v + W' s + b',  spike v > 1,  v <- 0          (Loihi's CUBA with du = 1, dv = 0)

so a neuron's rate approximates ``a / lambda_l`` (clipped at 1 spike per step). The input is rate
coded (Bernoulli spikes, ``p = x / lambda_0``); the class is the output neuron with the most spikes
over ``T`` steps. Loihi resets the voltage to 0 (not by subtraction), which loses the charge above
the threshold at each spike: a larger ``T`` or a higher percentile trades latency against that error.

What converts: ``Conv2d`` / ``Linear`` (with bias), ``BatchNorm`` after them (folded, eval statistics),
``ReLU``, ``AvgPool2d`` (folded into a following ``Linear`` where one follows a flatten, exactly;
elsewhere a depthwise strided convolution with weights ``1/k^2`` and its own IF layer), ``Flatten``,
``Dropout`` / ``Identity``; the last synapse (no ReLU) is the readout. ``MaxPool2d`` has no spiking
equivalent on Loihi: refused, or with ``maxpool=avg`` replaced by average pooling (the stats report
the ANN's accuracy both ways, so the change is never silent). Anything else (residual adds, other
activations) is a usage error naming the node.

The converted network is an ``nn.Sequential`` of edgec layers, recorded in the program store as a
``layers`` architecture (:mod:`edgec.netspec`): no pickle, no replay of the conversion needed.
"""

from __future__ import annotations

import copy
import logging
import operator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import fx, nn

from edgec.errors import DataError, UsageError
from edgec.options import option
from edgec.passes.base import Pass, PassContext, PassResult
from edgec.program import Program

log = logging.getLogger(__name__)

_SKIP = (nn.Dropout, nn.Identity, nn.Dropout2d)
_FLATTEN_FN = {"flatten", "view", "reshape"}


@dataclass
class _Stage:
    """One converted layer: a synapse (+ its activation), or a flatten."""

    kind: str  # "synapse" | "flatten"
    name: str
    synapse: nn.Module | None = None  # a Conv2d / Linear with the folded BN and bias
    relu: bool = False
    pooled_from: str | None = None  # an average pool folded into this Linear
    notes: list[str] = field(default_factory=list)


def _fold_bn(syn: nn.Module, bn: nn.Module) -> None:
    """BatchNorm (eval statistics) into the synapse before it: exact."""
    assert isinstance(syn, (nn.Conv2d, nn.Linear))  # stages() folds only into these
    assert isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d))  # stages() checks the type
    rv = bn.running_var
    rm = bn.running_mean
    if rv is None or rm is None:
        raise UsageError(
            f"ann2snn: {type(bn).__name__} has no running statistics (track_running_stats=False), "
            "so it cannot be folded into the layer before it",
            hint="train the ANN with track_running_stats=True, or fold the normalization into the weights",
        )
    std = torch.sqrt(rv + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    with torch.no_grad():
        syn.weight.mul_(scale.reshape(-1, *([1] * (syn.weight.dim() - 1))))
        bias = syn.bias if syn.bias is not None else torch.zeros_like(rm)
        new_bias = (bias - rm) * scale + beta
        syn.bias = nn.Parameter(new_bias.detach().clone())


def _pool_conv(pool: Any, channels: int) -> nn.Conv2d:
    """Average pooling as a depthwise strided convolution (the same linear map)."""
    k = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (pool.kernel_size, pool.kernel_size)
    stride = pool.stride if pool.stride is not None else k
    conv = nn.Conv2d(channels, channels, k, stride=stride, padding=pool.padding, groups=channels, bias=True)
    with torch.no_grad():
        conv.weight.fill_(1.0 / (k[0] * k[1]))
        assert conv.bias is not None  # built with bias=True
        conv.bias.zero_()
    return conv


def _trace_chain(module: nn.Module) -> list[tuple[str, Any]]:
    """The ANN's operations in order, as (label, module or function name); refuses branching graphs."""
    try:
        gm = fx.symbolic_trace(module)
    except Exception as exc:
        raise UsageError(
            f"ann2snn: torch.fx cannot trace the model ({str(exc).splitlines()[0]})",
            hint="ann2snn converts plain sequential ReLU networks (Conv / Linear / BN / ReLU / AvgPool)",
        ) from None
    mods = dict(gm.named_modules())
    ops: list[tuple[str, Any]] = []
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        inputs = [a for a in node.all_input_nodes if a.op != "get_attr"]
        if len([u for u in node.users if u.op != "output"]) > 1 or len(inputs) > 1:
            raise UsageError(
                f"ann2snn: node '{node.name}' branches or merges the graph (residual / concat)",
                hint="ann2snn converts sequential networks (netx connects layers strictly in sequence)",
            )
        if node.op == "call_module":
            ops.append((str(node.target), mods[str(node.target)]))
            continue
        name = str(getattr(node.target, "__name__", node.target))
        if node.target in (torch.relu, nn.functional.relu) or name in ("relu", "relu_"):
            ops.append((node.name, "relu"))
        elif name in ("avg_pool2d", "max_pool2d"):
            args = [*node.args[1:], None, None, None]
            kernel = args[0] if args[0] is not None else node.kwargs["kernel_size"]
            stride = args[1] if args[1] is not None else node.kwargs.get("stride") or kernel
            padding = args[2] if args[2] is not None else node.kwargs.get("padding", 0)
            pool = nn.AvgPool2d if name == "avg_pool2d" else nn.MaxPool2d
            ops.append((node.name, pool(kernel, stride, padding)))
        elif name in _FLATTEN_FN or node.target is torch.flatten:
            ops.append((node.name, "flatten"))
        elif name in ("size", "dim", "contiguous", "dropout") or node.target is operator.getitem:
            continue
        else:
            raise UsageError(
                f"ann2snn: operation '{name}' ({node.name}) has no spiking equivalent here",
                hint="convertible: Conv2d, Linear, BatchNorm, ReLU, AvgPool2d, Flatten, Dropout",
            )
    return ops


@dataclass
class ANN2SNN(Pass):
    """Trained ReLU network -> rate-coded IF network, data-based threshold balancing (module docstring)."""

    name: ClassVar[str] = "ann2snn"
    needs: ClassVar[frozenset[str]] = frozenset({"calibration"})
    before_target: ClassVar[bool] = True  # the target sees the spiking network
    changes_function: ClassVar[bool] = True  # artifacts store the converted network; verify compares with it
    model_kind: ClassVar[str | None] = "ann"
    description: ClassVar[str] = "ReLU ANN -> rate-coded IF SNN, threshold balancing on calibration data"

    timesteps: int = option(32, "timesteps T of the spiking network", minimum=1, maximum=4096)
    percentile: float = option(
        99.9,
        "percentile of each layer's ReLU outputs that maps to one spike per step",
        minimum=50.0,
        maximum=100.0,
    )
    maxpool: str = option(
        "refuse",
        "MaxPool2d: refuse, or replace it by average pooling (the ANN's accuracy both ways is reported)",
        choices=("refuse", "avg"),
    )
    samples: int = option(256, "calibration samples for the activation statistics", minimum=1)
    seed: int = option(0, "seed of the rate-coding noise")

    def requires(self, program: Program) -> None:
        if program.kind != "ann":
            raise UsageError("ann2snn converts a non-spiking network; this model is already spiking")

    # ---- structure ----------------------------------------------------------------------------------
    def stages(self, module: nn.Module) -> tuple[list[_Stage], list[str]]:
        ops = _trace_chain(module)
        stages: list[_Stage] = []
        notes: list[str] = []
        pending_pool: tuple[str, nn.Module] | None = None
        for label, op in ops:
            if isinstance(op, (nn.Conv2d, nn.Linear)):
                syn = copy.deepcopy(op)
                if isinstance(syn, nn.Conv2d) and (
                    syn.padding_mode != "zeros" or isinstance(syn.padding, str)
                ):
                    raise UsageError(f"ann2snn: {label} uses padding={syn.padding!r} / {syn.padding_mode}")
                if syn.bias is None:
                    out_features = syn.out_channels if isinstance(syn, nn.Conv2d) else syn.out_features
                    syn.bias = nn.Parameter(torch.zeros(out_features))
                stage = _Stage("synapse", label, syn)
                if pending_pool is not None:
                    stage.pooled_from = pending_pool[0]
                    stage.notes.append(f"{pending_pool[0]} folded into this layer")
                    stage.synapse = _PoolThen(pending_pool[1], syn)  # folded after shapes are known
                    pending_pool = None
                stages.append(stage)
            elif isinstance(op, (nn.BatchNorm1d, nn.BatchNorm2d)):
                last = stages[-1] if stages else None
                if last is None or last.kind != "synapse" or last.relu or last.pooled_from:
                    raise UsageError(
                        f"ann2snn: {label} does not follow a Conv2d / Linear", hint="fold it first"
                    )
                inner = last.synapse.inner if isinstance(last.synapse, _PoolThen) else last.synapse
                assert inner is not None  # a synapse stage holds its synapse
                _fold_bn(inner, op)
                last.notes.append(f"{label} folded")
            elif op == "relu" or isinstance(op, nn.ReLU):
                if not stages or stages[-1].kind != "synapse" or stages[-1].relu:
                    raise UsageError(f"ann2snn: ReLU {label} does not follow a synapse")
                stages[-1].relu = True
            elif isinstance(op, (nn.AvgPool2d, nn.MaxPool2d)):
                if isinstance(op, nn.MaxPool2d):
                    if self.maxpool != "avg":
                        raise UsageError(
                            f"ann2snn: {label} is max pooling, which has no spiking equivalent on Loihi",
                            hint="use ann2snn:maxpool=avg to convert it as average pooling (the accuracy "
                            "change is reported), or train the ANN with AvgPool2d",
                        )
                    notes.append(f"{label}: MaxPool2d converted as AvgPool2d (maxpool=avg)")
                    op = nn.AvgPool2d(op.kernel_size, op.stride, op.padding)
                if not stages or not stages[-1].relu:
                    raise UsageError(f"ann2snn: pooling {label} must follow a ReLU")
                pending_pool = (label, op)
            elif op == "flatten" or isinstance(op, nn.Flatten):
                stages.append(_Stage("flatten", label))
            elif isinstance(op, _SKIP):
                continue
            else:
                raise UsageError(
                    f"ann2snn: layer {label} ({type(op).__name__}) has no spiking equivalent here",
                    hint="convertible: Conv2d, Linear, BatchNorm, ReLU, AvgPool2d, Flatten, Dropout",
                )
        if pending_pool is not None:
            raise UsageError(f"ann2snn: the model ends with pooling ({pending_pool[0]})")
        synapses = [s for s in stages if s.kind == "synapse"]
        if not synapses:
            raise UsageError("ann2snn: the model has no Conv2d / Linear layer")
        if synapses[-1].relu:
            notes.append("the readout ends in a ReLU: the output layer spikes as the others")
        if any(s.relu is False for s in synapses[:-1]):
            bad = next(s for s in synapses[:-1] if not s.relu)
            raise UsageError(f"ann2snn: {bad.name} is followed by no ReLU (only the readout may be linear)")
        return stages, notes

    # ---- conversion ---------------------------------------------------------------------------------
    def call(self, program: Program, ctx: PassContext) -> PassResult:
        from edgec.netspec import spec_of
        from edgec.snn import IF, TimeDistributed

        assert ctx.calib is not None  # the manager checks `needs`
        module = program.module
        stages, notes = self.stages(module)
        x, y = ctx.calib.arrays(self.samples)
        if np.min(x) < 0:
            raise DataError(
                "ann2snn rate-codes the input, which needs values >= 0; the calibration data has "
                f"{np.min(x):g}",
                hint="give the model inputs in [0, 1] (normalise inside the model instead)",
            )
        xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
        ann = _AnnView(stages, program.input_shape)  # the float ANN these stages compute (pools folded)
        with torch.no_grad():
            acts = ann.activations(xt)
        lam_in = float(np.percentile(xt.numpy(), self.percentile)) or 1.0
        lam_in = max(lam_in, float(xt.max()))  # the input must stay a probability: p = x / lambda_0 <= 1
        layers: list[nn.Module] = []
        scales: list[dict[str, Any]] = []
        prev = lam_in
        for stage, act in zip(ann.synapse_stages, acts, strict=True):
            if ann.flatten_before(stage):
                layers.append(nn.Flatten(start_dim=2))
            syn: Any = ann.folded(stage)
            pos = act[act > 0]
            lam = float(np.percentile(pos.numpy(), self.percentile)) if pos.numel() else 1.0
            lam = lam if lam > 0 else 1.0
            weight = syn.weight.detach() * (prev / lam)
            bias = syn.bias.detach() / lam if syn.bias is not None else None
            channels = int(weight.shape[0])
            if isinstance(syn, nn.Conv2d):
                conv = copy.deepcopy(syn)  # same geometry; the bias moves to the neuron
                conv.bias = None
                with torch.no_grad():
                    conv.weight.copy_(weight)
                layers.append(TimeDistributed(conv))
            else:
                lin = nn.Linear(syn.in_features, syn.out_features, bias=False)
                with torch.no_grad():
                    lin.weight.copy_(weight)
                layers.append(lin)
            has_bias = bias is not None and bool(torch.any(bias != 0))
            neuron = IF(channels if has_bias else None, threshold=1.0, bias=has_bias)
            if has_bias:
                assert neuron.bias is not None and bias is not None  # has_bias: bias given, IF built with one
                with torch.no_grad():
                    neuron.bias.copy_(bias)
            layers.append(neuron)
            scales.append({"layer": stage.name, "lambda": lam, "notes": stage.notes})
            prev = lam
        snn = nn.Sequential(*layers).eval()
        encoder = {"kind": "rate", "gain": 1.0 / lam_in, "seed": self.seed}
        converted = program.replace(
            module=snn,
            kind="snn",
            timesteps=self.timesteps,
            encoder=encoder,
            metadata={
                **program.metadata,
                "arch_spec": spec_of(snn),
                "origin": program.metadata.get("origin") or program.source.to_dict(),
            },
            outputs=(),
        )
        from edgec.loading import validate_program

        converted = validate_program(converted)
        stats: dict[str, Any] = {
            "method": "threshold balancing (Diehl 2015) at the "
            f"{self.percentile:g}th percentile (Rueckauer 2017), IF neurons with reset to 0, rate coding",
            "timesteps": self.timesteps,
            "input_scale": lam_in,
            "layers": scales,
            "notes": notes,
            "calibration_samples": len(x),
        }
        if y is not None:
            stats.update(self._accuracies(program, ann, converted, xt, y))
        return PassResult(converted, modified=True, stats=stats)

    def _accuracies(
        self, program: Program, ann: _AnnView, converted: Program, x: torch.Tensor, y: np.ndarray
    ) -> dict[str, Any]:
        from edgec.snn import inference, predict

        with inference(program.module):
            original = float((program.module(x).argmax(1).numpy() == y).mean())
        with torch.no_grad():
            as_converted = float((ann(x).argmax(1).numpy() == y).mean())
        curve = {}
        for t in sorted({max(1, self.timesteps // 4), max(1, self.timesteps // 2), self.timesteps}):
            prog = converted.replace(timesteps=t)
            with inference(prog.module):
                curve[str(t)] = float((predict(prog, x).argmax(1).numpy() == y).mean())
        return {
            "data": "calibration samples",
            "accuracy_ann": original,
            "accuracy_ann_as_converted": as_converted,  # differs from accuracy_ann only with maxpool=avg
            "accuracy_snn_vs_timesteps": curve,
        }


class _PoolThen(nn.Module):
    """An average pool followed by a synapse, until it is folded into one synapse."""

    def __init__(self, pool: nn.Module, inner: nn.Module) -> None:
        super().__init__()
        self.pool = pool
        self.inner = inner


class _AnnView:
    """The float ANN the stages compute (BN folded, pools in place), with each synapse's ReLU outputs."""

    def __init__(self, stages: list[_Stage], input_shape: tuple[int, ...]) -> None:
        self.stages = stages
        self.synapse_stages = [s for s in stages if s.kind == "synapse"]
        self.input_shape = input_shape
        self._folded: dict[str, nn.Module] = {}
        self._flat_before: dict[str, list[str]] = {}
        self._expanded: list[tuple[_Stage, nn.Module | None]] = []
        shape = input_shape
        pending_flat: list[str] = []
        for s in stages:
            if s.kind == "flatten":
                pending_flat.append(s.name)
                continue
            assert s.synapse is not None  # not a flatten: a synapse stage, which holds one
            syn = s.synapse
            if isinstance(syn, _PoolThen):
                syn, shape, extra = self._fold_pool(s, syn, shape, bool(pending_flat))
                if extra is not None:  # a pool that stays a layer of its own (depthwise conv + IF)
                    pool_stage = _Stage("synapse", s.pooled_from or "pool", extra, relu=True)
                    pool_stage.notes.append("average pooling as a depthwise strided conv")
                    self._folded[pool_stage.name] = extra
                    self._flat_before[pool_stage.name] = []
                    self.synapse_stages.insert(self.synapse_stages.index(s), pool_stage)
                    self._expanded.append((pool_stage, extra))
                    with torch.no_grad():
                        shape = tuple(extra(torch.zeros(1, *shape)).shape[1:])
            self._flat_before[s.name] = pending_flat
            if pending_flat:
                shape = (int(np.prod(shape)),)
            pending_flat = []
            self._folded[s.name] = syn
            self._expanded.append((s, syn))
            with torch.no_grad():
                shape = tuple(syn(torch.zeros(1, *shape)).shape[1:])

    @staticmethod
    def _fold_pool(
        s: _Stage, pt: _PoolThen, shape: tuple[int, ...], flat_between: bool
    ) -> tuple[nn.Module, tuple[int, ...], nn.Module | None]:
        inner = pt.inner
        if isinstance(inner, nn.Linear) and flat_between:
            # Linear(flatten(pool(x))) = Linear'(flatten(x)): W' = W P, P the pooling matrix (exact)
            n = int(np.prod(shape))
            with torch.no_grad():
                basis = torch.eye(n).reshape(n, *shape)
                p = pt.pool(basis).reshape(n, -1).T  # [pooled, n]
                lin = nn.Linear(n, inner.out_features, bias=True)
                lin.weight.copy_(inner.weight @ p)
                assert inner.bias is not None and lin.bias is not None  # stages() gives every synapse a bias
                lin.bias.copy_(inner.bias)
            return lin, shape, None
        conv = _pool_conv(pt.pool, shape[0])
        s.notes.append("pooling kept as its own layer")
        return inner, shape, conv

    def folded(self, stage: _Stage) -> nn.Module:
        return self._folded[stage.name]

    def flatten_before(self, stage: _Stage) -> list[str]:
        return self._flat_before.get(stage.name, [])

    def _run(self, x: torch.Tensor, record: list[torch.Tensor] | None) -> torch.Tensor:
        for stage, syn in self._expanded:
            if self._flat_before.get(stage.name):
                x = x.flatten(1)
            assert syn is not None  # __init__ adds only built synapses
            x = syn(x)
            if stage.relu:
                x = torch.relu(x)
            if record is not None:
                record.append(x)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        self._run(x, out)
        return out
