"""Energy of one network in every format the README accepts: the same layers, MACs and parameter bytes.

A torch.export program and a TorchScript module hold no module tree to hook; their operators are
given back to their layers (the graph's ``nn_module_stack``, TorchScript's module hierarchy). Before
that, a .pt2 or TorchScript model reported every MAC under one ``(model)`` row and ``weight_params``
0, so INT8 showed no memory saving and ``--weight-bits 4`` changed nothing.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

#: what must agree row by row between formats
KEYS = ("macs", "other_ops", "params", "weight_params", "param_bytes", "output_elements", "output_density")


@pytest.fixture(scope="module")
def resnet20_files(tmp_path_factory) -> dict[str, tuple[Path, list[str]]]:
    """zoo:resnet20 (residual adds, a ReLU called twice per block, BN) saved four ways."""
    from edgec.models import ZOO

    torch.manual_seed(0)
    model = ZOO["resnet20"].build(pretrained=False).eval()
    x = torch.rand(1, 3, 32, 32)
    root = tmp_path_factory.mktemp("formats")
    files: dict[str, tuple[Path, list[str]]] = {}
    torch.save(model.state_dict(), root / "weights.pt")
    files["state_dict"] = (root / "weights.pt", ["--arch", "resnet20"])
    torch.export.save(torch.export.export(model, (x,)), root / "batch1.pt2")
    files["export"] = (root / "batch1.pt2", [])
    batch = torch.export.Dim("batch", min=1, max=256)
    dynamic = torch.export.export(model, (torch.rand(4, 3, 32, 32),), dynamic_shapes=({0: batch},))
    torch.export.save(dynamic, root / "dynamic.pt2")
    files["export-dynamic"] = (root / "dynamic.pt2", ["--input-shape", "1,3,32,32"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, x), root / "traced.pt")
    files["torchscript"] = (root / "traced.pt", ["--input-shape", "1,3,32,32"])
    return files


def report(cli, path: Path, *args: str) -> dict:
    res = cli("report", path, *args, "--format", "json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)["energy"]


def by_layer(energy: dict) -> dict[tuple[str, str], tuple]:
    return {(r["name"], r["type"]): tuple(r[k] for k in KEYS) for r in energy["layers"]}


def test_every_format_counts_the_same_layers(cli, resnet20_files):
    reports = {
        fmt: report(cli, path, *extra, "--quantize", "int8") for fmt, (path, extra) in resnet20_files.items()
    }
    reference = reports.pop("state_dict")
    rows = by_layer(reference)
    # named layers with their own types, MACs where the weights are: what the module tree gives
    assert rows[("stem.0", "Conv2d")][0] == 32 * 32 * 16 * 3 * 9
    assert rows[("layers.0", "aten.elementwise")][1] == {"elementwise": 16 * 32 * 32}  # the residual add
    assert rows[("layers.0.relu", "ReLU")][1] == {"activation": 2 * 16 * 32 * 32}  # called twice
    assert rows[("fc", "Linear")][0] == 64 * 10
    for fmt, energy in reports.items():
        assert by_layer(energy) == rows, fmt
        assert energy["totals"] == reference["totals"], fmt
        assert energy["totals"]["uncounted"] == [] and not energy["notes"], fmt


def test_int8_and_4_bit_weights_shrink_exported_models(cli, resnet20_files):
    path, extra = resnet20_files["export"]
    fp32 = report(cli, path, *extra)["totals"]
    int8 = report(cli, path, *extra, "--quantize", "int8")
    four = report(cli, path, *extra, "--weight-bits", "4")["totals"]
    weights = sum(r["weight_params"] for r in int8["layers"])
    conv_and_fc = sum(
        m.weight.numel() for m in _resnet20().modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )
    assert weights == conv_and_fc  # every conv / linear weight, nothing else
    others = fp32["params"] - weights
    assert fp32["param_bytes"] == 4 * fp32["params"]
    assert int8["totals"]["param_bytes"] == weights + 4 * others  # int8 weights, int32 the rest
    assert four["param_bytes"] == weights // 2 + 4 * others  # two 4-bit weights a byte (even counts)


def _resnet20() -> nn.Module:
    from edgec.models import ZOO

    return ZOO["resnet20"].build(pretrained=False)


class Gated(nn.Module):
    """A scripted model with control flow (``if``, a ``for`` loop) around standard layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Linear(64, 64) for _ in range(3)])
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x)).flatten(1)
        if y.shape[0] > 0:
            y = y * 2.0
        for block in self.blocks:
            y = torch.relu(block(y))
        return self.head(y)


def test_scripted_control_flow_counts_like_the_module_tree():
    from edgec.energy.analyze import count_program
    from edgec.program import Program

    torch.manual_seed(0)
    model = Gated().eval()
    x = torch.rand(1, 1, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
    eager = count_program(Program(module=model, example_input=x))
    counted = count_program(Program(module=scripted, example_input=x))
    assert not counted.notes and not counted.uncounted
    rows = {(r.name, r.type): (r.macs, r.other_ops, r.params, r.weight_params) for r in counted.layers}
    assert rows == {(r.name, r.type): (r.macs, r.other_ops, r.params, r.weight_params) for r in eager.layers}
    assert rows[("blocks.1", "Linear")] == (64 * 64, {"bias": 64}, 64 * 64 + 64, 64 * 64)
    assert rows[("(model)", "aten.elementwise")][1] == {"elementwise": 64}  # y * 2.0, inside the `if`


class Keyed(nn.Module):
    """Returns a dict: TorchScript builds it with prim::DictConstruct, which is not interpreted here."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(x)}


def test_what_cannot_be_attributed_is_said_plainly():
    from edgec.energy.analyze import count_program
    from edgec.program import Program

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(Keyed().eval())
    counts = count_program(Program(module=scripted, example_input=torch.rand(1, 8)))
    assert len(counts.notes) == 1
    assert "TorchScript module: operators could not be attributed to layers" in counts.notes[0]
    assert "prim::DictConstruct" in counts.notes[0]
    rows = {(r.name, r.type): r for r in counts.layers}
    assert rows[("(model)", "aten.matmul")].macs == 8 * 3  # still counted, under (model)
    fc = rows[("fc", "Linear")]  # the parameters still belong to their layer, weights apart
    assert (fc.params, fc.weight_params, fc.macs) == (27, 24, 0)
