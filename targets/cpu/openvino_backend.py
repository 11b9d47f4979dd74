"""The ``openvino`` backend: the artifact on OpenVINO (an optional extra: ``pip install 'edgec[openvino]'``,
which ``make setup`` installs).

* Precision: on CPUs with native bf16 (AVX512-BF16, AMX) OpenVINO's default inference precision is
  bf16, not f32, so an FP32 model silently computes at bf16. edgec always sets
  ``INFERENCE_PRECISION_HINT`` to the artifact's ``precision`` option (f32 unless bf16 / f16 was asked)
  and reads back what the compiled model runs at: the hint and, on the CPU, the precision of every
  compute layer of its runtime graph (``verify`` fails an f32 artifact that ran lower).
* Threads: ``INFERENCE_NUM_THREADS``; ``ENABLE_CPU_PINNING`` off unless ``pinning = true`` (measured:
  a thread pinned to a core that another process keeps busy waits for it; ResNet-18 INT8 beside a busy
  process ran about 3.5x slower pinned, benchmarks/results/cpu_backends.md).
* The artifact's IR (model.xml / model.bin, written when openvino is the artifact's backend) is
  model.onnx converted once, with int8 weights where model.onnx quantizes them (OpenVINO's
  ``save_model`` compresses the weights of its quantized ops); without an IR, model.onnx is read.
* Devices: OpenVINO device names (``CPU``, ``GPU``, ``GPU.1``, ``NPU``, ``AUTO:GPU,CPU``). Only the CPU
  exists on the machines edgec is tested on: for any other device this module only checks that the
  device is present (else exit 7 with what OpenVINO sees), passes the precision hint and records the
  device; nothing device-specific is tuned or tested.
"""

from __future__ import annotations

import importlib.util
import io
import re
from collections import Counter
from pathlib import Path
from typing import Any

from edgec.errors import MissingDependency
from edgec.targets.cpu.options import CpuOptions
from edgec.targets.cpu.session import RuntimeSession, output_names

NAME = "openvino"
INSTALL_HINT = (
    "install it with `pip install 'edgec[openvino]'` (`make setup` does), or use --backend onnxruntime"
)
#: layer types of OpenVINO's CPU runtime graph that carry the arithmetic (their precision is what ran)
COMPUTE_LAYERS = ("Convolution", "Deconvolution", "FullyConnected", "MatMul", "RNNSeq", "RNNCell", "MHA")
#: OpenVINO element type names -> edgec's precision names
_PRECISION = {"f32": "f32", "bf16": "bf16", "f16": "f16", "u8": "int8", "i8": "int8"}


def available() -> bool:
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        return False


def require(what: str = "--backend openvino") -> Any:
    """The ``openvino`` module, or exit 7 saying that ``what`` needs it and how to install it."""
    try:
        import openvino
    except ImportError:
        raise MissingDependency(f"{what} needs OpenVINO, which is not installed", hint=INSTALL_HINT) from None
    return openvino


def version() -> str:
    return str(require().__version__).split("-")[0]


def properties(opts: CpuOptions, threads: int | None) -> dict[str, Any]:
    """The compile properties edgec sets for ``opts`` (a plain function: tested without a device)."""
    props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": opts.precision, "PERFORMANCE_HINT": "LATENCY"}
    if opts.device == "CPU":
        props["ENABLE_CPU_PINNING"] = opts.pinning
        if threads:
            props["INFERENCE_NUM_THREADS"] = threads
    return props


def named_devices(device: str) -> list[str]:
    """The physical devices a device string names: ``GPU.1`` -> [GPU.1], ``AUTO:GPU,CPU`` -> [GPU, CPU],
    ``AUTO`` -> [] (OpenVINO picks among those present)."""
    _, _, listed = device.partition(":") if ":" in device else ("", "", device)
    if not listed or listed in ("AUTO", "MULTI", "HETERO"):
        return []
    return [d.strip() for d in listed.split(",") if d.strip()]


def check_device(core: Any, device: str) -> None:
    """Exit 7 when a device ``device`` names is not present (``GPU`` matches ``GPU.0``, ``GPU.1``)."""
    present = list(core.available_devices)
    missing = [d for d in named_devices(device) if not any(p == d or p.split(".")[0] == d for p in present)]
    if missing:
        raise MissingDependency(
            f"OpenVINO device {', '.join(missing)} is not present on this machine "
            f"(OpenVINO sees: {', '.join(present) or 'none'})",
            hint="run the artifact where the device and its driver are, or compile with "
            "--target-option device=CPU",
        )


def write_ir(onnx_path: Path, xml_path: Path, opts: CpuOptions) -> dict[str, Any]:
    """model.onnx converted to OpenVINO IR (``xml_path`` and its .bin); returns what it holds.

    Weights stay f32 unless ``precision = "f16"`` (then stored as f16); the weights of quantized
    operators are stored as int8 (``save_model`` folds their FakeQuantize into int8 constants).
    """
    ov = require()
    # from the bytes, not the path: convert_model splits a path string at commas (a list of inputs), so
    # an output folder named "a,b" failed with "'.../a' does not exist"
    model = ov.convert_model(io.BytesIO(onnx_path.read_bytes()))
    ov.save_model(model, str(xml_path), compress_to_fp16=opts.precision == "f16")
    _stable_names(xml_path)
    saved = ov.Core().read_model(str(xml_path))
    constants = Counter(
        op.get_output_element_type(0).get_type_name()
        for op in saved.get_ordered_ops()
        if op.get_type_name() == "Constant"
    )
    return {"constants_by_type": dict(sorted(constants.items()))}


#: a layer name OpenVINO made up: ``<Type>_<global counter>``
_MADE_UP = re.compile(r'(<layer id="(\d+)" name=")([A-Za-z][A-Za-z0-9]*)_\d+(")')


def _stable_names(xml_path: Path) -> None:
    """OpenVINO names the layers it creates ``<Type>_<counter>`` from a process-wide counter, so the
    same model.onnx converted twice in one process gives another model.xml. Those names are rewritten
    from the layer's id (edgec wrote this file a moment ago): the same model.onnx, the same bytes.
    Names that came from the ONNX graph are kept."""
    text = xml_path.read_text()
    xml_path.write_text(_MADE_UP.sub(lambda m: f"{m[1]}{m[3]}_id{m[2]}{m[4]}", text))


def open_session(
    model: Path, opts: CpuOptions, *, threads: int | None, declared: list[str]
) -> RuntimeSession:
    """A session on ``model`` (model.xml, else model.onnx) on ``opts.device``."""
    ov = require()
    core = ov.Core()
    check_device(core, opts.device)
    compiled = core.compile_model(core.read_model(str(model)), opts.device, properties(opts, threads))
    request = compiled.create_infer_request()
    outputs = list(compiled.outputs)
    shape = [d.get_length() if d.is_static else None for d in compiled.input(0).get_partial_shape()]
    names = output_names(declared, [o.get_any_name() for o in outputs])

    def run(x: Any) -> list[Any]:
        res = request.infer({0: x})
        return [res[o] for o in outputs]

    return RuntimeSession(run, shape, names, describe(core, compiled, opts, model))


def describe(core: Any, compiled: Any, opts: CpuOptions, model: Path) -> dict[str, Any]:
    """What the compiled model runs as: version, device, the precision it computes float operations in
    (read back from the compiled model), threads, and the precision of its compute layers (CPU)."""
    info: dict[str, Any] = {
        "backend": NAME,
        "runtime": f"{NAME} {version()}",
        "device": opts.device,
        "model": model.name,
        "precision": _read(compiled, "INFERENCE_PRECISION_HINT", lambda t: t.get_type_name()),
    }
    name = _read(core, "FULL_DEVICE_NAME", str, opts.device)
    if name != "unknown":
        info["device"] = f"{opts.device} ({name})"
    if opts.device == "CPU":
        info["threads"] = _read(compiled, "INFERENCE_NUM_THREADS", int)
        info["pinning"] = _read(compiled, "ENABLE_CPU_PINNING", bool)
        info["compute_layers"] = compute_layer_precisions(compiled)
    return info


def _read(obj: Any, key: str, conv: Any, device: str | None = None) -> Any:
    try:
        value = obj.get_property(device, key) if device is not None else obj.get_property(key)
        return conv(value)
    except Exception:  # a device that does not report the property (untestable here: GPU, NPU)
        return "unknown"


def compute_layer_precisions(compiled: Any) -> dict[str, dict[str, int]]:
    """``{layer type: {precision: count}}`` of the compute layers of the compiled model's runtime graph
    (``runtimePrecision`` of each layer, after OpenVINO's fusions): what really ran in int8 or float."""
    counts: dict[str, Counter[str]] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        kind = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
        if kind not in COMPUTE_LAYERS:
            continue
        prec = rt["runtimePrecision"].astype(str) if "runtimePrecision" in rt else "unknown"
        counts.setdefault(kind, Counter())[_PRECISION.get(prec, prec)] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(counts.items())}


def float_precisions(runtime: dict[str, Any]) -> set[str]:
    """The float precisions a session's compute layers ran in (int8 layers aside), and its hint."""
    seen = {p for layers in (runtime.get("compute_layers") or {}).values() for p in layers}
    seen.discard("int8")
    if runtime.get("precision") not in (None, "unknown"):
        seen.add(str(runtime["precision"]))
    return seen
