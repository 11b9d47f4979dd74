"""Commands on an artifact directory: ``verify``, ``run``, ``bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgec.cli.shell import (
    ConfigOpt,
    JsonOpt,
    RichProgress,
    app,
    emit_json,
    handle_errors,
    json_stdout,
    out,
    with_options,
)
from edgec.config import BenchOptions, RunOptions, VerifyOptions

ArtifactArg = Annotated[Path, typer.Argument(help="artifact directory written by `edgec compile`")]


@app.command("verify")
@handle_errors
@with_options(VerifyOptions)
def verify_cmd(
    artifact: ArtifactArg,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    options: dict[str, Any] | None = None,
) -> None:
    """Check an artifact against its source model: max-abs error, top-1 agreement, accuracy."""
    from edgec import api
    from edgec.options import build

    opts = build(VerifyOptions, options or {}, config=config, style="cli")
    with json_stdout(as_json):
        result = api.verify(artifact, config=opts)
    if as_json:
        emit_json(result.to_dict())
        return
    out.print(f"verified: {result.summary}", highlight=False)
    for k, v in result.metrics.items():
        if k == "outputs":
            for name, row in v.items():
                shown = ", ".join(f"{m} {x:.4g}" for m, x in row.items())
                out.print(f"  output {name}: {shown}", highlight=False)
        elif isinstance(v, dict):  # e.g. the runtime that ran: name and version, precision, threads
            out.print(f"  {k}: {_pairs(v)}", highlight=False)
        else:
            out.print(f"  {k}: {_number(v) if isinstance(v, float) else v}", highlight=False)


def _number(v: float) -> str:
    """4 decimals, but a tiny non-zero value in 3 significant digits (2.5e-11, not 0.0000)."""
    return f"{v:.3g}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"


def _pairs(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_pairs(v) if isinstance(v, dict) else v}" for k, v in d.items())


@app.command("run")
@handle_errors
@with_options(RunOptions)
def run_cmd(
    artifact: Annotated[Path, typer.Argument(help="artifact directory")],
    input: Annotated[Path, typer.Option("--input", "-i", help=".npy file of inputs [N, ...] or one sample")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help=".npy file for the output (.npz: one array per output, for several)"
        ),
    ],
    config: ConfigOpt = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Run an artifact on inputs from a .npy file and save its outputs (.npy, or .npz by output name)."""
    import numpy as np

    from edgec import api
    from edgec.artifact import Artifact
    from edgec.errors import UsageError
    from edgec.options import build

    opts = build(RunOptions, options or {}, config=config, style="cli")
    if not input.is_file():
        raise UsageError(f"input file '{input}' does not exist")
    art = Artifact.open(artifact)
    names = [o["name"] for o in art.report["program"].get("outputs") or [{"name": "output"}]]
    if output.suffix not in (".npy", ".npz"):
        raise UsageError(f"--output '{output}' must end in .npy (one output) or .npz (by output name)")
    if output.suffix == ".npy" and len(names) > 1:
        raise UsageError(
            f"the model has {len(names)} outputs ({', '.join(names)}); a .npy file holds one",
            hint=f"give --output {output.with_suffix('.npz')} (one array per output name)",
        )
    if not output.parent.is_dir():
        raise UsageError(f"cannot write '{output}': '{output.parent}' is not a directory")
    x = _load_input(input)
    ys = api.run(art, x, backend=opts.backend)
    tmp = output.with_name(f".{output.name}.tmp{output.suffix}")
    try:
        if output.suffix == ".npy":
            np.save(tmp, next(iter(ys.values())))
        else:
            np.savez(tmp, **ys)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in ys.items())
    out.print(f"wrote {output}: {shapes}", highlight=False)


def _load_input(path: Path) -> Any:
    """The input array of ``edgec run``: a .npy, or the one array (or ``x``) of a .npz."""
    from edgec.data import read_numpy
    from edgec.errors import DataError

    loaded = read_numpy(path)
    if not isinstance(loaded, dict):
        return loaded
    if "x" in loaded:
        return loaded["x"]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    raise DataError(
        f"'{path}' holds {len(loaded)} arrays ({', '.join(loaded)}); edgec run takes one input",
        hint="name the input array x (np.savez(path, x=...)) or give a .npy file",
    )


@app.command("bench")
@handle_errors
@with_options(BenchOptions)
def bench_cmd(
    artifact: Annotated[Path, typer.Argument(help="artifact directory")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    options: dict[str, Any] | None = None,
) -> None:
    """Measure an artifact's latency (p50 / p90) and throughput on random inputs."""
    from edgec import api
    from edgec.options import build

    opts = build(BenchOptions, options or {}, config=config, style="cli")
    with json_stdout(as_json):
        res = api.bench(artifact, config=opts, progress=None if as_json else RichProgress())
    if as_json:
        emit_json(res.to_dict())
        return
    threads = "the runtime's threads"
    if res.threads:
        threads = f"{res.threads} thread" + ("s" if res.threads != 1 else "")
    out.print(
        f"batch {res.batch_size}, {res.iterations} runs on backend {res.backend} ({threads}): "
        f"p50 {res.p50_ms:.3f} ms, p90 {res.p90_ms:.3f} ms, throughput {res.throughput_per_s:,.1f} samples/s",
        highlight=False,
    )
    if res.runtime:
        out.print(f"  runtime: {_pairs(res.runtime)}", highlight=False)


@app.command("build-engine")
@handle_errors
def build_engine_cmd(
    artifact: Annotated[Path, typer.Argument(help="artifact directory of a target with a device engine")],
    workspace: Annotated[int, typer.Option(help="builder workspace in MB", min=1)] = 1024,
    dla: Annotated[int | None, typer.Option(help="DLA core to build for (AGX Orin / Orin NX)", min=0)] = None,
    max_batch: Annotated[int, typer.Option(help="largest batch of a dynamic-batch engine", min=1)] = 64,
    as_json: JsonOpt = False,
) -> None:
    """Build the device engine of an artifact, on the device (jetson: TensorRT; exit 7 without it)."""
    from edgec import api

    with json_stdout(as_json):
        engine = api.build_engine(artifact, workspace_mb=workspace, dla=dla, max_batch=max_batch)
    if as_json:
        emit_json(engine)
        return
    s = engine["settings"]
    out.print(
        f"built {artifact}/model.plan with TensorRT {s['tensorrt_version']} on the {s['device']} "
        f"(flags: {', '.join(s['network_flags'] + s['builder_flags'])}); settings in report.json",
        highlight=False,
    )
