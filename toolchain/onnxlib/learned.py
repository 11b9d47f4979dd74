"""Weights a compression pass left on a grid, as int8 Q/DQ parameters (no re-calibration).

A quantization-aware pass (``uniform-quant``, ``qp-snn``, ``lsq``, ...) records each layer's grid in
:attr:`edgec.program.Program.quant`; an INT8 graph keeps it when the graph's weights still lie on it.
Shared by the CPU target (ONNX Runtime) and the Jetson target (TensorRT): both store int8 weights with a
per-output-channel scale, symmetric, zero-point 0, so the learned levels carry over as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgec.onnxlib.params import TensorQuant
    from edgec.program import Program


_TOL = 1e-3  # |W / step - round(W / step)| of weights on their grid (float32 rounding ~1e-5)


def _axis(node: Any) -> int:
    """The output-channel axis of a weight (ONNX Runtime's and TensorRT's per-channel axis)."""
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 1 if node.op_type == "MatMul" else 0


def learned_weight_params(graph: Path, program: Program) -> tuple[dict[str, TensorQuant], dict[str, Any]]:
    """For an INT8 path whose activations are calibrated (weights learned: uniform-quant, qp-snn ...):
    ``W[c] = s[c] * level[c]`` with integer levels, but the graph may hold the weights scaled per output
    channel (ONNX Runtime's pre-processing folds a following BatchNorm into the conv: ``W'[c] = W[c] g[c]``),
    which keeps the levels and changes the step; so the int8 step of channel ``c`` is read from the graph
    as ``max|W'[c]| / max|level[c]|`` and checked (every ``W'[c] / step`` an integer within int8).

    ``{weight tensor name: TensorQuant}`` for the recorded layers whose grid survives in ``graph``,
    and the report's account of every recorded layer."""
    import onnx
    from onnx import numpy_helper

    from edgec.onnxlib.params import TensorQuant, layer_tensors

    record = {k: q for k, q in program.quant.items() if q.weight_bits is not None}
    if not record:
        return {}, {}
    model = onnx.load(str(graph))
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    layers = layer_tensors(graph)
    params: dict[str, TensorQuant] = {}
    account: dict[str, Any] = {}
    for name, q in record.items():
        layer = layers.get(name) or layers.get(name.removesuffix(".module"))
        if layer is None or "weight" not in layer:
            account[name] = "not found in the graph: calibrated"
            continue
        if q.max_level > 127:
            account[name] = f"{q.weight_bits}-bit levels up to {q.max_level} do not fit int8: calibrated"
            continue
        w_torch = program.module.get_submodule(name).weight.detach().double().numpy()  # type: ignore[operator]
        try:
            levels = q.levels(w_torch).reshape(w_torch.shape[0], -1)
        except ValueError:
            account[name] = "the weights are not on their recorded grid: calibrated"
            continue
        node = nodes[layer["node"]]
        axis = _axis(node)
        w = numpy_helper.to_array(inits[layer["weight"]]).astype(np.float64)
        rows = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        if rows.shape != levels.shape:
            account[name] = "the graph's weight has another layout: calibrated"
            continue
        top = np.abs(levels).max(axis=1)
        step = np.where(top > 0, np.abs(rows).max(axis=1) / np.maximum(top, 1), 1.0)
        step = np.where(step > 0, step, 1.0)
        ratio = rows / step[:, None]
        if (
            np.abs(ratio - np.rint(ratio)).max(initial=0.0) > _TOL
            or np.abs(np.rint(ratio)).max(initial=0) > 127
        ):
            account[name] = "the graph changed the grid: calibrated"
            continue
        params[layer["weight"]] = TensorQuant.per_channel(step.astype(np.float32), axis=axis)
        account[name] = f"learned {q.weight_bits}-bit grid kept ({q.method}): int8 values are its levels"
    return params, account
