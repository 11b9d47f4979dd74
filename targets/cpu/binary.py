"""Binarized programs on the CPU: int8 Q/DQ from the quantization record, 1-bit weights packed.

A program with 1-bit layers (``binarize``, ``bi-vit``: ``Program.quant`` holds 1-bit weights with a
scale per output channel, binarized inputs, and the other layers' grids) is lowered without
re-calibrating what it learned. ONNX Runtime has no 1-bit kernels: model.onnx carries the binary
layers as int8, and the same weights are also written bit-packed for a 1-bit runtime.

* Weights: each recorded layer's weights are int8 levels with their per-channel scale (a binarized
  layer's levels are ``+-1``). The exporter may fold a following BatchNorm into them, which scales
  each channel and keeps its levels, so the scales are read from the graph and the levels checked.
* Binarized inputs (``act_bits=1``, values ``+-1``) are quantized exactly: uint8, scale 1/127,
  zero-point 127 (-1 -> 0, +1 -> 254). The fine scale keeps the int32 bias of the integer kernel
  within 1/254 of a weight step (at scale 1 the bias would round to a whole weight step).
* Default (``precision: learned``): Q/DQ only on the layers whose input is binarized (ONNX Runtime
  runs a binarized Linear as ``MatMulIntegerToFloat`` / ``QGemm``; a Conv whose output is not
  quantized stays a float kernel); every other recorded weight is stored int8 + DequantizeLinear.
  Nothing is calibrated; the graph computes what the program computes.
* ``--quantize int8`` (CNNs): every other tensor gets an ONNX Runtime-calibrated uint8 range, so
  each Conv / Gemm runs as an integer kernel (QLinearConv / QGemm). A tensor whose only use is a
  binarizer's comparison with its thresholds is quantized over the thresholds' range
  (:func:`threshold_ranges`). An attention model stays on the default path (the note says why).
* ``weights-1bit.safetensors`` (:func:`edgec.binary.write_packed`): the 1-bit layers as deployed in
  model.onnx (BatchNorm folded), signs packed 8 to a byte, with their per-channel scales.

The graph is checked against the float export of the same program on calibration samples (the rule
of ``edgec verify``) and the report keeps the measurement.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.errors import UsageError

if TYPE_CHECKING:
    from edgec.config import CompileConfig
    from edgec.onnxlib import QdqScheme, QdqStats, TensorQuant
    from edgec.passes import PassContext
    from edgec.program import Program
    from edgec.quant import LayerQuant

PACKED_FILE = "weights-1bit.safetensors"
#: a binary (+-1) activation in uint8: scale and zero-point (exact for both values)
BINARY_INPUT = (1.0 / 127.0, 127)
_GRID_TOL = 1e-3


def binary_layers(program: Program) -> list[str]:
    """The layers with 1-bit weights (a binarized program takes this target's binary path)."""
    return [name for name, q in program.quant.items() if q.weight_bits == 1]


def learned_layers(program: Program) -> dict[str, LayerQuant]:
    """Layers whose weights a pass trained onto a grid the CPU target can carry as int8."""
    return {
        name: q
        for name, q in program.quant.items()
        if q.weight_bits is not None and 1 <= q.weight_bits <= 8 and not q.odd_levels
    }


def _weight_axis(node: Any) -> int:
    """The output-channel axis of a weight initializer: Conv 0, Gemm by transB, MatMul 1."""
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 1 if node.op_type == "MatMul" else 0


def learned_params(
    graph_path: Path, program: Program
) -> tuple[dict[str, TensorQuant], dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any], list[str]]:
    """Q/DQ parameters by ``layer:role`` key, the 1-bit layers' ``(weight, scale)``, a per-layer
    description, and notes on layers left in float."""
    import onnx
    import torch
    from onnx import numpy_helper

    from edgec.onnxlib import TensorQuant, layer_tensors

    model = onnx.load(str(graph_path), load_external_data=False)
    init = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    tensors = layer_tensors(graph_path)
    modules = dict(program.module.named_modules())
    params: dict[str, TensorQuant] = {}
    packed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    layers: dict[str, Any] = {}
    notes: list[str] = []
    for name, rec in learned_layers(program).items():
        path = _graph_layer(tensors, name)
        entry = tensors[path] if path is not None else None
        if path is None or entry is None or "weight" not in entry or name not in modules:
            notes.append(f"{name}: no weighted node of that layer in the graph; left in float")
            continue
        axis = _weight_axis(nodes[entry["node"]])
        w = np.moveaxis(numpy_helper.to_array(init[entry["weight"]]).astype(np.float64), axis, 0)
        w_torch = getattr(modules[name], "weight", None)
        if not isinstance(w_torch, torch.Tensor) or w_torch.shape[0] != w.shape[0]:
            notes.append(f"{name}: the graph's weight does not match the layer; left in float")
            continue
        levels = rec.levels(w_torch.detach().double().numpy())
        top = np.abs(levels.reshape(len(levels), -1)).max(1).astype(np.float64)
        peak = np.abs(w.reshape(len(w), -1)).max(1)
        scale = np.where(top > 0, peak / np.maximum(top, 1), 1.0)
        q = w / scale.reshape(-1, *([1] * (w.ndim - 1)))
        if np.abs(q - np.rint(q)).max(initial=0.0) > _GRID_TOL or np.abs(np.rint(q)).max(initial=0) > 127:
            notes.append(f"{name}: the exported weights are off the recorded grid; left in float")
            continue
        params[f"{path}:weight"] = TensorQuant.per_channel(scale, axis=axis, dtype="int8")
        desc = {"weight_bits": rec.weight_bits, "method": rec.method, "input": "float"}
        if rec.act_bits == 1:
            params[f"{path}:input"] = TensorQuant.per_tensor(BINARY_INPUT[0], BINARY_INPUT[1], "uint8")
            desc["input"] = "binary +-1 (uint8, scale 1/127, zero-point 127)"
        if rec.weight_bits == 1:
            s32 = scale.astype(np.float32)
            signs = np.where(w >= 0, 1.0, -1.0).astype(np.float32)
            packed[name] = (signs * s32.reshape(-1, *([1] * (w.ndim - 1))), s32)
        layers[name] = desc
    return params, packed, layers, notes


def _graph_layer(tensors: dict[str, dict[str, str]], name: str) -> str | None:
    """The graph's path of the program's layer ``name``: itself, or the one path ending in it (the CPU
    target exports a spiking network inside a wrapper module: ``snn.net.2.module``)."""
    if name in tensors:
        return name
    found = [k for k in tensors if k.endswith("." + name)]
    return found[0] if len(found) == 1 else None


WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


def attention_nodes(graph_path: Path) -> list[str]:
    """Softmax nodes and MatMuls of two activations (attention's ``q k^T`` and ``attn v``)."""
    import onnx

    graph = onnx.load(str(graph_path), load_external_data=False).graph
    consts = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    return [
        n.name
        for n in graph.node
        if n.op_type == "Softmax" or (n.op_type == "MatMul" and all(i not in consts for i in n.input))
    ]


#: ops that pass a binarizer's input through unchanged in order (monotone, or moving data only)
_ORDER_KEEPING = ("Relu", "MaxPool", "Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Transpose")


def threshold_ranges(
    graph_path: Path, inputs: list[str], margin: float = 0.05
) -> dict[str, tuple[float, float]]:
    """Quantization ranges for the tensors whose only use is a binarizer's comparison with its thresholds.

    A binarized input is ``Where(GreaterOrEqual(Sub(x, beta), 0), 1, -1)`` in the graph: ``x`` matters
    only through ``x >= beta``. Its uint8 range is best spent around the thresholds, ``[min(0, beta_min),
    beta_max]`` widened by ``margin`` of its span (values beyond saturate on the same side of every
    threshold), rather than on ``x``'s whole calibrated range: the grid is then several times finer
    where a rounding can flip a sign. The range applies to ``x`` and back through order-keeping ops
    (ReLU, max-pool, reshapes) to the producing layer's output, as long as each tensor has no other use.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph_path), load_external_data=False)
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    out: dict[str, tuple[float, float]] = {}
    for t in inputs:
        where = producer.get(t)
        ge = producer.get(where.input[0]) if where is not None and where.op_type == "Where" else None
        sub = producer.get(ge.input[0]) if ge is not None and ge.op_type == "GreaterOrEqual" else None
        if sub is None or sub.op_type != "Sub" or sub.input[1] not in init:
            continue
        beta = init[sub.input[1]].astype(np.float64)
        lo, hi = min(0.0, float(beta.min())), max(0.0, float(beta.max()))
        pad = margin * (hi - lo) if hi > lo else 1e-3
        span = (lo - pad if lo < 0 else 0.0, hi + pad)
        x = sub.input[0]
        while True:
            out[x] = span
            node = producer.get(x)
            if node is None or node.op_type not in _ORDER_KEEPING or consumers.get(node.input[0], 0) != 1:
                if node is not None and consumers.get(node.input[0], 0) == 1 and node.op_type == "Relu":
                    out[node.input[0]] = span
                break
            x = node.input[0]
    return out


def _write_learned(pre: Path, final: Path, scheme: QdqScheme, resolved: dict[str, TensorQuant]) -> QdqStats:
    """Q/DQ on the weighted nodes whose every activation input has learned parameters (binarized
    inputs); the graph as it is when there are none."""
    import onnx

    from edgec.onnxlib import QdqStats, write_qdq

    graph = onnx.load(str(pre), load_external_data=False).graph
    init = {i.name for i in graph.initializer}
    chosen = [
        n
        for n in graph.node
        if n.op_type in WEIGHTED_OPS
        and all(t in resolved for t in n.input[:2] if t)
        and any(t not in init for t in n.input[:2])
    ]
    if not chosen:
        shutil.copyfile(pre, final)
        return QdqStats(scheme=scheme)
    used = {t for n in chosen for t in n.input if t in resolved}
    return write_qdq(
        pre, final, scheme, params={k: resolved[k] for k in used}, nodes=[n.name for n in chosen]
    )


def dequantize_weights(path: Path, params: dict[str, TensorQuant]) -> int:
    """Store each float weight initializer named in ``params`` (per-channel int8) as int8 levels +
    ``DequantizeLinear``, in place; returns how many. ONNX Runtime's quantizer writes weight Q/DQ only
    for the nodes it quantizes; this is the weight-only form (same numbers, int8 storage) for the rest."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    added = []
    for name, tq in params.items():
        init = inits.get(name)
        if init is None or init.data_type != TensorProto.FLOAT or tq.axis is None:
            continue
        w = numpy_helper.to_array(init)
        shape = [1] * w.ndim
        shape[tq.axis] = -1
        q = np.clip(np.rint(w / tq.scale.reshape(shape)), -128, 127).astype(np.int8)
        graph.initializer.remove(init)
        graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{name}_int8"),
                numpy_helper.from_array(tq.scale.astype(np.float32), f"{name}_int8_scale"),
                numpy_helper.from_array(np.zeros(len(tq.scale), np.int8), f"{name}_int8_zero_point"),
            ]
        )
        added.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_int8", f"{name}_int8_scale", f"{name}_int8_zero_point"],
                [name],
                name=f"{name}_DequantizeLinear",
                axis=tq.axis,
            )
        )
    if added:
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend([*added, *nodes])
        onnx.save(model, str(path))
    return len(added)


def lower_binary(
    program: Program,
    fp32: Path,
    final: Path,
    out_dir: Path,
    ctx: PassContext,
    config: CompileConfig,
    batch: int | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Write ``final`` (model.onnx) from the float export ``fp32`` with the learned grids; returns the
    report's ``quantization`` section and the extra files (the packed 1-bit weights)."""
    from edgec.binary import write_packed
    from edgec.onnxlib import U8S8, calibrate, preprocess, resolve_params, write_qdq
    from edgec.targets.cpu.int8 import CHECK_SAMPLES, MIN_AGREEMENT, Feeds, _compare, _outputs, choose_scheme

    calibrated = config.quantize == "int8"
    if calibrated and ctx.calib is None:
        raise UsageError("--quantize int8 needs calibration data", hint="pass --calib SRC (e.g. data.npz)")
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        notes = preprocess(fp32, pre)
        params, packed, layers, skipped = learned_params(pre, program)
        notes += skipped
        scheme, why = choose_scheme(pre)
        notes.append(why)
        keep_float = attention_nodes(pre)
        if keep_float:
            notes.append(
                f"{len(keep_float)} attention matmul / softmax node(s) kept in float: their binarized "
                "operands have a scale per head, which one uint8 grid per tensor cannot carry"
            )
            if calibrated:
                calibrated = False
                notes.append(
                    "--quantize int8: an attention model is quantized where it learned its grids only; "
                    "calibrated uint8 on the projections' outputs moves q, k and v across their "
                    "binarization thresholds"
                )
        if not calibrated:  # the learned grids only: the weighted ops they belong to
            scheme = dataclasses.replace(scheme, name=f"{scheme.name}-learned", op_types=WEIGHTED_OPS)
        ranges = None
        kept: list[np.ndarray] = []
        feeds = None
        if calibrated:
            feeds = Feeds(ctx.calib, program.input_shape, batch, config.calib_samples, ctx.progress)  # type: ignore[arg-type]
            ranges = calibrate(pre, feeds, scheme=U8S8, method=config.calib_method)
            binary_inputs = [k for k in params if k.endswith(":input")]
            tight = threshold_ranges(pre, list(resolve_params(pre, {k: params[k] for k in binary_inputs})))
            for k, (lo, hi) in tight.items():
                if k in ranges:  # thresholds outside the data's range decide nothing finer
                    ranges[k] = (max(lo, ranges[k][0]), min(hi, ranges[k][1]))
            notes.append(
                f"{len(tight)} tensor(s) used only by binarizers quantized over their thresholds' range"
            )
            kept = feeds.kept
        elif ctx.calib is not None:
            kept = [x for x, _ in ctx.calib.checked(program.input_shape, CHECK_SAMPLES)]
        resolved = resolve_params(pre, params)
        if calibrated:
            stats = write_qdq(pre, final, scheme, ranges=ranges, params=resolved, exclude=keep_float)
        else:
            stats = _write_learned(pre, final, scheme, resolved)
        carried = dequantize_weights(final, {k: v for k, v in resolved.items() if v.axis is not None})
        if carried:
            notes.append(
                f"{carried} weight tensor(s) whose layer's input is not quantized stored as int8 + "
                "DequantizeLinear (ONNX Runtime computes those layers in float)"
            )
        check: dict[str, Any] = {"against": "the float ONNX export of the same program", "samples": len(kept)}
        if kept:
            x = np.stack(kept)
            check.update(_compare(_outputs(final, x, batch), _outputs(pre, x, batch)))
            check["min_agreement"] = MIN_AGREEMENT
    stats.notes = notes + stats.notes
    section: dict[str, Any] = {
        **stats.to_dict(),
        "learned": {
            "source": "the compressed program's quantization record (Program.quant), scales as trained",
            "layers": layers,
        },
        "precision": "int8" if calibrated else "learned",
        "calibration_method": config.calib_method if calibrated else None,
        "calibration_samples": feeds.count if feeds is not None else 0,
        "check": check,
    }
    if packed:
        section["packed_weights"] = write_packed(out_dir / PACKED_FILE, packed)
        files["weights_1bit"] = PACKED_FILE
    return section, files
