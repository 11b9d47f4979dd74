"""Preparation passes that change no function, only form."""

from __future__ import annotations

import copy
import itertools
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgec.errors import ModelError
from edgec.passes.base import Pass, PassContext, PassResult
from edgec.program import Program

log = logging.getLogger(__name__)


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


def _folded(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    var: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``W' = W * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``."""
    scale = (gamma if gamma is not None else torch.ones_like(var)) / torch.sqrt(var + eps)
    shift = beta if beta is not None else torch.zeros_like(mean)
    b = bias if bias is not None else torch.zeros_like(mean)
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), (b - mean) * scale + shift


def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d, name: str = "") -> None:
    """In place: ``W' = W * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``."""
    if bn.running_mean is None or bn.running_var is None:
        raise ModelError(
            f"BatchNorm2d '{name or 'bn'}' keeps no running statistics (track_running_stats=False): it "
            "normalises every batch with that batch's own statistics, which no conv weight can fold",
            hint="train it with track_running_stats=True, or compile without --pass fold-bn",
        )
    with torch.no_grad():
        w, b = _folded(
            conv.weight,
            conv.bias,
            bn.running_mean,
            bn.running_var,
            bn.weight if bn.affine else None,
            bn.bias if bn.affine else None,
            bn.eps,
        )
        conv.weight.copy_(w)
        conv.bias = nn.Parameter(b)


_CONV = (torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default)
_BN = (torch.ops.aten.batch_norm.default,)


def fold_bn_in_graph(gm: torch.fx.GraphModule) -> tuple[int, list[str]]:
    """Fold ``aten.batch_norm`` (inference) into the ``aten.conv2d`` feeding it, in an exported graph
    module (``torch.export``'s ``ep.module()``): the conv's weight and bias attributes are replaced and
    the batch norm node removed. Returns the number folded and why the others were not."""
    folded, kept = 0, []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _BN:
            continue
        src, gamma, beta, mean, var = (list(node.args) + [None] * 5)[:5]
        training = node.args[5] if len(node.args) > 5 else node.kwargs.get("training", False)
        eps = float(node.args[7] if len(node.args) > 7 else node.kwargs.get("eps", 1e-5))
        if training or mean is None or var is None:
            kept.append(f"{node.name}: normalises with batch statistics (training mode or no running stats)")
            continue
        if not (isinstance(src, torch.fx.Node) and src.op == "call_function" and src.target in _CONV):
            kept.append(f"{node.name}: not after a convolution")
            continue
        if len(src.users) != 1:
            kept.append(f"{node.name}: its convolution's output is also used elsewhere")
            continue
        w_node = src.args[1]
        b_node = src.args[2] if len(src.args) > 2 else None
        if not isinstance(w_node, torch.fx.Node) or w_node.op != "get_attr":
            kept.append(f"{node.name}: the convolution's weight is computed, not stored")
            continue
        get = lambda n: None if n is None else _attr(gm, n)  # noqa: E731
        with torch.no_grad():
            w, b = _folded(
                _attr(gm, w_node), get(b_node), _attr(gm, mean), _attr(gm, var), get(gamma), get(beta), eps
            )
            _set_attr(gm, str(w_node.target), w)
            if isinstance(b_node, torch.fx.Node) and b_node.op == "get_attr":
                _set_attr(gm, str(b_node.target), b)
            else:
                bias_name = f"{str(w_node.target).rpartition('.')[0] or 'conv'}_folded_bias".replace(".", "_")
                gm.register_parameter(bias_name, nn.Parameter(b))
                with gm.graph.inserting_before(src):
                    new_b = gm.graph.get_attr(bias_name)
                args = list(src.args) + [None] * max(0, 3 - len(src.args))
                args[2] = new_b
                src.args = tuple(args)
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        folded += 1
    if folded:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return folded, kept


def _attr(gm: nn.Module, node: torch.fx.Node) -> torch.Tensor:
    value = gm
    for part in str(node.target).split("."):
        value = getattr(value, part)
    return value  # type: ignore[return-value]


def _set_attr(gm: nn.Module, target: str, value: torch.Tensor) -> None:
    owner_name, _, leaf = target.rpartition(".")
    owner = gm.get_submodule(owner_name) if owner_name else gm
    old = getattr(owner, leaf)
    if isinstance(old, nn.Parameter):
        setattr(owner, leaf, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        setattr(owner, leaf, value)


@dataclass
class FoldBatchNorm(Pass):
    """Fold inference-mode BatchNorm2d into the preceding Conv2d (the BN becomes Identity).

    Works on module trees (the BatchNorm module becomes ``nn.Identity``) and on ``torch.export``
    graphs (the ``aten.batch_norm`` node is removed). A TorchScript graph is not rewritten: the pass
    says so (stats ``note``, a warning) rather than reporting a silent zero.
    """

    name = "fold-bn"

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        if isinstance(program.module, torch.jit.ScriptModule):
            n_bn = _script_batch_norms(program.module)
            note = (
                f"nothing folded: the model is TorchScript ({n_bn} batch norm(s) left as they are); edgec "
                "does not rewrite TorchScript graphs (ONNX Runtime folds them on the CPU target). For "
                "folded weights give a torch.export .pt2, a state_dict with --arch, or the module"
            )
            if n_bn:
                log.warning("fold-bn: %s", note)
            return PassResult(program, modified=False, stats={"folded": 0, "left": n_bn, "note": note})
        if isinstance(program.module, torch.fx.GraphModule) and program.source.format == "export":
            gm = copy.deepcopy(program.module)
            folded, kept = fold_bn_in_graph(gm)
            stats: dict[str, Any] = {"folded": folded}
            if kept:
                stats["left"] = len(kept)
                stats["note"] = "not folded: " + "; ".join(kept)
                log.warning("fold-bn: %s", stats["note"])
            return PassResult(program.replace(module=gm), modified=bool(folded), stats=stats)
        module = copy.deepcopy(program.module).eval()
        pairs = _conv_bn_pairs(module)
        for conv_name, bn_name in pairs:
            conv = module.get_submodule(conv_name)
            bn = module.get_submodule(bn_name)
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):  # _conv_bn_pairs' types
                continue
            fold_bn_into_conv(conv, bn, bn_name)
            parent_name, _, child = bn_name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, child, nn.Identity())
        left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
        stats = {"folded": len(pairs)}
        if left:
            stats["left"] = left
            stats["note"] = f"{left} batch norm(s) not directly after a Conv2d whose output only they read"
        return PassResult(program.replace(module=module), modified=bool(pairs), stats=stats)


def _script_batch_norms(module: torch.jit.ScriptModule) -> int:
    """Batch norms in a TorchScript module (as submodules or graph calls)."""
    subs = sum(
        1 for _, m in module.named_modules() if getattr(m, "original_name", "").startswith("BatchNorm")
    )
    if subs:
        return subs
    try:
        return sum(1 for n in module.inlined_graph.nodes() if n.kind() == "aten::batch_norm")
    except (AttributeError, RuntimeError):
        return 0
