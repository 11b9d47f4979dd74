"""PyTorch -> ONNX export shared by the ONNX-based targets (CPU here; Jetson builds on it)."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from edgec.errors import ModelError
from edgec.program import Program

log = logging.getLogger(__name__)
INPUT_NAME = "input"
OUTPUT_NAME = "output"
OPSET = 17


def export_onnx(program: Program, path: Path, *, dynamic_batch: bool = True) -> dict[str, Any]:
    """Export ``program.module`` (eval mode, a deep copy) to ``path``; returns facts for the report.

    The TorchScript-based exporter is tried first (fast, mature for CNNs, takes TorchScript
    input models); the dynamo exporter (``torch.export`` based) is the fallback. Both write one
    input ``input`` and one output ``output`` with a dynamic batch dimension.
    """
    module = copy.deepcopy(program.module).eval()
    x = program.example_input
    errors: list[str] = []
    sink = io.StringIO()
    for exporter in ("torchscript", "dynamo"):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
                warnings.simplefilter("ignore")
                if exporter == "torchscript":
                    torch.onnx.export(
                        module,
                        (x,),
                        str(path),
                        dynamo=False,
                        opset_version=OPSET,
                        input_names=[INPUT_NAME],
                        output_names=[OUTPUT_NAME],
                        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
                        if dynamic_batch
                        else None,
                        do_constant_folding=True,
                    )
                else:
                    dyn = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
                    onnx_program = torch.onnx.export(
                        module,
                        (x,),
                        dynamo=True,
                        input_names=[INPUT_NAME],
                        output_names=[OUTPUT_NAME],
                        dynamic_shapes=dyn,
                        optimize=True,
                        verbose=False,
                    )
                    assert onnx_program is not None
                    onnx_program.save(str(path))
            log.debug("exported with the %s exporter", exporter)
            return {"exporter": exporter, "opset": OPSET if exporter == "torchscript" else None}
        except Exception as exc:
            errors.append(
                f"{exporter}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            )
            path.unlink(missing_ok=True)
    raise ModelError(f"cannot export the model to ONNX ({'; '.join(errors)})")
