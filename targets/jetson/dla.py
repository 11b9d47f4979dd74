"""The Orin DLA's rules, checked on CPU (part of ``edgec check --target jetson --dla``).

DLA (``dla=True``; Orin DLA on AGX Orin and Orin NX, not Orin Nano):

``dla-precision``    DLA runs FP16 and INT8 only.
``dla-unsupported-op``  operators Orin DLA does not take through TensorRT (NVIDIA
                     Deep-Learning-Accelerator-SW, operators/README.md, "Native" column); they fall
                     back to the GPU only when GPU fallback is allowed, and are listed then instead.
``dla-matmul-weights``  MatMul on DLA needs a constant second input (same source).
``dla-dynamic-shape``, ``dla-dim-limit``  DLA needs static shapes; batch <= 4096, other dims <= 8192
                     (TensorRT developer guide, DLA Supported Layers and Restrictions, general).
``dla-conv-limit``, ``dla-pool-limit``  per-layer parameter ranges from the same guide's layer table;
                     recalled from the guide, not re-read here: marked unverified in the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgec.target import Violation
from edgec.targets.jetson.graphview import (
    BUILD_TIME_OPS,
    QDQ_OPS,
    GraphView,
    node_attr,
    node_name,
    op_names,
    weight_value,
)

if TYPE_CHECKING:
    import onnx

#: operators Orin DLA runs through TensorRT ("Native" in NVIDIA Deep-Learning-Accelerator-SW
#: operators/README.md); Flatten / Squeeze / Unsqueeze import as a Shuffle layer like Reshape
DLA_OPS = op_names(
    """Abs Add AveragePool BatchNormalization Clip Concat Conv ConvTranspose Cos Equal Gemm LeakyRelu
    LRN MatMul Max MaxPool Mul PRelu Relu Reshape Resize Sigmoid Slice Softmax Sub Sum Tanh
    Transpose Upsample Flatten Squeeze Unsqueeze"""
)
DLA_MAX_BATCH, DLA_MAX_DIM = 4096, 8192
DLA_SOURCE = "NVIDIA Deep-Learning-Accelerator-SW operators/README.md"


def dla_layers(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """Names of the compute nodes that can run on the DLA and of those that fall back to the GPU."""
    on_dla: list[str] = []
    on_gpu: list[str] = []
    for node in model.graph.node:
        if node.op_type in QDQ_OPS or node.op_type in BUILD_TIME_OPS:
            continue
        (on_dla if node.op_type in DLA_OPS else on_gpu).append(node_name(node))
    return on_dla, on_gpu


def dla_rules(g: GraphView, precision: str, *, gpu_fallback: bool) -> list[Violation]:
    rows: list[Violation] = []
    if precision not in ("int8", "fp16"):
        rows.append(
            Violation(
                "(graph)",
                "dla-precision",
                f"the DLA runs FP16 and INT8 only; this graph is {precision}",
                "compile with --quantize int8 or fp16 for --dla",
            )
        )
    for inp in g.model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            rows.append(
                Violation(
                    inp.name,
                    "dla-dynamic-shape",
                    "the DLA needs static shapes; this input has a symbolic dimension",
                    "compile with --dla (edgec then exports a fixed batch)",
                )
            )
        vals = [d.dim_value for d in dims if d.HasField("dim_value")]
        if vals and (vals[0] > DLA_MAX_BATCH or any(v > DLA_MAX_DIM for v in vals[1:])):
            rows.append(
                Violation(
                    inp.name,
                    "dla-dim-limit",
                    f"shape {vals}: the DLA takes batch <= {DLA_MAX_BATCH} and other dimensions "
                    f"<= {DLA_MAX_DIM}",
                    "use a smaller input",
                )
            )
    for node in g.model.graph.node:
        if node.op_type in QDQ_OPS or node.op_type in BUILD_TIME_OPS:
            continue
        if node.op_type not in DLA_OPS and not gpu_fallback:
            rows.append(
                Violation(
                    node_name(node),
                    "dla-unsupported-op",
                    f"{node.op_type} does not run on the Orin DLA through TensorRT ({DLA_SOURCE})",
                    "allow GPU fallback ([target.jetson] gpu_fallback = true) or replace the op",
                )
            )
        if gpu_fallback:
            continue  # what the DLA cannot take runs on the GPU (listed in the report)
        if node.op_type == "MatMul" and not g.is_constant(node.input[1]):
            rows.append(
                Violation(
                    node_name(node),
                    "dla-matmul-weights",
                    f"MatMul on the DLA needs a constant second input ({DLA_SOURCE})",
                    "run it on the GPU (gpu_fallback) or restructure the model",
                )
            )
        rows += _dla_layer_limits(g, node)
    return rows


def _dla_layer_limits(g: GraphView, node: Any) -> list[Violation]:
    """Per-layer ranges of the TensorRT guide's DLA table (recalled, not re-read: unverified rows)."""
    checks: list[tuple[str, list[int], int, int]] = []
    if node.op_type in ("Conv", "ConvTranspose"):
        w = weight_value(g, node.input[1]) if len(node.input) > 1 else None
        kernel = node_attr(node, "kernel_shape", list(w.shape[2:]) if w is not None else [])
        checks = [
            ("kernel", list(kernel), 1, 32),
            ("padding", list(node_attr(node, "pads", [0])), 0, 31),
            ("stride", list(node_attr(node, "strides", [1])), 1, 8),
            ("dilation", list(node_attr(node, "dilations", [1])), 1, 32),
            ("groups", [int(node_attr(node, "group", 1))], 1, 8192),
        ]
        if w is not None:
            out_ch = w.shape[0] if node.op_type == "Conv" else w.shape[1] * int(node_attr(node, "group", 1))
            checks.append(("output channels", [int(out_ch)], 1, 8192))
        if len(kernel) != 2:
            checks.append(("spatial dimensions", [len(kernel)], 2, 2))
    elif node.op_type in ("MaxPool", "AveragePool"):
        checks = [
            ("window", list(node_attr(node, "kernel_shape", [])), 1, 8),
            ("padding", list(node_attr(node, "pads", [0])), 0, 7),
            ("stride", list(node_attr(node, "strides", [1])), 1, 16),
        ]
    rule = "dla-conv-limit" if node.op_type in ("Conv", "ConvTranspose") else "dla-pool-limit"
    rows = []
    for what, values, lo, hi in checks:
        bad = [v for v in values if not lo <= v <= hi]
        if bad:
            rows.append(
                Violation(
                    node_name(node),
                    rule,
                    f"{node.op_type} {what} {values} outside the DLA's range [{lo}, {hi}]",
                    "change the layer, or let it fall back to the GPU",
                    verified=False,
                )
            )
    return rows
