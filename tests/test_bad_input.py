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
        (
            "digits_sd",
            ["--arch", "digits-cnn", "--backend", "tensorrt"],
            2,
            ["target 'cpu' has no backend 'tensorrt'", "onnxruntime, openvino"],
        ),
        (
            "digits_sd",
            ["--arch", "digits-cnn", "--target", "jetson", "--backend", "tensorrt"],
            2,
            ["target 'jetson' builds one artifact for all its backends", "(onnxruntime, tensorrt)"],
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
    # --force replaces only an earlier edgec artifact: a folder with other files is never deleted
    _fails(cli, ["compile", "zoo:digits-cnn", "-o", str(out), "--force"], 2, "holds other files (keep.txt)")
    assert (out / "keep.txt").read_text() == "user data"
    (out / "keep.txt").unlink()  # an empty folder holds nothing to lose
    res = cli("compile", "zoo:digits-cnn", "-o", str(out))
    assert res.exit_code == 0, res.stderr
    res = cli("compile", "zoo:digits-cnn", "-o", str(out), "--force")  # an earlier artifact: replaced
    assert res.exit_code == 0, res.stderr
    (out / "notes.txt").write_text("mine")  # the user added a file to the artifact: it is no longer ours
    _fails(cli, ["compile", "zoo:digits-cnn", "-o", str(out), "--force"], 2, "holds other files (notes.txt)")
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("where", [".", "CWD", "..", "sub/.."])
def test_force_never_replaces_the_working_directory(cli, tmp_path, monkeypatch, where):
    """`edgec compile tab.pt2 -o . --force` deleted everything in the folder, the source model included,
    set it to mode 0700 and left a `..tmp-*` folder (issue 15 item 1)."""
    from user_models import save_export

    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    model = save_export(torch.nn.Linear(6, 3).eval(), work / "tab.pt2", (6,))
    (work / "notes.txt").write_text("my notes")
    mode = work.stat().st_mode
    monkeypatch.chdir(work / "sub" if where == ".." else work)
    out = str(work) if where == "CWD" else where
    _fails(cli, ["compile", str(model), "-o", out, "--force"], 2, "working directory", "-o out/model")
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "sub", "tab.pt2"]
    assert (work / "notes.txt").read_text() == "my notes" and work.stat().st_mode == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_force_never_replaces_a_folder_holding_the_source_model(cli, tmp_path):
    out = tmp_path / "art"
    assert cli("compile", "zoo:digits-cnn", "-o", str(out)).exit_code == 0
    from user_models import save_export

    (out / "source").mkdir()
    model = save_export(torch.nn.Linear(6, 3).eval(), out / "source" / "m.pt2", (6,))
    _fails(cli, ["compile", str(model), "-o", str(out), "--force"], 2, "holds the source model")
    assert model.is_file()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_artifacts_keep_the_users_umask(cli, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        res = cli("compile", "zoo:digits-cnn", "-o", str(tmp_path / "a"))
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "a").stat().st_mode & 0o777 == mode
    assert (tmp_path / "a" / "model.onnx").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("damage", ["delete", "truncate", "flip"])
def test_damaged_artifact_says_which_file(cli, digits_fp32, loihi_mlp, tmp_path, damage):
    """A deleted or truncated model.onnx / network.net was "internal error ... report it" in run, verify
    and bench (issue 15 item 2): report.json's sha256 is checked on open, exit 3."""
    import shutil

    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 8, 8), np.float32))
    for src, name in ((digits_fp32, "model.onnx"), (loihi_mlp, "network.net")):
        art = tmp_path / f"{damage}-{src.name}"
        shutil.copytree(src, art)
        f = art / name
        if damage == "delete":
            f.unlink()
        elif damage == "truncate":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        else:
            blob = bytearray(f.read_bytes())
            blob[len(blob) // 2] ^= 0x01
            f.write_bytes(bytes(blob))
        want = f"artifact damaged: {name}" + (" (model) is missing" if damage == "delete" else "")
        if src == loihi_mlp and damage == "delete":
            want = f"artifact damaged: {name} (network) is missing"
        for args in (
            ["verify", art],
            ["bench", art, "--iterations", "2"],
            ["run", art, "-i", x, "-o", tmp_path / "y.npy"],
        ):
            line = _fails(cli, [str(a) for a in args], 3, want)
            assert damage == "delete" or "changed since compile" in line
        assert not (tmp_path / "y.npy").exists()


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
        (
            "[target.cpu]\nthreads = 2\n",
            ["unknown option(s) of target 'cpu': threads", "its options are: precision, spinning, pinning"],
        ),
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
        # an empty data source opened the working directory as an image folder (or was ignored)
        (["compile", "zoo:digits-cnn", "--quantize", "int8", "--calib", ""], ["--calib is empty"]),
        (["compile", "zoo:digits-snn-mlp", "-r", "qp-snn", "--train-data", " "], ["--train-data is empty"]),
        (["verify", "ART", "--data", ""], ["--data is empty", "leave it out for the default"]),
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


def test_fold_bn_without_running_statistics_is_a_model_error(cli, tmp_path):
    """BatchNorm2d(track_running_stats=False) hit an assert: an internal error (issue 7 item 6)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4, track_running_stats=False), torch.nn.Flatten()
    ).eval()
    torch.save(model, tmp_path / "m.pt")
    res = cli(
        "compile", tmp_path / "m.pt", "--trust-pickle", "--input-shape", "1,1,6,6", "--pass", "fold-bn",
        "-o", tmp_path / "o",
    )  # fmt: skip
    assert res.exit_code == 3, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "track_running_stats=False" in lines[0] and "'1'" in lines[0]
    assert not (tmp_path / "o").exists()


def test_several_inputs_are_refused_plainly(cli, tmp_path):
    """A forward(x, y) model got the circular advice "pass the model's real input shape with
    --input-shape" (issue 15 item 7): one input is supported, and the error says what to do."""
    from user_models import TwoInputs

    torch.manual_seed(0)
    m = TwoInputs().eval()
    pt2 = tmp_path / "xy.pt2"
    torch.export.save(torch.export.export(m, (torch.rand(1, 20), torch.rand(1, 10))), pt2)
    ts = tmp_path / "xy.pt"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(m, (torch.rand(1, 20), torch.rand(1, 10))), ts)
    for args in ([pt2], [ts, "--input-shape", "1,20"]):
        res = cli("compile", *args, "-o", tmp_path / "o")
        assert res.exit_code == 3, res.stderr
        line = res.stderr.strip()
        assert "takes 2 inputs (x, y)" in line and "one input tensor" in line and "wrap the model" in line
        assert "--input-shape" not in line
    import edgec

    with pytest.raises(ModelError, match=r"takes 2 inputs \(x, y\)"):
        edgec.compile(m, input_shape=(1, 20), out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ---- messages a user can act on (issue 15 item 14) --------------------------------------------------
def test_run_input_files_say_what_is_wrong(cli, digits_fp32, tmp_path):
    """`run --input data.npz` said "input has dtype <U1"; a garbage .npz "contains pickled data"."""
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(3))
    res = cli("run", digits_fp32, "--input", tmp_path / "data.npz", "--output", tmp_path / "y.npy")
    assert res.exit_code == 0, res.stderr  # an .npz's x array is the input
    np.savez(tmp_path / "two.npz", a=x, b=x)
    _fails(
        cli,
        ["run", str(digits_fp32), "-i", str(tmp_path / "two.npz"), "-o", str(tmp_path / "z.npy")],
        3,
        "holds 2 arrays (a, b)",
        "x",
    )
    (tmp_path / "garbage.npz").write_bytes(b"this is no numpy file at all\n")
    line = _fails(
        cli,
        ["run", str(digits_fp32), "-i", str(tmp_path / "garbage.npz"), "-o", str(tmp_path / "z.npy")],
        3,
        "is not a NumPy .npy / .npz file",
    )
    assert "pickled" not in line
    _fails(
        cli,
        [
            "compile",
            "zoo:digits-cnn",
            "--quantize",
            "int8",
            "--calib",
            str(tmp_path / "garbage.npz"),
            "-o",
            str(tmp_path / "c"),
        ],
        3,
        "is not a NumPy .npy / .npz file",
    )
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    _fails(
        cli,
        ["run", str(digits_fp32), "-i", str(tmp_path / "objects.npy"), "-o", str(tmp_path / "z.npy")],
        3,
        "holds Python objects",
    )
    assert not (tmp_path / "z.npy").exists() and not (tmp_path / "c").exists()


def test_pickle_whose_class_cannot_be_imported_says_to_set_pythonpath(cli_proc, tmp_path):
    """A pickled model whose class cannot be imported said only "No module named 'mysnn'"."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mysnn.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__(); self.fc = torch.nn.Linear(4, 2)\n"
        "    def forward(self, x):\n        return self.fc(x)\n"
    )
    import subprocess
    import sys

    code = "import torch, mysnn; torch.save(mysnn.Net().eval(), 'm.pt')"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "lib", check=True, timeout=120)
    args = [
        "compile",
        tmp_path / "lib" / "m.pt",
        "--trust-pickle",
        "--input-shape",
        "1,4",
        "-o",
        tmp_path / "o",
    ]
    res = cli_proc(*args)
    assert res.exit_code == 3, res.stderr
    line = res.stderr.strip()
    assert "'mysnn'" in line and "PYTHONPATH" in line and len(line.splitlines()) == 1
    res = cli_proc(*args, env={"PYTHONPATH": str(tmp_path / "lib")})  # what the message says works
    assert res.exit_code == 0, res.stderr


# ---- image folders (issue 15 item 9) -------------------------------------------------------------------
@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)  # 64 x 48 RGB
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


def test_image_folder_of_another_size_names_the_options(cli, image_folder, tmp_path):
    from user_models import CNN_SHAPE, save_export, small_cnn

    model = save_export(small_cnn(), tmp_path / "cnn.pt2", CNN_SHAPE)  # takes 3 x 16 x 16
    args = ["compile", str(model), "--quantize", "int8", "--calib", str(image_folder)]
    line = _fails(cli, [*args, "-o", str(tmp_path / "a")], 3, "is 64 x 48 pixels", "takes 16 x 16")
    assert "--image-resize" in line and "--image-normalize imagenet" in line
    _assert_clean(tmp_path / "a")
    res = cli(
        *args, "--image-resize", "crop", "--image-normalize", "imagenet", "-o", str(tmp_path / "b"), "--json"
    )
    assert res.exit_code == 0, res.stderr
    import json

    assert json.loads(res.stdout)["target_report"]["quantization"]["calibration_samples"] == 6


def test_image_transforms_compute_what_the_docs_say(image_folder):
    """crop: shorter side to 16 / 0.875 = 18.3 -> 18 pixels, centre 16 x 16; imagenet: (x - mean) / std."""
    from PIL import Image

    import edgec

    data = edgec.open_dataset(
        str(image_folder), input_shape=(3, 16, 16), images={"resize": "crop", "normalize": "imagenet"}
    )
    x, y = data.arrays()
    assert x.shape == (6, 3, 16, 16) and list(y) == [0, 0, 0, 1, 1, 1]
    with Image.open(image_folder / "cat" / "0.png") as img:
        small = img.resize((24, 18), Image.Resampling.BILINEAR)  # 64 x 48 scaled by 18 / 48
        crop = np.asarray(small.crop((4, 1, 20, 17)), dtype=np.float32) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    want = ((crop - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0], want, atol=1e-5)
    fit = edgec.open_dataset(str(image_folder), input_shape=(1, 16, 16), images={"resize": "fit"})
    g, _ = fit.arrays(1)
    assert g.shape == (1, 1, 16, 16) and g.min() >= 0.0 and g.max() <= 1.0  # grey, [0, 1]


def test_data_of_another_shape_for_an_export_says_what_to_do(cli, tmp_path):
    """For a torch.export .pt2 the advice "pass the right --input-shape" was circular: the graph fixes it."""
    from user_models import CNN_SHAPE, save_export, small_cnn

    model = save_export(small_cnn(), tmp_path / "cnn.pt2", CNN_SHAPE)
    np.save(tmp_path / "bad.npy", np.random.default_rng(0).random((5, 3, 8, 8), dtype=np.float32))
    args = [
        "compile",
        str(model),
        "--quantize",
        "int8",
        "--calib",
        str(tmp_path / "bad.npy"),
        "-o",
        str(tmp_path / "o"),
    ]
    line = _fails(
        cli, args, 3, "shape (3, 8, 8)", "exported for inputs of shape (3, 16, 16)", "--image-resize"
    )
    assert "--input-shape" not in line
    _assert_clean(tmp_path / "o")
