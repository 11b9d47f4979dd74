"""The Jetson target's graphs, checked here; engines, latency and energy where TensorRT is: writes
benchmarks/results/jetson.md.

    .venv/bin/python benchmarks/jetson.py [--calib-samples 128] [--iterations 200]

On any machine, for each (model, precision): `edgec compile MODEL --target jetson --quantize P` (the
TensorRT rule checker passes, or the row says why not), then the graph runs in ONNX Runtime on the
CPU against the PyTorch model on the 540-digit holdout (what `edgec verify` does): top-1 agreement,
accuracy of both, max |difference|, model bytes against FP32, Q/DQ and int4 block counts.

On a Jetson with TensorRT (JetPack 6 / 7: `python -c "import tensorrt"` works), the same command also
builds each engine on the module (`edgec build-engine`), verifies it on TensorRT and benches it at batch 1
with the power rails sampled (docs/jetson.md: nvpmodel / jetson_clocks first). Where TensorRT is not
importable those columns say so: nothing is estimated in their place.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import onnx

import edgec
from edgec.errors import EdgecError

RESULTS = Path(__file__).resolve().parent / "results"
DATA = "builtin:digits"
#: (model, precision, target options)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("zoo:digits-cnn", "none", {}),
    ("zoo:digits-cnn", "fp16", {}),
    ("zoo:digits-cnn", "int8", {}),
    ("zoo:digits-vit", "none", {}),
    ("zoo:digits-vit", "fp16", {}),
    ("zoo:digits-vit", "int8", {}),
    ("zoo:digits-vit", "int4-weights", {"int4_block": 32}),  # its projections have K = 32 / 64
    ("zoo:digits-snn-mlp", "none", {}),
    ("zoo:digits-snn-mlp", "fp16", {}),
]


def graph_facts(path: Path) -> dict[str, int]:
    model = onnx.load(str(path / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    blocks = sum(
        1
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and any(a.name == "block_size" for a in n.attribute)
    )
    return {"q": ops.count("QuantizeLinear"), "dq": ops.count("DequantizeLinear"), "int4_blocks": blocks}


def one_case(
    model: str, precision: str, options: dict[str, Any], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    row: dict[str, Any] = {"model": model, "precision": precision, "options": options}
    out = work / f"{model.split(':')[-1]}-{precision}"
    started = time.perf_counter()
    try:
        art = edgec.compile(
            model,
            target="jetson",
            quantize=precision,
            calib=DATA,
            calib_samples=args.calib_samples,
            target_options=options,
            out=out,
        )
    except EdgecError as exc:
        row["refused"] = str(exc).splitlines()[0]
        return row
    row["compile_s"] = time.perf_counter() - started
    tr = art.report["target_report"]
    row["bytes"] = art.report["files"]["model"]["bytes"]
    row["fp32_bytes"] = tr.get("fp32_bytes")
    row["rules"] = tr["rules"]
    row.update(graph_facts(out))
    m = edgec.verify(out, data=DATA, backend="onnxruntime", min_agreement=0.0).metrics
    row["ort"] = {
        k: m.get(k)
        for k in ("samples", "top1_agreement", "accuracy_source", "accuracy_artifact", "max_abs_error")
    }
    if importlib.util.find_spec("tensorrt") is None:
        row["device"] = "not run: TensorRT is not importable here"
        return row
    engine = edgec.build_engine(out)  # the device path: only where TensorRT is (a Jetson)
    dm = edgec.verify(out, data=DATA, backend="tensorrt", min_agreement=0.0).metrics
    bench = edgec.bench(out, backend="tensorrt", batch_size=1, iterations=args.iterations)
    row["device"] = {
        "engine": engine,
        "top1_agreement": dm.get("top1_agreement"),
        "accuracy_artifact": dm.get("accuracy_artifact"),
        "p50_ms": bench.p50_ms,
        "energy": bench.energy,
    }
    return row


def pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def render(rows: list[dict[str, Any]], args: argparse.Namespace, minutes: float) -> str:
    cmd = f"benchmarks/jetson.py --calib-samples {args.calib_samples} --iterations {args.iterations}"
    lines = [
        "# Jetson target: graphs checked on the CPU, engines on the device",
        "",
        f"Written by `.venv/bin/python {cmd}` ({minutes:.1f} min, edgec {edgec.__version__}, "
        f"{platform.machine()}, Python {platform.python_version()}). Each row: `edgec compile MODEL "
        f"--target jetson --quantize P --calib {DATA}` (the TensorRT rule checker passes, or the row "
        "says why not), then the graph in ONNX Runtime on the CPU against the PyTorch model on the "
        "540-digit holdout. No training; calibration on the train split's first samples.",
        "",
        "| model | precision | rules | model.onnx bytes | vs FP32 | Q / DQ / int4 blocks | top-1 agreement % "
        "| accuracy PyTorch % | accuracy graph % | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = r["model"] + (
            " " + ",".join(f"{k}={v}" for k, v in r["options"].items()) if r["options"] else ""
        )
        if "refused" in r:
            lines.append(f"| {name} | {r['precision']} | refused: {r['refused']} | | | | | | | |")
            continue
        o = r["ort"]
        ratio = f"{r['bytes'] / r['fp32_bytes']:.3f}" if r.get("fp32_bytes") else "-"
        lines.append(
            f"| {name} | {r['precision']} | passed | {r['bytes']:,} | {ratio} | {r['q']} / {r['dq']} / "
            f"{r['int4_blocks']} | {pct(o['top1_agreement'])} | {pct(o['accuracy_source'])} | "
            f"{pct(o['accuracy_artifact'])} | {o['max_abs_error']:.4g} |"
        )
    lines += ["", "## On the device (TensorRT engine, batch 1)", ""]
    device = [r for r in rows if isinstance(r.get("device"), dict)]
    if not device:
        lines.append(
            "Not run: TensorRT is not importable on the machine that wrote this file (no Jetson, no GPU). "
            "Run the same command on a Jetson with JetPack to fill this table; nothing is estimated here."
        )
    else:
        lines += [
            "| model | precision | top-1 agreement % | accuracy engine % | p50 ms | energy / inference |",
            "|---|---|---|---|---|---|",
        ]
        for r in device:
            d = r["device"]
            en = d.get("energy") or {}
            e = (
                "-"
                if en.get("energy_j") is None
                else f"{en['energy_j'] * 1e3:.3f} mJ (measured, rail {en['rail']})"
            )
            lines.append(
                f"| {r['model']} | {r['precision']} | {pct(d['top1_agreement'])} | "
                f"{pct(d['accuracy_artifact'])} | {d['p50_ms']:.3f} | {e} |"
            )
    lines += [
        "",
        "- The INT8 graphs are TensorRT's explicit-quantization form (symmetric int8, zero-point 0, Q/DQ "
        "only on weighted ops' inputs and residual skip branches): ONNX Runtime on x86 runs them slower "
        "than FP32, so no CPU latency is given; the CPU run checks numerics only.",
        "- SNN rows: the graph holds the rate encoder and the unrolled time loop; agreement is on the "
        "spike-count argmax (verify compares spike counts per output neuron).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib-samples", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=200, help="timed runs per engine (device only)")
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for model, precision, options in CASES:
            print(f"{model} {precision} ...", flush=True)
            rows.append(one_case(model, precision, options, Path(tmp), args))
    RESULTS.mkdir(exist_ok=True)
    text = render(rows, args, (time.perf_counter() - started) / 60)
    (RESULTS / "jetson.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
