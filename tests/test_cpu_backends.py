"""The CPU target on its two runtimes (issue 17): OpenVINO beside ONNX Runtime, chosen at compile, asked
with --backend at compile / run / verify / bench, the precision that ran checked, the options (spinning,
pinning, device, precision) reaching the runtimes. Needs OpenVINO (`make setup` installs it; CI sets
EDGEC_REQUIRE_OPENVINO=1 so that a missing one fails instead of skipping). Without it:
test_cpu_backends_without_openvino.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import require_module

import edgec
from edgec.targets.cpu import choice
from edgec.targets.cpu import openvino_backend as ovb
from edgec.targets.cpu.options import CpuOptions

ov = require_module("openvino", "EDGEC_REQUIRE_OPENVINO", "the CPU target's openvino backend")
HOLDOUT = "builtin:digits:holdout"


def _cpu_has_bf16() -> bool:
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in caps


@pytest.fixture(scope="module")
def digits_ov(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zoo:digits-cnn in FP32, compiled for OpenVINO."""
    out = tmp_path_factory.mktemp("ov") / "digits-fp32-ov"
    edgec.compile("zoo:digits-cnn", target="cpu", backend="openvino", out=out)
    return out


@pytest.fixture(scope="module")
def digits_ov_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ov") / "digits-int8-ov"
    edgec.compile(
        "zoo:digits-cnn", target="cpu", quantize="int8", calib="builtin:digits", backend="openvino", out=out
    )
    return out


def _torch_logits(x: np.ndarray) -> np.ndarray:
    import torch

    from edgec.models import ZOO

    model = ZOO["digits-cnn"].build().eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


# ---- precision: FP32 runs at f32 ---------------------------------------------------------------------
def test_openvino_runs_fp32_at_f32(digits_ov: Path) -> None:
    """On CPUs with native bf16 OpenVINO's default is bf16; an FP32 artifact asks for f32, and gets it."""
    x, _ = edgec.open_dataset(HOLDOUT).arrays(200)
    session = edgec.get_target("cpu").session(edgec.Artifact.open(digits_ov))
    rt = session.runtime
    assert rt["backend"] == "openvino" and rt["precision"] == "f32"
    assert rt["compute_layers"] == {"Convolution": {"f32": 2}, "FullyConnected": {"f32": 2}}
    ref = _torch_logits(x)
    err = float(np.abs(session(x)["output"] - ref).max())
    assert err <= 1e-4 * float(np.abs(ref).max())  # f32 level (bf16 gives ~1e-2 of the range)


def test_verify_fails_when_openvino_runs_an_fp32_artifact_below_f32(
    digits_ov: Path, cli: Any, monkeypatch: Any
) -> None:
    """Without edgec's precision hint, OpenVINO runs at its default: bf16 on this CPU. verify says so (exit
    5): the check reads the precision back from the compiled model, it does not trust the setting."""
    if not _cpu_has_bf16():
        pytest.skip("this CPU has no native bf16: OpenVINO's default is already f32 here")
    real = ovb.properties

    def without_hint(opts: CpuOptions, threads: int | None) -> dict[str, Any]:
        props = real(opts, threads)
        del props["INFERENCE_PRECISION_HINT"]
        return props

    monkeypatch.setattr(ovb, "properties", without_hint)
    res = cli("verify", digits_ov, "--json")
    assert res.exit_code == 5
    assert "computed in bf16, not in the f32 the artifact was compiled for" in res.stderr
    monkeypatch.undo()
    res = cli("verify", digits_ov, "--json")
    assert res.exit_code == 0, res.stderr
    metrics = json.loads(res.stdout)["metrics"]
    assert metrics["runtime"]["precision"] == "f32" and metrics["f32_level"] <= 1.0


def test_bf16_is_asked_for_and_then_checked_as_bf16(tmp_path: Path, cli: Any) -> None:
    res = cli("compile", "zoo:digits-cnn", "--target-option", "precision=bf16", "-o", tmp_path / "a",
              "--json")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    tr = json.loads(res.stdout)["target_report"]
    assert tr["backend"] == "openvino" and tr["inference_precision"] == "bf16"
    assert tr["backend_choice"]["how"] == "precision bf16: OpenVINO only"
    res = cli("verify", tmp_path / "a", "--json")
    assert res.exit_code == 0, res.stderr  # top-1 agreement; no f32-level error is asked of bf16
    ran = json.loads(res.stdout)["metrics"]["runtime"]
    assert ran["precision"] == ("bf16" if _cpu_has_bf16() else "f32")
    # ONNX Runtime's CPU provider has no bf16: asking for both is a usage error, nothing is written
    res = cli("compile", "zoo:digits-cnn", "--backend", "onnxruntime", "--target-option", "precision=bf16",
              "-o", tmp_path / "b")  # fmt: skip
    assert res.exit_code == 2 and "f32 only, not bf16" in res.stderr
    assert not (tmp_path / "b").exists()


# ---- the artifact ------------------------------------------------------------------------------------
def test_openvino_artifact_is_model_onnx_plus_its_ir(digits_ov: Path, digits_ov_int8: Path) -> None:
    from conftest import assert_files_hashed

    for art, weights in ((digits_ov, {"f32"}), (digits_ov_int8, {"i8"})):
        rep = assert_files_hashed(art)
        assert {f["path"] for f in rep["files"].values()} >= {"model.onnx", "model.xml", "model.bin"}
        tr = rep["target_report"]
        assert tr["backend"] == "openvino" and tr["runtime"] == f"openvino {ovb.version()}"
        assert tr["backend_choice"]["how"] == "asked (--backend openvino)"
        model = ov.Core().read_model(str(art / "model.xml"))
        kernels = {  # [out, in, kh, kw] constants (per-channel scales are [out, 1, 1, 1])
            op.get_output_element_type(0).get_type_name()
            for op in model.get_ordered_ops()
            if op.get_type_name() == "Constant"
            and len(shape := list(op.get_output_shape(0))) == 4
            and np.prod(shape[1:]) > 1
        }
        assert kernels == weights  # conv weights: f32 in FP32, compressed to int8 in INT8
    int8_bin = (digits_ov_int8 / "model.bin").stat().st_size
    assert int8_bin < 0.4 * (digits_ov / "model.bin").stat().st_size


def test_int8_runs_in_integer_arithmetic_on_openvino(digits_ov_int8: Path) -> None:
    x, y = edgec.open_dataset(HOLDOUT).arrays()
    session = edgec.get_target("cpu").session(edgec.Artifact.open(digits_ov_int8))
    layers = session.runtime["compute_layers"]
    assert layers == {"Convolution": {"int8": 2}, "FullyConnected": {"int8": 2}}, layers
    ort = edgec.run(digits_ov_int8, x, backend="onnxruntime")["output"]
    out = session(x)["output"]
    assert (out.argmax(1) == ort.argmax(1)).mean() >= 0.99  # the same INT8 graph on either runtime
    assert (out.argmax(1) == y).mean() >= 0.95


# ---- --backend at run, verify, bench -----------------------------------------------------------------
def test_each_command_runs_on_the_backend_asked(digits_ov: Path, cli: Any, tmp_path: Path) -> None:
    x, _ = edgec.open_dataset(HOLDOUT).arrays(16)
    np.save(tmp_path / "x.npy", x)
    ys = {}
    for backend in ("onnxruntime", "openvino"):
        res = cli("run", digits_ov, "-i", tmp_path / "x.npy", "-o", tmp_path / f"{backend}.npy",
                  "--backend", backend)  # fmt: skip
        assert res.exit_code == 0, res.stderr
        ys[backend] = np.load(tmp_path / f"{backend}.npy")
        res = cli("verify", digits_ov, "--backend", backend, "--json")
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["metrics"]["runtime"]["backend"] == backend
        res = cli("bench", digits_ov, "--backend", backend, "--threads", "1", "--iterations", "5", "--json")
        assert res.exit_code == 0, res.stderr
        bench = json.loads(res.stdout)
        assert bench["backend"] == backend and bench["runtime"]["precision"] == "f32"
        if backend == "openvino":  # read back from the compiled model
            assert bench["runtime"]["threads"] == 1 and bench["runtime"]["pinning"] is False
    assert np.abs(ys["openvino"] - ys["onnxruntime"]).max() <= 1e-4 * np.abs(ys["onnxruntime"]).max()
    res = cli("bench", digits_ov, "--iterations", "3")  # the artifact's own backend by default
    assert res.exit_code == 0, res.stderr
    assert "on backend openvino" in res.stdout and f"openvino {ovb.version()}" in res.stdout
    assert "precision f32" in res.stdout


def test_the_default_is_the_runtime_timed_faster_at_compile(digits_fp32: Path) -> None:
    """compile times both runtimes on the artifact and records the timing and the rule it applied."""
    tr = json.loads((digits_fp32 / "report.json").read_text())["target_report"]
    c = tr["backend_choice"]
    assert c["how"] == "timed at compile" and c["rounds"] == choice.ROUNDS
    assert set(c["median_ms"]) == {"onnxruntime", "openvino"}
    want = "openvino" if c["ratio"]["openvino_to_onnxruntime"] <= choice.MARGIN else "onnxruntime"
    assert tr["backend"] == c["chosen"] == want
    assert c["outputs_max_abs_difference"] < 1e-4
    files = json.loads((digits_fp32 / "report.json").read_text())["files"]
    assert ("openvino" in files) == (want == "openvino")  # the IR only where OpenVINO is what runs


def test_the_choice_keeps_onnxruntime_unless_openvino_is_clearly_faster() -> None:
    import time

    def slow(ms: float) -> Any:
        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            time.sleep(ms / 1e3)
            return {"output": x}

        return run

    x = np.zeros((1, 2), np.float32)
    picked, rep = choice.choose({"onnxruntime": slow(4), "openvino": slow(1)}, x, threads=None)
    assert picked == "openvino" and rep["ratio"]["openvino_to_onnxruntime"] < 0.5
    picked, rep = choice.choose({"onnxruntime": slow(1), "openvino": slow(4)}, x, threads=None)
    assert picked == "onnxruntime" and rep["ratio"]["openvino_to_onnxruntime"] > 2


# ---- options: spinning, pinning, device --------------------------------------------------------------
def test_spinning_reaches_onnx_runtime(tmp_path: Path, monkeypatch: Any) -> None:
    import onnxruntime as ort

    seen: list[str] = []
    real = ort.InferenceSession

    class Recording(real):  # type: ignore[misc,valid-type]  # the real session; its options recorded
        def __init__(self, path: Any, sess_options: Any = None, *args: Any, **kwargs: Any) -> None:
            try:
                seen.append(sess_options.get_session_config_entry("session.intra_op.allow_spinning"))
            except (AttributeError, RuntimeError):  # not set (no options, or ORT's default)
                seen.append(None)
            super().__init__(path, sess_options, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Recording)
    for spinning, want in ((None, "0"), (True, "1")):
        opts = {} if spinning is None else {"cpu": {"spinning": spinning}}
        out = tmp_path / f"spin-{spinning}"
        cfg = edgec.CompileConfig(target_options=opts)
        edgec.compile("zoo:digits-cnn", target="cpu", backend="onnxruntime", config=cfg, out=out)
        seen.clear()
        edgec.bench(out, iterations=2, warmup=0)
        assert seen == [want]


def test_pinning_reaches_openvino(tmp_path: Path) -> None:
    out = tmp_path / "pinned"
    cfg = edgec.CompileConfig(target_options={"cpu": {"pinning": True}})
    edgec.compile("zoo:digits-cnn", target="cpu", backend="openvino", config=cfg, out=out)
    res = edgec.bench(out, iterations=2, warmup=0, threads=1)
    assert res.runtime is not None and res.runtime["pinning"] is True and res.runtime["threads"] == 1


def test_a_device_that_is_not_here_exits_7_naming_what_is(tmp_path: Path, cli: Any) -> None:
    """Intel GPU / NPU: untestable here. compile writes the IR and records the device; running it where
    the device is absent says so (exit 7) with the devices OpenVINO sees."""
    res = cli("compile", "zoo:digits-cnn", "--target-option", "device=GPU", "-o", tmp_path / "gpu", "--json")
    assert res.exit_code == 0, res.stderr
    tr = json.loads(res.stdout)["target_report"]
    assert tr["backend"] == "openvino" and tr["openvino"]["device"] == "GPU"
    if any(d.startswith("GPU") for d in ov.Core().available_devices):
        pytest.skip("an Intel GPU is present here")
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    res = cli("run", tmp_path / "gpu", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert res.exit_code == 7
    assert "OpenVINO device GPU is not present on this machine (OpenVINO sees: CPU" in res.stderr
    # the portable model.onnx still runs here, on the CPU
    res = cli("run", tmp_path / "gpu", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--backend",
              "onnxruntime")  # fmt: skip
    assert res.exit_code == 0, res.stderr


def test_device_names_and_properties() -> None:
    assert ovb.named_devices("GPU.1") == ["GPU.1"]
    assert ovb.named_devices("AUTO:GPU,CPU") == ["GPU", "CPU"]
    assert ovb.named_devices("AUTO") == []
    cpu = ovb.properties(CpuOptions(), 2)
    assert cpu == {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
        "INFERENCE_NUM_THREADS": 2,
    }
    gpu = ovb.properties(CpuOptions(device="GPU", precision="f16"), 2)
    assert gpu == {"INFERENCE_PRECISION_HINT": "f16", "PERFORMANCE_HINT": "LATENCY"}  # no CPU threads


# ---- verify on both runtimes: the zoo CNNs and a user's torch.export program ---------------------------
def _user_pt2(tmp_path: Path) -> tuple[str, str]:
    from user_models import save_data, save_export, small_cnn

    pt2 = save_export(small_cnn(), tmp_path / "cnn.pt2", (3, 16, 16))
    return str(pt2), str(save_data(tmp_path / "data.npz", (3, 16, 16), n=32))


@pytest.mark.parametrize("model", ["zoo:digits-cnn", "zoo:resnet20", "user .pt2"])
def test_verify_passes_on_both_runtimes_at_f32_level(model: str, tmp_path: Path) -> None:
    """FP32 artifacts of the zoo CNNs and of a user-exported .pt2, verified on each runtime: top-1
    agreement with the source model and a max-abs error at f32 level (bf16 would be ~4x over it)."""
    if model == "user .pt2":
        model, data = _user_pt2(tmp_path)
    elif model == "zoo:resnet20":
        from user_models import save_data

        data = str(save_data(tmp_path / "data.npz", (3, 32, 32), n=16))
    else:
        data = HOLDOUT
    art = edgec.compile(model, target="cpu", backend="openvino", out=tmp_path / "fp32")
    metrics = {}
    for backend in ("onnxruntime", "openvino"):
        res = edgec.verify(art.path, data=data, limit=64, backend=backend)
        m = res.metrics
        assert res.passed and m["top1_agreement"] == 1.0, m
        assert m["runtime"]["backend"] == backend and m["runtime"]["precision"] == "f32"
        assert m["f32_level"] <= 0.1, m  # measured ~1e-3 on both; bf16 runs measure > 1
        metrics[backend] = m
    if model == "zoo:digits-cnn":  # a trained model: its accuracy, equal on either runtime
        assert metrics["openvino"]["accuracy_artifact"] == metrics["onnxruntime"]["accuracy_artifact"] >= 0.9


def test_int8_of_a_user_pt2_verifies_on_both_runtimes(tmp_path: Path) -> None:
    model, data = _user_pt2(tmp_path)
    art = edgec.compile(model, target="cpu", quantize="int8", calib=data, backend="openvino",
                        out=tmp_path / "int8")  # fmt: skip
    for backend in ("onnxruntime", "openvino"):
        res = edgec.verify(art.path, data=data, backend=backend)
        assert res.passed and res.metrics["top1_agreement"] >= 0.95, res.metrics
        assert res.metrics["runtime"]["backend"] == backend
    layers = edgec.get_target("cpu").session(art).runtime["compute_layers"]  # type: ignore[attr-defined]
    assert set(layers["Convolution"]) == {"int8"}, layers


def test_an_output_folder_with_a_comma_compiles_for_openvino(tmp_path: Path, cli: Any) -> None:
    """OpenVINO's convert_model reads a path string with a comma as a list of paths: `-o "run 3, fp32"`
    was an internal error ("'.../.run 3' does not exist")."""
    out = tmp_path / "run 3, fp32"
    res = cli("compile", "zoo:digits-cnn", "--backend", "openvino", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert (out / "model.xml").is_file()
    assert cli("verify", out, "--backend", "openvino").exit_code == 0
