"""Recurrent layers counted exactly, and work the counter cannot price listed as uncounted, never zero.

The hand formula (written out here from the layers' hyper-parameters, not from their weights): a
recurrent layer with ``G`` gates (LSTM 4, GRU 3, RNN 1), hidden size ``H``, projection ``P`` (LSTM
``proj_size``; the hidden state then has ``H_out = P`` features) does, per timestep, batch element,
layer and direction, ``G*H*I_l`` MACs on its input (``I_0`` the input size, ``I_l = D * H_out``
above) plus ``G*H*H_out`` on its hidden state, plus ``P*H`` for the projection.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgec.energy.analyze import count_program
from edgec.program import Program


def hand_macs(kind: str, inp: int, hidden: int, layers: int, directions: int, proj: int, steps: int) -> int:
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
    h_out = proj or hidden
    per_step = 0
    for layer in range(layers):
        i = inp if layer == 0 else directions * h_out
        per_step += directions * (gates * hidden * i + gates * hidden * h_out + proj * hidden)
    return steps * per_step


class Seq(nn.Module):
    """A recurrent layer and a linear head on its last output; the model takes ``[B, T, features]``."""

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn
        width = (rnn.proj_size or rnn.hidden_size) * (2 if rnn.bidirectional else 1)
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.rnn.batch_first:
            x = x.transpose(0, 1)
        y, _ = self.rnn(x)
        return self.head(y[:, -1] if self.rnn.batch_first else y[-1])


CASES = {
    "lstm": (nn.LSTM, dict(input_size=10, hidden_size=16, batch_first=True), (1, 12, 10)),
    "lstm-seq-first": (nn.LSTM, dict(input_size=10, hidden_size=16), (3, 12, 10)),
    "lstm-2-layers-bidirectional-proj": (
        nn.LSTM,
        dict(input_size=10, hidden_size=16, num_layers=2, bidirectional=True, proj_size=5, batch_first=True),
        (1, 7, 10),
    ),
    "gru-2-layers-bidirectional": (
        nn.GRU,
        dict(input_size=6, hidden_size=8, num_layers=2, bidirectional=True, batch_first=True),
        (2, 9, 6),
    ),
    "rnn-relu-3-layers": (
        nn.RNN,
        dict(input_size=5, hidden_size=12, num_layers=3, nonlinearity="relu", batch_first=True),
        (1, 4, 5),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_recurrent_macs_equal_the_hand_formula(case):
    cls, kw, shape = CASES[case]
    torch.manual_seed(0)
    model = Seq(cls(**kw)).eval()
    x = torch.rand(shape)
    counts = count_program(Program(module=model, example_input=x))  # per inference: one sample
    rnn = next(r for r in counts.layers if r.name == "rnn")
    kind = cls.__name__
    expected = hand_macs(
        kind,
        kw["input_size"],
        kw["hidden_size"],
        kw.get("num_layers", 1),
        2 if kw.get("bidirectional") else 1,
        kw.get("proj_size", 0),
        shape[1],
    )
    assert (rnn.type, rnn.role, rnn.macs) == (kind, "recurrent", expected)
    # every weight matrix is a weight (stored at the weight width), the biases are not
    weights = sum(p.numel() for n, p in model.rnn.named_parameters() if n.startswith("weight_"))
    assert rnn.weight_params == weights and rnn.params == sum(p.numel() for p in model.rnn.parameters())
    assert not counts.uncounted


def test_packed_sequences_count_only_the_real_steps():
    from edgec.energy.counter import trace_counts

    torch.manual_seed(0)
    lstm = nn.LSTM(6, 8).eval()
    x = nn.utils.rnn.pack_padded_sequence(torch.rand(5, 3, 6), [5, 3, 2])  # three sequences, padded
    with torch.no_grad():
        rows = trace_counts(lstm, lambda: lstm(x)).layer_counts()
    assert rows[0].macs == (5 + 3 + 2) * hand_macs("LSTM", 6, 8, 1, 1, 0, 1)  # padding is not computed


def test_cells_in_a_python_loop():
    torch.manual_seed(0)

    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 4]
            h = torch.zeros(x.shape[0], 10)
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return h

    counts = count_program(Program(module=Loop().eval(), example_input=torch.rand(2, 6, 4)))
    row = next(r for r in counts.layers if r.name == "cell")
    assert (row.calls, row.macs) == (6, hand_macs("GRU", 4, 10, 1, 1, 0, 6))


def test_lstm_from_a_users_pt2_counts_every_step(cli, tmp_path):
    """The issue's example: LSTM(10, 16) over 12 steps plus Linear(16, 4) reported 64 MACs in total."""
    torch.manual_seed(0)
    model = Seq(nn.LSTM(10, 16, batch_first=True)).eval()
    path = tmp_path / "lstm.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (torch.rand(1, 12, 10),)), path)
    res = cli("report", path, "--quantize", "int8", "--format", "json")
    assert res.exit_code == 0, res.stderr
    energy = json.loads(res.stdout)["energy"]
    rows = {r["name"]: r for r in energy["layers"]}
    assert rows["rnn"]["macs"] == hand_macs("LSTM", 10, 16, 1, 1, 0, 12) == 19_968
    assert energy["totals"]["macs"] == 19_968 + 16 * 4
    assert rows["rnn"]["weight_params"] == 4 * 16 * (10 + 16)  # int8, with the weights of every gate
    assert rows["rnn"]["param_bytes"] == 4 * 16 * (10 + 16) + 4 * 2 * 4 * 16  # + int32 biases
    assert energy["totals"]["uncounted"] == [] and energy["headline"]["energy_j"] > 0


class Projection(nn.Module):
    """A custom layer (no analytic rule) whose forward multiplies by its own parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class Pairwise(nn.Module):
    """A custom layer built on an operator edgec has no counting rule for (a bilinear form)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 5, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.bilinear(x, x, self.weight)


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = Projection()
        self.pair = Pairwise()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pair(self.proj(x))


def test_custom_matmul_is_counted_and_an_unknown_operator_is_listed_uncounted(cli, tmp_path):
    torch.manual_seed(0)
    model = Custom().eval()
    x = torch.rand(1, 7, 8)
    counts = count_program(Program(module=model, example_input=x))
    rows = {(r.name, r.type): r for r in counts.layers}
    assert rows[("proj", "aten.matmul")].macs == 7 * 8 * 5  # x [1, 7, 8] @ w [8, 5]
    assert counts.uncounted == [{"layer": "pair", "type": "Pairwise", "ops": ["_trilinear"]}]
    path = tmp_path / "custom.pt2"
    torch.export.save(torch.export.export(model, (x,)), path)
    md = tmp_path / "custom.md"
    res = cli("report", path, "-o", md)
    assert res.exit_code == 0, res.stderr
    text = md.read_text()
    assert "| uncounted | pair (Pairwise): bilinear | not counted |" in text
    assert "## Energy: n/a: table cmos45-fp32@1 leaves out pair" in text  # no figure to quote
    energy = json.loads(cli("report", path, "--format", "json").stdout)["energy"]
    assert energy["totals"]["uncounted"] == [{"layer": "pair", "type": "Pairwise", "ops": ["bilinear"]}]
    assert energy["headline"]["energy_j"] is None and energy["headline"]["complete"] is False
    assert energy["totals"]["macs"] == 7 * 8 * 5
