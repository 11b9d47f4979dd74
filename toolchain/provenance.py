"""Where an artifact came from: the copy of its source model it carries, and reloading that model.

``record_source``     copies the user's model file into ``source/`` (its sha256 goes into report.json);
                      a model given in memory is saved there as a ``torch.export`` program (pickle-free)
``source_program``    reloads it (the zoo entry, or the copy) for ``verify`` and ``report ARTIFACT``
``compiled_program``  the program the artifact was lowered from (the compressed one when a pass changed it)
``source_paths``      the user's files no output directory may hold (``--force`` never replaces them)
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from edgec.artifact import Artifact
from edgec.data import Dataset
from edgec.errors import UsageError, VerificationFailed
from edgec.loading import load_program
from edgec.program import Program, SourceInfo, sha256_of

log = logging.getLogger(__name__)


def source_paths(model: Any) -> tuple[Path, ...]:
    """The user's model file, which no output directory may hold (--force never replaces it)."""
    if isinstance(model, (str, Path)) and not str(model).startswith("zoo:"):
        return (Path(model),)
    return ()


COMPRESSED_DIR = "program"


def record_source(program: Program, out: Path) -> dict[str, str]:
    """Copy the source model file into the artifact (verify reloads it; its sha256 is checked).

    A model given in memory (an ``nn.Module`` or ExportedProgram) is saved as a ``torch.export``
    program (batch dynamic where it exports so), pickle-free, so a later ``edgec verify`` has it too;
    a spiking model or one torch.export cannot take is not saved (verify it in the same session).
    """
    if program.source.path is None:
        return _save_in_memory(program, out)
    src = Path(program.source.path)
    (out / "source").mkdir()
    if program.source.format == "program":  # a compressed program directory: its two files
        from edgec.store import PROGRAM_JSON, WEIGHTS_FILE

        for name in (PROGRAM_JSON, WEIGHTS_FILE):
            shutil.copyfile(src.parent / name, out / "source" / name)
        return {"source_model": f"source/{PROGRAM_JSON}", "source_weights": f"source/{WEIGHTS_FILE}"}
    dest = out / "source" / src.name
    shutil.copyfile(src, dest)
    return {"source_model": f"source/{src.name}"}


def _save_in_memory(program: Program, out: Path) -> dict[str, str]:
    if program.source.format not in ("module", "export") or program.kind != "ann":
        return {}
    import torch

    from edgec.errors import first_line
    from edgec.snn import inference

    x = program.example_input
    batch = {0: torch.export.Dim("batch")} if program.static_batch is None else None
    errors = []
    for dynamic in ((batch,), None) if batch is not None else (None,):
        try:
            with inference(program.module):
                ep = torch.export.export(program.module, (x,), dynamic_shapes=dynamic)
            break
        except Exception as exc:
            errors.append(first_line(exc))
    else:
        log.warning("the in-memory model is not saved in the artifact (torch.export: %s)", errors[-1])
        return {}
    (out / "source").mkdir()
    torch.export.save(ep, out / "source" / "model.pt2")
    return {"source_model": "source/model.pt2"}


def describe_files(root: Path, files: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {
        role: {"path": rel, "bytes": (root / rel).stat().st_size, "sha256": sha256_of(root / rel)}
        for role, rel in files.items()
    }


def compiled_program(artifact: Artifact, *, trust_pickle: bool = False) -> Program:
    """The program the artifact was lowered from: its compressed program (``program/``) when a
    compression pass ran, else the reloaded source model."""
    if "compressed_program" in artifact.report.get("files", {}):
        from edgec.store import load_program_dir

        return load_program_dir(artifact.file("compressed_program").parent)
    return source_program(artifact, trust_pickle=trust_pickle)


def source_program(artifact: Artifact, *, trust_pickle: bool = False) -> Program:
    """Reload the model an artifact was compiled from (zoo entry, or the copied file + sha256 check)."""
    rep = artifact.report
    prog = rep["program"]
    src = SourceInfo(**prog["source"])
    shape = (1, *prog["input_shape"])
    if artifact.source is not None:  # compiled in this session: the very program
        return artifact.source
    if src.format == "zoo":
        model: Any = f"zoo:{src.arch}"
    else:
        if "source_model" not in rep["files"]:
            raise UsageError(
                f"artifact '{artifact.path}' has no copy of its source model to verify against "
                f"(it was compiled from a {src.format} in memory that could not be saved)",
                hint="verify with the Artifact edgec.compile returned, in the same Python session",
            )
        path = artifact.file("source_model")
        if sha256_of(path) != rep["files"]["source_model"]["sha256"]:
            raise VerificationFailed(
                f"the source model copy in '{artifact.path}' changed since compile (sha256 differs)"
            )
        if src.format == "pickle" and not trust_pickle:
            raise UsageError(
                "this artifact was compiled from a pickled module; reloading it runs its code",
                hint="pass --trust-pickle if you trust it",
            )
        model = path.parent if src.format == "program" else path
    return load_program(
        model,
        arch=src.arch,
        input_shape=shape,
        trust_pickle=trust_pickle,
        timesteps=prog.get("timesteps"),
        dt=src.dt,
    ).replace(encoder=prog.get("encoder"))


def original_accuracy(
    art: Artifact, compressed: Program, data: Dataset, metrics: dict[str, Any], *, trust_pickle: bool
) -> None:
    """For an artifact of a compressed model: the uncompressed model's accuracy on the same data too.

    ``accuracy_source`` is then the compressed model's (what the artifact is compared with), and
    ``accuracy_original`` the model before compression, when it can still be loaded (a zoo model, or a
    source file that is where it was with the same content)."""
    if (
        not compressed.quant
        and not compressed.edits
        and not any("finetune" in r.stats for r in compressed.history)
        and not any(r.name == "ann2snn" for r in compressed.history)  # converted: compare with the ANN
    ):
        return
    from edgec.finetune import evaluate

    metrics["reference"] = "the compressed model"
    x, y = data.arrays(metrics.get("samples"))
    if y is None:
        return
    origin = compressed.metadata.get("origin") or compressed.source.to_dict()
    try:
        if origin.get("format") == "zoo":
            original = load_program(f"zoo:{origin['arch']}")
        elif (
            origin.get("path")
            and Path(origin["path"]).is_file()
            and sha256_of(origin["path"]) == origin.get("sha256")
        ):
            original = load_program(
                origin["path"],
                arch=origin.get("arch"),
                input_shape=(1, *compressed.input_shape),
                trust_pickle=trust_pickle,
            )
        else:
            return
    except Exception as exc:  # informative only: verify's verdict does not depend on it
        log.info("original model not loaded for verify: %s", exc)
        return
    original = original.replace(timesteps=compressed.timesteps, encoder=compressed.encoder)
    metrics["accuracy_original"] = evaluate(original, original.module, x, y)
