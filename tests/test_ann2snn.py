"""ANN-to-SNN conversion (``--recipe ann2snn``): a trained ReLU CNN becomes a rate-coded IF network that
Loihi takes, with data-based threshold balancing; deployed on the emulator it stays within 3 points of
the ANN on the digits holdout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import require_module
from torch import nn

import edgec
from edgec.errors import DataError, UsageError
from edgec.passes.ann2snn import ANN2SNN, _AnnView


class PoolNet(nn.Module):
    """conv-BN-ReLU, avg pool, conv-ReLU, avg pool, flatten, linear-ReLU, linear: every convertible form."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc1 = nn.Linear(6 * 2 * 2, 12)
        self.fc2 = nn.Linear(12, 10)
        with torch.no_grad():  # non-trivial BN statistics
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.1, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.avg_pool2d(torch.relu(self.bn(self.c1(x))), 2)
        x = nn.functional.avg_pool2d(torch.relu(self.c2(x)), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def test_structure_folds_batchnorm_and_pooling_exactly():
    """The stages (BN folded, the second pool folded into fc1, the first kept as a depthwise conv)
    compute the ANN's function."""
    net = PoolNet().eval()
    stages, _ = ANN2SNN().stages(net)
    view = _AnnView(stages, (1, 8, 8))
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(view(x).numpy(), net(x).numpy(), atol=1e-5)
    kinds = [type(view.folded(s)).__name__ for s in view.synapse_stages]
    assert kinds == ["Conv2d", "Conv2d", "Conv2d", "Linear", "Linear"]  # c1, pool (depthwise), c2, fc1', fc2


def test_spike_rates_follow_the_balanced_relu_outputs():
    """One IF layer on rate-coded input, many steps: its rate tracks ReLU(a) / lambda. Reset to zero
    (Loihi's) throws away the charge above the threshold at each spike, so a rate never exceeds
    ReLU(a) / lambda (charge is conserved otherwise) and falls below it by that overshoot."""
    from edgec.data import from_arrays
    from edgec.passes.base import PassContext

    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8))
    x = torch.rand(64, 1, 4, 4)
    prog = edgec.load_program(net, input_shape=(1, 1, 4, 4))
    ctx = PassContext(calib=from_arrays(x.numpy(), name="x"))
    out = ANN2SNN(timesteps=2000, percentile=100.0).call(prog, ctx).program
    assert out.kind == "snn" and out.encoder["kind"] == "rate"
    with torch.no_grad():
        a = torch.relu(net(x)).numpy()
        rate = edgec.snn.predict(out, x).numpy() / 2000
    want = a / a.max()  # lambda: the 100th percentile of the ReLU outputs
    assert np.all(rate <= want + 0.02)
    assert np.all(rate[want == 0] <= 0.01)  # negative on average: only noise makes them fire
    assert np.corrcoef(rate.ravel(), want.ravel())[0, 1] > 0.97
    assert abs(rate.mean() / want.mean() - 1) < 0.25  # the overshoot costs under a quarter of the spikes


@pytest.mark.slow
def test_zoo_digits_cnn_converted_and_deployed_stays_within_3_points_of_the_ann(cli, tmp_path):
    out = tmp_path / "snn"
    res = cli(
        "compile", "zoo:digits-cnn", "--target", "loihi", "-r", "ann2snn:maxpool=avg,timesteps=32", "-o", out
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["program"]["kind"] == "snn" and report["program"]["timesteps"] == 32
    stats = report["passes"][0]["stats"]
    assert stats["notes"] == ["features.6: MaxPool2d converted as AvgPool2d (maxpool=avg)"]
    doc = json.loads((out / "program" / "program.json").read_text())
    assert doc["arch"]["kind"] == "layers"  # stored without pickle; verify rebuilds it
    res = cli("verify", out, "--json")
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["samples"] == 540
    assert m["accuracy_original"] - m["accuracy_artifact"] <= 0.03, m
    assert m["accuracy_source"] - m["accuracy_artifact"] <= 0.01
    # the converted IF network (no decay, reset to 0, threshold-balanced) in real Lava, spike for spike
    require_module("lava.magma", "EDGEC_REQUIRE_LAVA", "make setup installs lava-nc / lava-dl")
    lava = edgec.verify(out, backend="lava", limit=8).metrics
    assert lava["lava_samples_identical"] == 8 and lava["lava_spikes_identical"] == 1.0, lava
    assert lava["lava_output_spikes"] > 8 * 5  # the outputs really spike


def test_max_pooling_is_refused_by_default_with_what_to_do(cli):
    res = cli("check", "zoo:digits-cnn", "--target", "loihi", "-r", "ann2snn")
    assert res.exit_code == 2
    assert "max pooling, which has no spiking equivalent on Loihi" in res.stderr
    assert "ann2snn:maxpool=avg" in res.stderr


def test_residual_networks_and_spiking_inputs_are_refused():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.a(x)) + x

    with pytest.raises(UsageError, match="branches or merges"):
        ANN2SNN().stages(Residual())
    snn = edgec.load_program("zoo:digits-snn-mlp")
    with pytest.raises(UsageError, match="already spiking"):
        ANN2SNN().requires(snn)


def test_batchnorm_without_running_statistics_is_refused_plainly():
    net = nn.Sequential(
        nn.Linear(8, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.ReLU(), nn.Linear(8, 2)
    )
    with pytest.raises(UsageError, match="no running statistics") as err:
        ANN2SNN().stages(net.eval())
    assert "track_running_stats=True" in (err.value.hint or "")


def test_negative_inputs_cannot_be_rate_coded():
    from edgec.data import from_arrays
    from edgec.passes.base import PassContext

    prog = edgec.load_program(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), input_shape=(1, 4))
    ctx = PassContext(
        calib=from_arrays(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32), name="n")
    )
    with pytest.raises(DataError, match="needs values >= 0"):
        ANN2SNN().call(prog, ctx)


def test_the_per_layer_balancing_reads_as_one_entry_per_layer():
    from edgec.cli.compress import pass_summary

    layers = [
        {"layer": "features.0", "lambda": 3.0, "notes": "features.1 folded"},
        {"layer": "classifier.3", "lambda": 9.86, "notes": ""},
    ]
    line = pass_summary({"stats": {"timesteps": 32, "layers": layers}})
    rows = "features.0 (lambda 3, notes: features.1 folded), classifier.3 (lambda 9.86)"
    assert line == f"timesteps: 32; layers: {rows}"
