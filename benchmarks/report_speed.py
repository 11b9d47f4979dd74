"""How long `edgec report` takes for ResNet-18 (224x224), end to end, as a user runs it.

    .venv/bin/python benchmarks/report_speed.py [--runs 3] [--model zoo:resnet18] [--limit 10]

Runs ``edgec report MODEL --format json -o FILE`` as a fresh process ``--runs`` times (Python start,
imports, model construction, the traced inference, pricing for every target, writing the file) and
prints each wall time and their median; then, in this process, where the time goes (imports, model
load, counting, rendering JSON / Markdown / HTML). Target: median under ``--limit`` seconds. The
machine's load average is printed with it: on a shared 2-core machine, imports of torch and
torchvision dominate and vary with load. Exit code 1 if the median misses the target.
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
from pathlib import Path


def cli_runs(model: str, runs: int, out_dir: Path) -> list[float]:
    times = []
    for i in range(runs):
        out = out_dir / f"report-{i}.json"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "edgec", "report", model, "--format", "json", "-o", str(out)],
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.exit(f"edgec report failed ({proc.returncode}): {proc.stderr.strip()}")
        json.loads(out.read_text())  # a complete report was written
    return times


def breakdown(model: str) -> dict[str, float]:
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    t["import torch + torchvision"] = time.perf_counter() - t0
    from edgec.config import load_config
    from edgec.energy.analyze import count_program, energy_section
    from edgec.loading import load_program
    from edgec.report import build_report, render_html, render_markdown
    from edgec.target import cost_table_catalogue

    t0 = time.perf_counter()
    program = load_program(model)
    t["load + validate model"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts = count_program(program)
    t["count (trace + activity)"] = time.perf_counter() - t0
    cfg = load_config(target="cpu")
    t0 = time.perf_counter()
    section = energy_section(
        program,
        None,
        table="cmos45-fp32",
        target="cpu",
        comparison=cost_table_catalogue(),
        counts=counts,
    )
    t["price for every target"] = time.perf_counter() - t0
    report = build_report(program, target="cpu", config=cfg, energy=section)
    t0 = time.perf_counter()
    report.to_json()
    render_markdown(report)
    render_html(report)
    t["render json + md + html"] = time.perf_counter() - t0
    t["_macs"] = float(section["totals"]["macs"])
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zoo:resnet18")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit", type=float, default=10.0, help="target for the median, seconds")
    args = ap.parse_args()
    print(f"edgec report {args.model} --format json -o FILE   ({os.cpu_count()} CPUs)")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        times = cli_runs(args.model, args.runs, Path(tmp))
    median = statistics.median(times)
    print("wall time per run (fresh process): " + ", ".join(f"{t:.2f} s" for t in times))
    print(f"median: {median:.2f} s (target < {args.limit:.0f} s)")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\nwhere the time goes (in this process):")
    parts = breakdown(args.model)
    macs = parts.pop("_macs")
    for name, secs in parts.items():
        print(f"  {name:28s} {secs:6.2f} s")
    print(f"  (ResNet-18 dense MACs counted: {int(macs):,})")
    ok = median < args.limit
    print(f"\n{'PASS' if ok else 'FAIL'}: median {median:.2f} s {'<' if ok else '>='} {args.limit:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
