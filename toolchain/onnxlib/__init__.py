"""ONNX for every ONNX-based target: export from PyTorch, and INT8 Q/DQ with the scheme as data.

The CPU target (ONNX Runtime) and the Jetson target (TensorRT) both consume an ONNX graph; this
package is what they share, so that neither imports the other. It imports ``onnx`` /
``onnxruntime`` only inside its functions: ``import edgec.onnxlib`` stays light.

Export (:mod:`edgec.onnxlib.export`)::

    from edgec.onnxlib import export_program
    info = export_program(program, out_dir / "model.onnx")
    info.batch        # None: any batch (checked by running ORT at two batch sizes); else the one it takes
    info.outputs      # every output by name: "output", or dict keys, or output_0..k (edgec.program)
    info.to_dict()    # for the target's report section
    export_program(program, path, opset=17, batch=1)  # TensorRT's opset, a fixed (DLA) batch

Quantization (:mod:`edgec.onnxlib.qdq`): a :class:`QdqScheme` says how to quantize (activation
dtype and symmetry, weight dtype, per-channel axis, int32 bias on/off, which ops). Presets:

* :data:`U8S8`: uint8 asymmetric activations, int8 symmetric per-channel weights, int32 bias.
  The graph ONNX Runtime fuses into QLinearConv / QGemm / QLinearMatMul on x86 (the CPU target).
* :data:`U8S8_ATTENTION`: U8S8 on Conv / Gemm / MatMul / Softmax only, for attention models
  (their residual stream in uint8 costs accuracy).
* :data:`S8S8`: int8 *symmetric* activations (zero-point 0), int8 symmetric per-channel weights
  (axis 0; 1 for ConvTranspose), no int32 bias Q/DQ: TensorRT's explicit-quantization rules (the
  Jetson target). On ORT's CPU kernels this graph runs slower than FP32: never use it for x86.

Two ways to get a Q/DQ graph, through one writer (:func:`write_qdq`)::

    from edgec.onnxlib import U8S8, S8S8, preprocess, calibrate, write_qdq, TensorQuant

    notes = preprocess(fp32, pre)                                    # shape inference, BN folding
    ranges = calibrate(pre, batches, method="minmax", scheme=S8S8)   # post-training: measured ranges
    stats = write_qdq(pre, int8, S8S8, ranges=ranges)

    # learned quantization (QAT scales), no re-calibration: scales and zero-points as data
    params = {"fc:input": TensorQuant.per_tensor(0.02, 0, "int8"),
              "fc:weight": TensorQuant.per_channel(scales, axis=0, dtype="int8")}
    stats = write_qdq(fp32, int8, S8S8, params=resolve_params(fp32, params))

``resolve_params`` maps ``"<layer>:input"`` / ``"<layer>:weight"`` / ``"<layer>:output"`` keys (the
PyTorch module path, e.g. ``features.0.0``) to the graph's tensor names
(:func:`edgec.onnxlib.params.layer_tensors`); graph tensor names pass through. ``write_qdq``
checks that the given scales fit the scheme (dtypes; zero-point 0 where it is symmetric).
:func:`quantize_ptq` is preprocess + calibrate + write in one call.
"""

from __future__ import annotations

from edgec.onnxlib.export import (
    INPUT_NAME,
    OPSET,
    ExportInfo,
    OnnxExportError,
    TensorSpec,
    export_onnx,
    export_program,
)
from edgec.onnxlib.feeds import Feeds
from edgec.onnxlib.params import TensorQuant, layer_tensors, resolve_params
from edgec.onnxlib.qdq import (
    PRESETS,
    S8S8,
    U8S8,
    U8S8_ATTENTION,
    QdqScheme,
    QdqStats,
    calibrate,
    check_params,
    preprocess,
    quantize_ptq,
    write_qdq,
)

__all__ = [
    "INPUT_NAME",
    "OPSET",
    "PRESETS",
    "S8S8",
    "U8S8",
    "U8S8_ATTENTION",
    "ExportInfo",
    "Feeds",
    "OnnxExportError",
    "QdqScheme",
    "QdqStats",
    "TensorQuant",
    "TensorSpec",
    "calibrate",
    "check_params",
    "export_onnx",
    "export_program",
    "layer_tensors",
    "preprocess",
    "quantize_ptq",
    "resolve_params",
    "write_qdq",
]
