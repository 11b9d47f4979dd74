"""The target contract as checks every registered target must pass (tests/test_conformance.py runs them
over ``target_names()``; a deliberately broken toy target there shows they fail readably).

The contract (docs/adding-a-target.md):

* ``check`` returns :class:`~edgec.target.Violation` rows, each naming a layer, a rule and what to do;
* ``lower`` writes every file it lists, and the artifact holds nothing else than those files, the
  reports and the source copy; a failure leaves nothing behind;
* ``session(artifact, backend=, threads=)`` maps raw inputs ``[N, *input_shape]``, any N, to
  ``{output name: [N, *shape]}`` in the order and shapes of report.json ``program.outputs``;
* ``edgec run`` writes the same values; ``edgec verify`` passes on the target's own artifact;
* compiling twice gives the same files (determinism), and their structure is the golden one.

Each check raises :class:`ContractError` naming the target and what it broke.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: models the suite offers a target, in order: the first its check accepts is the one it compiles
CANDIDATES = ("zoo:digits-cnn", "zoo:digits-snn-mlp")
GOLDEN = Path(__file__).parent / "golden"
OWN_FILES = {"report.json", "report.md", "report.html"}


class ContractError(AssertionError):
    """A target broke the contract; the message says which target, which rule, what it did."""


def fail(target: str, rule: str, what: str) -> None:
    raise ContractError(f"target '{target}' breaks the contract: {rule}: {what}")


def pick_model(target: str) -> tuple[str, str | None]:
    """(a model the target takes, one it refuses or None) from :data:`CANDIDATES`."""
    import edgec

    taken, refused = None, None
    for model in CANDIDATES:
        _, rows = edgec.check(model, target=target)
        if not rows and taken is None:
            taken = model
        elif rows and refused is None:
            refused = model
    if taken is None:
        fail(target, "check", f"refuses every candidate model {CANDIDATES}; give the suite one it takes")
    return str(taken), refused


def check_rows(target: str, model: str) -> list[Any]:
    """``check`` on a model the target cannot take: Violation rows a user can act on."""
    import edgec
    from edgec.target import Violation

    _, rows = edgec.check(model, target=target)
    if not rows:
        fail(target, "check", f"found nothing to refuse in {model}, which it cannot lower")
    for row in rows:
        if not isinstance(row, Violation):
            fail(target, "check", f"returned a {type(row).__name__}, not a Violation row")
        if not (row.layer and row.rule and row.detail and row.hint):
            fail(target, "check", f"a row without layer, rule, detail or hint (what to do): {row}")
    return rows


def backends_to_run(target: str) -> list[str | None]:
    """The backends the suite compiles ``target`` for: ``[None]`` (the target's default) for a target
    whose one artifact serves every backend; each installed backend for a target whose artifacts are
    built for one (``Target.backend_at_compile``, as the CPU target's for onnxruntime / openvino). A
    backend an optional feature names (``"backend NAME ..."`` in ``Target.optional``) is installed when
    its module is."""
    from edgec.target import _installed, get_target

    tgt = get_target(target)
    if not tgt.backend_at_compile:
        return [None]
    needs = {b: mod for feat, mod in tgt.optional.items() for b in tgt.backends if f"backend {b}" in feat}
    return [b for b in tgt.backends if b not in needs or _installed(needs[b])]


def compile_twice(target: str, model: str, out: Path, backend: str | None = None) -> tuple[Any, Any]:
    import edgec

    return edgec.compile(model, target=target, backend=backend, out=out / "a"), edgec.compile(
        model, target=target, backend=backend, out=out / "b"
    )


def check_files(target: str, art: Any) -> None:
    """Every file the report lists exists with its sha256; the artifact holds nothing else."""
    files = art.report.get("files")
    if not isinstance(files, dict) or not files:
        fail(target, "lower", "report.json lists no files")
    listed = set()
    for role, f in files.items():
        path = art.path / f["path"]
        if not path.is_file():
            fail(target, "lower", f"file '{f['path']}' ({role}) is listed but was not written")
        if hashlib.sha256(path.read_bytes()).hexdigest() != f["sha256"] or path.stat().st_size != f["bytes"]:
            fail(
                target, "lower", f"file '{f['path']}' ({role}) differs from its sha256 / size in report.json"
            )
        listed.add(f["path"].split("/")[0])
    extra = sorted(p.name for p in art.path.iterdir() if p.name not in listed | OWN_FILES)
    if extra:
        fail(target, "lower", f"wrote files its report does not list: {', '.join(extra)}")


def check_session(target: str, art: Any, samples: np.ndarray) -> dict[str, np.ndarray]:
    """The session maps [N, *input] (N = 1, 3, len(samples)) to outputs by name, batch first."""
    from edgec.target import get_target

    outputs = art.report["program"].get("outputs")
    if not outputs or not all(isinstance(o, dict) and {"name", "shape"} <= set(o) for o in outputs):
        fail(target, "report", "program.outputs must list {name, shape} per output")
    run = get_target(target).session(art)
    got: dict[str, np.ndarray] = {}
    for n in (1, 3, len(samples)):
        res = run(samples[:n])
        if not isinstance(res, dict):
            fail(target, "session", f"returned a {type(res).__name__}; it must return {{output name: array}}")
        names = [o["name"] for o in outputs]
        if list(res) != names:
            fail(target, "session", f"returned outputs {list(res)}; report.json program.outputs says {names}")
        for o in outputs:
            arr = np.asarray(res[o["name"]])
            if arr.shape != (n, *o["shape"]):
                fail(target, "session", f"output '{o['name']}' has shape {arr.shape} for {n} inputs, "
                     f"not {(n, *o['shape'])}")  # fmt: skip
        got = res
    first = run(samples[:1])
    for name, arr in first.items():
        scale = float(np.abs(got[name]).max()) or 1.0
        if not np.allclose(arr[0], got[name][0], rtol=1e-4, atol=1e-4 * scale):
            fail(target, "session", f"output '{name}' of a sample depends on the batch it is in")
    return got


def check_run_cli(target: str, art: Any, samples: np.ndarray, want: dict[str, np.ndarray], tmp: Path,
                  cli: Callable[..., Any]) -> None:  # fmt: skip
    np.save(tmp / "x.npy", samples)
    multi = len(want) > 1
    out = tmp / ("y.npz" if multi else "y.npy")
    res = cli("run", art.path, "--input", tmp / "x.npy", "--output", out)
    if res.exit_code != 0:
        fail(target, "run", f"edgec run exited {res.exit_code}: {res.stderr.strip()}")
    got = dict(np.load(out)) if multi else {next(iter(want)): np.load(out)}
    for name, arr in want.items():
        if not np.array_equal(got[name], arr):
            fail(target, "run", f"edgec run wrote other values than the session for output '{name}'")


def check_verify(target: str, art: Any) -> None:
    import edgec

    try:
        result = edgec.verify(art.path)
    except Exception as exc:
        fail(target, "verify", f"its own artifact does not verify: {type(exc).__name__}: {exc}")
    if not result.passed or "samples" not in result.metrics:
        fail(target, "verify", f"result {result.to_dict()} is not a pass with a sample count")


def check_deterministic(target: str, a: Any, b: Any) -> None:
    for role, f in a.report["files"].items():
        if b.report["files"].get(role, {}).get("sha256") != f["sha256"]:
            fail(target, "determinism", f"compiling twice wrote different '{f['path']}' ({role})")


def check_failure_leaves_nothing(target: str, model: str, out: Path, monkeypatch: Any) -> None:
    """A lowering that fails halfway (after writing a file) leaves no output and no temporary folder."""
    import edgec
    from edgec.target import get_target

    cls = type(get_target(target))

    def broken(self: Any, program: Any, out_dir: Path, ctx: Any) -> Any:
        (out_dir / "half-written.bin").write_bytes(b"\0" * 10)
        raise RuntimeError("disk full")

    monkeypatch.setattr(cls, "lower", broken)
    try:
        edgec.compile(model, target=target, out=out / "failed")
    except Exception:
        pass
    else:
        fail(target, "lower", "a failing lower() did not fail the compile")
    finally:
        monkeypatch.undo()
    left = sorted(p.name for p in out.iterdir() if "failed" in p.name)
    if left:
        fail(target, "atomic artifact", f"a failed compile left {left}")


# ---- golden structure of the emitted files ------------------------------------------------------
def structure(path: Path) -> dict[str, Any]:
    """What a file's structure is, independent of weight values: ONNX graphs and HDF5 (netx) layouts."""
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path))

        def dims(vi: Any) -> list[Any]:
            return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

        return {
            "format": "onnx",
            "opset": sorted([o.domain or "ai.onnx", o.version] for o in model.opset_import),
            "inputs": [[i.name, dims(i)] for i in model.graph.input],
            "outputs": [[o.name, dims(o)] for o in model.graph.output],
            "nodes": [n.op_type for n in model.graph.node],
            "initializers": sorted([i.name, list(i.dims), i.data_type] for i in model.graph.initializer),
        }
    if path.suffix in (".net", ".h5", ".hdf5"):
        import h5py

        items: list[list[Any]] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                value = obj[()] if obj.shape == () or obj.size <= 4 else None
                shown = _plain(value)
                keep = shown if name.endswith(("type", "shape", "Size", "stride", "padding", "Features",
                                               "Channels")) else None  # fmt: skip
                items.append([name, list(obj.shape), str(obj.dtype), keep])

        with h5py.File(path, "r") as f:
            f.visititems(visit)
        return {"format": "hdf5", "datasets": items}
    if path.suffix == ".xml":  # OpenVINO IR: layers in order with their output precisions, edges
        import xml.etree.ElementTree as ET

        root = ET.parse(path).getroot()
        layers = [
            [layer.get("type"), layer.get("version"), [p.get("precision") for p in layer.iter("port")
                                                       if p.get("precision")]]
            for layer in root.iter("layer")
        ]  # fmt: skip
        return {"format": "openvino-ir", "layers": layers, "edges": len(list(root.iter("edge")))}
    return {"format": path.suffix.lstrip(".") or "file", "bytes": path.stat().st_size}


def _dump(doc: dict[str, Any]) -> str:
    """JSON with one list item per line (diffs of golden files read line by line)."""
    lines = ["{"]
    for i, (key, value) in enumerate(doc.items()):
        comma = "," if i < len(doc) - 1 else ""
        if isinstance(value, list) and value and isinstance(value[0], list):
            items = ",\n".join(f"    {json.dumps(v)}" for v in value)
            lines.append(f"  {json.dumps(key)}: [\n{items}\n  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    return "\n".join([*lines, "}"]) + "\n"


def _plain(value: Any) -> Any:
    """JSON-able: bytes decoded, numpy values as Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def check_golden(target: str, art: Any, model: str) -> None:
    """The structure of each emitted file equals tests/golden/<target>-<model>-<role>.json
    (EDGEC_UPDATE_GOLDEN=1 rewrites them after a deliberate change)."""
    for role, f in art.report["files"].items():
        if role == "source_model":
            continue
        got = structure(art.path / f["path"])
        golden = GOLDEN / f"{target}-{model.replace('zoo:', '')}-{role}.json"  # one per role: backends share
        if os.environ.get("EDGEC_UPDATE_GOLDEN"):
            golden.parent.mkdir(exist_ok=True)
            golden.write_text(_dump(got))
            continue
        if not golden.is_file():
            fail(
                target,
                "golden",
                f"no golden file {golden.name}: run the suite with EDGEC_UPDATE_GOLDEN=1 once",
            )
        want = json.loads(golden.read_text())
        if got != want:
            diff = [k for k in want if want.get(k) != got.get(k)] or sorted(set(got) ^ set(want))
            what = f"'{f['path']}' changed structure ({', '.join(map(str, diff))} differ from {golden.name})"
            fail(target, "golden", f"{what}; if deliberate, rerun with EDGEC_UPDATE_GOLDEN=1")
