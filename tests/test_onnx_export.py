"""edgec.onnxlib.export: every output kept by name, a batch dimension that is what the graph takes,
failures that name the operator, and nothing printed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgec.onnxlib import OnnxExportError, export_onnx


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class Heads(nn.Module):
    """A trunk and two heads; returns a tensor, a tuple or a dict."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.trunk = nn.Linear(12, 16)
        self.cls = nn.Linear(16, 5)
        self.box = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> object:
        h = torch.relu(self.trunk(x))
        if self.kind == "single":
            return self.cls(h)
        if self.kind == "tuple":
            return self.cls(h), self.box(h)
        return {"scores": self.cls(h), "boxes": self.box(h)}


@pytest.mark.parametrize(
    ("kind", "names"),
    [("single", ["output"]), ("tuple", ["output_0", "output_1"]), ("dict", ["scores", "boxes"])],
)
def test_every_output_kept_by_name(tmp_path, kind, names):
    torch.manual_seed(0)
    model = Heads(kind).eval()
    info = export_onnx(model, torch.rand(1, 12), tmp_path / "m.onnx")
    assert [o.name for o in info.outputs] == names
    sess = _session(tmp_path / "m.onnx")
    assert [o.name for o in sess.get_outputs()] == names
    x = torch.rand(3, 12)
    got = dict(zip(names, sess.run(None, {"input": x.numpy()}), strict=True))
    with torch.no_grad():
        ref = model(x)
    if kind == "single":
        want = {"output": ref}
    elif kind == "tuple":
        want = dict(zip(names, ref, strict=True))
    else:
        want = ref
    for name in names:
        np.testing.assert_allclose(got[name], want[name].numpy(), rtol=1e-5, atol=1e-6)


class SmallCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("kind", ["single", "tuple", "dict"])
def test_layers_keep_the_users_module_names_whatever_the_outputs(tmp_path, kind):
    """A dict output is exported through a flattening wrapper; with the TorchScript exporter its scope
    stayed in every node name (``/inner/cls/Gemm``), so a QAT model's layers were not found by name and
    a 4-bit DETR's learned weight grids were re-calibrated."""
    from edgec.onnxlib import layer_tensors

    info = export_onnx(Heads(kind).eval(), torch.rand(2, 12), tmp_path / "m.onnx")
    assert info.exporter == "torchscript"
    layers = layer_tensors(tmp_path / "m.onnx")
    assert set(layers) == ({"trunk", "cls"} if kind == "single" else {"trunk", "cls", "box"})
    assert all("weight" in v for v in layers.values())


def test_batch1_exported_program_runs_at_any_batch(tmp_path):
    """A torch.export program exported at batch 1 (as the README says) asserts batch == 1 in its
    graph; its ONNX export still takes any batch, and ORT at batch 3 matches it sample by sample."""
    torch.manual_seed(0)
    ep = torch.export.export(SmallCnn().eval(), (torch.rand(1, 3, 8, 8),))
    module = ep.module()
    info = export_onnx(module, torch.rand(1, 3, 8, 8), tmp_path / "m.onnx", static_batch=1)
    assert info.batch is None and info.input.shape == ("batch", 3, 8, 8)
    x = torch.rand(3, 3, 8, 8)
    got = _session(tmp_path / "m.onnx").run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = torch.cat([module(x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-5)


class FixedBatch(nn.Module):
    """Traces its batch size into a reshape (as an STFT front end's view(1, 1, N) does)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(20, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(1, -1))


def test_graph_with_a_fixed_batch_declares_it(tmp_path):
    """Before: the ONNX input said [batch, 20] while the graph took only batch 1 (ORT failed at
    N > 1). Now the declared shape is the one the graph takes, and the report says why."""
    info = export_onnx(FixedBatch().eval(), torch.rand(1, 20), tmp_path / "m.onnx")
    assert info.batch == 1
    assert info.input.shape == (1, 20)
    assert _session(tmp_path / "m.onnx").get_inputs()[0].shape == [1, 20]
    assert info.to_dict()["batch"] == 1 and "batch 1 only" in info.notes[0]


class Inverse(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inv = torch.linalg.inv(x.reshape(-1, 2, 2) + 3 * torch.eye(2))
        return self.fc(inv.flatten(1))


def test_unsupported_op_is_named_in_one_clean_line_and_nothing_printed(tmp_path, capfd):
    """Before: the dynamo exporter's message carried ANSI colour codes, and the TorchScript
    exporter dumped the whole Torch IR graph on stdout/stderr."""
    with pytest.raises(OnnxExportError) as err:
        export_onnx(Inverse().eval(), torch.rand(1, 4), tmp_path / "m.onnx")
    assert err.value.ops == ("aten::linalg_inv",)
    msg = str(err.value)
    assert "aten::linalg_inv has no ONNX conversion" in msg
    assert "\x1b" not in msg and "\n" not in msg
    out = capfd.readouterr()
    assert out.out == "" and "Torch IR graph" not in out.err
    assert not (tmp_path / "m.onnx").exists()


class Gru(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(10, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.fc(out[:, -1])


def test_dynamic_batch_gru_really_takes_any_batch(tmp_path):
    """Before: a GRU exported with a dynamic batch gave an ONNX graph declared [batch, 12, 10] whose
    initial state was a constant of the example's batch: ORT failed at any other batch size (and
    ORT's quantizer failed on it). The export now checks the batch, and takes the exporter that
    keeps it dynamic."""
    torch.manual_seed(0)
    x = torch.rand(2, 12, 10)
    ep = torch.export.export(Gru().eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    info = export_onnx(ep.module(), x, tmp_path / "m.onnx")
    assert info.batch is None and info.input.shape == ("batch", 12, 10)
    sess = _session(tmp_path / "m.onnx")
    for n in (1, 3):
        xs = torch.rand(n, 12, 10)
        with torch.no_grad():
            ref = ep.module()(xs)
        np.testing.assert_allclose(
            sess.run(None, {"input": xs.numpy()})[0], ref.numpy(), rtol=1e-4, atol=1e-5
        )
