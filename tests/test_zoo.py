"""The zoo's trained models are what they claim, and their weights can be reproduced."""

from __future__ import annotations

import pytest
import torch

import edgec
from edgec.models import ZOO


def _holdout_accuracy(model: torch.nn.Module) -> float:
    x, y = edgec.open_dataset("builtin:digits:holdout").arrays()
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def test_shipped_digits_cnn_is_accurate():
    assert _holdout_accuracy(ZOO["digits-cnn"].build()) >= 0.98


def assert_same_weights(trained: torch.nn.Module, shipped: torch.nn.Module) -> None:
    """Every tensor of the state_dict bit for bit (training is documented as deterministic)."""
    a, b = trained.state_dict(), shipped.state_dict()
    assert list(a) == list(b)
    for key in a:
        diff = (a[key].double() - b[key].double()).abs().max()
        assert torch.equal(a[key], b[key]), f"{key}: max diff {diff}"


@pytest.mark.slow
def test_digits_cnn_weights_are_reproducible():
    from edgec.models.train import train_digits_cnn

    torch.set_num_threads(1)  # as train.py's main does (restored after the test by conftest)
    model, acc = train_digits_cnn()
    assert_same_weights(model, ZOO["digits-cnn"].build())
    assert acc == pytest.approx(_holdout_accuracy(model)) and acc >= 0.98  # float32 vs float64


def test_random_init_models_are_deterministic():
    a, b = ZOO["resnet20"].build(), ZOO["resnet20"].build()
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
