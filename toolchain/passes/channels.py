"""Channel scores for structured pruning, and the prune step the pruning passes share.

Criteria (a higher score keeps the channel):

* ``svs`` (QP-SNN's singular-value criterion): the channel's spike activity on training inputs,
  averaged over time, as one ``H x W`` map per sample; the score is the sum of that map's singular
  values (its nuclear norm), averaged over samples. A channel whose spikes form a rich spatial pattern
  scores high; a silent or constant-ish channel low. For a dense layer (no spatial map) the channel's
  spike train over time is the matrix (``T x 1``: its norm). The paper's exact formula is not in public
  code; this is the reading in ../shared/reference/methods.md.
* ``magnitude``: the L1 norm of the channel's producer weights (Li et al., 2017: pruning filters).
* ``random``: a seeded random order (the ablation's floor).

``prune_channels`` removes ``floor(fraction * C)`` channels of every prunable group (at least one
channel stays), records each change as an edit (for :mod:`edgec.store`) and reports what it did.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgec.errors import UsageError
from edgec.surgery import ChannelGroup, channel_groups, prune_group

if TYPE_CHECKING:
    from edgec.data import Dataset
    from edgec.program import Program

CRITERIA = ("svs", "magnitude", "random")
SCORE_SAMPLES = 128  # training samples the activity-based criterion looks at


def _activity(
    program: Program, module: nn.Module, groups: list[ChannelGroup], x: np.ndarray
) -> dict[str, torch.Tensor]:
    """Each group's channel activity (the output of the neuron after its producer), ``[T, N, C, ...]``."""
    from edgec.passes.training import model_input

    captured: dict[str, list[torch.Tensor]] = {g.producer: [] for g in groups}
    handles = []
    for g in groups:
        where = g.activity or (g.between[-1] if g.between else g.producer)

        def hook(_m: nn.Module, _i: Any, out: torch.Tensor, key: str = g.producer) -> None:
            captured[key].append(out.detach())

        handles.append(module.get_submodule(where).register_forward_hook(hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), 64):
                module(model_input(program, torch.from_numpy(x[i : i + 64])))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    dim = 1 if program.kind == "snn" else 0  # the batch dimension of what the hooks saw
    return {k: torch.cat(v, dim=dim) for k, v in captured.items()}


def svs_scores(act: torch.Tensor, spiking: bool) -> torch.Tensor:
    """Nuclear norm of each channel's time-averaged spatial map, averaged over samples -> ``[C]``."""
    if spiking:
        if act.dim() == 5:  # [T, N, C, H, W] -> mean over time
            maps = act.float().mean(0)
            return torch.linalg.svdvals(maps).sum(-1).mean(0)
        # [T, N, C]: per sample and channel the spike train over T
        return act.float().norm(dim=0).mean(0)
    if act.dim() == 4:  # an ANN's [N, C, H, W] activation maps
        return torch.linalg.svdvals(act.float()).sum(-1).mean(0)
    return act.float().abs().mean(0)


def magnitude_scores(module: nn.Module, group: ChannelGroup) -> torch.Tensor:
    from edgec.fakequant import weight_of
    from edgec.surgery import _inner

    w = weight_of(_inner(module.get_submodule(group.producer))).detach()
    return w.abs().flatten(1).sum(1)


def scores_for(
    criterion: str,
    program: Program,
    module: nn.Module,
    groups: list[ChannelGroup],
    data: Dataset | None,
    seed: int,
) -> dict[str, torch.Tensor]:
    if criterion not in CRITERIA:
        raise UsageError(f"unknown criterion '{criterion}'", hint=f"choose one of: {', '.join(CRITERIA)}")
    if criterion == "magnitude":
        return {g.producer: magnitude_scores(module, g) for g in groups}
    if criterion == "random":
        gen = torch.Generator().manual_seed(seed)
        return {g.producer: torch.rand(g.channels, generator=gen) for g in groups}
    if data is None:
        raise UsageError("the svs criterion needs training data", hint="pass --train-data SRC")
    x, _ = data.arrays(SCORE_SAMPLES)
    act = _activity(program, module, groups, x)
    return {g.producer: svs_scores(act[g.producer], program.kind == "snn") for g in groups}


def score_channels(
    program: Program, criterion: str, data: Dataset | None, seed: int
) -> tuple[list[ChannelGroup], dict[str, str], dict[str, torch.Tensor]]:
    """The prunable groups of ``program.module``, why the other synapses are not prunable, and each
    group's channel scores (the module as it is: with its quantizers, if any, attached)."""
    from edgec.passes.training import model_input

    example = model_input(program, program.example_input[:1])
    groups, skipped = channel_groups(program.module, example)
    if not groups:
        raise UsageError(
            "no layer of this model can be pruned channel-wise",
            hint="; ".join(f"{k}: {v}" for k, v in skipped.items()) or "the model has no synapses",
        )
    return groups, skipped, scores_for(criterion, program, program.module, groups, data, seed)


def apply_pruning(
    program: Program,
    groups: list[ChannelGroup],
    scores: dict[str, torch.Tensor],
    fraction: float,
    criterion: str,
    skipped: dict[str, str],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Remove the lowest-scoring ``fraction`` of every group's channels, in place; returns the edits
    (for the program store) and the report stats."""
    edits: list[dict[str, Any]] = []
    layers: dict[str, Any] = {}
    for g in groups:
        before = g.channels
        n_remove = min(before - 1, math.floor(fraction * before))
        if n_remove <= 0:
            layers[g.producer] = {"channels": before, "kept": before}
            continue
        order = torch.argsort(scores[g.producer], descending=True, stable=True)
        keep = sorted(int(i) for i in order[: before - n_remove])
        prune_group(program.module, g, keep)
        edits.append({"op": "prune-channels", "producer": g.producer, "consumer": g.consumer, "keep": keep})
        layers[g.producer] = {"channels": before, "kept": len(keep)}
    stats = {"criterion": criterion, "fraction": fraction, "layers": layers, "not_prunable": skipped}
    return edits, stats


def prune_channels(
    program: Program, fraction: float, criterion: str, data: Dataset | None, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score and prune ``program.module`` in place; returns the edits and the report stats."""
    if fraction <= 0:
        return [], {"criterion": criterion, "fraction": fraction, "layers": {}, "not_prunable": {}}
    groups, skipped, scores = score_channels(program, criterion, data, seed)
    return apply_pruning(program, groups, scores, fraction, criterion, skipped)
