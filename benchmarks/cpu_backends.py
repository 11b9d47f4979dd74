"""The CPU target's two runtimes side by side: ONNX Runtime and OpenVINO, FP32 and INT8, quiet and
under a competing CPU load, measured in one run (issue 17).

    nice -n 10 .venv/bin/python benchmarks/cpu_backends.py [--rounds 5] [--load-rounds 3] [--iters 30]
        [--threads 2] [--load 1] [--out FILE]

ResNet-18 (zoo:resnet18, 224x224, batch 1, torchvision's architecture with ``torch.manual_seed(0)``
init) is compiled by ``edgec.compile`` three times: FP32 and INT8 with ``--backend openvino`` (model.onnx
plus OpenVINO's IR, so both runtimes run the same artifact), and INT8 without ``--backend`` (edgec's
default route: compile times both runtimes and keeps the faster, ``targets/cpu/choice.py``). INT8:
U8S8 QDQ calibrated (MinMax) on 32 smooth random images (numpy seed 0); timing input seed 1.

Timing: **one process per figure**. A figure is a fresh Python process that opens the artifact through
``edgec.get_target("cpu").session`` on the runtime asked, with the artifact's options or one overridden
in memory (``precision=bf16``, ``spinning=true``, ...), makes ``--warmup`` untimed calls and then
``--iters`` timed calls, and prints their median. A round runs every figure once, in an order that
reverses every other round; each figure's ratio is taken against the reference figure *of the same
round*, and the table gives the median of the rounds' ratios (rounds in brackets), so that the
machine's load drifting between rounds moves both sides of a ratio.

Under load: ``--load`` busy processes (a pure-Python loop each, at the benchmark's own niceness) run
during the timed half of each pair. Per round, each configuration is measured quiet and then loaded
(two processes); the slowdown is loaded / quiet of that round. The configurations are edgec's defaults
(ONNX Runtime threads do not spin, OpenVINO threads are not pinned) against the runtimes' own defaults
(``spinning=true``, ``pinning=true``) and against 1 intra-op thread.

Beside them, OpenVINO's own INT8 route: nncf post-training quantization of the FP32 OpenVINO model (the
comparison issue 17 names), timed the same way with edgec's OpenVINO settings.

Also measured, in this process: FP32 fidelity of OpenVINO at edgec's f32 hint and at OpenVINO's own
default precision hint on this CPU (max-abs difference to PyTorch on 16 of the timing-style images).

Writes benchmarks/results/cpu_backends.md (or --out) with the command, seeds, versions and the
machine's load. Exit 1 when edgec's default INT8 route is above 0.32x ONNX Runtime FP32 or slower
than the other runtime on the same INT8 artifact by more than the rounds' spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_int8 import synthetic_images  # the same smooth images as the INT8 benchmark

RESULTS = Path(__file__).resolve().parent / "results" / "cpu_backends.md"
#: issue 17: edgec's default INT8 route on ResNet-18, relative to ONNX Runtime FP32
DEFAULT_INT8_TARGET = 0.32
SHAPE = (3, 224, 224)


# ---- one figure: a fresh process ----------------------------------------------------------------------
def worker(args: argparse.Namespace) -> int:
    """Open ``args.artifact`` on ``args.backend`` (overriding the options given), time it, print JSON."""
    from edgec.artifact import Artifact
    from edgec.target import get_target

    if args.artifact.suffix == ".xml":  # an OpenVINO IR edgec did not write (nncf's): edgec's settings
        from edgec.targets.cpu.openvino_backend import open_session
        from edgec.targets.cpu.options import CpuOptions

        session: Any = open_session(args.artifact, CpuOptions(), threads=args.threads, declared=["output"])
        return _time(session, args)
    art = Artifact.open(args.artifact)
    opts = art.report["target_report"].setdefault("options", {})
    for kv in args.option or []:  # in memory only: the artifact on disk is not touched
        key, _, value = kv.partition("=")
        opts[key] = {"true": True, "false": False}.get(value, value)
    return _time(get_target("cpu").session(art, backend=args.backend or None, threads=args.threads), args)


def _time(session: Any, args: argparse.Namespace) -> int:
    x = synthetic_images(1, SHAPE, seed=1)
    for _ in range(args.warmup):
        session(x)
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        session(x)
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"median_ms": statistics.median(times), "runtime": session.runtime}))  # type: ignore[attr-defined]
    return 0


@dataclass
class Figure:
    key: str
    label: str
    artifact: Path
    backend: str | None  # None: the artifact's own (edgec's default)
    options: list[str] = field(default_factory=list)  # e.g. ["spinning=true"]
    threads: int | None = None  # None: --threads

    def argv(self, args: argparse.Namespace) -> list[str]:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            "--artifact",
            str(self.artifact),
            "--iters",
            str(args.iters),
        ]
        cmd += ["--warmup", str(args.warmup), "--threads", str(self.threads or args.threads)]
        cmd += ["--backend", self.backend or ""]
        for o in self.options:
            cmd += ["--option", o]
        return cmd


def measure(fig: Figure, args: argparse.Namespace) -> dict[str, Any]:
    proc = subprocess.run(fig.argv(args), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{fig.label}: worker failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


class Load:
    """``n`` busy processes (pure Python loops) while the ``with`` block runs."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Load:
        code = "while True:\n    pass"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.n)]
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: Any) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()


# ---- compile ------------------------------------------------------------------------------------------
def compile_all(work: Path) -> dict[str, Any]:
    import edgec

    calib = work / "calib.npz"
    np.savez(calib, x=synthetic_images(32, SHAPE, seed=0))
    cfg = edgec.CompileConfig(calib_samples=32)
    int8 = {"quantize": "int8", "calib": str(calib), "config": cfg}
    return {
        "fp32": edgec.compile("zoo:resnet18", target="cpu", backend="openvino", out=work / "fp32"),
        "int8": edgec.compile("zoo:resnet18", target="cpu", backend="openvino", out=work / "int8", **int8),
        "int8-default": edgec.compile("zoo:resnet18", target="cpu", out=work / "int8-default", **int8),
        "fp32-default": edgec.compile("zoo:resnet18", target="cpu", out=work / "fp32-default"),
        # the choice on smaller models: the same compile-time timing, nothing else is measured on them
        "resnet20 fp32-default": edgec.compile("zoo:resnet20", target="cpu", out=work / "r20"),
        "digits-cnn fp32-default": edgec.compile("zoo:digits-cnn", target="cpu", out=work / "digits"),
    }


def nncf_int8(fp32: Any, work: Path) -> tuple[Path, float]:
    """OpenVINO's own INT8 route: nncf 3.x post-training quantization (its default preset, on the same 32
    calibration images) of the FP32 model, saved as IR; and the top-1 agreement of its outputs with
    edgec's INT8 artifact's on 64 images (numpy seed 3), both on OpenVINO."""
    import nncf
    import openvino as ov

    from edgec.targets.cpu.openvino_backend import open_session
    from edgec.targets.cpu.options import CpuOptions

    calib = synthetic_images(32, SHAPE, seed=0)
    model = ov.Core().read_model(str(fp32.path / "model.onnx"))
    quantized = nncf.quantize(
        model, nncf.Dataset([calib[i : i + 1] for i in range(len(calib))]), subset_size=32
    )
    xml = work / "nncf" / "model.xml"
    xml.parent.mkdir()
    ov.save_model(quantized, str(xml))
    x = synthetic_images(64, SHAPE, seed=3)
    ours = open_session(work / "int8" / "model.xml", CpuOptions(), threads=None, declared=["output"])
    theirs = open_session(xml, CpuOptions(), threads=None, declared=["output"])
    a = np.concatenate([ours(x[i : i + 1])["output"] for i in range(len(x))]).argmax(1)
    b = np.concatenate([theirs(x[i : i + 1])["output"] for i in range(len(x))]).argmax(1)
    return xml, float((a == b).mean())


def fidelity(fp32: Any) -> dict[str, dict[str, Any]]:
    """Max-abs difference of OpenVINO's FP32 run to PyTorch: edgec's f32 hint vs OpenVINO's default."""
    import openvino as ov
    import torch

    from edgec.models import ZOO

    x = synthetic_images(16, SHAPE, seed=2)
    with torch.no_grad():
        ref = ZOO["resnet18"].build().eval()(torch.from_numpy(x)).numpy()
    core = ov.Core()
    model = core.read_model(str(fp32.path / "model.xml"))
    out: dict[str, dict[str, Any]] = {}
    for label, props in (
        ("edgec (INFERENCE_PRECISION_HINT=f32)", {"INFERENCE_PRECISION_HINT": "f32"}),
        ("OpenVINO's default (no hint)", {}),
    ):
        compiled = core.compile_model(model, "CPU", props)
        y = np.concatenate([compiled(x[i : i + 1])[0] for i in range(len(x))])
        out[label] = {
            "precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "max_abs": float(np.abs(y - ref).max()),
            "range": float(np.abs(ref).max()),
        }
    return out


# ---- the run ------------------------------------------------------------------------------------------
def rounds_of(figs: list[Figure], args: argparse.Namespace, n: int, loaded: bool) -> dict[str, list[Any]]:
    """``{key: [per-round result]}``; loaded: each figure quiet then under load (a pair per round)."""
    res: dict[str, list[Any]] = {f.key: [] for f in figs}
    for r in range(n):
        order = figs if r % 2 == 0 else figs[::-1]
        for fig in order:
            if loaded:
                quiet = measure(fig, args)
                with Load(args.load):
                    busy = measure(fig, args)
                res[fig.key].append((quiet, busy))
                print(f"  round {r + 1} {fig.label}: quiet {quiet['median_ms']:.2f} ms, "
                      f"loaded {busy['median_ms']:.2f} ms", flush=True)  # fmt: skip
            else:
                got = measure(fig, args)
                res[fig.key].append(got)
                print(f"  round {r + 1} {fig.label}: {got['median_ms']:.2f} ms", flush=True)
    return res


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_rounds(xs: list[float]) -> str:
    return f"{med(xs):.3f} ({', '.join(f'{v:.3f}' for v in xs)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the quiet comparison")
    ap.add_argument("--load-rounds", type=int, default=3, help="rounds of the quiet/loaded pairs")
    ap.add_argument("--iters", type=int, default=30, help="timed calls per figure")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls per figure")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads")
    ap.add_argument("--load", type=int, default=1, help="busy processes of the competing load")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--artifact", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--option", action="append", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    import onnxruntime
    import openvino

    t_start = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("compiling ResNet-18 FP32 and INT8 ...", flush=True)
        arts = compile_all(work)
        fid = fidelity(arts["fp32"])
        nncf_xml, nncf_agree = nncf_int8(arts["fp32"], work)
        fp32, int8, dflt = arts["fp32"].path, arts["int8"].path, arts["int8-default"].path
        chosen = arts["int8-default"].report["target_report"]["backend"]
        other = "onnxruntime" if chosen == "openvino" else "openvino"
        quiet_figs = [
            Figure("ort-fp32", "ONNX Runtime FP32", fp32, "onnxruntime"),
            Figure("ov-fp32", "OpenVINO FP32 (f32)", fp32, "openvino"),
            Figure("ov-fp32-bf16", "OpenVINO FP32, asked for bf16", fp32, "openvino", ["precision=bf16"]),
            Figure("ort-int8", "ONNX Runtime INT8", int8, "onnxruntime"),
            Figure("ov-int8", "OpenVINO INT8", int8, "openvino"),
            Figure("default-int8", f"edgec default INT8 ({chosen})", dflt, None),
            Figure("default-other", f"the same INT8 artifact on {other}", dflt, other),
            Figure(
                "nncf-int8", "nncf INT8 of the FP32 OpenVINO model (OpenVINO's own route)", nncf_xml, None
            ),
        ]
        print(f"quiet: {args.rounds} rounds, one process per figure", flush=True)
        quiet = rounds_of(quiet_figs, args, args.rounds, loaded=False)
        spin, pin = ["spinning=true"], ["pinning=true"]  # the runtimes' own defaults
        load_figs = [
            Figure("ort-int8", "ONNX Runtime INT8, edgec (no spinning)", int8, "onnxruntime"),
            Figure("ort-int8-spin", "ONNX Runtime INT8, spinning (ORT's default)", int8, "onnxruntime", spin),
            Figure("ort-int8-1t", "ONNX Runtime INT8, no spinning, 1 thread", int8, "onnxruntime", threads=1),
            Figure("ov-int8", "OpenVINO INT8, edgec (no pinning)", int8, "openvino"),
            Figure("ov-int8-pin", "OpenVINO INT8, pinning (OpenVINO's default)", int8, "openvino", pin),
            Figure("ov-int8-1t", "OpenVINO INT8, no pinning, 1 thread", int8, "openvino", threads=1),
        ]
        print(f"under load ({args.load} busy process(es)): {args.load_rounds} rounds", flush=True)
        loaded = rounds_of(load_figs, args, args.load_rounds, loaded=True)
    wall = time.perf_counter() - t_start
    load_after = os.getloadavg()

    base = [r["median_ms"] for r in quiet["ort-fp32"]]
    ratio = {k: [r["median_ms"] / b for r, b in zip(v, base, strict=True)] for k, v in quiet.items()}
    d_vs_o = [a / b for a, b in zip(ratio["default-int8"], ratio["default-other"], strict=True)]
    spread = (max(d_vs_o) - min(d_vs_o)) / 2
    ok_target = med(ratio["default-int8"]) <= DEFAULT_INT8_TARGET
    ok_other = med(d_vs_o) <= 1 + spread
    cmd = "nice -n 10 .venv/bin/python benchmarks/cpu_backends.py " + " ".join(sys.argv[1:])
    choice = {k: a.report["target_report"]["backend_choice"] for k, a in arts.items() if "default" in k}
    lines = [
        "# The CPU target's runtimes: ONNX Runtime and OpenVINO (ResNet-18)",
        "",
        f"Written by `{cmd.strip()}` ({wall / 60:.1f} min).",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs; onnxruntime {onnxruntime.__version__}, "
        f"openvino {openvino.__version__.split('-')[0]}; {args.threads} intra-op threads unless a row says "
        "otherwise; batch 1.",
        f"- Load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; after: "
        f"{', '.join(f'{v:.2f}' for v in load_after)}. A shared, noisy machine: only ratios measured in "
        "one run are quoted; the milliseconds are indicative.",
        "- Model: zoo:resnet18 (torchvision ResNet-18, `torch.manual_seed(0)` init), 224x224. INT8: "
        "edgec's U8S8 QDQ, MinMax on 32 smooth random images (numpy seed 0). Timing input: seed 1.",
        f"- One process per figure: {args.warmup} untimed calls, then the median of {args.iters} timed "
        f"calls. Quiet: {args.rounds} rounds, each runs every figure once (order reversed every other "
        "round); ratios are to ONNX Runtime FP32 of the same round, the median of the rounds (rounds in "
        "brackets).",
        "",
        "| figure | runtime, float precision ran (compute layers) | median ms | "
        "ratio to ONNX Runtime FP32 (rounds) |",
        "|---|---|---:|---|",
    ]
    for fig in quiet_figs:
        runs = quiet[fig.key]
        rt = runs[0]["runtime"]
        ran = f"{rt['runtime']}, {rt['precision']}"
        if "compute_layers" in rt:
            ran += " (" + ", ".join(f"{k} {'/'.join(v)}" for k, v in rt["compute_layers"].items()) + ")"
        ms = med([r["median_ms"] for r in runs])
        lines.append(f"| {fig.label} | {ran} | {ms:.2f} | {fmt_rounds(ratio[fig.key])} |")
    lines += [
        "",
        f"- edgec's default INT8 route ({chosen}, chosen at compile): **{med(ratio['default-int8']):.3f}x** "
        f"ONNX Runtime FP32 (target <= {DEFAULT_INT8_TARGET}: {'met' if ok_target else '**missed**'}); "
        f"against the same artifact on {other}: {fmt_rounds(d_vs_o)} (rounds' half-spread {spread:.3f}: "
        f"{'not slower beyond noise' if ok_other else '**slower beyond noise**'}).",
        f"- nncf {_nncf_version()} (`nncf.quantize`, default preset, the same 32 calibration images) on the "
        f"FP32 model, run on OpenVINO with edgec's settings: {fmt_rounds(ratio['nncf-int8'])} ONNX Runtime "
        f"FP32; top-1 agreement with edgec's INT8 artifact (both on OpenVINO, 64 images, seed 3): "
        f"{100 * nncf_agree:.1f} %.",
        "- The choice at compile (`target_report.backend_choice`, a short alternating timing in the "
        "compiling process): "
        + "; ".join(
            f"{k if ' ' in k else 'resnet18 ' + k}: {c['chosen']} "
            f"(OpenVINO / ONNX Runtime {c['ratio']['openvino_to_onnxruntime']:.3f}, "
            f"{c['rounds']} rounds x {c['calls_per_round']} calls)"
            for k, c in choice.items()
        )
        + ".",
        "",
        "FP32 on OpenVINO, max-abs difference to PyTorch on 16 images (numpy seed 2), in this process:",
        "",
        "| precision hint | precision ran | max-abs difference | over the output's range |",
        "|---|---|---:|---:|",
    ]
    for label, f in fid.items():
        lines.append(f"| {label} | {f['precision']} | {f['max_abs']:.2e} | {f['max_abs'] / f['range']:.1e} |")
    lines += [
        "",
        f"Under a competing load ({args.load} busy Python process(es) at the same niceness): "
        f"{args.load_rounds} rounds; per round each configuration runs quiet and then loaded (two "
        "processes). Slowdown: loaded / quiet of the same round. Last column: loaded latency over "
        "edgec's default configuration of the same runtime, loaded, same round.",
        "",
        "| configuration | quiet ms | loaded ms | slowdown under load (rounds) | loaded vs edgec's default |",
        "|---|---:|---:|---|---|",
    ]
    for fig in load_figs:
        pairs = loaded[fig.key]
        ref = loaded["ort-int8" if fig.key.startswith("ort") else "ov-int8"]
        slow = [b["median_ms"] / q["median_ms"] for q, b in pairs]
        vs = [b["median_ms"] / rb["median_ms"] for (_, b), (_, rb) in zip(pairs, ref, strict=True)]
        lines.append(
            f"| {fig.label} | {med([q['median_ms'] for q, _ in pairs]):.2f} | "
            f"{med([b['median_ms'] for _, b in pairs]):.2f} | {fmt_rounds(slow)} | {fmt_rounds(vs)} |"
        )
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0 if ok_target and ok_other else 1


def _nncf_version() -> str:
    import nncf

    return str(nncf.__version__)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
