"""Per-layer-group mixed precision in `edgec search`: the sensitivity ranking, the reserved `wide`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgec
from edgec.data import open_dataset
from edgec.errors import UsageError
from edgec.loading import load_program
from edgec.search.sensitivity import compressible_groups, quantize_max_abs, rank_groups, widen_recipes
from edgec.search.space import load_space

VGG = "zoo:digits-snn-vgg"  # synapses net.0.module, net.2.module, net.4.module, net.6.module, net.9


def digits_x(n: int = 256) -> np.ndarray:
    x, _ = open_dataset("builtin:digits", purpose="calibration").arrays()
    return x[:n].astype(np.float32)


def mlp_with_an_outlier(outlier_layer: int) -> nn.Module:
    """Four Linear layers (two compressible groups: 0.3 and 0.5), trained briefly on digits; one group
    gets one weight 100x its largest, on a dead input (the float function is unchanged): at 4 bits
    max-abs quantization rounds every other weight of that layer to zero, which hurts far more than
    4-bit weights in the other group."""
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    x, y = open_dataset("builtin:digits", purpose="calibration").arrays()
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y).long()
    opt = torch.optim.Adam(seq.parameters(), lr=1e-2)
    for _ in range(60):  # trained a little, so the outputs are confident and a damaged layer shows
        opt.zero_grad()
        nn.functional.cross_entropy(seq(xt), yt).backward()
        opt.step()
    with torch.no_grad():  # unit 0 of the layer before is dead (ReLU of -1): the outlier reads only zeros,
        seq[outlier_layer - 2].weight[0] = 0.0  # so it changes the range, not the float function
        seq[outlier_layer - 2].bias[0] = -1.0
        w = seq[outlier_layer].weight
        w[0, 0] = 100 * w.abs().max()
    return nn.Sequential(seq)  # names "0.1", "0.3", ...


@pytest.mark.parametrize(("outlier", "first"), [(3, "0.3"), (5, "0.5")])
def test_ranking_puts_the_layer_whose_quantization_hurts_most_first(outlier: int, first: str) -> None:
    program = load_program(mlp_with_an_outlier(outlier), input_shape=(1, 1, 8, 8))
    assert compressible_groups(program.module) == ["0.3", "0.5"]  # first and last (edge_bits) excluded
    sens = rank_groups(program, digits_x(), bits=4, seed=0)
    scores = {g["layer"]: g["score"] for g in sens.groups}
    assert sens.ranking[0] == first
    other = next(n for n in scores if n != first)
    assert scores[first] > 3 * scores[other] > 0
    assert sens.samples == 256 and sens.bits == 4
    # the model the search was given is not changed by the ranking
    assert float(program.module.get_submodule(first).weight.detach().abs().max()) > 50


def test_max_abs_quantizer_has_2_to_the_b_minus_1_levels_a_side() -> None:
    w = torch.tensor([-1.0, -0.4, 0.0, 0.2, 0.49, 0.51, 1.0])
    assert quantize_max_abs(w, 2).tolist() == [-1.0, -0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    q4 = quantize_max_abs(w, 4)
    assert len(set(q4.tolist())) <= 15 and float((q4 - w).abs().max()) <= 1 / 14 + 1e-6


def test_same_seed_gives_the_same_ranking_on_a_spiking_network() -> None:
    program = load_program(VGG)
    a = rank_groups(program, digits_x(128), bits=2, seed=0)
    b = rank_groups(program, digits_x(128), bits=2, seed=0)
    assert a.groups == b.groups
    assert sorted(a.ranking) == ["net.2.module", "net.4.module", "net.6.module"]
    assert all(g["score"] > 0 for g in a.groups)


def test_wide_layers_become_layers_overrides_of_the_recipes_that_take_them() -> None:
    wide = ("net.4.module", "net.2.module")
    assert widen_recipes(["qp-snn:bits=2,prune=0.5"], wide) == [
        "qp-snn:bits=2,prune=0.5,layers=net.4.module:8+net.2.module:8"
    ]
    assert widen_recipes(["magnitude-prune:prune=0.5,epochs=0", "uniform-quant"], wide[:1]) == [
        "magnitude-prune:prune=0.5,epochs=0",  # no per-layer widths: left as it is
        "uniform-quant:layers=net.4.module:8",
    ]
    assert widen_recipes(["qp-snn:bits=2,layers=net.9:4,prune=0.5"], wide[:1]) == [
        "qp-snn:bits=2,layers=net.9:4+net.4.module:8,prune=0.5"
    ]
    assert widen_recipes(["qp-snn:bits=2"], ()) == ["qp-snn:bits=2"]


def space_file(tmp_path: Path, wide: str, bits: str = "[2]") -> Path:
    f = tmp_path / "space.toml"
    f.write_text(
        f'[space]\nrecipes = ["qp-snn:bits={{bits}}"]\n[space.params]\nbits = {bits}\nwide = {wide}\n'
    )
    return f


@pytest.mark.parametrize(
    ("wide", "message"),
    [
        ("[-1, 1]", "wide takes whole numbers of layer groups >= 0"),
        ("[0.5]", "wide takes whole numbers"),
        ("[0, 4]", "wide=4 is not a number of layer groups from 0 to 3"),
        ("{low = 0, high = 5}", "wide=5 is not a number of layer groups from 0 to 3"),
    ],
)
def test_bad_wide_is_a_one_line_usage_error_before_anything_runs(
    cli, tmp_path: Path, wide: str, message: str
) -> None:
    out = tmp_path / "out"
    args = ["search", VGG, "--target", "loihi", "--train-data", "builtin:digits"]
    r = cli(*args, "--space", str(space_file(tmp_path, wide)), "-o", str(out))
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_wide_in_a_template_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "space.toml"
    f.write_text('[space]\nrecipes = ["qp-snn:bits={wide}"]\n[space.params]\nwide = [0, 1]\n')
    with pytest.raises(UsageError, match="wide is reserved"):
        load_space(str(f), "snn")


@pytest.mark.slow
def test_a_trial_with_wide_2_keeps_the_two_most_sensitive_groups_at_8_bits(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = edgec.search(
        VGG,
        target="loihi",
        train_data="builtin:digits",
        space=str(space_file(tmp_path, "[2]")),
        trials=1,
        population=2,
        epochs=0,
        limit=16,
        seed=0,
        out=out,
    )
    doc = json.loads((out / "search.json").read_text())
    sens = doc["search"]["sensitivity"]
    ranking = [g["layer"] for g in sens["groups"]]
    assert sorted(ranking) == ["net.2.module", "net.4.module", "net.6.module"] and sens["bits"] == 2
    scores = [g["score"] for g in sens["groups"]]
    assert scores == sorted(scores, reverse=True)
    (trial,) = res.trials
    assert trial.params == {"bits": 2, "wide": 2}
    assert trial.recipes == [f"qp-snn:bits=2,layers={ranking[0]}:8+{ranking[1]}:8"]
    # the compressed program's quantization record: what the pass trained and baked
    program = load_program(out / "trials" / "trial-0000" / "program")
    widths = {name: q.weight_bits for name, q in program.quant.items() if q.weight_bits is not None}
    assert widths == {
        "net.0.module": 8,
        ranking[0]: 8,
        ranking[1]: 8,
        ranking[2]: 2,
        "net.9": 8,
    }
    assert "Layer groups by quantization sensitivity" in (out / "report.md").read_text()
    # the same OUT again: ranked again to the same order, so the study resumes (nothing to run)
    again = edgec.search(
        VGG,
        target="loihi",
        train_data="builtin:digits",
        space=str(space_file(tmp_path, "[2]")),
        trials=1,
        population=2,
        epochs=0,
        limit=16,
        seed=0,
        out=out,
    )
    assert [t.recipes for t in again.trials] == [trial.recipes]
