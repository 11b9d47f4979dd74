"""Per-layer-group mixed precision for the search: rank the compressible layers by quantization sensitivity.

Before a search whose space has the reserved parameter ``wide`` starts, the driver ranks, once, the layer
groups a quantization pass squeezes -- every ``nn.Conv2d`` / ``nn.Linear`` synapse except the first and the
last, which the per-layer policy (:mod:`edgec.policy`) keeps at ``edge_bits`` already -- by how much
quantizing that group *alone* changes the model's outputs on calibration data:

    score_i = 1/N sum_j KL( softmax(f(x_j; W)) || softmax(f(x_j; W with layer i quantized to b bits)) )

the perturbation sensitivity of ZeroQ (Cai et al., "ZeroQ: A Novel Zero Shot Quantization Framework",
CVPR 2020, eq. 4: the KL divergence between the full-precision model's output and the output with only
layer i quantized), here on the first ``samples`` training samples instead of ZeroQ's distilled data.
HAWQ (Dong et al., ICCV 2019) ranks by the Hessian's top eigenvalue / trace instead; the perturbation form
needs no second-order pass, is label-free and runs the model as the targets do (an SNN's spike counts over
its T steps). The quantizer is symmetric uniform max-abs per tensor at the search's lowest ``bits``: a
weight tensor with a large dynamic range loses most of its levels to its outliers and ranks high.

Why by hand: nncf 3.x's mixed-precision criteria (``HAWQCriterion``, ``MeanVarianceCriterion``, ... in
``nncf.quantization.algorithms.weight_compression.mixed_precision``) are private parts of
``compress_weights`` on an NNCF graph of Linear/MatMul nodes (an LLM's int4/int8 split by a ratio) and
return no scores; the torch HAWQ precision initialiser of nncf 2.x needed an ``NNCFNetwork`` and is gone;
NVIDIA Model Optimizer's ``auto_quantize`` is not installed here and searches its own formats on its own
quantized modules. None runs a spiking network over time steps. The loop below is a few forward passes.

A trial with ``wide = k`` keeps the k highest-ranked groups at :data:`WIDE_BITS` (8): the driver adds
``layers=NAME:8+...`` to every recipe whose pass takes per-layer widths (:func:`widen_recipes`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edgec.errors import UsageError

#: the width of the layers a trial keeps wide
WIDE_BITS = 8
#: calibration samples the ranking runs on (the first ones of the training data, in order)
SAMPLES = 256
METHOD = "zeroq-kl"  # see the module docstring


@dataclass(frozen=True)
class Sensitivity:
    """The ranking: ``groups`` most sensitive first, each ``{"layer", "score", "order"}``."""

    bits: int
    samples: int
    groups: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    method: str = METHOD
    wall_s: float = 0.0

    @property
    def ranking(self) -> tuple[str, ...]:
        return tuple(g["layer"] for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "measure": "mean KL(float outputs || outputs with only this layer quantized), ZeroQ eq. 4",
            "bits": self.bits,
            "wide_bits": WIDE_BITS,
            "samples": self.samples,
            "groups": [dict(g) for g in self.groups],
            "wall_s": self.wall_s,
        }


def compressible_groups(module: Any) -> list[str]:
    """The synapses a quantization pass squeezes at its ``bits``: all but the first and the last (kept at
    ``edge_bits`` by the default policy), in execution order."""
    from edgec.policy import synapses_in_order

    names = [n for n, _ in synapses_in_order(module)]
    return names[1:-1]


def quantize_max_abs(w: Any, bits: int) -> Any:
    """Symmetric uniform quantization per tensor: step max|w| / (2^(bits-1) - 1), round to nearest."""
    import torch

    levels = 2 ** (max(bits, 2) - 1) - 1
    scale = w.abs().max() / levels
    if float(scale) == 0.0:
        return w.clone()
    return torch.round(w / scale).clamp(-levels, levels) * scale


def rank_groups(
    program: Any, x: Any, *, bits: int, seed: int, device: str = "cpu", batch_size: int = 64
) -> Sensitivity:
    """Score and rank the compressible groups of ``program`` on inputs ``x`` (numpy, first samples used).

    Deterministic for a seed: the inputs are taken in order, an SNN's rate coding uses the program's
    recorded encoder (seeded), and ties keep execution order."""
    import time

    import torch
    from torch.nn import functional as F

    from edgec.finetune import resolve_device
    from edgec.passes.training import copy_program, model_input

    started = time.perf_counter()
    torch.manual_seed(seed)
    prog = copy_program(program)
    dev = resolve_device(device)
    module = prog.module.to(dev).eval()
    names = compressible_groups(module)
    x = x[:SAMPLES]
    # encoded once (an SNN's spike trains over its T steps), reused for every group
    batches = [
        model_input(prog, torch.from_numpy(x[i : i + batch_size])).to(dev)
        for i in range(0, len(x), batch_size)
    ]

    def log_probs() -> list[Any]:
        with torch.no_grad():
            outs = [module(b) for b in batches]
            logits = [o.sum(0) if prog.kind == "snn" else o for o in outs]  # spike counts over time
            return [F.log_softmax(z.float(), dim=1) for z in logits]

    reference = log_probs()
    groups: list[dict[str, Any]] = []
    for order, name in enumerate(names):
        weight: Any = module.get_submodule(name).weight
        kept = weight.data.clone()
        weight.data = quantize_max_abs(kept, bits)
        try:
            perturbed = log_probs()
        finally:
            weight.data = kept
        kl = sum(
            float(F.kl_div(q, p, log_target=True, reduction="sum"))
            for p, q in zip(reference, perturbed, strict=True)
        ) / max(1, len(x))
        groups.append({"layer": name, "score": round(kl, 8), "order": order})
    groups.sort(key=lambda g: (-g["score"], g["order"]))
    wall = round(time.perf_counter() - started, 3)
    return Sensitivity(bits=bits, samples=len(x), groups=tuple(groups), wall_s=wall)


def check_wide(values: list[Any], groups: list[str], where: str) -> None:
    """Every ``wide`` value is a whole number from 0 to the number of compressible groups."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > len(groups):
            raise UsageError(
                f"{where}: wide={v!r} is not a number of layer groups from 0 to {len(groups)}",
                hint=f"the model's compressible groups (first and last synapse excluded): "
                f"{', '.join(groups) or '(none)'}",
            )


def _join(m: re.Match[str], extra: str) -> str:
    own = m.group(2).strip()
    return f"{m.group(1)}{own}+{extra}" if own else f"{m.group(1)}{extra}"


def widen_recipes(recipes: list[str], layers: tuple[str, ...] | list[str]) -> list[str]:
    """Add ``layers=NAME:8+...`` to every recipe whose pass takes per-layer widths (a recipe's own
    ``layers=`` overrides are kept, the wide layers appended: they win for those names)."""
    if not layers:
        return list(recipes)
    from edgec.recipes import describe

    extra = "+".join(f"{n}:{WIDE_BITS}" for n in layers)
    out = []
    for r in recipes:
        name = r.partition(":")[0].strip()
        if "layers" not in {o.name for o in describe(name).options}:
            out.append(r)
        elif re.search(r"(^|[:,])\s*layers\s*=", r):
            out.append(re.sub(r"((?:^|[:,])\s*layers\s*=\s*)([^,]*)", lambda m: _join(m, extra), r, count=1))
        else:
            out.append(f"{r}{',' if ':' in r else ':'}layers={extra}")
    return out
