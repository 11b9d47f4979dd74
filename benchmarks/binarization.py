"""Binarization of the digits CNN: writes benchmarks/results/binarization.md.

    nice -n 10 .venv/bin/python benchmarks/binarization.py [--epochs 8] [--lr 1e-3] [--seeds 0 1 2]

The zoo's digits CNN (``zoo:digits-cnn``: conv 16, conv 32, FC 64, FC 10, trained on builtin:digits:train)
goes through the ``binarize`` recipe with each estimator, 1-bit weights with 1-bit activations (1W/1A)
and with real ones (1W/32A); the first and last layer stay at 8 bits (the default). Every run uses the
shared fine-tuning loop with the same epochs, learning rate and seed (the best epoch is chosen on a
validation part of the training split); accuracy is measured on the 540-digit holdout. Columns:

* accuracy: mean ± sample standard deviation over the seeds;
* bytes: parameters at each layer's width (1-bit weights packed, their per-channel scales, the rest
  fp32), from the energy report;
* MACs: dense multiply-accumulates of one inference; BOPs: the MACs whose two operands are 1-bit
  (XNOR-Net), OPs = BOPs / 64 + FLOPs (the Bi-Real Net convention), from the energy report;
* CPU artifacts (first seed): ``edgec compile --target cpu`` (weights int8, binary inputs exact) and
  ``--quantize int8`` (every Conv / Gemm an integer kernel): top-1 agreement of ONNX Runtime with the
  PyTorch binarized model on the holdout, integer kernels in ONNX Runtime's optimized graph, the
  bit-packed weights file against the fp32 bytes of those layers, and the latency ratio of the same
  binarized program exported in FP32 to its INT8 artifact (ONNX Runtime, 1 thread, batch 1 and 64,
  medians of interleaved runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import edgec
from edgec.data import open_dataset

MODEL = "zoo:digits-cnn"
DATA = "builtin:digits"
METHODS: list[tuple[str, str]] = [
    ("STE, 1W/1A", "binarize:estimator=ste,activations=1"),
    ("ReSTE, 1W/1A", "binarize:estimator=reste,activations=1"),
    ("Bi-Real estimator, 1W/1A", "binarize:estimator=bireal,activations=1"),
    ("STE, 1W/32A", "binarize:estimator=ste,activations=32"),
    ("ReSTE, 1W/32A", "binarize:estimator=reste,activations=32"),
]


def holdout() -> tuple[np.ndarray, np.ndarray]:
    x, y = open_dataset(f"{DATA}:holdout").arrays()
    assert y is not None
    return x, y


def row_of(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "accuracy": summary["accuracy"],
        "bytes": summary["param_bytes"],
        "macs": summary["macs"],
        "bops": summary["bops"],
        "ops": summary["ops_bop64"],
    }


def ort_latency_ratio(fp32: Path, int8: Path, x: np.ndarray, batch: int, rounds: int = 100) -> float:
    """Median FP32 time / median INT8 time, one thread, runs interleaved."""
    import onnxruntime as ort

    def session(path: Path) -> Any:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    sessions = [session(fp32), session(int8)]
    times: list[list[float]] = [[], []]
    sample = {"input": x[:batch]}
    for s in sessions:
        for _ in range(10):
            s.run(None, sample)
    for _ in range(rounds):
        for i, s in enumerate(sessions):
            t = time.perf_counter()
            s.run(None, sample)
            times[i].append(time.perf_counter() - t)
    return statistics.median(times[0]) / statistics.median(times[1])


def cpu_artifacts(program_dir: Path, workdir: Path, name: str) -> dict[str, Any]:
    """Compile a binarized program for the CPU twice; agreement with PyTorch, kernels, packed bytes."""
    import onnxruntime as ort

    from edgec.store import load_program_dir

    x, _ = holdout()
    prog = load_program_dir(program_dir)
    with torch.no_grad():
        ref = prog.module(torch.from_numpy(x)).argmax(1).numpy()
    from edgec.onnxlib import export_program

    out: dict[str, Any] = {}
    fp32 = workdir / f"{name}-fp32.onnx"  # the same binarized program, exported in float
    export_program(prog, fp32)
    for precision in ("none", "int8"):
        art = edgec.compile(
            program_dir, target="cpu", quantize=precision, out=workdir / f"{name}-{precision}"
        )
        sess = ort.InferenceSession(str(art.file("model")), providers=["CPUExecutionProvider"])
        pred = sess.run(None, {"input": x})[0].argmax(1)
        tr = art.report["target_report"]
        out[precision] = {
            "agreement": float((pred == ref).mean()),
            "integer_kernels": tr["ort_fusion"]["fused_quantized_ops"],
            "float_kernels": tr["ort_fusion"]["float_compute_ops"],
            "precision": tr["precision"],
        }
        packed = tr["quantization"].get("packed_weights") or {}
        out["packed_bytes"] = packed.get("bytes")
        out["packed_fp32_bytes"] = packed.get("fp32_bytes_of_those_layers")
        if precision == "int8":
            out["speedup"] = {b: ort_latency_ratio(fp32, art.file("model"), x, b) for b in (1, 64)}
    return out


def mean_sd(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    vals = [float(r[key]) for r in rows]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def pct(rows: list[dict[str, Any]], key: str = "accuracy") -> str:
    m, s = mean_sd(rows, key)
    return f"{100 * m:.2f} ± {100 * s:.2f}" if len(rows) > 1 else f"{100 * m:.2f}"


def num(rows: list[dict[str, Any]], key: str) -> str:
    return f"{mean_sd(rows, key)[0]:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "binarization.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    from edgec.compression import summarize
    from edgec.loading import load_program

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        src = row_of(summarize(load_program(MODEL), open_dataset(f"{DATA}:holdout", purpose="evaluation")))
        results: dict[str, list[dict[str, Any]]] = {}
        artifacts: dict[str, dict[str, Any]] = {}
        for i, (label, recipe) in enumerate(METHODS):
            rows = []
            for seed in args.seeds:
                out = workdir / f"m{i}-s{seed}"
                res = edgec.compress(
                    MODEL, passes=[recipe], train=DATA, epochs=args.epochs, lr=args.lr, seed=seed,
                    device=args.device, out=out,
                )  # fmt: skip
                rows.append(row_of(res.report["after"]))
                if seed == args.seeds[0] and "activations=1" in recipe:
                    artifacts[label] = cpu_artifacts(out, workdir, f"m{i}")
            results[label] = rows
            print(f"{label}: {pct(rows)} %", file=sys.stderr)
        zoo_fp32 = edgec.compile(MODEL, target="cpu", out=workdir / "zoo-fp32").file("model")
        zoo_int8 = edgec.compile(MODEL, target="cpu", quantize="int8", out=workdir / "zoo-int8").file("model")
        x, _ = holdout()
        zoo_speed = {b: ort_latency_ratio(zoo_fp32, zoo_int8, x, b) for b in (1, 64)}
    minutes = (time.perf_counter() - started) / 60
    lines = [
        "# Binarization of the digits CNN (STE, ReSTE, Bi-Real; 1W/1A and 1W/32A)",
        "",
        f"Written by `nice -n 10 .venv/bin/python benchmarks/binarization.py --epochs {args.epochs} --lr "
        f"{args.lr} --seeds {' '.join(map(str, args.seeds))} --device {args.device}` ({minutes:.1f} min, "
        f"edgec {edgec.__version__}, torch 1 thread). Model `{MODEL}`; recipe `binarize` (first and last "
        f"layer 8-bit, per-channel alpha = mean|W|), fine-tuned on {DATA}:train (10 % held out for the best "
        f"epoch), measured on the 540-digit holdout. Means ± sample standard deviation over seeds "
        f"{', '.join(map(str, args.seeds))}.",
        "",
        "| method | accuracy % | bytes | MACs | BOPs (1-bit x 1-bit) | OPs = BOPs/64 + FLOPs |",
        "|---|---|---|---|---|---|",
        f"| full precision (fp32) | {100 * src['accuracy']:.2f} | {src['bytes']:,} | {src['macs']:,} "
        f"| {src['bops']:,} | {src['ops']:,.0f} |",
    ]
    for label, rows in results.items():
        lines.append(
            f"| {label} | {pct(rows)} | {num(rows, 'bytes')} | {num(rows, 'macs')} | {num(rows, 'bops')} "
            f"| {num(rows, 'ops')} |"
        )
    verdicts = []
    for act in ("1W/1A", "1W/32A"):
        (ste, s_sd), (reste, r_sd) = (
            mean_sd(results[f"STE, {act}"], "accuracy"),
            mean_sd(results[f"ReSTE, {act}"], "accuracy"),
        )
        spread = 100 * max(s_sd, r_sd)
        within = f" (within the seeds' spread, ± {spread:.2f})" if abs(reste - ste) * 100 <= spread else ""
        verdicts.append(
            f"- ReSTE vs STE at {act}: {100 * (reste - ste):+.2f} points on average{within} -- "
            + ("ReSTE at least as accurate." if reste >= ste else "ReSTE is BELOW STE here.")
        )
    lines += [
        "",
        *verdicts,
        "- Bytes: 1-bit weights packed eight a byte plus their per-channel scale (fp32), the 8-bit first and "
        "last layers, fp32 biases, BatchNorm and binarizer thresholds (energy report, cmos45-fp32 table).",
        "- BOPs / OPs: counted from the quantization record (energy report conventions `bops`, `ops_bop64`). "
        "A 1W/32A layer's MACs stay MACs (sign-flipped accumulates), so it has no BOPs.",
        "",
        f"## CPU artifacts of the 1W/1A models (seed {args.seeds[0]})",
        "",
        "| method | ORT vs PyTorch top-1, default (learned) | integer / float kernels "
        "| ORT vs PyTorch top-1, --quantize int8 | integer / float kernels | packed 1-bit file "
        "| fp32 bytes of those layers | ratio | FP32 / INT8 time, batch 1 | batch 64 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, a in artifacts.items():
        n, q = a["none"], a["int8"]
        lines.append(
            f"| {label} | {100 * n['agreement']:.2f} % | {n['integer_kernels']} / {n['float_kernels']} "
            f"| {100 * q['agreement']:.2f} % | {q['integer_kernels']} / {q['float_kernels']} "
            f"| {a['packed_bytes']:,} B | {a['packed_fp32_bytes']:,} B "
            f"| 1/{a['packed_fp32_bytes'] / a['packed_bytes']:.1f} | {a['speedup'][1]:.2f} "
            f"| {a['speedup'][64]:.2f} |"
        )
    lines += [
        "",
        "- ONNX Runtime has no 1-bit kernels: model.onnx carries the binarized layers as int8 +-1 with their "
        "per-channel scale; the bit-packed file (`weights-1bit.safetensors`, docs/binarization.md) is what a "
        "1-bit runtime would load. The latency ratio (above 1: INT8 faster) compares the binarized program's "
        "FP32 export with its INT8 artifact, interleaved in one run on this shared machine (a ratio, not "
        "absolute times). This CNN is tiny (0.34 M MACs): per-operator overhead dominates, and ONNX "
        "Runtime's INT8 kernels gain little or nothing over FP32 on it: the full-precision zoo model's own "
        f"calibrated INT8 artifact measures FP32 / INT8 = {zoo_speed[1]:.2f} at batch 1 and "
        f"{zoo_speed[64]:.2f} at batch 64 in the same run. The gains of binarization here are the bytes and "
        "the BOPs.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
