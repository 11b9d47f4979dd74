"""Save and load a program without pickle: ``program.json`` + ``weights.safetensors``.

A compressed model is its uncompressed architecture, the structural changes the passes made, and the
final weights. So a program directory holds:

``program.json``          what rebuilds the module and what flows with it::

    {"format": "edgec-program", "version": 1, "name", "kind", "input_shape", "timesteps", "encoder",
     "arch":   {"kind": "zoo", "name": "digits-snn-cnn"}
             | {"kind": "class", "ref": "mypkg.models:MySNN"}     (constructed without arguments)
             | {"kind": "factory", "ref": "mypkg.models:make"}    (called without arguments)
             | {"kind": "layers", "layers": [...]}   (a sequential network edgec built: NIR, another
                                                      SNN framework, ann2snn; edgec.netspec),
     "edits":  [{"op": "prune-channels", "producer": "net.0", "consumer": "net.2", "keep": [...]},
                {"op": "quantize-state", "layer": "net.1", "bits": 4},
                {"op": "quantize-inputs", "layers": {"fc": [4, false]}},
                {"op": "binarize-input", "layer": "net.3", "quantizer": {"kind": "sign", ...}}, ...],
     "quant":  {layer: LayerQuant}, "history": [PassRecord], "origin": SourceInfo of the first source,
     "metadata": {...}, "weights": {"file": "weights.safetensors", "sha256": ...}}

``weights.safetensors``   the state_dict (safetensors: tensors only, nothing executes on load).

Loading builds the architecture, replays the edits (:mod:`edgec.surgery`, :mod:`edgec.snn_quant`),
loads the weights strictly and checks their sha256. Nothing is unpickled; a ``class`` / ``factory``
architecture imports the named Python module, as ``--arch`` does -- never from the standard library.
Saving rebuilds the module the same way and refuses if the result does not match the program (a
module whose class needs constructor arguments needs a factory).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.errors import ModelError, UsageError
from edgec.program import PassRecord, Program, SourceInfo, sha256_of

if TYPE_CHECKING:
    import torch
    from torch import nn

PROGRAM_JSON = "program.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "edgec-program"
VERSION = 1


def is_program_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / PROGRAM_JSON).is_file()


# ---- architecture -------------------------------------------------------------------------------------
def arch_of(program: Program) -> dict[str, Any]:
    """How to rebuild ``program``'s uncompressed module without pickle."""
    carried = program.metadata.get("arch_spec")
    if isinstance(carried, dict):
        return carried
    src = program.source
    if src.arch:
        if ":" in src.arch:
            return {"kind": "factory", "ref": src.arch}
        return {"kind": "zoo", "name": src.arch}
    cls = type(program.module)
    if "<locals>" in cls.__qualname__ or cls.__module__ in ("__main__", "builtins"):
        raise ModelError(
            f"cannot save the compressed model: its class {cls.__qualname__} is not importable by name",
            hint="define the model in an importable module and pass --arch package.module:Factory",
        )
    return {"kind": "class", "ref": f"{cls.__module__}:{cls.__qualname__}"}


def _import_ref(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise UsageError(f"'{ref}' is not a package.module:Name reference")
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        raise UsageError(f"'{ref}' names the standard library, not a model", hint="give your model's module")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"cannot import '{module_name}' for the model architecture '{ref}': {exc}",
            hint="put the model's package on PYTHONPATH (or install it)",
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"'{module_name}' has no '{attr}' (architecture '{ref}')")
        obj = getattr(obj, part)
    return obj


def build_arch(arch: dict[str, Any]) -> nn.Module:
    """The uncompressed module an architecture spec names (weights are loaded afterwards)."""
    import torch
    from torch import nn

    kind = arch.get("kind")
    torch.manual_seed(0)
    if kind == "zoo":
        from edgec.zoo import zoo

        entries = zoo()
        if arch.get("name") not in entries:
            raise ModelError(f"unknown zoo architecture '{arch.get('name')}' in {PROGRAM_JSON}")
        return entries[arch["name"]].build(pretrained=False)
    if kind == "layers":  # a network edgec built (NIR, another framework, ann2snn): edgec.netspec
        from edgec.netspec import build

        return build(arch).eval()
    if kind in ("class", "factory"):
        obj = _import_ref(str(arch.get("ref")))
        if kind == "class" and not (isinstance(obj, type) and issubclass(obj, nn.Module)):
            raise ModelError(f"'{arch.get('ref')}' is not an nn.Module class")
        if not callable(obj):
            raise ModelError(f"'{arch.get('ref')}' is not callable")
        try:
            module = obj()
        except Exception as exc:
            raise ModelError(
                f"building the architecture '{arch.get('ref')}' failed: {type(exc).__name__}: {exc}",
                hint="the class or factory must build the model without arguments",
            ) from None
        if not isinstance(module, nn.Module):
            raise ModelError(f"'{arch.get('ref')}' returned a {type(module).__name__}, not an nn.Module")
        return module.eval()
    raise ModelError(f"{PROGRAM_JSON} names an unknown architecture kind {kind!r}")


def apply_edits(module: nn.Module, edits: list[dict[str, Any]], example: torch.Tensor) -> None:
    """Replay the structural changes passes made (``example``: one batch as the module receives it)."""
    from edgec.snn_quant import quantize_state
    from edgec.surgery import channel_groups, prune_group

    for edit in edits:
        op = edit.get("op")
        if op == "prune-channels":
            groups, _ = channel_groups(module, example)
            match = [g for g in groups if g.producer == edit["producer"]]
            if not match or match[0].consumer != edit["consumer"]:
                raise ModelError(f"cannot replay pruning of '{edit['producer']}': the architecture differs")
            prune_group(module, match[0], list(edit["keep"]))
        elif op == "quantize-state":
            quantize_state(module.get_submodule(edit["layer"]), int(edit["bits"]))  # type: ignore[arg-type]
        elif op == "quantize-inputs":
            from edgec.lsq import attach_input_quantizers

            attach_input_quantizers(module, edit["layers"])
        elif op == "binarize-input":
            from edgec.binary import apply_input_edit

            try:
                apply_input_edit(module, edit)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ModelError(f"cannot replay binarize-input on '{edit.get('layer')}': {exc}") from None
        else:
            raise ModelError(f"{PROGRAM_JSON} holds an unknown edit {op!r}")


def _module_input(
    kind: str, timesteps: int, encoder: dict[str, Any] | None, input_shape: tuple[int, ...]
) -> torch.Tensor:
    import torch

    from edgec.snn import encode

    x = torch.rand((1, *input_shape), generator=torch.Generator().manual_seed(0))
    return encode(x, timesteps, encoder) if kind == "snn" else x


def rebuild(doc: dict[str, Any]) -> nn.Module:
    shape = tuple(int(d) for d in doc["input_shape"])
    module = build_arch(doc["arch"])
    apply_edits(
        module,
        list(doc.get("edits", [])),
        _module_input(doc["kind"], int(doc["timesteps"]), doc.get("encoder"), shape),
    )
    return module


# ---- save / load ----------------------------------------------------------------------------------
def save_program(program: Program, out_dir: Path) -> dict[str, str]:
    """Write ``program`` into ``out_dir`` (an existing directory); returns the files by role."""
    from safetensors.torch import save_file

    from edgec.quant import record_to_dict

    state = {k: v.detach().cpu().contiguous() for k, v in program.module.state_dict().items()}
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "name": program.name,
        "kind": program.kind,
        "input_shape": list(program.input_shape),
        "timesteps": program.timesteps,
        "encoder": program.encoder,
        "arch": arch_of(program),
        "edits": program.edits,
        "quant": record_to_dict(program.quant),
        "history": [r.to_dict() for r in program.history],
        "origin": program.metadata.get("origin") or program.source.to_dict(),
        "metadata": {k: v for k, v in program.metadata.items() if k not in ("arch_spec", "origin")},
    }
    rebuilt = rebuild(doc).state_dict()
    mismatch = [k for k in state if k not in rebuilt or tuple(rebuilt[k].shape) != tuple(state[k].shape)]
    mismatch += [k for k in rebuilt if k not in state]
    if mismatch:
        raise ModelError(
            f"cannot save the compressed model: rebuilding {doc['arch']} does not give its layers "
            f"({len(mismatch)} differ, e.g. {mismatch[0]!r})",
            hint="pass --arch package.module:Factory that builds the uncompressed model",
        )
    weights = out_dir / WEIGHTS_FILE
    try:
        save_file(state, str(weights))
    except Exception as exc:  # shared (tied) tensors, ...
        raise ModelError(f"cannot write the weights as safetensors: {exc}") from None
    doc["weights"] = {"file": WEIGHTS_FILE, "sha256": sha256_of(weights)}
    (out_dir / PROGRAM_JSON).write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    return {"program": PROGRAM_JSON, "weights": WEIGHTS_FILE}


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def load_program_dir(path: str | Path) -> Program:
    """The program saved in ``path`` (a directory with program.json), rebuilt without pickle."""
    import torch
    from safetensors.torch import load_file

    from edgec.quant import record_from_dict

    root = Path(path)
    doc_path = root / PROGRAM_JSON
    try:
        doc = json.loads(doc_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"'{doc_path}' is not a readable {PROGRAM_JSON}: {exc}") from None
    if doc.get("format") != FORMAT:
        raise ModelError(f"'{doc_path}' is not an edgec program (format {doc.get('format')!r})")
    if doc.get("version") != VERSION:
        raise ModelError(
            f"'{doc_path}' has version {doc.get('version')!r}; this edgec reads {VERSION}",
            hint="compress the model again with this version of edgec",
        )
    weights = root / doc["weights"]["file"]
    if not weights.is_file():
        raise ModelError(f"program '{root}' is damaged: {weights.name} is missing")
    if sha256_of(weights) != doc["weights"]["sha256"]:
        raise ModelError(f"program '{root}' is damaged: {weights.name} changed since it was written")
    module = rebuild(doc)
    try:
        state = load_file(str(weights))
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ModelError(
            f"the weights in '{weights}' do not fit the rebuilt model: {str(exc).splitlines()[0]}"
        ) from None
    shape = (1, *(int(d) for d in doc["input_shape"]))
    example = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    metadata = dict(doc.get("metadata", {}))
    metadata["arch_spec"] = doc["arch"]
    metadata["origin"] = doc.get("origin")
    return Program(
        module=module.eval(),
        example_input=example,
        kind=doc["kind"],
        timesteps=int(doc["timesteps"]),
        encoder=doc.get("encoder"),
        source=SourceInfo("program", str(doc_path.resolve()), sha256_of(doc_path)),
        name=doc.get("name", root.name),
        metadata=metadata,
        history=[PassRecord(**r) for r in doc.get("history", [])],
        quant=record_from_dict(doc.get("quant", {})),
        edits=list(doc.get("edits", [])),
    )
