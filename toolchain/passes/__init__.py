"""Passes: small classes that transform a :class:`~edgec.program.Program`, and the manager that runs them.

A pass is ``call(program, ctx) -> PassResult(program, modified, stats)`` with optional
``requires`` / ``ensures`` checks (after onnx/ir-py's pass infrastructure). The manager records the
name, configuration, duration and statistics of every pass; that record goes into every report.

Passes are found by name through :data:`PASSES` (``--pass fold-bn``), imported only when used.
See docs/adding-a-pass.md.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from edgec.errors import UsageError
from edgec.passes.base import Pass, PassContext, PassManager, PassResult

# name -> "module:Class". Add a pass here and in docs/adding-a-pass.md's matrix.
PASSES: dict[str, str] = {
    "fold-bn": "edgec.passes.prepare:FoldBatchNorm",
    # training-time compression (edgec.passes.training), the recipes of `edgec compress` / `--recipe`
    "qp-snn": "edgec.passes.qp_snn:QPSNN",
    "q-snn": "edgec.passes.q_snn:QSNN",
    "soft-threshold-prune": "edgec.passes.soft_threshold:SoftThresholdPrune",
    "uniform-quant": "edgec.passes.uniform_quant:UniformQuant",
    "magnitude-prune": "edgec.passes.magnitude_prune:MagnitudePrune",
    "lsq": "edgec.passes.lsq:LSQ",
    "q-detr": "edgec.passes.q_detr:QDETR",
    # ANN -> SNN conversion (rate coding, threshold balancing): a ReLU network onto Loihi
    "ann2snn": "edgec.passes.ann2snn:ANN2SNN",
    # binarization (ReSTE, Bi-ViT)
    "binarize": "edgec.passes.binarize:Binarize",
    "bi-vit": "edgec.passes.bi_vit:BiViT",
}


def pass_names() -> list[str]:
    return sorted(PASSES)


def get_pass(name: str, **options: Any) -> Pass:
    """Instantiate a registered pass by name, with options from the CLI or edgec.toml."""
    if name not in PASSES:
        raise UsageError(f"unknown pass '{name}'", hint=f"choose from: {', '.join(pass_names())}")
    module, _, cls_name = PASSES[name].partition(":")
    cls: Any = getattr(importlib.import_module(module), cls_name)
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):  # each option checked against its type
        from edgec.options import check_fields

        made: Pass = check_fields(cls, options, f"pass '{name}'")  # type: ignore[assignment]
        return made
    try:
        made = cls(**options)
        return made
    except TypeError as exc:
        raise UsageError(f"bad options for pass '{name}': {exc}") from None


__all__ = ["PASSES", "Pass", "PassContext", "PassManager", "PassResult", "get_pass", "pass_names"]
