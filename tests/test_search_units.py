"""`edgec search` without running trials: the front, spaces, objectives, constraints and bad input."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from edgec.errors import UsageError
from edgec.search.objectives import fitness, pareto_front, parse_constraint, parse_objectives
from edgec.search.space import builtin_space, load_space

MODEL = "zoo:digits-snn-mlp"


def brute_front(points: list[tuple[int, tuple[float, float]]]) -> set[int]:
    """(accuracy up, energy down): i is on the front unless some j is >= in accuracy, <= in energy and
    strictly better in one."""
    out = set()
    for i, (a, e) in points:
        beaten = any((b >= a and f <= e and (b > a or f < e)) for j, (b, f) in points if j != i)
        if not beaten:
            out.add(i)
    return out


def test_front_is_exactly_the_non_dominated_points_ties_included() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 14)
        # few distinct values, so ties and duplicates happen
        pts = [(i, (rng.choice([0.5, 0.6, 0.7, 0.8]), rng.choice([1.0, 2.0, 3.0]))) for i in range(n)]
        got = pareto_front(pts, ["accuracy", "energy_uj"])
        assert set(got) == brute_front(pts)
        assert got == sorted(got)  # in the order given


def test_front_with_three_objectives_keeps_a_point_best_in_bytes_only() -> None:
    pts = [(0, [0.9, 1.0, 100.0]), (1, [0.8, 2.0, 50.0]), (2, [0.8, 2.0, 60.0])]
    assert pareto_front(pts, ["accuracy", "energy_uj", "bytes"]) == [0, 1]


def test_fitness_trades_a_halved_energy_for_2_to_the_w() -> None:
    assert fitness(0.9, 0.5, 0.07) / fitness(0.9, 1.0, 0.07) == pytest.approx(2**0.07)
    assert fitness(0.9, 1.0, 0.0) == pytest.approx(0.9)


def test_builtin_snn_space_is_qp_snn_bits_prune_and_timesteps() -> None:
    space = builtin_space("snn")
    space.check()
    assert space.recipes_for({"bits": 2, "prune": 0.25, "timesteps": 4}) == ["qp-snn:bits=2,prune=0.25"]
    assert space.timesteps_for({"bits": 2, "prune": 0.25, "timesteps": 4}) == 4
    dims = {d.name: d.choices for d in space.dims}
    assert dims == {"bits": (2, 4, 8), "prune": (0.0, 0.25, 0.5, 0.75), "timesteps": (4, 8)}


def test_space_file_ranges_become_optuna_distributions(tmp_path: Path) -> None:
    f = tmp_path / "space.toml"
    f.write_text(
        "[space]\n"
        'recipes = ["uniform-quant:bits={bits}", "magnitude-prune:prune={prune},epochs=0"]\n'
        "[space.params]\n"
        "bits = {low = 3, high = 6}\n"
        "prune = {low = 0.1, high = 0.6, step = 0.1}\n"
        "timesteps = [4, 6]\n"
    )
    space = load_space(str(f), "snn")
    d = space.distributions()
    assert (d["bits"].low, d["bits"].high, d["bits"].step) == (3, 6, 1)
    assert type(d["bits"]).__name__ == "IntDistribution"
    assert d["prune"].step == pytest.approx(0.1)
    assert list(d["timesteps"].choices) == [4, 6]
    assert space.recipes_for({"bits": 5, "prune": 0.30000000000000004}) == [
        "uniform-quant:bits=5",
        "magnitude-prune:prune=0.3,epochs=0",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[space]\nrecipes = ["qp-snn:bits={bits}"]\n[space.params]\nbits = {low = 2, hi = 8}\n',
            "unknown key",
        ),
        (
            '[space]\nrecipes = ["qp-snn:bits={bits}"]\n[space.params]\nbits = {low = 8, high = 2}\n',
            "above high",
        ),
        (
            '[space]\nrecipes = ["qp-snn:bits={bits}"]\n[space.params]\nwidth = [2, 4]\n',
            "no parameter defines",
        ),
        (
            '[space]\nrecipes = ["qp-snn:bits={bits}"]\n[space.params]\nbits = [2]\nextra = [1]\n',
            "appear in no",
        ),
        ('[space]\nrecipes = ["no-such-pass:x={x}"]\n[space.params]\nx = [1]\n', "gives a bad recipe"),
        ('[space]\nrecipes = ["qp-snn:bitz={b}"]\n[space.params]\nb = [2]\n', "gives a bad recipe"),
        ('[space]\nrecipe = ["qp-snn"]\n', "unknown key(s) recipe"),
        ('[search]\nrecipes = ["qp-snn"]\n', "expected one [space] section"),
    ],
)
def test_bad_space_file_is_a_usage_error_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "space.toml"
    f.write_text(text)
    with pytest.raises(UsageError) as exc:
        load_space(str(f), "snn")
    assert message in exc.value.message


def test_objectives_and_constraints_are_checked() -> None:
    assert parse_objectives("accuracy, energy,bytes") == ["accuracy", "energy_uj", "bytes"]
    with pytest.raises(UsageError, match="cannot be priced"):
        parse_objectives("accuracy,latency")
    with pytest.raises(UsageError, match="unknown objective 'speed'"):
        parse_objectives("accuracy,speed")
    c = parse_constraint("energy<=0.5")
    assert (c.metric, c.op, c.bound) == ("energy_uj", "<=", 0.5)
    assert c.holds(0.5) and not c.holds(0.51) and not c.holds(None)
    assert parse_constraint("accuracy>=0.9").violation(0.8) == pytest.approx(0.1)
    with pytest.raises(UsageError, match="unknown metric 'watts'"):
        parse_constraint("watts<=3")
    with pytest.raises(UsageError, match="is not METRIC"):
        parse_constraint("energy_uj < 3")


BAD = [
    (["--space", "{space}"], "unknown key(s) hi"),
    (["--objectives", "accuracy,latency"], "cannot be priced"),
    (["--constraint", "watts<=3"], "unknown metric 'watts'"),
    (["--ray", "127.0.0.1:9"], "no Ray head answers"),
    (["--storage", "nosuchdb://x/y"], "cannot open the study storage"),
    (["--target", "loihi,nosuchchip"], "unknown target 'nosuchchip'"),
    (["--target", "cpu:int3"], "has no precision 'int3'"),
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    cli, tmp_path: Path, extra: list[str], message: str
) -> None:
    space = tmp_path / "space.toml"
    space.write_text('[space]\nrecipes = ["qp-snn:bits={bits}"]\n[space.params]\nbits = {low = 2, hi = 8}\n')
    out = tmp_path / "out"
    args = ["search", MODEL, "--target", "loihi", "--train-data", "builtin:digits", "-o", str(out)]
    args += [a.format(space=space) for a in extra]
    r = cli(*args)
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_out_with_foreign_files_is_refused_and_left_alone(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = cli("search", MODEL, "--target", "loihi", "--train-data", "builtin:digits", "-o", str(out))
    assert r.exit_code == 2 and "did not write" in r.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_ray_missing_is_a_usage_error_saying_how_to_install(monkeypatch, tmp_path: Path) -> None:
    import edgec

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where Ray is not installed
    with pytest.raises(UsageError) as exc:
        edgec.search(MODEL, target="loihi", train_data="builtin:digits", ray="auto", out=tmp_path / "o")
    assert "pip install 'edgec[ray]'" in (exc.value.hint or "")
    assert not (tmp_path / "o").exists()
