"""What is available (``targets``, ``models``) and the main job on the built-in defaults (``demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edgec.cli.shell import JsonOpt, RichProgress, app, emit_json, handle_errors, out


def target_rows() -> list[dict[str, Any]]:
    """What each registered target declares: availability, precisions, options, backends, cost tables."""
    from edgec.options import declared
    from edgec.target import get_target, target_names

    rows: list[dict[str, Any]] = []
    for name in target_names():
        t = get_target(name)
        av = t.availability()
        options = (
            [{"name": o.key, "default": o.default, "help": o.info.help} for o in declared(t.options)]
            if t.options is not None
            else []
        )
        rows.append(
            {
                "name": name,
                "usable": av.usable,
                "missing": list(av.missing),
                "note": av.note,
                "description": t.description,
                "precisions": t.precision_table(),
                "options": options,
                "backends": list(t.backends),
                "cost_tables": dict(t.cost_tables),
            }
        )
    return rows


@app.command("targets")
@handle_errors
def targets_cmd(as_json: JsonOpt = False) -> None:
    """List the targets: usable here or what is missing, precisions (--quantize), options
    (--target-option), backends (--backend)."""
    rows = target_rows()
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        notes = ", ".join(r["missing"]) + ("; " if r["missing"] and r["note"] else "") + r["note"]
        usable = "usable here" if r["usable"] else "not usable here"
        out.print(f"[bold]{r['name']}[/] ({usable}{'; ' + notes if notes else ''}): {r['description']}")
        for k, v in r["precisions"].items():
            out.print(f"  --quantize {k}: {v}", highlight=False, markup=False)
        for o in r["options"]:
            out.print(
                f"  --target-option {o['name']}={o['default']}: {o['help']}", highlight=False, markup=False
            )
        out.print(f"  --backend {' | '.join(r['backends'])} (the first is the default)", highlight=False)


@app.command("models")
@handle_errors
def models_cmd(as_json: JsonOpt = False) -> None:
    """List the built-in zoo (use as zoo:NAME, or --arch NAME for a state_dict)."""
    from edgec.loading import zoo

    entries = zoo()
    if as_json:
        emit_json(
            [
                {
                    "name": e.name,
                    "kind": e.kind,
                    "input_shape": list(e.input_shape),
                    "trained": e.weights is not None,
                    "dataset": e.dataset,
                    "description": e.description,
                }
                for e in entries.values()
            ]
        )
        return
    table = Table(title="zoo models")
    for col in ("name", "kind", "input shape", "weights", "description"):
        table.add_column(col, no_wrap=col == "name", overflow="fold")  # names stay whole: users type them
    for e in entries.values():
        table.add_row(
            e.name,
            e.kind + (f" (T={e.timesteps})" if e.kind == "snn" else ""),
            "x".join(map(str, e.input_shape)),
            "trained" if e.weights else "random init",
            e.description,
        )
    out.print(table)


@app.command("demo")
@handle_errors
def demo_cmd(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="where the demo writes its artifacts")
    ] = Path("edgec-out/demo"),
) -> None:
    """The main job on the built-in defaults: digits CNN -> CPU INT8, and the spiking MLP -> Loihi 2."""
    from edgec import api
    from edgec.target import get_target

    progress = RichProgress()
    fp32_dir, int8_dir = output / "digits-cnn-cpu-fp32", output / "digits-cnn-cpu-int8"
    out.rule("1. compile zoo:digits-cnn for the CPU (FP32 and INT8, calibrated on builtin:digits)")
    api.compile("zoo:digits-cnn", target="cpu", out=fp32_dir, force=True, progress=progress)
    art = api.compile(
        "zoo:digits-cnn",
        target="cpu",
        quantize="int8",
        calib="builtin:digits",
        out=int8_dir,
        force=True,
        progress=progress,
    )
    for line in get_target("cpu").summary(art.report):
        out.print(f"  {int8_dir}: {line}", highlight=False, markup=False)
    out.rule("2. verify both against the PyTorch model on the digits holdout")
    res = {}
    for label, d in (("FP32", fp32_dir), ("INT8", int8_dir)):
        res[label] = api.verify(d)
        m = res[label].metrics
        out.print(
            f"  {label}: top-1 {m['accuracy_artifact']:.2%} (PyTorch {m['accuracy_source']:.2%}), "
            f"agreement {m['top1_agreement']:.2%}, max abs error {m['max_abs_error']:.3g}",
            highlight=False,
        )
    drop = (res["FP32"].metrics["accuracy_artifact"] - res["INT8"].metrics["accuracy_artifact"]) * 100
    out.print(
        f"  INT8 vs FP32 top-1: {-drop + 0.0:+.2f} points on {res['INT8'].metrics['samples']} holdout digits",
        highlight=False,
    )
    out.rule("3. latency (batch 1, on the runtime each artifact chose at compile)")
    for label, d in (("FP32", fp32_dir), ("INT8", int8_dir)):
        b = api.bench(d, iterations=200, warmup=20)
        ran = (b.runtime or {}).get("runtime", b.backend)
        out.print(f"  {label}: p50 {b.p50_ms:.3f} ms, p90 {b.p90_ms:.3f} ms ({ran})", highlight=False)
    _demo_loihi(output, progress)
    out.print(f"\nartifacts and reports under {output}/ (report.md, report.json in each)", highlight=False)


def _demo_loihi(output: Path, progress: RichProgress) -> None:
    """Demo step 4: the bundled spiking MLP for Loihi 2 (check, compile, verify on the emulator)."""
    from edgec import api
    from edgec.target import get_target, group_violations

    snn_dir = output / "digits-snn-mlp-loihi"
    out.rule("4. the bundled spiking MLP for Loihi 2: check, compile to netx + NIR, verify")
    _, rows = api.check("zoo:digits-cnn", target="loihi")
    rules = ", ".join(g.rule + (f" x{g.count}" if g.count > 1 else "") for g in group_violations(rows))
    out.print(f"  check zoo:digits-cnn (an ANN) for loihi: {len(rows)} violations ({rules})", highlight=False)
    _, rows = api.check("zoo:digits-snn-mlp", target="loihi")
    out.print(f"  check zoo:digits-snn-mlp for loihi: {'ok' if not rows else f'{len(rows)} violations'}")
    art = api.compile("zoo:digits-snn-mlp", target="loihi", out=snn_dir, force=True, progress=progress)
    for line in get_target("loihi").summary(art.report):
        out.print(f"  {line}", highlight=False, markup=False)
    files = ", ".join(f"{f['path']} ({f['bytes']:,} bytes)" for f in art.report["files"].values())
    out.print(f"  {snn_dir}: {files}", highlight=False)
    m = api.verify(snn_dir).metrics
    out.print(
        f"  digits holdout ({m['samples']}): float SNN {m['accuracy_source']:.2%}, deployed network "
        f"(emulator, bit-exact with Lava fixed_pt) {m['accuracy_artifact']:.2%}, "
        f"top-1 agreement {m['top1_agreement']:.2%}",
        highlight=False,
    )
    out.print(f"  spike-for-spike in real Lava: edgec verify {snn_dir} --backend lava", highlight=False)
