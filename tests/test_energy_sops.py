"""Synaptic operations on hand-checkable inputs and against a brute-force pair counter.

The 4x4 example is worked by hand in the energy reference: Conv2d(1 -> 2, 3x3, padding 1) on a
binary map with spikes at (0,0), (0,2), (1,1), (2,2). Per output channel a corner spike reaches 4
outputs, an edge spike 6, an interior spike 9: exact SOPs = 2 * (4 + 6 + 9 + 9) = 56; the
literature's rate x T x FLOPs = 4/16 * 288 = 72; boundary-aware dense = 200 (2 * (4*4 + 8*6 + 4*9));
fvcore-style dense MACs = 2 * 16 * 9 = 288. A Linear(16 -> 5) with 4 active inputs: 20.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from edgec.energy.analyze import count_program, energy_section
from edgec.program import Program

SPIKES_4X4 = [(0, 0), (0, 2), (1, 1), (2, 2)]


class OverTime(nn.Module):
    """Applies a synapse to a time-major input [T, B, ...] (folds time into the batch)."""

    def __init__(self, synapse: nn.Module) -> None:
        super().__init__()
        self.synapse = synapse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        y = self.synapse(x.reshape(t * b, *x.shape[2:]))
        return y.reshape(t, b, *y.shape[1:])


def spike_map() -> torch.Tensor:
    x = torch.zeros(1, 1, 4, 4)
    for i, j in SPIKES_4X4:
        x[0, 0, i, j] = 1.0
    return x


def snn_program(synapse: nn.Module, x: torch.Tensor, timesteps: int = 1) -> Program:
    return Program(
        module=OverTime(synapse).eval(),
        example_input=x,
        kind="snn",
        timesteps=timesteps,
        encoder={"kind": "direct"},
    )


def the_conv() -> nn.Conv2d:
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(0.5)  # every weight non-zero
    return conv


def test_hand_example_4x4_conv():
    counts = count_program(snn_program(the_conv(), spike_map()))
    row = next(r for r in counts.layers if r.name == "synapse")
    assert row.sops is not None
    assert row.sops.exact == 56
    assert row.sops.effective_acs == 56 and row.sops.effective_macs == 0  # binary input: ACs
    assert row.sops.literature == 72  # rate x T x FLOPs overcounts the border
    assert row.sops.dense == 200
    assert row.macs == 288  # fvcore-style dense MACs
    assert row.input_spikes == 4 and row.input_rate == 4 / 16


def test_hand_example_pruned_weight_is_not_counted():
    conv = the_conv()
    with torch.no_grad():
        conv.weight[0, 0, 1, 1] = 0.0  # the centre tap of output channel 0: each spike loses one pair
    row = next(r for r in count_program(snn_program(conv, spike_map())).layers if r.name == "synapse")
    assert row.sops is not None
    assert row.sops.exact == 56 - 4
    assert row.sops.dense == 200  # NeuroBench's dense ignores pruning


def test_linear_16_to_5_with_4_active_inputs():
    x = torch.zeros(1, 16)
    x[0, [1, 5, 9, 13]] = 1.0
    row = next(r for r in count_program(snn_program(nn.Linear(16, 5), x)).layers if r.name == "synapse")
    assert row.sops is not None
    assert (row.sops.exact, row.sops.dense, row.sops.literature) == (20, 80, 20)


def brute_force_pairs(
    x: torch.Tensor, w: torch.Tensor, stride: int, padding: int, dilation: int, groups: int
) -> int:
    """Count (non-zero input, non-zero weight) pairs that land on an output, one loop per index."""
    _, _, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    oh = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    cout_g = cout // groups
    pairs = 0
    for n, o, i, j in itertools.product(range(x.shape[0]), range(cout), range(oh), range(ow)):
        g = o // cout_g
        for c, a, b in itertools.product(range(cin_g), range(kh), range(kw)):
            r, s = i * stride - padding + a * dilation, j * stride - padding + b * dilation
            if 0 <= r < h and 0 <= s < wd and x[n, g * cin_g + c, r, s] != 0 and w[o, c, a, b] != 0:
                pairs += 1
    return pairs


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups"), [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1), (3, 0, 1, 4)]
)
def test_exact_sops_equal_brute_force_pair_count(stride: int, padding: int, dilation: int, groups: int):
    gen = torch.Generator().manual_seed(stride * 100 + padding * 10 + groups)
    conv = nn.Conv2d(4, 8, 3, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        conv.weight[torch.rand(conv.weight.shape, generator=gen) < 0.3] = 0.0  # 30 % pruned
    t, b = 3, 2
    x = (torch.rand(b, 4, 7, 7, generator=gen) < 0.25).float()
    frames = torch.stack([(torch.rand(b, 4, 7, 7, generator=gen) < 0.25).float() for _ in range(t)])
    program = Program(module=OverTime(conv).eval(), example_input=x, kind="snn", timesteps=t)
    expected = sum(
        brute_force_pairs(frames[i], conv.weight, stride, padding, dilation, groups) for i in range(t)
    )

    class Frames(nn.Module):  # feeds the fixed frames instead of encoding x
        def __init__(self) -> None:
            super().__init__()
            self.inner = program.module

        def forward(self, _: torch.Tensor) -> torch.Tensor:
            return self.inner(frames)

    counts = count_program(program.replace(module=Frames().eval(), encoder=None))
    row = next(r for r in counts.layers if r.name == "inner.synapse")
    assert row.sops is not None
    assert row.sops.exact_run == expected  # the whole run; per-sample means divide by the batch
    assert row.sops.exact == expected / b


def test_real_valued_input_counts_as_effective_macs_and_spikes_as_acs():
    torch.manual_seed(0)

    class TwoLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Linear(6, 8)
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            spikes = (self.enc(x) > 0).float()  # a crude neuron: binary output
            return self.fc(spikes)

    x = torch.rand(2, 6) + 0.1  # real-valued, all non-zero
    program = Program(
        module=TwoLayer().eval(), example_input=x, kind="snn", timesteps=4, encoder={"kind": "direct"}
    )
    section = energy_section(program, None, table="cmos45-fp32", target="cpu")
    rows = {r["name"]: r for r in section["layers"]}
    enc, fc = rows["enc"]["sops"], rows["fc"]["sops"]
    assert enc["effective_macs"] == enc["exact"] == 4 * 6 * 8  # charged on each of the T=4 steps
    assert enc["effective_acs"] == 0
    assert fc["effective_macs"] == 0 and fc["effective_acs"] == fc["exact"]
    # priced as the SNN literature does: E_MAC x encoding MACs + E_AC x SOPs
    expected_pj = 4.6 * enc["exact"] + 0.9 * fc["exact"]
    priced = section["estimate"]["parts_j"]
    assert priced["synaptic_macs"] + priced["synaptic_acs"] == pytest.approx(expected_pj * 1e-12)


def _zoo_snns() -> list[str]:
    from edgec.loading import zoo

    return sorted(name for name, entry in zoo().items() if entry.kind == "snn")


@pytest.mark.parametrize("name", _zoo_snns())
def test_zoo_snn_sops_equal_binarized_convolution(name: str):
    """Every synapse of the trained zoo SNNs, on real digits: the report's exact SOPs equal
    conv2d((x != 0), (w != 0)) / (x != 0) @ (w != 0)^T summed over the run, computed here from the
    synapses' recorded inputs; spikes equal the neurons' recorded output spikes."""
    import torch.nn.functional as F

    from edgec.data import open_dataset
    from edgec.loading import load_program
    from edgec.snn import is_spiking_neuron, run_model

    program = load_program(f"zoo:{name}")
    data = open_dataset("builtin:digits:holdout")
    n = 40
    counts = count_program(program, data, samples=n)
    rows = {r.name: r for r in counts.layers}

    inputs: dict[str, list[torch.Tensor]] = {}
    spikes: dict[str, int] = {}
    handles = []
    for mod_name, m in program.module.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            handles.append(
                m.register_forward_pre_hook(lambda m, a, k=mod_name: inputs.setdefault(k, []).append(a[0]))
            )
        elif is_spiking_neuron(m):
            handles.append(
                m.register_forward_hook(
                    lambda m, a, out, k=mod_name: spikes.__setitem__(k, spikes.get(k, 0) + int(out.sum()))
                )
            )
    x, _ = data.arrays(n)
    with torch.no_grad():
        run_model(program, torch.from_numpy(x))
    for h in handles:
        h.remove()

    modules = dict(program.module.named_modules())
    assert inputs, "the zoo SNN has synapses"
    total = 0
    for mod_name, xs in inputs.items():
        m = modules[mod_name]
        wb = (m.weight != 0).double()
        expected = 0
        for xin in xs:
            xb = (xin != 0).double()
            if isinstance(m, nn.Conv2d):
                out = F.conv2d(xb, wb, None, m.stride, m.padding, m.dilation, m.groups)
            else:
                out = xb @ wb.T
            expected += int(out.sum().item())
        row = rows[mod_name]
        assert row.sops is not None
        assert row.sops.exact_run == expected, mod_name
        assert row.sops.exact == pytest.approx(expected / n)
        total += expected
    assert counts.sop_total("exact_run") == total
    assert spikes and all(rows[k].spikes == pytest.approx(v / n) for k, v in spikes.items())
    # binary (rate-encoded) input everywhere: every synaptic operation is an accumulate
    assert counts.sop_total("effective_macs") == 0


def test_loihi_table_prices_sops_neuron_updates_and_spikes():
    """Linear(16 -> 5, all weights 1) + CubaLIF(du=dv=1, threshold 0.5) over T=3 steps, 4 active inputs:
    every neuron gets current 4 and spikes every step. SOPs 3 * 4 * 5 = 60 (ACs), 15 neuron updates
    (all active), 15 spikes. Loihi (Davies 2018): 23.6 pJ/SOP, 81 pJ per active update, 1.7 pJ per spike."""
    from edgec.snn import CubaLIF

    lin = nn.Linear(16, 5, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    net = nn.Sequential(lin, CubaLIF(du=1.0, dv=1.0, threshold=0.5)).eval()
    x = torch.zeros(1, 16)
    x[0, [0, 3, 7, 12]] = 1.0
    program = Program(module=net, example_input=x, kind="snn", timesteps=3, encoder={"kind": "direct"})
    section = energy_section(program, None, table="loihi1-davies2018", target="loihi")
    rows = {r["name"]: r for r in section["layers"]}
    assert rows["0"]["sops"]["exact"] == rows["0"]["sops"]["effective_acs"] == 60
    assert rows["1"]["spikes"] == 15 and rows["1"]["neuron_updates"] == 15
    assert rows["1"]["active_neuron_updates"] == 15 and rows["1"]["firing_rate"] == 1.0
    expected_pj = 23.6 * 60 + 81.0 * 15 + 1.7 * 15
    assert section["estimate"]["total_j"] == pytest.approx(expected_pj * 1e-12)
    assert section["estimate"]["memory_j"] == 0  # on-chip: part of the per-operation figures
    assert section["headline"] == {
        "energy_j": pytest.approx(expected_pj * 1e-12),
        "source": "estimate",
        "table": "loihi1-davies2018@1",
        "complete": True,
    }
    assert any("Loihi 2" in c for c in section["table"]["caveats"])  # the assumption is stated
    # the same counts on 45 nm CMOS fp32: E_AC per SOP, a LIF step = 2 multiplies + 2 adds
    cmos = energy_section(program, None, table="cmos45-fp32", target="cpu")
    assert cmos["estimate"]["compute_j"] == pytest.approx((0.9 * 60 + (2 * 3.7 + 2 * 0.9) * 15) * 1e-12)


def test_a_table_without_a_price_says_so():
    """The Loihi table prices no MACs: an ANN's energy on it is incomplete and says what is missing."""
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU()).eval()
    program = Program(module=model, example_input=torch.rand(1, 8))
    section = energy_section(program, None, table="loihi1-davies2018", target="loihi")
    assert section["headline"]["complete"] is False
    assert section["headline"]["energy_j"] is None  # no figure to quote; the priced part stays in estimate
    assert section["estimate"]["unpriced"]["mac"] == 32
    assert any("prices no mac" in n for n in section["notes"])
