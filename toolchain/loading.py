"""Turn what the user gives (a file, ``zoo:NAME``, a module) into a validated :class:`Program`.

Accepted model files, recognised by content, not by extension:

* ``torch.export`` programs (``.pt2``, from ``torch.export.save``): input shape read from the graph;
* TorchScript archives (``torch.jit.save``): need ``--input-shape``;
* ``state_dict`` checkpoints (``torch.save(model.state_dict())``, also ``{"state_dict": ...}``):
  need ``--arch NAME`` from the built-in zoo;
* whole pickled modules (``torch.save(model)``): loaded only with ``--trust-pickle``, because
  unpickling runs arbitrary code. Without it every ``torch.load`` runs with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.errors import ModelError, UsageError, first_line
from edgec.program import Program, SourceInfo, sha256_of
from edgec.zoo import ZOO_REF, zoo  # noqa: F401 - re-exported: edgec.loading.zoo is public

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch
    from torch import nn

_PICKLE_PROTOCOL_BYTE = 0x80


def _zoo_entry(name: str, flag: str) -> Any:
    entries = zoo()
    if name not in entries:
        raise UsageError(
            f"unknown {flag} '{name}'",
            hint=f"choose one of: {', '.join(sorted(entries))} (see `edgec models`)",
        )
    return entries[name]


def detect_format(path: Path) -> str:
    """'export' | 'torchscript' | 'torch_save' (state_dict or pickled module); raises ModelError."""
    with open(path, "rb") as f:
        head = f.read(4)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelError(f"model file '{path}' is corrupt: {exc}") from None
        if bad is not None:
            raise ModelError(
                f"model file '{path}' is corrupt (bad entry '{bad}')", hint="re-save or re-download it"
            )
        if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            return "export"
        if any("/code/" in n or n.startswith("code/") or n.endswith("constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch_save"
        raise ModelError(
            f"'{path}' is a zip archive but not a PyTorch model (no data.pkl, code/ or archive_format)"
        )
    if head[:4] == b"PK\x03\x04":
        raise ModelError(
            f"model file '{path}' is truncated or corrupt (a zip archive without its directory)",
            hint="re-save or re-download the file",
        )
    if head[:1] == bytes([_PICKLE_PROTOCOL_BYTE]):
        return "torch_save"  # legacy (non-zip) torch.save format
    raise ModelError(
        f"'{path}' is not a PyTorch model file",
        hint="give a torch.export .pt2, a TorchScript file, a state_dict (with --arch), a NIR graph, "
        "or zoo:NAME",
    )


def _extract_state_dict(obj: Any) -> Mapping[str, Any] | None:
    import torch

    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                return inner
    return None


def _load_torch_save(path: Path, *, trust_pickle: bool, arch: str | None) -> tuple[nn.Module, str]:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text or "GLOBAL" in text or "WeightsUnpickler" in text:
            if not trust_pickle:
                raise ModelError(
                    f"'{path}' is a pickled Python object, not plain weights: "
                    "loading it would run arbitrary code",
                    hint="if you trust its source pass --trust-pickle; better, save a torch.export .pt2 "
                    "or a state_dict and pass --arch",
                ) from None
            obj = None
        else:
            raise ModelError(f"'{path}' is not a readable PyTorch file: {first_line(exc)}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"model file '{path}' is truncated or corrupt: {first_line(exc)}") from None
    if obj is None:  # trusted pickle
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except (ModuleNotFoundError, AttributeError) as exc:
            missing = getattr(exc, "name", None) or str(exc)
            raise ModelError(
                f"cannot unpickle '{path}': the class of its model is defined in '{missing}', which Python "
                "cannot import here",
                hint="put the folder holding that module on PYTHONPATH (or run edgec from it); better, "
                "save a torch.export .pt2, which needs no code to load",
            ) from None
        except Exception as exc:
            raise ModelError(f"cannot unpickle '{path}': {type(exc).__name__}: {first_line(exc)}") from None
        from torch import nn

        if isinstance(obj, nn.Module):
            return obj, "pickle"
    state = _extract_state_dict(obj)
    if state is None:
        raise ModelError(
            f"'{path}' holds a {type(obj).__name__}, neither a module nor a state_dict of tensors"
        )
    if arch is None:
        raise UsageError(
            f"'{path}' holds a state_dict (weights only)",
            hint="pass --arch NAME to say which architecture they belong to (see `edgec models`)",
        )
    module = _arch_module(arch)
    from edgec.frameworks import runtime_state

    skip = runtime_state(module)  # another framework's neuron state saved with the weights (Sinabs)
    state = {k: v for k, v in state.items() if k not in skip}
    own = {k: v for k, v in module.state_dict().items() if k not in skip}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = [
            f"{len(keys)} {what} (e.g. {keys[0]!r})"
            for what, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", wrong),
            )
            if keys
        ]
        raise ModelError(
            f"the state_dict in '{path}' does not fit --arch {arch}: {', '.join(parts)}",
            hint="check --arch (see `edgec models`)"
            if ":" not in arch
            else "the factory must build the architecture the weights were saved from",
        )
    module.load_state_dict(state, strict=not skip)  # every other key was checked above
    return module, "state_dict"


def _arch_module(arch: str) -> nn.Module:
    """``--arch``: a zoo name, or ``package.module:Factory`` (a callable returning the nn.Module,
    called without arguments; recorded in artifacts and program stores so they can rebuild it)."""
    if ":" in arch:
        from edgec.store import build_arch

        return build_arch({"kind": "factory", "ref": arch})
    module: nn.Module = _zoo_entry(arch, "--arch").build(pretrained=False)
    return module


def load_program(
    model: str | Path | nn.Module | Program,
    *,
    arch: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    trust_pickle: bool = False,
    timesteps: int | None = None,
    dt: float | None = None,
) -> Program:
    """Load and validate a model. ``input_shape`` includes the batch dimension; ``dt`` is the time
    step (s) of a NIR graph (:mod:`edgec.nirgraph`)."""
    import torch
    from torch import nn

    if isinstance(model, str) and "#" in model:  # OUT#trial-7: a trial of `edgec search` OUT
        from edgec.search.member import resolve_member

        model = resolve_member(model) or model
    if isinstance(model, Program):
        program = model
    elif isinstance(model, torch.export.ExportedProgram):
        module, shape, static = exported_module(model, where="the ExportedProgram")
        program = Program(
            module=module,
            example_input=_example(input_shape or shape),
            source=SourceInfo("export"),
            static_batch=static,
        )
    elif isinstance(model, torch.jit.ScriptModule):
        if input_shape is None:
            raise UsageError("a TorchScript module needs input_shape=(batch, ...)")
        program = Program(module=model, example_input=_example(input_shape), source=SourceInfo("torchscript"))
    elif isinstance(model, nn.Module):
        if input_shape is None:
            raise UsageError(
                "an in-memory module needs input_shape=(batch, ...)",
                hint="e.g. edgec.compile(model, input_shape=(1, 3, 32, 32))",
            )
        _check_single_input(model, "the module")
        program = Program(module=model, example_input=_example(input_shape), source=SourceInfo("module"))
    elif not isinstance(model, (str, Path)):
        raise UsageError(
            f"cannot compile a {type(model).__name__}",
            hint="give a model file path, zoo:NAME, an nn.Module (with input_shape), a "
            "torch.export ExportedProgram, or an edgec Program",
        )
    elif isinstance(model, str) and model.startswith("zoo:"):
        entry = _zoo_entry(model[4:], "zoo model")
        program = entry.program()
    else:
        program = _program_from_file(
            Path(model),
            arch=arch,
            input_shape=input_shape,
            trust_pickle=trust_pickle,
            dt=dt,
            timesteps=timesteps,
        )
    if input_shape is not None and tuple(program.example_input.shape) != tuple(input_shape):
        program = program.replace(example_input=_example(input_shape), outputs=())
    from edgec.frameworks import import_foreign

    program = import_foreign(program)  # snnTorch, SpikingJelly, Norse, Sinabs layers -> edgec.snn
    if program.kind == "ann":
        from edgec.snn import is_spiking, snn_defaults

        if is_spiking(program.module):  # built from edgec.snn layers: a time-major SNN
            program = program.replace(**snn_defaults(program.module))
    if timesteps is not None:
        program = program.replace(timesteps=timesteps)
    return validate_program(program)


def _example(shape: tuple[int, ...]) -> torch.Tensor:
    import torch

    gen = torch.Generator().manual_seed(0)
    return torch.rand(shape, generator=gen)


def _program_from_file(
    path: Path,
    *,
    arch: str | None,
    input_shape: tuple[int, ...] | None,
    trust_pickle: bool,
    dt: float | None = None,
    timesteps: int | None = None,
) -> Program:
    import torch

    if not path.exists():
        raise UsageError(f"model file '{path}' does not exist")
    from edgec.store import is_program_dir, load_program_dir

    if is_program_dir(path):  # written by `edgec compress`: rebuilt without pickle
        return load_program_dir(path)
    if path.is_dir():
        raise UsageError(f"'{path}' is a directory, not a model file")
    from edgec.frontends import LoadOptions, frontend_for

    frontend = frontend_for(path)  # NIR, ... (edgec.frontends)
    if frontend is not None:
        return frontend.load(path, LoadOptions(input_shape=input_shape, dt=dt, timesteps=timesteps))
    fmt = detect_format(path)
    digest = sha256_of(path)
    shape = input_shape
    static_batch: int | None = None
    if fmt == "export":
        try:
            ep = torch.export.load(str(path))
        except Exception as exc:
            raise ModelError(f"cannot load torch.export program '{path}': {first_line(exc)}") from None
        module, export_shape, static_batch = exported_module(ep, where=f"'{path}'")
        shape = shape or export_shape
        source = SourceInfo("export", str(path.resolve()), digest)
    elif fmt == "torchscript":
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream; still a valid input
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ModelError(f"cannot load TorchScript model '{path}': {first_line(exc)}") from None
        _check_single_input(module, f"'{path}'")
        source = SourceInfo("torchscript", str(path.resolve()), digest)
    else:
        module, kind = _load_torch_save(path, trust_pickle=trust_pickle, arch=arch)
        source = SourceInfo(kind, str(path.resolve()), digest, arch=arch, trusted_pickle=kind == "pickle")  # type: ignore[arg-type]
        if shape is None and arch is not None:
            declared = (
                getattr(module, "input_shape", None)
                if ":" in arch
                else _zoo_entry(arch, "--arch").input_shape
            )
            shape = (1, *declared) if declared else None
    if shape is None:
        raise UsageError(
            f"cannot tell the input shape of '{path}' ({fmt})",
            hint="pass --input-shape, e.g. --input-shape 1,3,32,32",
        )
    if arch is not None and ":" not in arch:
        entry = _zoo_entry(arch, "--arch")
        return entry.program(module=module, source=source, example_input=_example(shape))
    return Program(
        module=module, example_input=_example(shape), source=source, name=path.stem, static_batch=static_batch
    )


#: how to export a model whose batch size is free (README, error hints)
DYNAMIC_EXPORT = "torch.export.export(m.eval(), (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))"
ONE_INPUT_HINT = (
    "edgec compiles models with one input tensor: wrap the model in a module whose forward takes one "
    "tensor (e.g. split a concatenated input inside it), export that, and give data of its shape"
)


def exported_module(ep: Any, *, where: str) -> tuple[nn.Module, tuple[int, ...], int | None]:
    """A ``torch.export`` program as a module edgec can run: (module, input shape, static batch).

    ``ep.module()`` refuses ``train()`` / ``eval()`` because switching changes nothing in a traced
    graph; edgec only ever asks for inference mode, which a graph exported in eval mode already
    has, so the module's ordinary methods are restored (a graph exported in training mode is
    refused). The static batch is the exported batch size when the graph fixed it (exported at
    batch 1 without ``dynamic_shapes``), else None.
    """
    user_inputs = list(ep.graph_signature.user_inputs)
    values = {n.name: n.meta.get("val") for n in ep.graph.nodes if n.op == "placeholder"}
    tensors = [values.get(name) for name in user_inputs]
    if len(user_inputs) != 1 or tensors[0] is None or not hasattr(tensors[0], "shape"):
        raise ModelError(
            f"{where} takes {len(user_inputs)} inputs ({', '.join(user_inputs)}); {ONE_INPUT_HINT}"
        )
    for node in ep.graph.nodes:
        name = str(node.target)
        training = (name.startswith("aten.batch_norm") and len(node.args) > 5 and node.args[5] is True) or (
            name.startswith("aten.dropout") and len(node.args) > 2 and node.args[2] is True
        )
        if node.op == "call_function" and training:
            raise ModelError(
                f"{where} was exported in training mode ({name} runs with training=True in its graph)",
                hint="call m.eval() before torch.export.export(m, ...) and save it again",
            )
    module: nn.Module = ep.module()
    for attr in ("train", "eval"):  # torch's instance overrides that raise NotImplementedError
        module.__dict__.pop(attr, None)
    dims = tensors[0].shape
    shape = tuple(int(d) if isinstance(d, int) else 1 for d in dims)
    if any(not isinstance(d, int) for d in dims[1:]):
        log.info("%s has dynamic non-batch dimensions; using size 1 for them (pass --input-shape)", where)
    static = int(dims[0]) if dims and isinstance(dims[0], int) else None
    return module, shape, static


def _check_single_input(module: nn.Module, where: str) -> None:
    """Refuse, plainly, a model whose forward needs more than one tensor."""
    import inspect

    import torch

    if isinstance(module, torch.jit.ScriptModule):
        try:
            forward: Any = module.forward
            args = [a for a in forward.schema.arguments[1:] if not a.has_default_value()]
        except (AttributeError, RuntimeError):
            return
        names = [a.name for a in args]
    else:
        try:
            params = inspect.signature(module.forward).parameters.values()
        except (TypeError, ValueError):
            return
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        names = [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]
    if len(names) > 1:
        raise ModelError(f"{where} takes {len(names)} inputs ({', '.join(names)}); {ONE_INPUT_HINT}")


def validate_program(program: Program) -> Program:
    """Refuse non-finite weights and inputs of the wrong shape, with one-line errors; returns the
    program with its outputs (names, shapes) recorded."""
    import torch

    for name, tensor in [*program.module.named_parameters(), *program.module.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelError(
                f"weight '{name}' has {bad} NaN/Inf value(s): "
                "refusing to compile a model with non-finite weights",
                hint="fix the training run or the checkpoint",
            )
    from edgec.snn import output_specs

    shape = tuple(program.example_input.shape)
    try:
        outputs = output_specs(program)
    except ModelError:
        raise
    except Exception as exc:
        if program.source.format == "export":
            hint = (
                "a torch.export program takes the input shape it was exported with; drop --input-shape, "
                "or export the model again with the shape you want"
            )
        else:
            hint = "pass the shape the model really takes with --input-shape, batch first (e.g. 1,3,32,32)"
        raise ModelError(
            f"the model does not accept input of shape {shape}: {first_line(exc)}", hint=hint
        ) from None
    if not outputs:
        raise ModelError("the model returns no tensor", hint="its forward must return a tensor (or several)")
    program = program.replace(outputs=outputs)
    if program.source.format == "torchscript" and program.static_batch is None:
        program = program.replace(static_batch=_traced_batch(program))
    return program


def _traced_batch(program: Program) -> int | None:
    """A TorchScript trace may have fixed its batch size (sizes traced as constants): probe batch + 1."""
    import torch

    from edgec.snn import inference, run_model

    x = program.example_input
    try:
        with inference(program.module):
            run_model(program, torch.cat([x, x[:1]]))
    except Exception:
        log.info("the TorchScript model takes only batch %d: batches are split", x.shape[0])
        return int(x.shape[0])
    return None
