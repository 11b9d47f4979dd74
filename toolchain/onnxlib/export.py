"""PyTorch -> ONNX with named inputs / outputs and an honest batch dimension.

* One input, named ``input``. Every output is kept, named as edgec names a program's outputs
  (:mod:`edgec.program`): a single tensor is ``output``; a tuple's items ``output_0``, ``output_1``,
  ...; a dict's items its keys (nested containers join with ``.``).
* The batch dimension: the export asks for a dynamic batch, then *checks* it by running ONNX Runtime
  on two samples at once and on each alone. A graph that traced its batch size into a constant (a
  ``torch.export`` program exported at batch 1, a reshape to a fixed shape, an STFT exported by the
  dynamo exporter) fails that check or returns different numbers; it is exported again with the
  batch fixed, and :attr:`ExportInfo.batch` says which size it takes. Nothing declares a dynamic
  batch that the graph does not really take.
* Exporters, in order: the TorchScript-based exporter (fast, mature for CNNs), then the dynamo
  exporter (``torch.export`` based; a TorchScript input model goes through torch's
  ``TS2EPConverter`` first, as torch's own error message advises). Why both failed is one line, with
  the operators that have no ONNX conversion named (:class:`OnnxExportError`), without terminal
  colour codes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.errors import ModelError, UsageError, first_line
from edgec.onnxlib.util import clean, quiet

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from edgec.program import Program

log = logging.getLogger(__name__)

INPUT_NAME = "input"
#: opset of the TorchScript-based exporter (the dynamo exporter picks its own, recorded per export)
OPSET = 17
#: how to export a torch.export program whose batch size is free (error hints, docs)
DYNAMIC_EXPORT_HINT = (
    "export it with a dynamic batch: torch.export.export(m.eval(), (x,), "
    "dynamic_shapes=({0: torch.export.Dim('batch')},)) with x of batch 2 or more"
)


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output as declared in the ONNX file (``"batch"`` for a symbolic dimension)."""

    name: str
    shape: tuple[int | str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape)}


@dataclass(frozen=True)
class ExportInfo:
    """What an export wrote: which exporter, opset, the declared input / outputs, the batch taken."""

    path: Path
    exporter: str
    opset: int
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    batch: int | None  # None: any batch size (checked); else the one batch size the graph takes
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "exporter": self.exporter,
            "opset": self.opset,
            "input": self.input.to_dict(),
            "outputs": [o.to_dict() for o in self.outputs],
            "batch": "dynamic" if self.batch is None else self.batch,
            "notes": list(self.notes),
        }


class OnnxExportError(ModelError):
    """The model cannot be exported to ONNX; ``ops`` names the operators without a conversion."""

    def __init__(self, message: str, *, ops: tuple[str, ...] = (), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.ops = ops


def _flat(module: nn.Module) -> nn.Module:
    """``module`` returning its outputs as a flat tuple in :func:`edgec.snn.named_outputs` order."""
    from torch import nn

    from edgec.snn import named_outputs

    class Flat(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            setattr(self, _WRAPPER, inner)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(named_outputs(getattr(self, _WRAPPER)(x)).values())

    flat = Flat(module)
    flat.training = False  # not .eval(): a torch.export module refuses mode switches
    return flat


def _needs_flat(out: Any) -> bool:
    """Whether the exporters need the flattening wrapper (a dict, a named or nested tuple)."""
    import torch

    if isinstance(out, torch.Tensor):
        return False
    if isinstance(out, (tuple, list)) and not hasattr(out, "_fields"):
        return not all(isinstance(t, torch.Tensor) for t in out)
    return True


_WRAPPER = "inner"


def _strip_wrapper(path: Path) -> None:
    """Tensor and node names without the flattening wrapper's prefix (``inner.fc.weight`` ->
    ``fc.weight``, ``/inner/fc/Gemm`` -> ``/fc/Gemm``), as if the model had been exported itself."""
    import onnx

    model = onnx.load(str(path))
    g = model.graph

    def fix(name: str) -> str:
        for pre, new in ((f"{_WRAPPER}.", ""), (f"/{_WRAPPER}/", "/"), (f"{_WRAPPER}_", "")):
            if name.startswith(pre):
                return new + name[len(pre) :]
        return name

    for node in g.node:
        node.name = fix(node.name)
        node.input[:] = [fix(n) for n in node.input]
        node.output[:] = [fix(n) for n in node.output]
    for coll in (g.initializer, g.value_info, g.input, g.output):
        for item in coll:
            item.name = fix(item.name)
    onnx.save(model, str(path))


def export_program(
    program: Program, path: Path, *, opset: int | None = None, batch: int | None = None
) -> ExportInfo:
    """Export an edgec :class:`~edgec.program.Program` (eval mode, a deep copy) to ``path``.

    A spiking program is exported with its host-side encoder in front (:class:`edgec.snn.EncodedSNN`):
    the graph takes raw input ``[N, ...]`` and returns output spikes ``[N, T, ...]``, the time loop
    unrolled over the program's T steps. ``opset`` and ``batch``: as :func:`export_onnx`."""
    module = program.module
    if program.kind == "snn":
        from edgec.snn import EncodedSNN

        module = EncodedSNN(program.module, program.timesteps, program.encoder, program.input_shape)
    return export_onnx(
        module,
        program.example_input,
        path,
        static_batch=program.static_batch,
        opset=opset,
        batch=batch,
    )


def export_onnx(
    module: nn.Module,
    example_input: torch.Tensor,
    path: Path,
    *,
    static_batch: int | None = None,
    opset: int | None = None,
    batch: int | None = None,
) -> ExportInfo:
    """Export ``module`` (a deep copy, in eval mode) for input like ``example_input`` to ``path``.

    ``static_batch``: the PyTorch graph itself takes only this batch size (a ``torch.export``
    program exported at batch 1); a dynamic batch is still tried and kept if ONNX Runtime shows
    the exported graph really takes any batch. ``opset``: None exports with the TorchScript-based
    exporter at :data:`OPSET` and lets the dynamo exporter pick its own (the CPU target); a number
    asks both exporters for it (a consumer's parser range: TensorRT 10 takes opsets 9..20).
    ``batch``: the batch size the graph must declare (a consumer that takes static shapes only,
    such as the Jetson DLA); None asks for a dynamic one. Raises :class:`OnnxExportError`, or
    :class:`~edgec.errors.UsageError` for a ``batch`` the model cannot take.
    """
    import torch

    from edgec.snn import named_outputs

    path = Path(path)
    if batch is not None:
        if batch < 1:
            raise UsageError(f"an export batch must be >= 1, got {batch}")
        if static_batch is not None and batch != static_batch:
            raise UsageError(
                f"the model takes batch {static_batch} only; it cannot be exported at batch {batch}",
                hint=f"ask for batch {static_batch}, or {DYNAMIC_EXPORT_HINT}",
            )
    module = copy.deepcopy(module)
    with contextlib.suppress(NotImplementedError):  # a torch.export module cannot switch modes
        module.eval()
    x = example_input.detach()
    if batch is not None and int(x.shape[0]) != batch:
        x = x[:1].expand(batch, *x.shape[1:]).contiguous()
    with torch.no_grad():
        out = module(x)
    names = list(named_outputs(out))
    wrap = _needs_flat(out)
    if not names:
        raise OnnxExportError("the model returns no tensor, nothing to export")
    scripted = isinstance(module, torch.jit.ScriptModule)
    errors: dict[str, str] = {}
    ops: list[str] = []
    # a dynamic batch from either exporter before a fixed one: the TorchScript exporter traces
    # shapes a torch.export graph computes (a GRU's initial state) into constants
    failed: set[str] = set()
    why_fixed: dict[str, str] = {}
    attempts = [("torchscript", True), ("dynamo", True)] if batch is None else []
    for exporter, dynamic in (*attempts, ("torchscript", False), ("dynamo", False)):
        if exporter in failed:
            continue
        try:
            _run_exporter(exporter, module, x, path, names, dynamic, scripted, static_batch, wrap, opset)
        except Exception as exc:
            path.unlink(missing_ok=True)
            text = clean(str(exc))
            errors[exporter] = _summary(text, exc)
            ops += [op for op in _unsupported_ops(text) if not any(op.startswith(o) for o in ops)]
            if dynamic and _batch_related(text):
                why_fixed[exporter] = errors[exporter]
            else:
                failed.add(exporter)  # not about the batch: a fixed one will not help
            continue
        if dynamic:
            reason = _batch_check(path, x)
            if reason is None:
                return _info(path, exporter, None, ())
            log.info("%s exporter: %s", exporter, reason)
            why_fixed[exporter] = reason
            path.unlink(missing_ok=True)
            continue
        if batch is not None:  # asked for: no warning, the report says which batch
            return _info(path, exporter, batch, (f"the batch was fixed at {batch} as asked",))
        fixed = int(x.shape[0])
        why = "; ".join(f"{k} exporter: {v}" for k, v in why_fixed.items()) or "a dynamic batch failed"
        log.warning(
            "the ONNX graph takes batch %d only (%s); larger batches run %d sample(s) at a time. "
            "For a dynamic batch, %s",
            fixed,
            why,
            fixed,
            DYNAMIC_EXPORT_HINT,
        )
        note = f"the graph takes batch {fixed} only ({why}); a larger batch runs {fixed} sample(s) at a time"
        return _info(path, exporter, fixed, (note,))
    detail = "; ".join(f"{k} exporter: {v}" for k, v in errors.items())
    no_op = f" ({', '.join(ops)} has no ONNX conversion)" if ops else ""
    raise OnnxExportError(
        f"cannot export the model to ONNX{no_op}: {detail}",
        ops=tuple(ops),
        hint="replace the named operator(s) with ones ONNX has, or compute them outside the model"
        if ops
        else "see torch.onnx's documentation on unsupported constructs",
    )


def _run_exporter(
    exporter: str,
    module: nn.Module,
    x: torch.Tensor,
    path: Path,
    names: list[str],
    dynamic: bool,
    scripted: bool,
    static_batch: int | None,
    wrap: bool,
    opset: int | None = None,
) -> None:
    import torch

    with quiet():
        if exporter == "torchscript":
            # a ScriptModule is exported as it is (its outputs flatten in the same order); any other
            # module through a wrapper that flattens dicts, which this exporter cannot return
            model = _flat(module) if wrap and not scripted else module
            axes = {n: {0: "batch"} for n in [INPUT_NAME, *names]} if dynamic else None
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=False,
                opset_version=opset or OPSET,
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
            if model is not module:
                _strip_wrapper(path)  # layer names as the user's module has them, not under the wrapper
            return
        xd = x
        if dynamic and static_batch is None and int(x.shape[0]) == 1:
            xd = torch.cat([x, 1 - x])  # torch.export specialises a batch of 1 to a constant
        if scripted:
            from torch._export.converter import TS2EPConverter  # torch's advice for ScriptModules

            module = TS2EPConverter(module, (xd,)).convert().module()  # type: ignore[arg-type]
        dyn = ({0: torch.export.Dim("batch")},) if dynamic else None
        program = torch.onnx.export(
            _flat(module) if wrap or scripted else module,
            (xd,),
            dynamo=True,
            opset_version=opset,  # None: the exporter's own
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_shapes=dyn,
            optimize=True,
            verbose=False,
        )
        if program is None:
            raise RuntimeError("the dynamo exporter returned nothing")
        program.save(str(path))
    if wrap or (scripted and exporter == "dynamo"):
        _strip_wrapper(path)


def _batch_check(path: Path, x: torch.Tensor) -> str | None:
    """None if the exported graph takes any batch and treats samples independently, else why not.

    Runs ONNX Runtime on two different samples as one batch and on each alone; the outputs must
    agree (a graph that baked the batch size into a reshape fails to run or mixes samples).
    """
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    dim0 = sess.get_inputs()[0].shape[0]
    if isinstance(dim0, int):
        return f"the exporter fixed the batch at {dim0}"
    a = x[:1].numpy().astype(np.float32)
    b = (1 - a).astype(np.float32)
    try:
        with quiet():  # ORT logs kernel failures from C++ whatever the severity asked
            both = sess.run(None, {INPUT_NAME: np.concatenate([a, b])})
            alone = [sess.run(None, {INPUT_NAME: s}) for s in (a, b)]
    except Exception as exc:
        return f"ONNX Runtime cannot run it at batch 2 ({first_line(exc)})"
    for k, out in enumerate(both):
        if out.ndim == 0 or out.shape[0] != 2:
            return f"output {k} has no batch dimension at batch 2 (shape {list(out.shape)})"
        for i in range(2):
            ref = alone[i][k][0]
            if not _close(out[i], ref):
                return f"output {k} of a sample changes with the batch it runs in"
    return None


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    import numpy as np

    if a.shape != b.shape:
        return False
    scale = float(np.abs(b).max()) if b.size else 0.0
    return bool(np.allclose(a, b, rtol=1e-4, atol=1e-5 * max(scale, 1.0)))


def _info(path: Path, exporter: str, batch: int | None, notes: tuple[str, ...]) -> ExportInfo:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    init = {i.name for i in model.graph.initializer}

    def spec(vi: Any) -> TensorSpec:
        dims = vi.type.tensor_type.shape.dim
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else ("batch" if i == 0 else (d.dim_param or "?"))
            for i, d in enumerate(dims)
        )
        return TensorSpec(vi.name, shape)

    inputs = [vi for vi in model.graph.input if vi.name not in init]
    return ExportInfo(
        path=path,
        exporter=exporter,
        opset=int(opset),
        input=spec(inputs[0]),
        outputs=tuple(spec(vi) for vi in model.graph.output),
        batch=batch,
        notes=notes,
    )


def _summary(text: str, exc: BaseException) -> str:
    """One line: the exception summary of the dynamo exporter, else the first line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "## Exception summary" in lines:
        after = lines[lines.index("## Exception summary") + 1 :]
        if after:
            return re.sub(r"^<class '(?:[\w.]+\.)?(\w+)'>:", r"\1:", after[0])
    return lines[0] if lines else type(exc).__name__


_OP_PATTERNS = (
    re.compile(r"operator '([\w.:]+)'"),  # TorchScript exporter: 'aten::linalg_inv'
    re.compile(r"OpOverload\(op='(aten\.[\w.]+)'"),  # dynamo exporter: 'aten.linalg_inv_ex'
)


def _unsupported_ops(text: str) -> list[str]:
    found: list[str] = []
    for pat in _OP_PATTERNS:
        for m in pat.finditer(text):
            op = m.group(1).replace("aten.", "aten::", 1)
            if not any(op.startswith(f) for f in found):  # linalg_inv_ex after linalg_inv
                found.append(op)
    return found


def _batch_related(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in ("specializ", "constraint", "guard", "dim(", "dynamic_shapes", "batch"))
