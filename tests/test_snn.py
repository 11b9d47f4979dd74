"""The spiking vocabulary (edgec.snn): CUBA LIF semantics, surrogate gradient, encoders, zoo SNNs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import edgec
from edgec.loading import load_program
from edgec.models import ZOO
from edgec.snn import CubaLIF, TimeDistributed, encode, is_spiking, predict


def _reference_lif(x: np.ndarray, du: float, dv: float, thr: float, bias: float = 0.0) -> np.ndarray:
    """The documented equations, one neuron at a time, in plain Python floats."""
    t_steps, n = x.shape
    out = np.zeros_like(x)
    for j in range(n):
        u = v = 0.0
        for t in range(t_steps):
            u = (1 - du) * u + float(x[t, j])
            v = (1 - dv) * v + u + bias
            if v > thr:
                out[t, j] = 1.0
                v = 0.0
    return out


@pytest.mark.parametrize(
    ("du", "dv", "thr"), [(0.5, 0.25, 1.0), (1.0, 0.0, 0.7), (0.0, 1.0, 2.0), (0.125, 0.5, 1.5)]
)
def test_cuba_lif_follows_its_equations(du, dv, thr):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((40, 1, 7), generator=gen, dtype=torch.float64) * 0.8
    lif = CubaLIF(du=du, dv=dv, threshold=thr).double()
    got = lif(x)[:, 0].numpy()
    assert got.sum() > 0
    np.testing.assert_array_equal(got, _reference_lif(x[:, 0].numpy(), du, dv, thr))


def test_spike_needs_voltage_strictly_above_threshold():
    lif = CubaLIF(du=1.0, dv=1.0, threshold=1.0).double()
    at = lif(torch.tensor([[[1.0]], [[0.5]]], dtype=torch.float64))
    above = lif(torch.tensor([[[1.0 + 1e-9]], [[0.5]]], dtype=torch.float64))
    assert at.sum() == 0  # v == threshold: no spike (Loihi: v > vth)
    assert above[0].item() == 1.0 and above[1].item() == 0.0  # reset to 0, then 0.5 < 1


def test_neuron_bias_is_added_to_the_voltage_per_channel():
    lif = CubaLIF(3, du=0.5, dv=0.2, threshold=1.0, bias=True)
    with torch.no_grad():
        lif.bias.copy_(torch.tensor([0.0, 0.3, 0.6]))
    out = lif(torch.zeros(10, 2, 3, 4, 4))  # conv output: one bias per channel
    rates = out.mean(dim=(0, 1, 3, 4))
    assert rates[0] == 0 and 0 < rates[1] < rates[2]
    ref = _reference_lif(np.zeros((10, 1)), 0.5, 0.2, 1.0, bias=0.3)[:, 0]
    np.testing.assert_array_equal(out[:, 0, 1, 2, 2].detach().numpy(), ref)


def test_surrogate_gradient_trains_the_synapses():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4, bias=False), CubaLIF(du=0.5, dv=0.5))
    x = (torch.rand(12, 3, 8) < 0.5).float()
    out = model(x * 3.0)
    out.sum().backward()
    grad = model[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # the surrogate: d spike / d v = 1 / (1 + slope |v - thr| / thr)^2 / thr
    v = torch.tensor([0.5, 1.0, 1.5], requires_grad=True)
    from edgec.snn import spike

    spike((v - 1.0) / 1.0, 10.0).sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), 1 / (1 + 10 * np.abs(v.detach().numpy() - 1)) ** 2)


def test_time_distributed_conv_equals_per_step_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.rand(5, 4, 2, 6, 6)
    got = TimeDistributed(conv)(x)
    want = torch.stack([conv(x[t]) for t in range(5)])
    torch.testing.assert_close(got, want)


def test_rate_encoding_does_not_depend_on_the_batch():
    x = torch.rand(6, 1, 8, 8)
    enc = {"kind": "rate", "gain": 1.0, "seed": 3}
    whole = encode(x, 20, enc)
    assert whole.shape == (20, 6, 1, 8, 8)
    assert set(whole.unique().tolist()) <= {0.0, 1.0}
    for i in range(6):
        torch.testing.assert_close(encode(x[i : i + 1], 20, enc)[:, 0], whole[:, i])
    big = encode(torch.full((1, 1, 50, 50), 0.3), 200, enc)
    assert abs(big.mean().item() - 0.3) < 0.01
    lat = encode(torch.tensor([[0.0, 0.5, 1.0]]), 5, {"kind": "latency"})
    assert lat.sum(0).tolist() == [[0.0, 1.0, 1.0]]  # x = 0 never spikes; x = 1 spikes first
    assert lat[0, 0, 2] == 1 and lat[2, 0, 1] == 1


@pytest.mark.parametrize(
    "name", ["digits-snn-mlp", "digits-snn-cnn", "digits-snn-vgg", "digits-snn-resnet", "digits-sdt"]
)
def test_zoo_snns_are_accurate_spiking_programs(name):
    program = load_program(f"zoo:{name}")
    assert program.kind == "snn" and program.timesteps == ZOO[name].timesteps
    assert program.encoder is not None and program.encoder["kind"] == "rate"
    x, y = edgec.open_dataset("builtin:digits:holdout").arrays()
    with torch.no_grad():
        acc = float((predict(program, torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert acc >= 0.94, acc  # shipped: mlp 97.6, cnn 97.4, vgg 96.1, resnet 94.3, sdt 95.9 %
    convs = [m for m in program.module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert convs, "synapses are standard nn.Linear / nn.Conv2d modules"


class _UserSNN(nn.Module):
    timesteps = 12

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 5, bias=False)
        self.lif = CubaLIF(du=0.25, dv=0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.fc(x))


def test_a_users_spiking_model_loads_as_an_snn(tmp_path):
    module = _UserSNN()
    assert is_spiking(module)
    program = load_program(module, input_shape=(1, 16))
    assert (program.kind, program.timesteps) == ("snn", 12)
    assert program.encoder is not None and program.encoder["kind"] == "rate"
    path = tmp_path / "user_snn.pt"
    torch.save(module, path)
    loaded = load_program(path, input_shape=(1, 16), trust_pickle=True, timesteps=7)
    assert (loaded.kind, loaded.timesteps) == ("snn", 7)
    assert not is_spiking(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))


@pytest.mark.slow
def test_spiking_mlp_weights_are_reproducible():
    from edgec.models.train import train_digits_snn_mlp

    torch.set_num_threads(1)  # as train.py's main does (restored after the test by conftest)
    model, acc = train_digits_snn_mlp()
    x, y = edgec.open_dataset("builtin:digits:holdout").arrays()

    def holdout_accuracy(module: nn.Module) -> float:
        program = load_program("zoo:digits-snn-mlp").replace(module=module.eval())
        with torch.no_grad():
            return float((predict(program, torch.from_numpy(x)).argmax(1).numpy() == y).mean())

    shipped = ZOO["digits-snn-mlp"].build()
    a, b = model.state_dict(), shipped.state_dict()
    assert list(a) == list(b)
    for key in a:  # bit for bit: training is documented as deterministic
        assert torch.equal(a[key], b[key]), key
    assert holdout_accuracy(model) == holdout_accuracy(shipped) == pytest.approx(acc)  # acc is float32
