"""One trial: compress with the trial's recipes, compile for every target, measure what a user deploys.

:func:`run_trial` takes a JSON-able spec (what travels to a worker process or a Ray task: the model's path
or zoo name, the data source names, the recipes, the options) and returns the trial's record:

* ``compressed``: the compressed PyTorch model's accuracy, bytes at bit width, SOPs (edgec.compress);
* ``targets[T]``: ``feasible`` and, when the target refuses the model, ``why_not`` (its rule rows); else
  ``accuracy`` of the deployed artifact on the held-out data (the target's own runtime: Loihi's bit-exact
  emulator, ONNX Runtime; ``Target.verify``), ``energy_uj`` per inference from the artifact's energy
  report (its headline: the cost-table estimate, or the measured figure where the target measures),
  ``bytes``, ``sops`` and ``macs`` (dense) of the compressed program, and the artifact's path.

A failure of the trial itself (a recipe that raises, a diverging loss, NaN accuracy, out of memory) is
the record ``state = "failed"`` with its reason; it is never raised to the search.
``python -m edgec.search.trial --serve`` is a worker process of the local executor.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from edgec.search.member import TRIALS_DIR, trial_dir

__all__ = ["PID", "RESULT", "SPEC", "TRIALS_DIR", "clear_trial_dir", "run_trial", "trial_dir", "write_atomic"]

#: files of a trial directory, OUT/trials/trial-NNNN/
SPEC, RESULT, PID = "spec.json", "result.json", "worker.pid"


def write_atomic(path: Path, data: Any) -> None:
    """JSON written to a temporary file and renamed over ``path``: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def run_trial(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one trial (see the module docstring); never raises for a failure of the trial."""
    started = time.perf_counter()
    try:
        record = _run(spec)
    except MemoryError:
        record = {"state": "failed", "reason": "out of memory"}
    except Exception as exc:  # a trial's failure is data of the search (recorded, the search goes on)
        from edgec.errors import EdgecError, first_line

        text = exc.message if isinstance(exc, EdgecError) else f"{type(exc).__name__}: {first_line(exc)}"
        if "out of memory" in text.lower():
            text = f"out of memory ({text})"
        record = {"state": "failed", "reason": text}
    record["wall_s"] = round(time.perf_counter() - started, 3)
    record["pid"] = os.getpid()
    return record


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    import edgec
    from edgec.errors import ConstraintViolation, EdgecError

    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    trial_dir = Path(spec["dir"])
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    common = {
        k: spec[k]
        for k in (
            "epochs",
            "lr",
            "batch_size",
            "device",
            "validation",
            "seed",
            "image_resize",
            "image_normalize",
        )
        if spec.get(k) is not None
    }
    res = edgec.compress(
        spec["model"],
        passes=list(spec["recipes"]),
        train=spec["train"],
        data=spec.get("data"),
        timesteps=spec.get("timesteps"),
        arch=spec.get("arch"),
        trust_pickle=bool(spec.get("trust_pickle")),
        out=trial_dir / "program",
        **common,
    )
    phases["compress_s"] = round(time.perf_counter() - t0, 3)
    after = res.report["after"]
    compressed = {
        "accuracy": after.get("accuracy"),
        "bytes": after.get("param_bytes"),
        "sops": after.get("sops"),
        "macs": after.get("macs"),
        "parameters": after.get("parameters"),
    }
    if compressed["accuracy"] is not None and not math.isfinite(compressed["accuracy"]):
        return {
            "state": "failed",
            "reason": "the compressed model's accuracy is NaN",
            "compressed": compressed,
        }
    targets: dict[str, Any] = {}
    for name in spec["targets"]:
        t1 = time.perf_counter()
        try:
            out = trial_dir / name.replace(":", "-")
            targets[name] = _deploy(trial_dir / "program", name, out, spec, compressed)
        except ConstraintViolation as exc:
            rows = [
                {"layer": v.layer, "rule": v.rule, "detail": v.detail, "hint": v.hint} for v in exc.violations
            ]
            targets[name] = {"feasible": False, "why_not": rows, "reason": _why_not_line(rows)}
        except EdgecError as exc:
            targets[name] = {"feasible": False, "why_not": [], "reason": exc.message}
        phases[f"deploy_{name}_s"] = round(time.perf_counter() - t1, 3)
    return {"state": "complete", "compressed": compressed, "targets": targets, "phases": phases}


def _why_not_line(rows: list[dict[str, Any]]) -> str:
    rules = sorted({r["rule"] for r in rows})
    first = rows[0]["detail"] if rows else ""
    return f"refused ({', '.join(rules)}): {first}"


def _deploy(
    program_dir: Path, target: str, out: Path, spec: dict[str, Any], compressed: dict[str, Any]
) -> dict[str, Any]:
    """Compile for ``target``, run the artifact on held-out data, read its energy report."""
    import edgec
    from edgec.data import open_dataset
    from edgec.provenance import compiled_program
    from edgec.target import get_target

    name, _, quantize = target.partition(":")  # TARGET or TARGET:PRECISION
    art = edgec.compile(program_dir, target=name, quantize=quantize or "none", out=out)
    program = compiled_program(art)
    data_spec = spec.get("data") or program.metadata.get("dataset")
    images = {
        "resize": spec.get("image_resize") or "none",
        "normalize": spec.get("image_normalize") or "none",
    }
    row: dict[str, Any] = {"feasible": True, "artifact": str(out), "bytes": compressed["bytes"]}
    row["sops"], row["macs"] = compressed["sops"], compressed["macs"]
    if data_spec is None:
        row["accuracy"] = None
        row["reason"] = "no held-out data: pass --data"
    else:
        data = open_dataset(data_spec, purpose="evaluation", input_shape=program.input_shape, images=images)
        result = get_target(name).verify(art, program, data, limit=spec.get("limit"), min_agreement=0.0)
        acc = result.metrics.get("accuracy_artifact")
        row["accuracy"] = float(acc) if acc is not None else None
        row["accuracy_source"] = result.metrics.get("accuracy_source")
        row["samples"] = result.metrics.get("samples")
        row["evaluated_on"] = data.name
        if row["accuracy"] is not None and not math.isfinite(row["accuracy"]):
            raise ValueError("the deployed artifact's accuracy is NaN")
    headline = (art.report.get("energy") or {}).get("headline") or {}
    energy_j = headline.get("energy_j")
    row["energy_uj"] = None if energy_j is None else float(energy_j) * 1e6
    row["energy_source"] = headline.get("source")
    row["energy_table"] = headline.get("table")
    if energy_j is None:
        row["energy_note"] = "not priced: the report lists uncounted operators or the target has no table"
    return row


def main(argv: list[str] | None = None) -> int:
    """``python -m edgec.search.trial SPEC RESULT``: one trial in this process; ``--serve``: a worker of
    the local executor, one ``SPEC<TAB>RESULT`` line per trial on stdin, ``done`` on stdout after each."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--serve"]:
        return serve()
    _one(Path(args[0]), Path(args[1]))
    return 0


def _one(spec_path: Path, result_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    (Path(spec["dir"]) / PID).write_text(str(os.getpid()))
    write_atomic(result_path, run_trial(spec))


def serve() -> int:
    # the protocol gets its own copy of stdout; whatever a library prints goes to stderr (the worker log)
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    for line in sys.stdin:
        if not line.strip():
            continue
        spec_path, result_path = line.rstrip("\n").split("\t")
        _one(Path(spec_path), Path(result_path))
        proto.write("done\n")
    return 0


def clear_trial_dir(trial_dir: Path) -> None:
    """Remove what an earlier (killed) attempt left in a trial directory of this search."""
    for child in trial_dir.iterdir() if trial_dir.is_dir() else []:
        if child.name == SPEC:
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
