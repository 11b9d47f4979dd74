"""The ``onnxruntime`` backend: model.onnx on ONNX Runtime's CPU execution provider.

ONNX Runtime's CPU provider computes float operators in f32 (its bf16 fast-math GEMM is an ARM-only
session option), so it runs an artifact at ``precision = "f32"`` only. Its intra-op worker threads
spin after each call by default (``session.intra_op.allow_spinning``); edgec turns that off unless
``spinning = true``: measured beside a competing CPU load, the spinning threads made ResNet-18 INT8
about 1.7x slower (benchmarks/results/cpu_backends.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgec.errors import UsageError
from edgec.targets.cpu.options import CpuOptions
from edgec.targets.cpu.session import RuntimeSession, output_names

NAME = "onnxruntime"


def version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def session_options(threads: int | None, spinning: bool) -> Any:
    """ONNX Runtime's SessionOptions for ``threads`` intra-op threads (None: its default, one per
    physical core) and the spinning choice."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    return so


def check_options(opts: CpuOptions) -> None:
    """What ONNX Runtime cannot do of the CPU options: a precision below f32, another device."""
    if opts.precision != "f32":
        raise UsageError(
            f"ONNX Runtime's CPU provider computes float operations in f32 only, not {opts.precision}",
            hint="use --backend openvino for bf16 / f16, or drop --target-option precision",
        )
    if opts.device != "CPU":
        raise UsageError(
            f"device '{opts.device}' is an OpenVINO device; ONNX Runtime's CPU provider runs on the CPU",
            hint="use --backend openvino (or drop --target-option device)",
        )


def open_session(
    model: Path, opts: CpuOptions, *, threads: int | None, declared: list[str]
) -> RuntimeSession:
    """A session on ``model`` (model.onnx) with ``threads`` intra-op threads: at f32 on the CPU whatever
    precision or device the artifact was compiled for (compile refuses those with this backend; asked
    for at run time, the portable model runs as exactly as it can)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(
        str(model), session_options(threads, opts.spinning), providers=["CPUExecutionProvider"]
    )
    inp = sess.get_inputs()[0]
    name = inp.name
    shape = [d if isinstance(d, int) else None for d in inp.shape]
    names = output_names(declared, [o.name for o in sess.get_outputs()])
    runtime = {
        "backend": NAME,
        "runtime": f"{NAME} {version()}",
        "device": "CPU (CPUExecutionProvider)",
        "precision": "f32",
        "threads": threads or "default (one per physical core)",
        "spinning": opts.spinning,
    }
    return RuntimeSession(lambda x: sess.run(None, {name: x}), shape, names, runtime)
