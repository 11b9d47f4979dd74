"""Bad input: a one-line error naming what is wrong, a non-zero exit code, and no half-written output."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from edgec.errors import ConstraintViolation, DataError, ModelError, UsageError


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgec.models import ZOO

    d = tmp_path_factory.mktemp("bad")
    model = ZOO["digits-cnn"].build()
    sd = d / "digits_sd.pt"
    torch.save(model.state_dict(), sd)
    torch.save(model, d / "module.pt")
    blob = sd.read_bytes()
    (d / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    (d / "notes.pt").write_text("these are not weights\n")
    nan_sd = model.state_dict()
    nan_sd["classifier.1.weight"][3, 5] = float("inf")
    torch.save(nan_sd, d / "inf_sd.pt")
    np.save(d / "calib_wrong_shape.npy", np.random.rand(8, 1, 8, 9).astype(np.float32))
    np.save(d / "calib_uint8.npy", (np.random.rand(8, 1, 8, 8) * 255).astype(np.uint8))
    (d / "regular_file").write_text("x")
    return {p.stem: p for p in d.iterdir()} | {"dir": d}


def _assert_clean(out: Path) -> None:
    assert not out.exists(), f"{out} was written despite the error"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def _fails(cli, args, code: int, *words: str) -> str:
    res = cli(*args)
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got: {res.stderr!r}"
    assert lines[0].startswith("error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Traceback" not in res.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("name", "extra", "code", "words"),
    [
        ("missing", [], 2, ["does not exist"]),
        ("notes", [], 3, ["not a PyTorch model file"]),
        ("truncated", ["--arch", "digits-cnn"], 3, ["truncated or corrupt"]),
        ("module", [], 3, ["pickled Python object", "--trust-pickle"]),
        ("digits_sd", [], 2, ["state_dict", "--arch"]),
        ("digits_sd", ["--arch", "no-such-arch"], 2, ["unknown --arch 'no-such-arch'", "digits-cnn"]),
        ("digits_sd", ["--arch", "resnet20"], 3, ["does not fit --arch resnet20", "missing keys"]),
        ("digits_sd", ["--arch", "digits-cnn", "--target", "fpga"], 2, ["unknown target 'fpga'", "cpu"]),
        (
            "digits_sd",
            ["--arch", "digits-cnn", "--input-shape", "1,3,32,32"],
            3,
            ["input of shape (1, 3, 32, 32)"],
        ),
        ("inf_sd", ["--arch", "digits-cnn"], 3, ["classifier.1.weight", "NaN/Inf"]),
        (
            "digits_sd",
            ["--arch", "digits-cnn", "--quantize", "int8", "--calib", "CALIB:calib_wrong_shape"],
            3,
            ["shape (1, 8, 9)", "(1, 8, 8)"],
        ),
        (
            "digits_sd",
            ["--arch", "digits-cnn", "--quantize", "int8", "--calib", "CALIB:calib_uint8"],
            3,
            ["dtype uint8", "float"],
        ),
        (
            "digits_sd",
            ["--arch", "digits-cnn", "--quantize", "int4"],
            2,
            ["no precision 'int4' (--quantize)", "int8"],
        ),
    ],
)
def test_compile_rejects(cli, files, name, extra, code, words):
    model = files.get(name, files["dir"] / f"{name}.pt")
    extra = [str(files[e[6:]]) if e.startswith("CALIB:") else e for e in extra]
    out = files["dir"] / f"out-{name}-{code}"
    _fails(cli, ["compile", str(model), "-o", str(out), *extra], code, *words)
    _assert_clean(out)


def test_malicious_pickle_never_runs(cli, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"weights": Evil()}, evil)
    for extra in ([], ["--arch", "digits-cnn"]):
        res = cli("compile", str(evil), "-o", str(tmp_path / "out"), *extra)
        assert res.exit_code == 3
        assert not marker.exists(), "the pickle's __reduce__ ran"
    _assert_clean(tmp_path / "out")


def test_trusted_pickle_loads_when_asked(cli, files, tmp_path):
    out = tmp_path / "out"
    res = cli("compile", str(files["module"]), "--trust-pickle", "--input-shape", "1,1,8,8", "-o", str(out))
    assert res.exit_code == 0, res.stderr
    assert (out / "model.onnx").is_file()
    # verifying it reloads the pickle, so it must be asked for again
    _fails(cli, ["verify", str(out)], 2, "pickled module", "--trust-pickle")
    assert cli("verify", str(out), "--trust-pickle").exit_code == 0


def test_existing_output_needs_force(cli, files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    _fails(cli, ["compile", "zoo:digits-cnn", "-o", str(out)], 2, "already exists", "--force")
    assert (out / "keep.txt").read_text() == "user data"
    res = cli("compile", "zoo:digits-cnn", "-o", str(out), "--force")
    assert res.exit_code == 0, res.stderr
    assert not (out / "keep.txt").exists() and (out / "model.onnx").is_file()


def test_output_path_that_cannot_be_created(cli, files):
    out = files["regular_file"] / "sub" / "out"
    _fails(
        cli,
        ["compile", "zoo:digits-cnn", "-o", str(out)],
        2,
        "cannot create output directory",
        "not a directory",
    )
    assert files["regular_file"].read_text() == "x"


def test_failure_during_lowering_leaves_nothing(tmp_path, monkeypatch):
    """Data that goes bad mid-calibration fails inside the artifact writer: nothing is left."""
    import edgec

    (tmp_path / "baddata.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            def samples():
                for i in range(40):
                    shape = (1, 8, 8) if i < 20 else (1, 7, 7)
                    yield np.zeros(shape, np.float32), None
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    with pytest.raises(DataError, match="sample 20"):
        edgec.compile("zoo:digits-cnn", target="cpu", quantize="int8", calib="baddata:samples", out=out)
    _assert_clean(out)


def test_library_raises_typed_errors(tmp_path):
    import edgec

    with pytest.raises(UsageError):
        edgec.compile("zoo:nope", out=tmp_path / "a")
    with pytest.raises(ModelError):
        edgec.compile(str(Path(__file__)), out=tmp_path / "b")
    with pytest.raises(ConstraintViolation, match="cannot take this model") as info:  # ResNet on Loihi
        edgec.compile("zoo:resnet20", target="loihi", out=tmp_path / "c")
    assert info.value.exit_code == 4 and isinstance(info.value, edgec.EdgecError)
    assert not (tmp_path / "c").exists()


# --- CPU target / ONNX export (onnx engineer) ---


class _Inverse(torch.nn.Module):
    """torch.linalg.inv has no ONNX conversion."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inv = torch.linalg.inv(x.reshape(-1, 2, 2) + 3 * torch.eye(2))
        return self.fc(inv.flatten(1))


def test_check_cpu_runs_the_export_compile_runs(cli, tmp_path):
    """Issue 15.10: before, `check --target cpu` said ok for a model whose export then failed.
    Check runs the export; the why-not row names the operator; compile refuses the same way."""
    pt2 = tmp_path / "inv.pt2"
    torch.export.save(torch.export.export(_Inverse().eval(), (torch.rand(1, 4),)), pt2)
    res = cli("check", pt2, "--target", "cpu", "--json")
    assert res.exit_code == 4, (res.stdout, res.stderr)
    rows = __import__("json").loads(res.stdout)["violations"]
    assert [(r["layer"], r["rule"]) for r in rows] == [("aten::linalg_inv", "onnx-export")]
    assert "\x1b" not in rows[0]["detail"]
    out = tmp_path / "out"
    res = cli("compile", pt2, "--target", "cpu", "-o", out)
    assert res.exit_code == 4 and "aten::linalg_inv" in res.stdout + res.stderr
    _assert_clean(out)


class _GruOnly(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(6, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0][:, -1]


def test_int8_without_any_ort_kernel_is_refused(cli, tmp_path):
    """An INT8 graph in which ONNX Runtime runs no integer kernel (a GRU: none exists) would be FP32
    plus conversions: refused with a why-not row naming the op, nothing written."""
    pt2 = tmp_path / "gru.pt2"
    torch.manual_seed(0)
    torch.export.save(torch.export.export(_GruOnly().eval(), (torch.rand(1, 5, 6),)), pt2)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((8, 5, 6), dtype=np.float32))
    out = tmp_path / "out"
    res = cli("compile", pt2, "--quantize", "int8", "--calib", tmp_path / "calib.npy", "-o", out, "--json")
    assert res.exit_code == 4, (res.stdout, res.stderr)
    assert "int8-no-kernel" in res.stdout + res.stderr and "GRU" in res.stdout + res.stderr
    _assert_clean(out)
    assert cli("compile", pt2, "-o", out).exit_code == 0  # FP32 is fine


# ---- options: type, range, convention (issue 7 item 5, issue 15 item 12) -----------------------------
@pytest.mark.parametrize(
    ("toml", "words"),
    [
        (
            '[compile]\ncalib_samples = "16"\n',
            ["calib_samples must be an integer", "'16' (a string)", "[compile]"],
        ),
        ("[compile]\ntimesteps = 0\n", ["timesteps must be >= 1, got 0"]),
        ('[compile]\ninput_shape = "1,a"\n', ["input_shape '1,a' is not a list of integers"]),
        ("[compile]\ntrust_pickle = 1\n", ["trust_pickle must be true or false"]),
        ('[compile]\npasses = "fold-bn"\n', ["passes must be a list of passes"]),
        ("[verify]\nmin_agreement = 99\n", ["min_agreement 99 is ambiguous", "99%", "0.99"]),
        ("[bench]\nthreads = -1\n", ["threads must be >= 1"]),
        ("[benchmark]\nthreads = 1\n", ["unknown section(s): benchmark", "[bench]"]),
        ("compile = 3\n", ["'compile' must be a [compile] section"]),
        ("[target.loihi]\nweight_bits = 9\n", ["target 'loihi' option weight_bits must be <= 8, got 9"]),
        ('[target.loihi]\nweight_bits = "4"\n', ["weight_bits must be an integer", "(a string)"]),
        ("[target.cpu]\nthreads = 2\n", ["unknown option(s) of target 'cpu': threads", "none"]),
    ],
)
def test_edgec_toml_values_are_type_checked(cli_proc, tmp_path, toml, words):
    """A wrongly typed edgec.toml value was exit 1 "internal error" (issue 7 item 5)."""
    (tmp_path / "edgec.toml").write_text(toml)
    target = ["--target", "loihi"] if "loihi" in toml else []
    verb = ["verify", "nowhere"] if "[verify]" in toml else ["bench", "nowhere"] if "[bench]" in toml else []
    args = verb or ["check", "zoo:digits-snn-mlp" if target else "zoo:digits-cnn", *target]
    res = cli_proc(*args)
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["verify", "ART", "--min-agreement", "99"], ["--min-agreement 99 is ambiguous", "99%"]),
        (["verify", "ART", "--min-agreement", "150%"], ["--min-agreement must be <= 100%, got 150%"]),
        (["verify", "ART", "--limit", "-3"], ["--limit must be >= 1, got -3"]),
        (["bench", "ART", "--threads", "-1"], ["--threads must be >= 1, got -1"]),
        (["bench", "ART", "--batch-size", "0"], ["--batch-size must be >= 1, got 0"]),
        (["bench", "ART", "--warmup", "-1"], ["--warmup must be >= 0, got -1"]),
        (["report", "zoo:digits-cnn", "--samples", "0"], ["--samples must be >= 1, got 0"]),
        (["report", "zoo:digits-cnn", "--weight-bits", "64"], ["--weight-bits must be <= 32"]),
        (["report", "zoo:digits-cnn", "--baseline", "b.json", "--max-increase", "5"], ["ambiguous", "5%"]),
        (
            ["compile", "zoo:digits-cnn", "--calib-method", "median"],
            ["unknown --calib-method 'median'", "entropy"],
        ),
        (["compile", "zoo:digits-cnn", "--timesteps", "0"], ["--timesteps must be >= 1"]),
        (
            ["compile", "zoo:digits-cnn", "--pass", "fold-bn:bits=4"],
            ["unknown option(s) of pass 'fold-bn': bits"],
        ),
        (["compile", "zoo:digits-cnn", "--pass", "fold-bn:bits"], ["'bits' is not KEY=VALUE"]),
        (
            ["compile", "zoo:digits-snn-mlp", "-t", "loihi", "--quantize", "int8"],
            ["target 'loihi' has no precision 'int8'"],
        ),
        (
            ["compile", "zoo:digits-snn-mlp", "-t", "loihi", "--target-option", "weight_bits=1"],
            ["target 'loihi' option weight_bits must be >= 2, got 1"],
        ),
        (
            ["compile", "zoo:digits-cnn", "--target-option", "threads=2"],
            ["unknown option(s) of target 'cpu'"],
        ),
        (["compile", "zoo:digits-cnn", "--image-resize", "zoom"], ["unknown --image-resize 'zoom'", "crop"]),
    ],
)
def test_option_values_are_checked(cli, digits_fp32, tmp_path, args, words):
    """--limit -3 was an internal error, --threads -1 was accepted, --min-agreement 99 meant 9900 %."""
    args = [str(digits_fp32) if a == "ART" else a for a in args]
    out = tmp_path / "out"
    if args[0] == "compile":
        args += ["-o", str(out)]
    _fails(cli, args, 2, *words)
    _assert_clean(out)


def test_api_option_values_are_checked(tmp_path):
    import edgec

    with pytest.raises(UsageError, match="calib_samples must be an integer"):
        edgec.compile("zoo:digits-cnn", calib_samples="16", out=tmp_path / "a")
    with pytest.raises(UsageError, match="min_agreement 99 is ambiguous"):
        edgec.verify(tmp_path, min_agreement=99)
    with pytest.raises(UsageError, match="unknown option calib_sample="):
        edgec.compile("zoo:digits-cnn", calib_sample=16, out=tmp_path / "b")
    _assert_clean(tmp_path / "a")
