"""edgec's Loihi emulator versus Lava's CPU simulation (fixed_pt) on the same network, in one run.

    .venv/bin/python benchmarks/loihi_emulator.py [--samples 24] [--rounds 3] [--out DIR]

For the zoo spiking MLP (the thresholds) and the spiking CNN (reported): compile for Loihi, encode
``--samples`` digits holdout samples (rate coding, T = 16), and

* Lava: ``network.net`` in ``netx.hdf5.Network`` + ``Loihi2SimCfg(select_tag='fixed_pt')``, all samples
  streamed through one network (netx ``reset_interval = T``); its speed is network steps per second
  after Lava's compile and first step (the simulator's steady state; the rate including compile is
  printed too);
* emulator, batch 1: one sample per call, network steps per second;
* emulator, batch 64: 64 samples per call, sample-steps per second (per-sample throughput).

Each emulator figure is the median of ``--rounds`` rounds. The outputs are checked equal to Lava's.
Targets (MLP): batch-1 ratio >= 100, batch-64 per-sample ratio >= 1000; exit code 1 if missed. The
emulator's numpy path (what runs without a C compiler) is reported alongside, without a threshold.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edgec
from edgec.targets.loihi import encode_spikes
from edgec.targets.loihi.emulator import Emulator
from edgec.targets.loihi.lava_backend import run_lava
from edgec.targets.loihi.netlist import read_netx

BATCH1_TARGET = 100
BATCH64_TARGET = 1000


def emulator_rates(emu: Emulator, spikes: np.ndarray, rounds: int) -> tuple[float, float]:
    """(steps/s at batch 1, sample-steps/s at batch 64), medians over rounds."""
    t_steps, n = spikes.shape[:2]
    emu.run(spikes[:, :1])  # warm-up (builds the C kernel on a first run)
    one, many = [], []
    batch64 = np.concatenate([spikes] * (-(-64 // n)), axis=1)[:, :64]
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(n):
            emu.run(spikes[:, i : i + 1])
        one.append(n * t_steps / (time.perf_counter() - t0))
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            emu.run(batch64)
        many.append(reps * 64 * t_steps / (time.perf_counter() - t0))
    return statistics.median(one), statistics.median(many)


def bench(name: str, work: Path, samples: int, rounds: int) -> dict[str, float]:
    art = edgec.compile(f"zoo:{name}", target="loihi", out=work / name)
    prog = art.report["program"]
    x, _ = edgec.open_dataset("builtin:digits:holdout").arrays(samples)
    spikes = encode_spikes(x, prog["timesteps"], prog["encoder"])
    net = read_netx(art.file("network"))
    lava_out, facts = run_lava(art.file("network"), net, spikes)
    emu = Emulator(net)
    if not np.array_equal(emu.run(spikes), lava_out):
        raise SystemExit(f"{name}: the emulator's spikes differ from Lava's")
    b1, b64 = emulator_rates(emu, spikes, rounds)
    np1, np64 = emulator_rates(Emulator(net, kernel="numpy"), spikes, rounds)
    lava = float(facts["steady_steps_per_s"])
    return {
        "lava_steps_per_s": lava,
        "lava_steps_per_s_with_compile": float(facts["steps_per_s"]),
        "lava_steps": float(facts["steps"]),
        "emu_b1": b1,
        "emu_b64": b64,
        "ratio_b1": b1 / lava,
        "ratio_b64": b64 / lava,
        "numpy_ratio_b1": np1 / lava,
        "numpy_ratio_b64": np64 / lava,
        "kernel": 1.0 if emu.kernel == "c" else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=24, help="digits holdout samples (Lava runs them all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep the artifacts here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        results = {
            name: bench(name, work, args.samples, args.rounds)
            for name in ("digits-snn-mlp", "digits-snn-cnn")
        }
    print(f"Loihi emulator vs Lava 0.10 CPU simulation (fixed_pt), {args.samples} digits samples, T = 16")
    print(
        f"{'network':16s} {'Lava steps/s':>13s} {'emu b1 steps/s':>15s} {'ratio b1':>9s} "
        f"{'emu b64 sample-steps/s':>23s} {'ratio b64':>10s}"
    )
    for name, r in results.items():
        print(
            f"{name:16s} {r['lava_steps_per_s']:13,.0f} {r['emu_b1']:15,.0f} {r['ratio_b1']:9,.0f} "
            f"{r['emu_b64']:23,.0f} {r['ratio_b64']:10,.0f}"
        )
    for name, r in results.items():
        print(
            f"  {name}: Lava incl. compile {r['lava_steps_per_s_with_compile']:,.0f} steps/s over "
            f"{r['lava_steps']:.0f} steps; emulator kernel {'C' if r['kernel'] else 'numpy'}; "
            f"numpy path ratios {r['numpy_ratio_b1']:,.0f} (b1) / {r['numpy_ratio_b64']:,.0f} (b64); "
            "outputs identical to Lava"
        )
    mlp = results["digits-snn-mlp"]
    ok = mlp["ratio_b1"] >= BATCH1_TARGET and mlp["ratio_b64"] >= BATCH64_TARGET
    print(
        f"MLP targets: batch 1 >= {BATCH1_TARGET}: {mlp['ratio_b1']:,.0f} "
        f"({'met' if mlp['ratio_b1'] >= BATCH1_TARGET else 'MISSED'}); "
        f"batch 64 per sample >= {BATCH64_TARGET}: {mlp['ratio_b64']:,.0f} "
        f"({'met' if mlp['ratio_b64'] >= BATCH64_TARGET else 'MISSED'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
