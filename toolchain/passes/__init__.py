"""Passes: small classes that transform a :class:`~edgec.program.Program`, and the manager that runs them.

A pass is ``call(program, ctx) -> PassResult(program, modified, stats)`` with optional
``requires`` / ``ensures`` checks (after onnx/ir-py's pass infrastructure). The manager records the
name, configuration, duration and statistics of every pass; that record goes into every report.

Passes are found by name through :data:`PASSES` (``--pass fold-bn``), imported only when used.
See docs/adding-a-pass.md.
"""

from __future__ import annotations

from edgec.passes.base import Pass, PassContext, PassManager, PassResult, get_pass, pass_names

# name -> "module:Class". Add a pass here and in docs/adding-a-pass.md's matrix.
PASSES: dict[str, str] = {
    "fold-bn": "edgec.passes.prepare:FoldBatchNorm",
}

__all__ = ["PASSES", "Pass", "PassContext", "PassManager", "PassResult", "get_pass", "pass_names"]
