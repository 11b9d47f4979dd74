"""INT8 Q/DQ from *learned* quantization (a program whose record has activation steps, e.g. ``lsq``).

Nothing is calibrated: the steps the compression pass learned are emitted as they are, through the one
Q/DQ writer (:func:`edgec.onnxlib.write_qdq` with ``params``).

* **Activations.** Each input quantizer exports as ``Div(x, s) -> Clip(-Qn, Qp) -> Round -> Mul(s)``
  (:mod:`edgec.lsq`): its output is exactly ``s * k`` with ``k`` in ``[-Qn, Qp]``. That tensor gets a
  uint8 Q/DQ with scale ``s`` and zero-point 0 (unsigned inputs) or 128 (signed): lossless, since the
  4-bit levels are a subset of the 8-bit ones. The Clip keeps the 4-bit range; ONNX Runtime's
  ``QuantizeLinear`` rounds half to even, as ``torch.round`` does.
* **Weights.** Each quantized layer's weights are baked on its grid ``s_c * k`` (``|k| <= 2^(b-1) - 1``);
  they are stored as int8 with the learned per-channel step ``s_c``
  (:func:`edgec.onnxlib.learned.learned_weight_params`, shared with the calibrated INT8 path and the
  Jetson target), so the int8 initializer *is* the 4-bit level.

ONNX Runtime has no 4-bit kernel for Conv or for activation x activation MatMul, and its 4-bit weight
path (``MatMulNBits``) keeps activations in float; so the artifact is int8 Q/DQ carrying the 4-bit
grid, and the report says so (``weights_stored``: "int8 carrying a 4-bit grid").
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

    from edgec.onnxlib import TensorQuant
    from edgec.program import Program


def has_learned_activations(program: Program) -> bool:
    return any(q.act_scale is not None for q in program.quant.values())


def _constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def fake_quant_points(model: onnx.ModelProto) -> dict[str, tuple[float, int, int]]:
    """``{tensor: (step, lo, hi)}``: outputs of ``Div(x, s) -> Clip(lo, hi) -> Round -> Mul(s)``."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: dict[str, tuple[float, int, int]] = {}
    for r in g.node:
        if r.op_type != "Round":
            continue
        clip = producer.get(r.input[0])
        if clip is None or clip.op_type != "Clip" or len(clip.input) < 3:
            continue
        div = producer.get(clip.input[0])
        muls = [m for m in consumers.get(r.output[0], []) if m.op_type == "Mul"]
        if div is None or div.op_type != "Div" or len(muls) != 1:
            continue
        step, lo, hi = (_constant(g, t) for t in (div.input[1], clip.input[1], clip.input[2]))
        other = [i for i in muls[0].input if i != r.output[0]]
        again = _constant(g, other[0]) if other else None
        if step is None or lo is None or hi is None or again is None or step.size != 1:
            continue
        if not np.allclose(again, step) or float(hi) - float(lo) > 255:
            continue
        out[muls[0].output[0]] = (float(step.reshape(())), int(lo), int(hi))
    return out


def fold_full_range_chains(
    model: onnx.ModelProto, points: dict[str, tuple[float, int, int]]
) -> dict[str, str]:
    """Remove each quantizer chain whose clip range is a whole uint8 range, in place.

    ``Div(x, s) -> Clip(0, 255) | Clip(-128, 127) -> Round -> Mul(s)`` followed by the uint8 Q/DQ of scale
    ``s`` (zero-point 0 or 128) is that Q/DQ alone: QuantizeLinear rounds half to even (as ``torch.round``)
    and saturates to the same range. Without the chain ONNX Runtime fuses the Q/DQ into integer kernels; a
    4-bit chain stays (its clip is narrower than the Q/DQ's range). The chain's readers read ``x`` instead
    (only where ``x`` has no other reader, so nothing else changes). Returns ``{chain output: x}``."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    uses: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    outputs = {o.name for o in g.output}
    drop: set[int] = set()
    renamed: dict[str, str] = {}
    for tensor, (_, lo, hi) in points.items():
        if (lo, hi) not in ((0, 255), (-128, 127)) or tensor in outputs:
            continue
        mul = producer[tensor]
        rnd = next(producer[i] for i in mul.input if i in producer and producer[i].op_type == "Round")
        clip = producer[rnd.input[0]]
        div = producer[clip.input[0]]
        if any(uses.get(t, 0) != 1 for t in (div.input[0], div.output[0], clip.output[0], rnd.output[0])):
            continue  # a tensor of the chain is read elsewhere: keep it
        drop.update(id(n) for n in (div, clip, rnd, mul))
        renamed[tensor] = div.input[0]
    nodes = [n for n in g.node if id(n) not in drop]
    for n in nodes:
        for k, name in enumerate(n.input):
            if name in renamed:
                n.input[k] = renamed[name]
    del g.node[:]
    g.node.extend(nodes)
    return renamed


def quantize_learned(fp32: Path, final: Path, program: Program) -> dict[str, Any]:
    """Write the Q/DQ graph of ``fp32`` with the program's learned steps; returns the report section."""
    import onnx

    from edgec.errors import ModelError
    from edgec.onnxlib import U8S8, TensorQuant, preprocess, write_qdq
    from edgec.onnxlib.learned import learned_weight_params

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        notes = preprocess(fp32, pre)
        model = onnx.load(str(pre))
        points = fake_quant_points(model)
        if not points:
            raise ModelError(
                "the program records learned activation steps, but its graph has no quantizer pattern",
                hint="compile it without --quantize int8 (the fake quantization then runs in float)",
            )
        params: dict[str, TensorQuant] = {
            t: TensorQuant.per_tensor(s, 0 if lo >= 0 else 128, "uint8") for t, (s, lo, _) in points.items()
        }
        folded = fold_full_range_chains(model, points)
        if folded:
            params = {folded.get(t, t): q for t, q in params.items()}
            onnx.save(model, str(pre))
        # the weights on their recorded grids, read from the pre-processed graph (BatchNorm folded)
        weights, account = learned_weight_params(pre, program)
        wnotes = [f"{layer}: {how}" for layer, how in account.items() if not how.startswith("learned")]
        params.update(weights)
        scheme = dataclasses.replace(
            U8S8,
            name="u8s8-learned",
            op_types=("Conv", "MatMul", "Gemm"),
            description="learned steps: uint8 activations, int8 per-channel weights on the learned grid",
        )
        stats = write_qdq(pre, final, scheme, params=params)
    bits = sorted({q.weight_bits for q in program.quant.values() if q.weight_bits})
    act_bits = sorted({q.act_bits for q in program.quant.values() if q.act_bits})
    return {
        **stats.to_dict(),
        "notes": notes + wnotes + stats.notes,
        "source": "learned steps of the quantization record (no calibration)",
        "learned_activation_points": len(points),
        "quantizer_chains_folded": len(folded),
        "learned_weight_tensors": len(weights),
        "weight_bits": bits,
        "activation_bits": act_bits,
        "weights_stored": (
            f"int8 carrying the {'/'.join(map(str, bits))}-bit grids (ONNX Runtime has no 4-bit kernel for "
            "Conv or activation x activation MatMul; its 4-bit MatMulNBits keeps activations in float)"
        )
        if bits and min(bits) < 8
        else "int8",
    }
