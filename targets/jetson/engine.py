"""The only module that imports TensorRT (lazily): build an engine from the artifact's graph, run it.

Every decision is made before this module is called (:mod:`.settings`, tested on CPU): the graph,
the builder settings as data, the I/O buffers. What is here are the TensorRT and CUDA calls, which
need a GPU and run only on a Jetson or an NVIDIA GPU machine (tests marked ``gpu``).

TensorRT 10 and 11 share the calls used here (``create_network`` with ``STRONGLY_TYPED``,
``OnnxParser``, ``set_memory_pool_limit``, ``build_serialized_network``, ``execute_async_v3`` with
named tensor addresses); where 11 dropped a flag (a network is always strongly typed), the flag is
looked up by name and skipped when absent. Host <-> device copies use cuda-python's runtime
bindings (``cuda.bindings.runtime``, or ``cuda.cudart`` on older cuda-python).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import ConstraintViolation, MissingDependency, UsageError
from edgec.targets.jetson.settings import Buffer, BuilderSettings, check_batch, io_buffers, parser_error_rows

log = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependency(
            "TensorRT is not installed here (it needs an NVIDIA GPU: a Jetson or a GPU machine)",
            hint="on a Jetson: apt install python3-libnvinfer (JetPack); elsewhere run the same graph "
            "with --backend onnxruntime",
        ) from None
    return trt


def tensorrt_version() -> str:
    return str(import_tensorrt().__version__)


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise MissingDependency(
                "cuda-python is not installed (needed to move data to and from the GPU)",
                hint="pip install cuda-python (the version matching your CUDA)",
            ) from None
    return cudart


def _check(result: Any) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA call failed with error {err}")
    return rest[0] if len(rest) == 1 else rest


def build_engine(onnx_path: Path, settings: BuilderSettings) -> bytes:
    """Parse the graph and build a serialized engine with ``settings``; parser errors become a table."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in settings.network_flags:
        flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if flag is not None:  # TensorRT 11: every network is strongly typed, the flag may be gone
            flags |= 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            errors.append((e.node_name(), e.node_operator(), str(e.code()).split(".")[-1], e.desc()))
        raise ConstraintViolation(
            f"TensorRT's ONNX parser refused the graph: {len(errors)} error(s)", parser_error_rows(errors)
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    for name in settings.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if settings.device == "DLA":
        if builder.num_DLA_cores <= (settings.dla_core or 0):
            raise UsageError(
                f"this device has {builder.num_DLA_cores} DLA core(s); "
                f"--dla {settings.dla_core} does not exist",
                hint="Orin Nano has no DLA; AGX Orin and Orin NX have cores 0 and 1",
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core
    for tensor, (lo, opt, hi) in settings.profile.items():
        if lo != hi:
            profile = builder.create_optimization_profile()
            profile.set_shape(tensor, lo, opt, hi)
            config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ConstraintViolation(
            "TensorRT could not build an engine from this graph",
            parser_error_rows(
                [("(builder)", "", "", "the builder returned no engine; rerun with EDGEC_LOG=info")]
            ),
        )
    return bytes(plan)


class EngineSession:
    """A deserialized engine with its execution context, callable on a host batch."""

    def __init__(self, plan: bytes, *, max_batch: int | None, fixed_batch: int | None) -> None:
        trt = import_tensorrt()
        self.cudart = _cudart()
        self.trt = trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise UsageError(
                "TensorRT could not load the engine (built by another TensorRT version or device)",
                hint="rebuild it here with `edgec build-engine`",
            )
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate())
        self.max_batch, self.fixed_batch = max_batch, fixed_batch
        self._device: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)

    def tensors(self) -> list[tuple[str, bool, str, tuple[int, ...]]]:
        out = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT
            dtype = str(self.engine.get_tensor_dtype(name)).split(".")[-1]
            out.append((name, is_input, dtype, tuple(self.engine.get_tensor_shape(name))))
        return out

    def _alloc(self, buf: Buffer) -> int:
        ptr, size = self._device.get(buf.name, (0, 0))
        if size < buf.nbytes:
            if ptr:
                _check(self.cudart.cudaFree(ptr))
            ptr = _check(self.cudart.cudaMalloc(buf.nbytes))
            self._device[buf.name] = (ptr, buf.nbytes)
        return ptr

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        check_batch(len(x), self.max_batch, self.fixed_batch)
        buffers = io_buffers(self.tensors(), len(x))
        h2d = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        outputs: list[tuple[Buffer, int]] = []
        for buf in buffers:
            ptr = self._alloc(buf)
            self.context.set_tensor_address(buf.name, ptr)
            if buf.is_input:
                self.context.set_input_shape(buf.name, buf.shape)
                host = np.ascontiguousarray(x, dtype=buf.dtype)
                _check(self.cudart.cudaMemcpyAsync(ptr, host.ctypes.data, buf.nbytes, h2d, self.stream))
            else:
                outputs.append((buf, ptr))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execution failed")
        results = []
        for buf, ptr in outputs:
            host = np.empty(buf.shape, dtype=buf.dtype)
            _check(self.cudart.cudaMemcpyAsync(host.ctypes.data, ptr, buf.nbytes, d2h, self.stream))
            results.append(host)
        _check(self.cudart.cudaStreamSynchronize(self.stream))
        return {buf.name: host.astype(np.float32) for (buf, _), host in zip(outputs, results, strict=True)}

    def close(self) -> None:
        for ptr, _ in self._device.values():
            self.cudart.cudaFree(ptr)
        self._device.clear()


def engine_session(
    plan_path: Path, *, max_batch: int | None, fixed_batch: int | None
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    return EngineSession(plan_path.read_bytes(), max_batch=max_batch, fixed_batch=fixed_batch)
