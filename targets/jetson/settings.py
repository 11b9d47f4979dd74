"""Everything the TensorRT layer is handed, decided as plain data on CPU (tested without TensorRT).

:func:`builder_settings` turns the artifact, the installed TensorRT version and the user's options
into a :class:`BuilderSettings` (recorded in report.json); :func:`io_buffers` turns the engine's I/O
tensor descriptions into host buffer shapes and numpy dtypes; :func:`parser_error_rows` turns ONNX
parser errors into the why-not table. :mod:`.engine` only applies them.

TensorRT generations (../shared reference deployment.md, TensorRT release notes):

* 10.x (JetPack 6 ships 10.3): weak typing still exists, but edgec builds *strongly typed* networks
  (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``): the graph's explicit Q/DQ and FP16 tensors say
  what runs in which precision, so no precision builder flag is ever set. DLA via
  ``default_device_type = DLA``, ``DLA_core``, ``BuilderFlag.GPU_FALLBACK``.
* 11.x (JetPack >= 7.2.2): implicit quantization and every precision flag are gone; networks are
  strongly typed. The DLA is back only from 11.4.1, on AGX Orin.

The Orin DLA takes INT8 only through implicit quantization (a calibration cache, no Q/DQ; NVIDIA
Model-Optimizer pull request 1661, TensorRT issue 2222); edgec writes explicit Q/DQ only, so INT8
on the DLA is refused with that reason, and FP16 graphs go to the DLA.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgec.errors import MissingDependency, UsageError
from edgec.target import Violation

#: first TensorRT 11 release with the DLA again (AGX Orin, JetPack >= 7.2.2)
TRT11_DLA = (11, 4, 1)
DEFAULT_WORKSPACE_MB = 1024


def parse_version(text: str) -> tuple[int, int, int]:
    parts = [*(int(p) for p in text.split(".")[:3] if p.isdigit()), 0, 0, 0]
    return parts[0], parts[1], parts[2]


def api_generation(version: str) -> int:
    """10 or 11: the TensorRT API generation of ``version``; older ones are refused."""
    major = parse_version(version)[0]
    if major < 10:
        raise MissingDependency(
            f"TensorRT {version} is too old: edgec needs 10.x (JetPack 6) or 11.x (JetPack >= 7.2.2)",
            hint="upgrade JetPack (docs/jetson.md)",
        )
    return 10 if major == 10 else 11


@dataclass(frozen=True)
class BuilderSettings:
    """What the builder is configured with; kept in the report as is."""

    tensorrt_version: str
    api_generation: int
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag names
    builder_flags: tuple[str, ...]  # BuilderFlag names (never a precision flag)
    workspace_bytes: int
    device: str  # "GPU" | "DLA"
    dla_core: int | None
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["profile"] = {k: [list(s) for s in v] for k, v in self.profile.items()}
        return d


def optimization_profile(
    input_shape: tuple[int, ...], *, dynamic_batch: bool, max_batch: int, opt_batch: int = 1
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes for the input: batch 1..max_batch when dynamic, the fixed shape otherwise."""
    if max_batch < 1 or not 1 <= opt_batch <= max_batch:
        raise UsageError(f"--max-batch must be >= 1 and >= the optimal batch, got {max_batch}")
    if not dynamic_batch:
        shape = tuple(input_shape)
        return shape, shape, shape
    rest = tuple(input_shape[1:])
    return (1, *rest), (opt_batch, *rest), (max_batch, *rest)


def builder_settings(
    *,
    tensorrt_version: str,
    precision: str,
    input_name: str,
    input_shape: tuple[int, ...],
    dynamic_batch: bool,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    dla_core: int | None = None,
    gpu_fallback: bool = True,
    max_batch: int = 64,
) -> BuilderSettings:
    """The builder configuration for one artifact on one TensorRT version (no TensorRT import)."""
    gen = api_generation(tensorrt_version)
    if workspace_mb < 1:
        raise UsageError(f"--workspace must be >= 1 MB, got {workspace_mb}")
    flags: list[str] = []
    device = "GPU"
    if dla_core is not None:
        if dla_core < 0:
            raise UsageError(f"--dla must be a DLA core number >= 0, got {dla_core}")
        if gen == 11 and parse_version(tensorrt_version) < TRT11_DLA:
            raise UsageError(
                f"TensorRT {tensorrt_version} has no DLA support (it returns in 11.4.1, on AGX Orin)",
                hint="build for the GPU (no --dla), or use JetPack 6 (TensorRT 10.3)",
            )
        if precision not in ("fp16",):
            reason = (
                "the Orin DLA takes INT8 only through implicit quantization (a calibration cache), "
                "and edgec writes explicit Q/DQ"
                if precision == "int8"
                else f"the DLA runs FP16 and INT8 only, not {precision}"
            )
            raise UsageError(
                f"cannot build a {precision} engine for the DLA: {reason}",
                hint="compile with --quantize fp16 for the DLA, or build INT8 for the GPU",
            )
        device = "DLA"
        if gpu_fallback:
            flags.append("GPU_FALLBACK")
    # strongly typed on both generations: the graph's types decide precision, no precision flag
    network_flags = ("STRONGLY_TYPED",)
    return BuilderSettings(
        tensorrt_version=tensorrt_version,
        api_generation=gen,
        network_flags=network_flags,
        builder_flags=tuple(flags),
        workspace_bytes=workspace_mb * 1024 * 1024,
        device=device,
        dla_core=dla_core,
        profile={
            input_name: optimization_profile(input_shape, dynamic_batch=dynamic_batch, max_batch=max_batch)
        },
    )


#: TensorRT DataType names -> numpy dtypes for host buffers
TRT_DTYPES: dict[str, Any] = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


@dataclass(frozen=True)
class Buffer:
    name: str
    is_input: bool
    dtype: Any  # numpy dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def io_buffers(tensors: list[tuple[str, bool, str, tuple[int, ...]]], batch: int) -> list[Buffer]:
    """Host buffers for an engine's I/O tensors ``(name, is_input, dtype name, shape)`` at ``batch``.

    Dynamic dimensions (-1) are the batch; any other -1 is refused (edgec exports only the batch
    as dynamic). BF16 and FP8 I/O are refused: edgec's graphs keep their I/O in FP32.
    """
    if batch < 1:
        raise UsageError(f"batch must be >= 1, got {batch}")
    out = []
    for name, is_input, dtype, shape in tensors:
        if dtype not in TRT_DTYPES:
            raise UsageError(f"engine tensor '{name}' has type {dtype}, which edgec cannot feed or read")
        if any(d == -1 for d in shape[1:]):
            raise UsageError(f"engine tensor '{name}' has a dynamic non-batch dimension {list(shape)}")
        resolved = tuple(batch if (i == 0 and d == -1) else int(d) for i, d in enumerate(shape))
        out.append(Buffer(name, is_input, TRT_DTYPES[dtype], resolved))
    return out


def check_batch(requested: int, profile_max: int | None, fixed: int | None) -> None:
    """A batch the engine can run: within the profile, or exactly the fixed batch."""
    if fixed is not None and requested != fixed:
        raise UsageError(
            f"this engine was built for batch {fixed}, got {requested}",
            hint="run with that batch size, or rebuild with a dynamic batch",
        )
    if profile_max is not None and requested > profile_max:
        raise UsageError(
            f"batch {requested} exceeds the engine's maximum {profile_max}",
            hint="rebuild with a larger --max-batch",
        )


def parser_error_rows(errors: list[tuple[str, str, str, str]]) -> list[Violation]:
    """ONNX parser errors ``(node name, op type, error code, description)`` as why-not rows."""
    return [
        Violation(
            layer=node or "(graph)",
            rule=f"trt-parser-{code.lower()}" if code else "trt-parser",
            detail=f"{op + ': ' if op else ''}{desc}",
            hint="see docs/jetson.md; `edgec check --target jetson` runs the CPU-side rules",
        )
        for node, op, code, desc in errors
    ]
