"""`edgec compress` and compression recipes inside compile / check, driven as users drive them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import interruptible

import edgec
from edgec.config import load_config
from edgec.store import load_program_dir

# A user's own spiking model, in their own module (not a zoo model): conv 12 -> conv 16 -> FC.
USER_MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn
    from edgec.snn import CubaLIF, TimeDistributed

    class MySNN(nn.Module):
        timesteps = 8
        encoder = {"kind": "rate", "gain": 1.0, "seed": 0}

        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                TimeDistributed(nn.Conv2d(1, 12, 3, padding=1, bias=False)),
                CubaLIF(12, bias=True),
                TimeDistributed(nn.Conv2d(12, 16, 3, stride=2, padding=1, bias=False)),
                CubaLIF(),
            )
            self.head = nn.Sequential(
                nn.Flatten(start_dim=2), nn.Linear(16 * 4 * 4, 10, bias=False), CubaLIF()
            )

        def forward(self, x):
            return self.head(self.features(x))
    """
)


@pytest.fixture
def user_model(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The user's module on PYTHONPATH and their model saved whole (a pickle: needs --trust-pickle)."""
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "mysnn.py").write_text(USER_MODEL)
    env = {"PYTHONPATH": os.pathsep.join([str(pkg), os.environ.get("PYTHONPATH", "")])}
    sys.path.insert(0, str(pkg))
    try:
        import mysnn  # type: ignore[import-not-found]

        torch.manual_seed(0)
        torch.save(mysnn.MySNN(), tmp_path / "mysnn.pt")
    finally:
        sys.path.remove(str(pkg))
        sys.modules.pop("mysnn", None)
    return tmp_path / "mysnn.pt", env


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_compress_a_users_snn_from_the_cli_then_compile_for_loihi_without_pickle(
    cli_proc, user_model, tmp_path
):
    model, env = user_model
    done = cli_proc(
        "compress", model, "--trust-pickle", "--input-shape", "1,1,8,8",
        "--recipe", "qp-snn:bits=4,prune=0.5", "--train-data", "builtin:digits", "--epochs", "1",
        "-o", "small",
        env=env,
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    out = tmp_path / "small"
    assert sorted(p.name for p in out.iterdir()) == [
        "program.json",
        "report.json",
        "report.md",
        "weights.safetensors",
    ]
    report = json.loads((out / "report.json").read_text())
    assert report["after"]["parameters"] < report["before"]["parameters"]
    assert report["after"]["param_bytes"] < report["before"]["param_bytes"] / 4  # 4/8-bit and pruned
    assert report["accuracy"]["data"] == "builtin:digits:holdout"
    # the energy report prices the recorded widths and says so (it said "32-bit weights" beside them)
    done = cli_proc("report", "small", "-o", "small.md", env=env)
    assert done.exit_code == 0, done.stderr
    lines = (tmp_path / "small.md").read_text().splitlines()
    memory = next(ln for ln in lines if "| parameter memory |" in ln)
    assert "weights 4-bit in 1 layer, 8-bit in 2 layers, packed" in memory
    # a fresh process compiles the compressed directory: no --trust-pickle, no --arch
    done = cli_proc("compile", "small", "--target", "loihi", "-o", "art", env=env)
    assert done.exit_code == 0, done.stderr
    with h5py.File(tmp_path / "art" / "network.net") as f:
        layers = [f["layer"][k] for k in sorted(f["layer"], key=int)]
        conv = [la for la in layers if la["type"][0] == b"conv"]
        assert [int(la["outChannels"][()]) for la in conv] == [6, 8]  # 12 -> 6 and 16 -> 8 channels
        middle = conv[1]["weight"][()]  # the 4-bit layer (first and last stay at 8 bits)
        assert max(len(np.unique(middle[c])) for c in range(middle.shape[0])) <= 16
    done = cli_proc("verify", "art", "--json", env=env)
    assert done.exit_code == 0, done.stderr
    metrics = json.loads(done.stdout)["metrics"]
    assert metrics["reference"] == "the compressed model"
    assert metrics["accuracy_source"] == pytest.approx(report["after"]["accuracy"])


def test_compress_is_deterministic_and_reloads_exactly(tmp_path):
    runs = []
    for name in ("a", "b"):
        res = edgec.compress(
            "zoo:digits-snn-mlp",
            passes=["uniform-quant:bits=4,edge_bits=0"],
            train="builtin:digits",
            epochs=1,
            seed=3,
            out=tmp_path / name,
        )
        runs.append(res)
    a = (tmp_path / "a" / "weights.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "weights.safetensors").read_bytes()
    back = load_program_dir(tmp_path / "a")
    for (k, v), (k2, v2) in zip(
        runs[0].program.module.state_dict().items(), back.module.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2)
    # every 4-bit layer's weights lie on the recorded grid: at most 15 levels per output neuron
    for name, q in back.quant.items():
        w = back.module.get_submodule(name).weight.detach().numpy()
        assert q.weight_bits == 4 and len(np.unique(q.levels(w))) <= 15


def test_compile_with_a_recipe_stores_and_verifies_the_compressed_model(tmp_path):
    cfg = load_config(
        target="loihi", passes=["qp-snn:bits=4,prune=0.25"], train_data="builtin:digits", epochs=1
    )
    art = edgec.compile("zoo:digits-snn-mlp", config=cfg, out=tmp_path / "art")
    assert {"compressed_program", "compressed_weights"} <= set(art.report["files"])
    result = edgec.verify(art)
    compressed = load_program_dir(tmp_path / "art" / "program")
    assert compressed.module.net[1].out_features == 96  # 128 neurons, a quarter pruned
    assert result.metrics["reference"] == "the compressed model"
    assert result.metrics["accuracy_original"] > 0.9  # the zoo model before compression


def test_check_applies_recipes_without_training(cli):
    done = cli("check", "zoo:digits-snn-cnn", "--target", "loihi", "--recipe", "q-snn:bits=4,state_bits=4")
    assert done.exit_code == 4
    assert "membrane-quantization" in done.stdout
    assert cli("check", "zoo:digits-snn-cnn", "--target", "loihi", "--recipe", "qp-snn:bits=4").exit_code == 0


def test_recipes_lists_every_pass_with_its_options(cli):
    from edgec.passes import PASSES

    done = cli("recipes", "--json")
    infos = {r["name"]: r for r in json.loads(done.stdout)}
    assert set(infos) == set(PASSES)
    qp = {o["name"]: o for o in infos["qp-snn"]["options"]}
    assert qp["bits"]["default"] == 4 and qp["criterion"]["default"] == "svs"
    assert infos["qp-snn"]["model_kind"] == "snn" and infos["qp-snn"]["trains"]
    # and --help names each of them (the issue: "`--help` shows them too")
    for command in ("compress", "compile"):
        shown = " ".join(cli(command, "--help").stdout.split())
        assert all(f" {name}," in shown or f" {name} (" in shown for name in PASSES), (command, shown)


# ---- bad input: one line, its exit code, nothing written -------------------------------------------
@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["-r", "nope"], 2, "unknown pass 'nope'; choose from: "),
        (["-r", "qp-snn:bits=9"], 2, "bits=9 is out of range"),
        (["-r", "qp-snn:prune=1"], 2, "outside [0, 1)"),
        (["-r", "qp-snn:bogus=1"], 2, "unknown option(s) of pass 'qp-snn': bogus; its options are: bits,"),
        (["-r", "qp-snn:bits=four"], 2, "option bits must be an integer, got 'four'"),
        (["-r", "qp-snn:lr=inf"], 2, "option lr must be a finite number, got inf"),
        (["--lr", "nan"], 2, "must be a finite number, got nan"),
        (["zoo:digits-cnn", "-r", "q-snn"], 2, "compresses spiking networks (SNNs); this model is an ANN"),
        (["--no-train"], 2, "needs labelled training data"),
        (["--train-data", "bad.npz"], 3, "has samples of shape (5,), the model takes (1, 8, 8)"),
        (["--train-data", "unlabelled.npz"], 3, "has no labels"),
        ([], 2, "no recipe given"),
    ],
)
def test_compress_bad_input(cli, tmp_path, monkeypatch, args, code, words):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "bad.npz", x=np.zeros((8, 5), np.float32), y=np.zeros(8, np.int64))
    np.savez(tmp_path / "unlabelled.npz", x=np.zeros((8, 1, 8, 8), np.float32))
    model = args[0] if args and args[0].startswith("zoo:") else "zoo:digits-snn-mlp"
    rest = [a for a in args if a != model]
    train = [] if "--no-train" in rest or "--train-data" in rest else ["--train-data", "builtin:digits"]
    rest = [a for a in rest if a != "--no-train"]
    if "-r" not in rest and args:
        rest += ["-r", "uniform-quant"]
    done = cli("compress", model, *rest, *train, "--epochs", "1", "-o", "out")
    assert done.exit_code == code, done.stdout + done.stderr
    assert words in " ".join(done.stderr.split())
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_a_diverging_fine_tuning_stops_and_writes_nothing(cli, tmp_path):
    done = cli(
        "compress", "zoo:digits-cnn", "-r", "uniform-quant", "--train-data", "builtin:digits",
        "--epochs", "2", "--lr", "1e30", "-o", tmp_path / "out",
    )  # fmt: skip
    assert done.exit_code == 3, done.stderr
    assert "loss became" in done.stderr and "lower --lr" in done.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_during_fine_tuning_leaves_nothing(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgec", "compress", "zoo:digits-snn-vgg", "-r", "qp-snn",
         "--train-data", "builtin:digits", "--epochs", "50", "-o", "out"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible,
    )  # fmt: skip
    time.sleep(20)  # loading, scoring and the first training steps
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.lava
def test_qp_snn_on_loihi_emulator_equals_real_lava_spike_for_spike(tmp_path):
    from conftest import require_module

    require_module("lava.magma", "EDGEC_REQUIRE_LAVA", "make setup installs lava-nc / lava-dl")
    cfg = load_config(
        target="loihi", passes=["qp-snn:bits=4,prune=0.5"], train_data="builtin:digits", epochs=1
    )
    art = edgec.compile("zoo:digits-snn-cnn", config=cfg, out=tmp_path / "art")
    result = edgec.verify(art, backend="lava", limit=20)
    assert result.metrics["lava_samples_identical"] == 20
    assert result.metrics["lava_spikes_identical"] == 1.0


def test_spiking_zoo_on_loihi_lowers_the_vgg_and_explains_the_resnet_and_transformer():
    assert edgec.check("zoo:digits-snn-vgg", target="loihi")[1] == []
    resnet = {v.rule for v in edgec.check("zoo:digits-snn-resnet", target="loihi")[1]}
    assert "residual-add" in resnet
    sdt = {v.rule for v in edgec.check("zoo:digits-sdt", target="loihi")[1]}
    assert "residual-add" in sdt and "synapse-without-neuron" in sdt


@pytest.mark.slow
def test_the_spiking_resnet_runs_on_the_cpu_spike_for_spike(cli, tmp_path):
    """Loihi refuses its residual adds; the CPU target runs the encoder and the unrolled time loop in
    ONNX Runtime with the PyTorch model's spikes."""
    assert cli("compile", "zoo:digits-snn-resnet", "--target", "cpu", "-o", tmp_path / "art").exit_code == 0
    done = cli("verify", tmp_path / "art", "--json")
    assert done.exit_code == 0, done.stderr
    metrics = json.loads(done.stdout)["metrics"]
    assert metrics["top1_agreement"] == 1.0 and metrics["outputs_identical"] == 1.0
    assert metrics["accuracy_artifact"] > 0.9
    refused = cli(
        "compile", "zoo:digits-snn-resnet", "--target", "cpu", "--quantize", "int8", "-o", tmp_path / "b"
    )
    assert refused.exit_code == 4 and "snn-precision" in refused.stderr


def test_a_qat_model_keeps_its_learned_grid_in_the_cpu_and_jetson_int8_graphs(tmp_path):
    """uniform-quant's 4-bit weights reach ONNX Runtime (cpu) and TensorRT's explicit-quantization graph
    (jetson) as int8 values within [-7, 7] (the learned levels, even after the CPU's BatchNorm fold
    rescaled the conv channels), not re-calibrated 8-bit values (before, only learned activation scales
    reached the Jetson graph); the Jetson graph still passes TensorRT's rules."""
    import onnx
    from onnx import numpy_helper

    edgec.compress(
        "zoo:digits-cnn",
        passes=["uniform-quant:bits=4"],
        train="builtin:digits",
        epochs=1,
        out=tmp_path / "q",
    )
    for target in ("cpu", "jetson"):
        out = tmp_path / target
        art = edgec.compile(tmp_path / "q", target=target, quantize="int8", calib="builtin:digits", out=out)
        kept = art.report["target_report"]["quantization"]["learned_weights"]
        assert set(kept) == {"features.0", "features.3", "classifier.1", "classifier.3"}, target
        assert all(v.startswith("learned") for v in kept.values()), target
        weights = [
            numpy_helper.to_array(i)
            for i in onnx.load(str(out / "model.onnx")).graph.initializer
            if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2
        ]
        # two 4-bit layers, the first and last at 8 bits
        assert sorted(int(abs(w).max()) for w in weights) == [7, 7, 127, 127], target
        if target == "jetson":
            assert art.report["target_report"]["rules"].endswith("passed")
        assert edgec.verify(art).metrics["top1_agreement"] >= 0.99, target
