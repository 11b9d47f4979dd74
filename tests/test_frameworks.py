"""snnTorch, Norse, SpikingJelly and Sinabs networks reach Loihi through edgec: read into edgec's layers
(checked spike for spike against the framework's own forward), from a state_dict with
``--arch package.module:Factory``, compiled and verified; what Loihi cannot take is a why-not table.

The frameworks are optional extras (``make setup`` installs them; CI sets EDGEC_REQUIRE_FRAMEWORKS so a
missing one fails instead of skipping)."""

from __future__ import annotations

import json

import framework_models as fm
import numpy as np
import pytest
import torch
from conftest import require_module

import edgec
from edgec.errors import ConstraintViolation
from edgec.frameworks import adapter

NEED = "EDGEC_REQUIRE_FRAMEWORKS"
CASES = {
    "snntorch": ("snntorch", fm.snntorch_mlp, "reader"),
    "snntorch-synaptic-cnn": ("snntorch", fm.snntorch_synaptic_cnn, "reader"),
    "norse": ("norse", fm.norse_mlp, "reader"),
    "spikingjelly": ("spikingjelly", fm.spikingjelly_mlp, "nir"),
    "sinabs": ("sinabs", fm.sinabs_mlp, "nir"),
}


def _need(package: str) -> None:
    require_module(package, NEED, "pip install edgec[frameworks]")


def _digits(n: int = 32) -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = load_digits().images[:n] / 16.0
    return torch.from_numpy(x[:, None].astype(np.float32))


@pytest.mark.parametrize("case", sorted(CASES))
def test_framework_network_reads_into_edgec_layers_spike_for_spike(case):
    package, factory, route = CASES[case]
    _need(package)
    net = factory()
    program = edgec.load_program(net, input_shape=(1, 1, 8, 8))
    imp = program.metadata["import"]
    assert program.kind == "snn" and imp["from"] == package and imp["route"] == route
    assert program.timesteps == fm.TIMESTEPS
    # on real digits (not the noise the loader checked on): the framework's forward == edgec's layers
    from edgec.snn import encode

    spikes = encode(_digits(), fm.TIMESTEPS, fm.ENCODER)
    with torch.no_grad():
        want = adapter(package).run(net, spikes)
        got = program.module(spikes)
    assert want.sum() > 20, "the test network spikes"
    np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("case", ["snntorch", "norse", "spikingjelly", "sinabs"])
def test_state_dict_with_a_factory_compiles_to_loihi_and_verifies(case, cli, tmp_path):
    package, factory, _ = CASES[case]
    _need(package)
    sd = tmp_path / "weights.pt"
    torch.save(factory().state_dict(), sd)
    out = tmp_path / "out"
    res = cli(
        "compile", sd, "--arch", f"framework_models:{factory.__name__}", "--target", "loihi",
        "--calib", "builtin:digits", "-o", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["program"]["source"]["arch"] == f"framework_models:{factory.__name__}"
    assert report["program"]["import"]["from"] == package
    res = cli("verify", out, "--data", "builtin:digits", "--limit", "64", "--json")
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["accuracy_artifact"] >= m["accuracy_source"] - 0.01


@pytest.mark.parametrize("case", ["snntorch", "norse", "spikingjelly", "sinabs"])
def test_state_dict_with_a_factory_compiles_for_the_cpu_and_verifies(case, cli, tmp_path):
    """The same read networks on the CPU target (ONNX, the encoder and time loop in the graph)."""
    package, factory, _ = CASES[case]
    _need(package)
    sd = tmp_path / "weights.pt"
    torch.save(factory().state_dict(), sd)
    out = tmp_path / "out"
    res = cli("compile", sd, "--arch", f"framework_models:{factory.__name__}", "--target", "cpu", "-o", out)
    assert res.exit_code == 0, res.stderr
    res = cli("verify", out, "--data", "builtin:digits", "--limit", "64", "--json")
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["samples"] == 64
    assert m["outputs_identical"] >= 0.98, m
    assert m["accuracy_artifact"] == pytest.approx(m["accuracy_source"], abs=0.02)


def test_snntorch_reset_by_subtraction_is_a_why_not_row(cli, tmp_path):
    _need("snntorch")
    with pytest.raises(ConstraintViolation) as err:
        edgec.load_program(fm.snntorch_subtract(), input_shape=(1, 1, 8, 8))
    assert err.value.exit_code == 4
    assert [v.rule for v in err.value.violations] == ["reset-mechanism"]
    assert "reset_mechanism='zero'" in err.value.violations[0].hint
    sd = tmp_path / "w.pt"
    torch.save(fm.snntorch_subtract().state_dict(), sd)
    res = cli("check", sd, "--arch", "framework_models:snntorch_subtract", "--target", "loihi")
    assert res.exit_code == 4 and "reset-mechanism" in res.stdout + res.stderr


@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
def test_snntorch_recurrent_neurons_are_a_why_not_row(kind, cli, tmp_path):
    """RLeaky / RSynaptic feed their spikes back through their own Linear: edgec lowers feed-forward
    layers only, so the reader refuses the neuron by name (a recurrent row, exit 4) rather than reading
    its recurrent Linear as one more feed-forward synapse."""
    _need("snntorch")
    with pytest.raises(ConstraintViolation) as err:
        edgec.load_program(fm.snntorch_recurrent(kind), input_shape=(1, 1, 8, 8))
    [row] = err.value.violations
    assert (row.layer, row.rule, row.detail) == ("2", "recurrent", f"{kind} (recurrent weights)")
    assert err.value.exit_code == 4
    sd = tmp_path / "w.pt"
    torch.save(fm.snntorch_recurrent(kind).state_dict(), sd)
    factory = "framework_models:" + ("snntorch_recurrent" if kind == "RLeaky" else "snntorch_rsynaptic")
    for target in ("loihi", "cpu"):
        res = cli("compile", sd, "--arch", factory, "--target", target, "-o", tmp_path / target)
        assert res.exit_code == 4 and f"{kind} (recurrent weights)" in res.stdout + res.stderr
        assert not (tmp_path / target).exists()


def test_sinabs_defaults_are_why_not_rows():
    _need("sinabs")
    with pytest.raises(ConstraintViolation) as err:
        edgec.load_program(fm.sinabs_default(), input_shape=(1, 1, 8, 8))
    assert {v.rule for v in err.value.violations} == {"multi-spike", "reset-mechanism"}


def test_norse_current_based_cell_is_refused_with_the_reason():
    _need("norse")
    import norse.torch as norse
    from torch import nn

    net = norse.SequentialState(nn.Flatten(), nn.Linear(64, 10), norse.LIFCell())
    with pytest.raises(ConstraintViolation, match="one step later"):
        edgec.load_program(net, input_shape=(1, 1, 8, 8))


# ---- --arch package.module:Factory: bad input --------------------------------------------------------
def _state_dict(tmp_path, module=None):
    from torch import nn

    sd = tmp_path / "w.pt"
    torch.save((module or nn.Linear(64, 10)).state_dict(), sd)
    return sd


def test_a_factory_that_does_not_exist_is_a_usage_error(cli, tmp_path):
    sd = _state_dict(tmp_path)
    res = cli("check", sd, "--arch", "framework_models:nope", "--target", "loihi")
    assert res.exit_code == 2 and "has no 'nope'" in res.stderr
    res = cli("check", sd, "--arch", "no_such_package.models:make", "--target", "loihi")
    assert res.exit_code == 2 and "cannot import 'no_such_package.models'" in res.stderr


def test_a_factory_that_raises_is_a_model_error(cli, tmp_path):
    res = cli("check", _state_dict(tmp_path), "--arch", "framework_models:raises", "--target", "loihi")
    assert res.exit_code == 3
    assert "building the architecture 'framework_models:raises' failed: RuntimeError" in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.startswith("error:")]) == 1
    res = cli("check", _state_dict(tmp_path), "--arch", "framework_models:NOT_A_FACTORY", "--target", "loihi")
    assert res.exit_code == 3 and "is not callable" in res.stderr


def test_a_state_dict_that_does_not_fit_the_factory_is_a_model_error(cli, tmp_path):
    _need("snntorch")
    from torch import nn

    sd = _state_dict(tmp_path, nn.Sequential(nn.Flatten(), nn.Linear(64, 7)))
    res = cli(
        "compile", sd, "--arch", "framework_models:snntorch_mlp", "--target", "loihi", "-o", tmp_path / "o"
    )
    assert res.exit_code == 3
    assert "does not fit --arch framework_models:snntorch_mlp" in res.stderr
    assert not (tmp_path / "o").exists()


def test_the_frameworks_are_not_imported_by_edgec(cli_proc):
    code = (
        "import sys, edgec, edgec.loading, edgec.frameworks, edgec.nirgraph; "
        "print(sorted(m for m in ('snntorch', 'norse', 'spikingjelly', 'sinabs') if m in sys.modules))"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_read_network_is_stored_without_pickle_and_rebuilt(tmp_path):
    """The program store records the converted network as a layers architecture (edgec.netspec)."""
    _need("snntorch")
    from edgec.store import load_program_dir, save_program

    program = edgec.load_program(fm.snntorch_synaptic_cnn(), input_shape=(1, 1, 8, 8))
    save_program(program, tmp_path)
    doc = json.loads((tmp_path / "program.json").read_text())
    assert doc["arch"]["kind"] == "layers"
    assert [layer["type"] for layer in doc["arch"]["layers"]] == [
        "Conv2d",
        "CubaLIF",
        "Flatten",
        "Linear",
        "LIF",
    ]
    back = load_program_dir(tmp_path)
    x = _digits(8)
    from edgec.snn import run_outputs

    np.testing.assert_array_equal(run_outputs(back, x)["output"], run_outputs(program, x)["output"])


def test_an_exported_edgec_snn_says_to_give_the_module_or_a_factory(cli, tmp_path):
    """torch.export unrolls the time loop: the why-not row says how to give the SNN instead."""
    module = edgec.load_program("zoo:digits-snn-mlp").module
    path = tmp_path / "snn.pt2"
    torch.export.save(torch.export.export(module, (torch.rand(4, 1, 1, 8, 8),)), path)
    res = cli("check", path, "--target", "loihi")
    assert res.exit_code == 4
    text = " ".join((res.stdout + res.stderr).split())
    assert "exported-snn" in text and "--arch package.module:Factory" in text


def test_sinabs_membrane_state_saved_with_the_weights_is_not_a_mismatch(cli, tmp_path):
    """Sinabs keeps v_mem as buffers shaped by the last batch; a state_dict saved after training has them."""
    _need("sinabs")
    net = fm.sinabs_mlp()
    adapter("sinabs").run(net, torch.zeros(4, 3, 1, 8, 8))  # v_mem now [3, 24]
    assert net.state_dict()["2.v_mem"].shape == (3, 24)
    sd = tmp_path / "w.pt"
    torch.save(net.state_dict(), sd)
    res = cli("check", sd, "--arch", "framework_models:sinabs_mlp", "--target", "loihi")
    assert res.exit_code == 0, res.stderr
    # a weight that does not fit is still refused
    bad = dict(net.state_dict())
    bad["1.weight"] = torch.zeros(24, 63)
    torch.save(bad, sd)
    res = cli("check", sd, "--arch", "framework_models:sinabs_mlp", "--target", "loihi")
    assert res.exit_code == 3 and "'1.weight'" in res.stderr
