"""Preparation passes that change no function, only form."""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import torch
from torch import nn

from edgec.passes.base import Pass, PassContext, PassResult
from edgec.program import Program


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """Names of (conv, bn) pairs where the BN reads only that conv's output.

    Uses a torch.fx trace as a read-only view of the dataflow; modules fx cannot trace fall back
    to adjacency inside ``nn.Sequential`` containers.
    """
    pairs: list[tuple[str, str]] = []
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception:  # untraceable control flow: use the structure we can see
        for name, seq in module.named_modules():
            if isinstance(seq, nn.Sequential):
                kids = list(seq.named_children())
                for (a_name, a), (b_name, b) in itertools.pairwise(kids):
                    if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                        prefix = f"{name}." if name else ""
                        pairs.append((prefix + a_name, prefix + b_name))
        return pairs
    mods = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0]
        if (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and isinstance(mods.get(src.target), nn.Conv2d)
            and len(src.users) == 1
        ):
            pairs.append((str(src.target), str(node.target)))
    return pairs


def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """In place: ``W' = W * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``."""
    assert bn.running_mean is not None and bn.running_var is not None  # eval-mode BN has statistics
    with torch.no_grad():
        scale = (
            bn.weight / torch.sqrt(bn.running_var + bn.eps)
            if bn.affine
            else 1 / torch.sqrt(bn.running_var + bn.eps)
        )
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + shift
        conv.bias = nn.Parameter(new_bias)


@dataclass
class FoldBatchNorm(Pass):
    """Fold inference-mode BatchNorm2d into the preceding Conv2d (the BN becomes Identity)."""

    name = "fold-bn"

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        module = copy.deepcopy(program.module).eval()
        pairs = _conv_bn_pairs(module)
        for conv_name, bn_name in pairs:
            conv = module.get_submodule(conv_name)
            bn = module.get_submodule(bn_name)
            assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
            fold_bn_into_conv(conv, bn)
            parent_name, _, child = bn_name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, child, nn.Identity())
        return PassResult(program.replace(module=module), modified=bool(pairs), stats={"folded": len(pairs)})
