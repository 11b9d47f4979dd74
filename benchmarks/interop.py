"""Networks trained in snnTorch, Norse, SpikingJelly and Sinabs, compiled for Loihi by edgec from the CLI:
writes benchmarks/results/interop.md.

    PYTHONPATH=benchmarks .venv/bin/python benchmarks/interop.py [--epochs 15] [--seed 0] [--lava 20]

For each framework a spiking MLP 64-128-10 (T = 16, rate-coded digits) is trained on builtin:digits:train
in that framework (its own neurons and surrogate gradients, BPTT, Adam, cross-entropy on output spike
counts, fresh rate-coding noise every batch), its state_dict is saved, and the CLI compiles it as a user
would: ``edgec compile weights.pt --arch interop:<framework>_mlp --target loihi --calib builtin:digits``
then ``edgec verify OUT --data builtin:digits:holdout`` (and ``--backend lava`` on the first samples).
The framework's own accuracy is its own forward pass on the same encoded holdout spikes the artifact
receives (edgec's rate encoder, seed 0). The factories below are what ``--arch`` names (this file is
importable as ``interop`` with ``PYTHONPATH=benchmarks``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

T = 16
ENCODER = {"kind": "rate", "gain": 1.0, "seed": 0}
HIDDEN = 128


def _declare(net: nn.Module) -> nn.Module:
    net.input_shape = (1, 8, 8)  # type: ignore[assignment]
    net.timesteps = T  # type: ignore[assignment]
    net.encoder = dict(ENCODER)  # type: ignore[assignment]
    return net


def snntorch_mlp() -> nn.Module:
    import snntorch as snn

    return _declare(
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, HIDDEN),
            snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero"),
            nn.Linear(HIDDEN, 10),
            snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero"),
        )
    )


def norse_mlp() -> nn.Module:
    import norse.torch as norse

    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0))  # dt 1 ms: d = 0.5, as SpikingJelly tau=2
    return _declare(
        norse.SequentialState(
            nn.Flatten(),
            nn.Linear(64, HIDDEN),
            norse.LIFBoxCell(p),
            nn.Linear(HIDDEN, 10),
            norse.LIFBoxCell(p),
        )
    )


def spikingjelly_mlp() -> nn.Module:
    from spikingjelly.activation_based import layer, neuron

    return _declare(
        nn.Sequential(
            layer.Flatten(),
            layer.Linear(64, HIDDEN),
            neuron.LIFNode(tau=2.0, detach_reset=True),
            layer.Linear(HIDDEN, 10),
            neuron.LIFNode(tau=2.0, detach_reset=True),
        )
    )


def sinabs_mlp() -> nn.Module:
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, SingleSpike

    return _declare(
        nn.Sequential(
            nn.Flatten(start_dim=2),
            nn.Linear(64, HIDDEN),
            sl.IAF(spike_fn=SingleSpike, reset_fn=MembraneReset()),
            nn.Linear(HIDDEN, 10),
            sl.IAF(spike_fn=SingleSpike, reset_fn=MembraneReset()),
        )
    )


FRAMEWORKS = {
    "snntorch": snntorch_mlp,
    "norse": norse_mlp,
    "spikingjelly": spikingjelly_mlp,
    "sinabs": sinabs_mlp,
}


def _data(split: str) -> tuple[np.ndarray, np.ndarray]:
    from edgec.data import open_dataset

    x, y = open_dataset(f"builtin:digits:{split}", purpose="evaluation").arrays()
    assert y is not None
    return x.astype(np.float32), y.astype(np.int64)


def train(name: str, epochs: int, seed: int) -> tuple[nn.Module, float]:
    """Train in the framework; returns the module and its own accuracy on the encoded holdout."""
    from edgec.frameworks import adapter
    from edgec.snn import encode

    fw = adapter(name)
    torch.manual_seed(seed)
    net = FRAMEWORKS[name]()
    x, y = _data("train")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = order[i : i + 64]
            p = xt[idx].clamp(0, 1)
            spikes = (torch.rand((T, *p.shape), generator=gen) < p.unsqueeze(0)).float()  # fresh noise
            counts = fw.run(net, spikes).sum(0)
            loss = nn.functional.cross_entropy(counts, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    xh, yh = _data("holdout")
    with torch.no_grad():
        counts = fw.run(net, encode(torch.from_numpy(xh), T, ENCODER)).sum(0)
    return net, float((counts.argmax(1).numpy() == yh).mean())


def edgec_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    return subprocess.run(
        [sys.executable, "-m", "edgec", *args], capture_output=True, text=True, env=env, timeout=1800
    )


def run(name: str, epochs: int, seed: int, lava: int, workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    net, own = train(name, epochs, seed)
    train_s = time.perf_counter() - started
    weights = workdir / f"{name}.pt"
    torch.save(net.state_dict(), weights)
    out = workdir / name
    compile_args = [
        "compile", str(weights), "--arch", f"interop:{name}_mlp", "--target", "loihi",
        "--calib", "builtin:digits", "-o", str(out), "--json",
    ]  # fmt: skip
    done = edgec_cli(*compile_args)
    if done.returncode != 0:
        raise SystemExit(f"{name}: edgec compile failed: {done.stderr}")
    report = json.loads((out / "report.json").read_text())
    verify = ["verify", str(out), "--data", "builtin:digits:holdout", "--json"]
    if lava:
        verify += ["--backend", "lava", "--limit", str(lava)]
    done = edgec_cli(*verify)
    result = json.loads(done.stdout) if done.stdout.strip() else {}
    if not result:
        raise SystemExit(f"{name}: edgec verify failed: {done.stderr}")
    m = result["metrics"]
    # verify --limit N measures accuracy on N samples too: the full-holdout accuracy comes without Lava
    if lava:
        full = json.loads(edgec_cli("verify", str(out), "--data", "builtin:digits:holdout", "--json").stdout)
        m_full = full["metrics"]
    else:
        m_full = m
    return {
        "framework": name,
        "route": report["program"]["import"]["route"],
        "check": report["program"]["import"]["check"],
        "own": own,
        "edgec_float": m_full["accuracy_source"],
        "deployed": m_full["accuracy_artifact"],
        "samples": m_full["samples"],
        "lava": f"{m['lava_samples_identical']}/{m['lava_samples']}" if lava else "not run",
        "passed": result["passed"],
        "train_s": train_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lava", type=int, default=20, help="samples verified in real Lava (0: none)")
    ap.add_argument("--frameworks", nargs="*", default=list(FRAMEWORKS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "interop.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.frameworks:
            row = run(name, args.epochs, args.seed, args.lava, Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    import importlib.metadata as md

    versions = ", ".join(f"{n} {md.version(n)}" for n in args.frameworks)
    lines = [
        "# Networks from other SNN frameworks on Loihi (edgec)",
        "",
        f"Command: `PYTHONPATH=benchmarks .venv/bin/python benchmarks/interop.py --epochs {args.epochs} "
        f"--seed {args.seed} --lava {args.lava}` ({versions}; torch {torch.__version__}).",
        "",
        f"Each framework trains a spiking MLP 64-{HIDDEN}-10 (T = {T}, rate-coded digits, "
        f"{args.epochs} epochs, seed {args.seed}) on builtin:digits:train with its own neurons and "
        "surrogate gradient; its state_dict goes through the CLI: `edgec compile weights.pt --arch "
        "interop:<framework>_mlp --target loihi --calib builtin:digits`, then `edgec verify OUT --data "
        "builtin:digits:holdout`. Accuracies are measured on the 540-digit holdout, on the same encoded "
        "spikes (edgec's rate encoder, seed 0): *framework* is the framework's own forward pass, *edgec "
        "float* the network edgec read (before Loihi's integers), *Loihi* the deployed artifact on the "
        "bit-exact emulator. *Lava* counts samples whose output spikes in Lava's fixed_pt simulation equal "
        "the emulator's, every neuron at every step.",
        "",
        "| framework | road into edgec | framework | edgec float | Loihi (emulator) | Loihi - framework | "
        "Lava = emulator | within 2 points |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = (r["deployed"] - r["own"]) * 100
        route = "edgec's reader" if r["route"] == "reader" else "its NIR export"
        lines.append(
            f"| {r['framework']} | {route} | {r['own']:.2%} | {r['edgec_float']:.2%} | {r['deployed']:.2%} | "
            f"{diff:+.2f} | {r['lava']} | {'yes' if abs(diff) <= 2 else 'NO'} |"
        )
    lines += ["", "The load-time check each read recorded (report.json `program.import.check`):", ""]
    lines += [f"- {r['framework']}: {r['check']}" for r in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
