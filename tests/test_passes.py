"""Pass infrastructure: passes run in order, are recorded, and fail with the pass chain named."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from edgec.errors import EdgecError, ModelError, PassError, UsageError
from edgec.loading import load_program
from edgec.passes import Pass, PassContext, PassManager, PassResult, get_pass
from edgec.program import Program


@pytest.mark.parametrize("name", ["digits-cnn", "resnet20"])
def test_fold_bn_keeps_the_function(name):
    program = load_program(f"zoo:{name}")
    x = torch.rand(4, *program.input_shape)
    # give BN non-trivial statistics so folding is really exercised
    gen = torch.Generator().manual_seed(1)
    for m in program.module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    with torch.no_grad():
        ref = program.module(x)
    out = PassManager([get_pass("fold-bn")]).run(program, PassContext())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in program.module.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in out.module.modules())
    assert out.history[-1].stats == {"folded": n_bn}
    assert any(isinstance(m, nn.BatchNorm2d) for m in program.module.modules())  # input untouched
    with torch.no_grad():
        torch.testing.assert_close(out.module(x), ref, atol=1e-4, rtol=1e-4)


@dataclass
class Scale(Pass):
    name: ClassVar[str] = "scale"
    factor: float = 2.0

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        module = nn.Sequential(program.module, _Mul(self.factor))
        return PassResult(program.replace(module=module), True, {"factor": self.factor})


class _Mul(nn.Module):
    def __init__(self, f: float) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.f


@dataclass
class Sleep(Pass):
    name: ClassVar[str] = "sleep"
    seconds: float = 0.05

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        import time

        time.sleep(self.seconds)
        return PassResult(program, False)


@dataclass
class Crash(Pass):
    name: ClassVar[str] = "crash"

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        raise ZeroDivisionError("boom")


@dataclass
class Refuse(Pass):
    name: ClassVar[str] = "refuse"

    def requires(self, program: Program) -> None:
        raise ModelError("needs a spiking model")

    def call(self, program: Program, ctx: PassContext) -> PassResult:  # pragma: no cover - never reached
        return PassResult(program, False)


@dataclass
class FineTune(Pass):
    name: ClassVar[str] = "finetune"
    needs: ClassVar[frozenset[str]] = frozenset({"training"})

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        return PassResult(program, False)


def _tiny() -> Program:
    return Program(module=nn.Linear(3, 2), example_input=torch.ones(1, 3))


def test_manager_records_each_pass_in_order():
    p = PassManager([Scale(2.0), Scale(3.0)]).run(_tiny(), PassContext())
    assert [r.name for r in p.history] == ["scale", "scale"]
    assert [r.config for r in p.history] == [{"factor": 2.0}, {"factor": 3.0}]
    assert all(r.modified for r in p.history)
    # durations are measured per pass: a pass that takes 50 ms is recorded as taking them
    slow = PassManager([Scale(2.0), Sleep(0.05)]).run(_tiny(), PassContext()).history
    assert slow[0].duration_s < 0.05 <= slow[1].duration_s < 5
    x = torch.ones(1, 3)
    linear = p.module[0][0]  # Sequential(Sequential(linear, x2), x3)
    torch.testing.assert_close(p.module(x), linear(x) * 6)


def test_crash_names_the_pass_and_the_chain():
    with pytest.raises(PassError, match=r"pass 'crash' failed \(scale -> crash\): boom") as info:
        PassManager([Scale(), Crash()]).run(_tiny(), PassContext())
    assert info.value.exit_code == 1 and isinstance(info.value, EdgecError)
    assert isinstance(info.value.__cause__, ZeroDivisionError)  # the original error stays attached


def test_refusal_keeps_its_type_and_gets_the_chain():
    with pytest.raises(ModelError, match=r"pass 'refuse' \(scale -> refuse\): needs a spiking model"):
        PassManager([Scale(), Refuse()]).run(_tiny(), PassContext())


def test_pass_that_needs_training_data_says_so():
    with pytest.raises(UsageError, match="needs training data") as info:
        PassManager([FineTune()]).run(_tiny(), PassContext())
    assert "--train-data" in (info.value.hint or "")


def test_unknown_pass_and_bad_options():
    with pytest.raises(UsageError, match="unknown pass 'prune-everything'"):
        get_pass("prune-everything")
    with pytest.raises(UsageError, match="unknown option\\(s\\) of pass 'fold-bn': bits"):
        get_pass("fold-bn", bits=4)


@dataclass
class CountTraining(Pass):
    name: ClassVar[str] = "count-train"
    needs: ClassVar[frozenset[str]] = frozenset({"training"})

    def call(self, program: Program, ctx: PassContext) -> PassResult:
        assert ctx.train is not None
        x, y = ctx.train.arrays()
        with ctx.progress.task("counting", total=len(x)) as task:
            task.advance(len(x))
        return PassResult(program, False, {"samples": len(x), "labelled": y is not None})


def test_compile_gives_training_passes_labelled_data(tmp_path, monkeypatch):
    """A zoo model's own dataset (its train split) feeds training passes; --train-data overrides it.
    A seeded tenth of it is held out as validation (the fine-tuning loop picks its best epoch there)."""
    import numpy as np

    import edgec
    from edgec import passes

    monkeypatch.setitem(passes.PASSES, "count-train", f"{__name__}:CountTraining")
    art = edgec.compile("zoo:digits-cnn", passes=["count-train"], out=tmp_path / "a")
    rec = art.report["passes"][-1]
    assert rec["name"] == "count-train" and rec["stats"] == {"samples": 1257 - 126, "labelled": True}
    np.savez(tmp_path / "t.npz", x=np.zeros((7, 1, 8, 8), np.float32), y=np.arange(7))
    art = edgec.compile(
        "zoo:digits-cnn", passes=["count-train"], train_data=str(tmp_path / "t.npz"), out=tmp_path / "b"
    )
    assert art.report["passes"][-1]["stats"] == {"samples": 6, "labelled": True}


@dataclass
class EarlyScale(Scale):
    """A pass that must see the model before the target prepares it."""

    name: ClassVar[str] = "early-scale"
    before_target: ClassVar[bool] = True


def test_a_recipe_runs_a_pass_twice_with_its_own_options_and_early_passes_first(tmp_path, monkeypatch):
    """Recipes are a list of (pass, options): the same pass twice, [passes.NAME] defaults under each entry's
    own options, a before_target pass ahead of the target's preparation passes (review: config.py:185,
    api.py:155)."""
    import edgec
    from edgec import passes
    from edgec.api import pipeline
    from edgec.config import CompileConfig
    from edgec.target import get_target

    monkeypatch.setitem(passes.PASSES, "scale", f"{__name__}:Scale")
    monkeypatch.setitem(passes.PASSES, "early-scale", f"{__name__}:EarlyScale")
    recipe = ["scale:factor=3.0", {"name": "scale"}, "early-scale:factor=5.0"]
    cfg = CompileConfig(passes=recipe, pass_options={"scale": {"factor": 0.5}})
    target = get_target("cpu")
    monkeypatch.setattr(type(target), "prepare_passes", lambda self, program, config: [Sleep(0.0)])
    steps = pipeline(target, _tiny(), cfg)
    assert [(p.name, p.config()) for p in steps] == [
        ("early-scale", {"factor": 5.0}),
        ("sleep", {"seconds": 0.0}),
        ("scale", {"factor": 3.0}),
        ("scale", {"factor": 0.5}),
    ]
    model = nn.Linear(3, 2)
    art = edgec.compile(model, input_shape=(1, 3), config=cfg, out=tmp_path / "a")
    assert [(r["name"], r["config"]) for r in art.report["passes"]] == [(p.name, p.config()) for p in steps]
    assert art.report["config"]["passes"] == [
        {"name": "scale", "factor": 3.0},
        {"name": "scale"},
        {
            "name": "early-scale",
            "factor": 5.0,
        },
    ]
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy() * 5.0 * 3.0 * 0.5
    np.testing.assert_allclose(edgec.run(art, x)["output"], want, rtol=1e-5)


def test_pass_options_are_type_checked():
    with pytest.raises(UsageError, match="pass 'fold-bn'"):
        get_pass("fold-bn", bits="4")
    from edgec import passes

    passes.PASSES["scale"] = f"{__name__}:Scale"
    try:
        with pytest.raises(
            UsageError, match=r"pass 'scale' option factor must be a number, got 'two' \(a string\)"
        ):
            get_pass("scale", factor="two")
        assert get_pass("scale", factor=2).config() == {"factor": 2.0}
    finally:
        del passes.PASSES["scale"]


# ---- fold-bn on the formats the README recommends (issue 15 item 11, issue 7 item 6) ------------------
@pytest.fixture(scope="module")
def cnn_files(tmp_path_factory: pytest.TempPathFactory):
    from user_models import CNN_SHAPE, save_data, save_export, save_torchscript, small_cnn

    d = tmp_path_factory.mktemp("fold")
    m = small_cnn()
    return {
        "module": m,
        "export": save_export(m, d / "cnn.pt2", CNN_SHAPE),
        "torchscript": save_torchscript(m, d / "cnn_ts.pt", CNN_SHAPE),
        "data": save_data(d / "data.npz", CNN_SHAPE, n=8),
    }


def test_fold_bn_folds_an_exported_graph_from_the_cli(cli, cnn_files, tmp_path):
    """`--pass fold-bn` reported {'folded': 0} on a .pt2 with Conv + BatchNorm: it folds the graph now."""
    import json

    out = tmp_path / "o"
    res = cli("compile", cnn_files["export"], "--pass", "fold-bn", "-o", out, "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["passes"][-1]["stats"] == {"folded": 1}
    program = load_program(str(cnn_files["export"]))
    folded = PassManager([get_pass("fold-bn")]).run(program, PassContext())
    ops = [str(n.target) for n in folded.module.graph.nodes if n.op == "call_function"]
    assert "aten.batch_norm.default" not in ops and ops.count("aten.conv2d.default") == 2
    assert "aten.batch_norm.default" in [str(n.target) for n in program.module.graph.nodes]  # input kept
    x = torch.from_numpy(np.load(cnn_files["data"])["x"])
    with torch.no_grad():
        torch.testing.assert_close(folded.module(x[:1]), cnn_files["module"](x[:1]), atol=1e-5, rtol=1e-4)
    assert cli("verify", out, "--data", cnn_files["data"]).exit_code == 0


def test_fold_bn_on_torchscript_says_plainly_that_nothing_was_folded(cli, cnn_files, tmp_path):
    import json

    args = ["compile", cnn_files["torchscript"], "--input-shape", "1,3,16,16", "--pass", "fold-bn"]
    res = cli(*args, "-o", tmp_path / "o", "--json")
    assert res.exit_code == 0, res.stderr
    stats = json.loads(res.stdout)["passes"][-1]["stats"]
    assert stats["folded"] == 0 and stats["left"] == 1
    assert "TorchScript" in stats["note"] and "torch.export .pt2" in stats["note"]
