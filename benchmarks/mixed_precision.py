"""Does keeping the quantization-sensitive layers wide pay? Writes benchmarks/results/mixed_precision.md.

    .venv/bin/python benchmarks/mixed_precision.py [--bits 2] [--prune 0.5] [--epochs 4] [--lr 2e-3]
        [--seeds 0 1 2]

The search's ``wide`` dimension (toolchain/search/sensitivity.py) ranks the spiking VGG's middle synapses
once by ZeroQ's KL perturbation (each layer alone quantized to ``--bits``) and keeps the k most sensitive at
8 bits. This script measures what that buys, each row fine-tuned with the same recipe, seeds and epochs:

* all middle layers at ``--bits`` (wide = 0);
* the k = 1 and k = 2 most sensitive layers at 8 bits (what a search trial with wide = k runs);
* the control: the k = 1 *least* sensitive layer at 8 bits (the same bytes, give or take a layer's size:
  if it does as well, the ranking is not what helps);
* every layer at 8 bits (the upper bound).

Accuracy of the compressed model and of the Loihi artifact (bit-exact emulator) on the 540-digit holdout,
mean ± sample standard deviation over seeds; bytes at bit width and Loihi energy from `edgec compress`'s
report (the loihi1-davies2018 table, estimates).
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
from edgec.loading import load_program
from edgec.search.sensitivity import rank_groups, widen_recipes

MODEL = "zoo:digits-snn-vgg"
DATA = "builtin:digits"
RESULTS = Path(__file__).resolve().parent / "results"


def deployed(out: Path, work: Path) -> float:
    """The compressed program on the Loihi emulator: top-1 of its output spike counts on the holdout."""
    art = edgec.compile(out, target="loihi", out=work / f"{out.name}-loihi", force=True)
    x, y = open_dataset(f"{DATA}:holdout").arrays()
    spikes = np.asarray(edgec.run(art, x)["output"])
    return float((spikes.reshape(len(x), spikes.shape[1], -1).sum(1).argmax(1) == y).mean())


def measure(
    recipe: str, wide: list[str], seed: int, args: argparse.Namespace, work: Path, n: int
) -> dict[str, Any]:
    recipes = widen_recipes([recipe], wide)
    out = work / f"run{n}"
    res = edgec.compress(
        MODEL, passes=recipes, train=DATA, epochs=args.epochs, lr=args.lr, seed=seed, out=out, force=True
    )
    after = res.report["after"]
    return {
        "accuracy": after["accuracy"],
        "deployed": deployed(out, work),
        "bytes": after["param_bytes"],
        "loihi": after["energy_j"]["loihi1-davies2018"],
    }


def mean_sd(rows: list[dict[str, Any]], key: str) -> str:
    vals = [100 * float(r[key]) for r in rows]
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.2f} ± {sd:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--prune", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    program = load_program(MODEL)
    x, _ = open_dataset(f"{DATA}:train").arrays()
    ranking = rank_groups(program, x, bits=args.bits, seed=args.seeds[0])
    order = list(ranking.ranking)  # most sensitive first
    minutes_start = started
    seeds = " ".join(map(str, args.seeds))
    sections: list[str] = []
    for quantizer in ("rescaw", "uniform"):
        recipe = f"qp-snn:bits={args.bits},prune={args.prune},quantizer={quantizer}"
        rows: list[tuple[str, list[str]]] = [
            (f"all middle layers at {args.bits} bits (wide = 0)", []),
            (f"most sensitive at 8 bits (wide = 1): {order[0]}", order[:1]),
            (f"two most sensitive at 8 bits (wide = 2): {', '.join(order[:2])}", order[:2]),
            (f"control: least sensitive at 8 bits: {order[-1]}", order[-1:]),
            ("every middle layer at 8 bits", order),
        ]
        results: dict[str, list[dict[str, Any]]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for i, (label, wide) in enumerate(rows):
                results[label] = [
                    measure(recipe, wide, seed, args, Path(tmp), 10 * i + j)
                    for j, seed in enumerate(args.seeds)
                ]
                print(
                    f"{quantizer} {label}: {mean_sd(results[label], 'accuracy')}", file=sys.stderr, flush=True
                )
        sections += [
            "",
            f"## `{recipe}`",
            "",
            "| layers kept at 8 bits | accuracy % | deployed on Loihi (emulator) % | bytes at bit width "
            "| energy Loihi (µJ, est.) |",
            "|---|---|---|---|---|",
        ]
        for label, rs in results.items():
            b = statistics.fmean(r["bytes"] for r in rs)
            e = statistics.fmean(r["loihi"] for r in rs) * 1e6
            sections.append(
                f"| {label} | {mean_sd(rs, 'accuracy')} | {mean_sd(rs, 'deployed')} | {b:,.0f} | {e:.3f} |"
            )
        acc = {label: statistics.fmean(r["accuracy"] for r in rs) for label, rs in results.items()}
        base, top1, ctrl, full = (acc[rows[k][0]] for k in (0, 1, 3, 4))
        sections += [
            "",
            f"- wide = 1 vs wide = 0: {100 * (top1 - base):+.2f} points; vs the least-sensitive control: "
            f"{100 * (top1 - ctrl):+.2f} points; every layer at 8 bits vs wide = 0: "
            f"{100 * (full - base):+.2f} points (read against the spreads).",
        ]
    minutes = (time.perf_counter() - minutes_start) / 60
    cmd = (
        f"benchmarks/mixed_precision.py --bits {args.bits} --prune {args.prune} --epochs {args.epochs} "
        f"--lr {args.lr} --seeds {seeds}"
    )
    lines = [
        "# Mixed precision by sensitivity: the spiking VGG at low bits, sensitive layers kept wide",
        "",
        f"Written by `.venv/bin/python {cmd}` ({minutes:.1f} min, edgec {edgec.__version__}). `{MODEL}`, "
        f"{args.epochs} epochs, lr {args.lr}, seeds {seeds}; the layers kept wide are added to the recipe as "
        "`layers=NAME:8` (what a search trial with `wide = k` runs), with QP-SNN's ReScaW quantizer and with "
        "a uniform max-abs one. Mean ± sample standard deviation over the seeds; accuracy on the 540-digit "
        "holdout.",
        "",
        f"Ranking ({ranking.method}: mean KL of the outputs with one layer alone quantized to "
        f"{args.bits} bits, max-abs, {ranking.samples} training samples):",
        "",
        "| rank | layer | score |",
        "|---|---|---|",
        *(f"| {i + 1} | {g['layer']} | {g['score']:.4f} |" for i, g in enumerate(ranking.groups)),
        *sections,
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mixed_precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
