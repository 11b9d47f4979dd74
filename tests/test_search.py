"""`edgec search` end to end on the spiking MLP of the zoo (no fine-tuning: epochs 0, 32 held-out samples):
the front, the same trials however they run, resume after a killed driver, a killed worker, a refused target.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import interruptible

import edgec
from edgec.data import open_dataset

pytestmark = pytest.mark.slow

MODEL = "zoo:digits-snn-mlp"
BASE: dict[str, Any] = {
    "target": "loihi,cpu",
    "train_data": "builtin:digits",
    "trials": 4,
    "population": 2,
    "epochs": 0,
    "limit": 32,
    "seed": 3,
}
CLI = [
    "--target",
    "loihi",
    "--train-data",
    "builtin:digits",
    "--epochs",
    "0",
    "--limit",
    "32",
    "--population",
    "2",
]


#: a continuous prune share: a sampler proposes no point twice, so every trial runs a worker
SPACE = (
    '[space]\nrecipes = ["qp-snn:bits={bits},prune={prune}"]\n'
    "[space.params]\nbits = [2, 4, 8]\nprune = {low = 0.0, high = 0.7}\n"
)


def params_by_number(doc: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(t["number"], t["params"]) for t in doc["trials"]]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("search") / "seq"
    result = edgec.search(MODEL, out=out, **BASE)
    doc = json.loads((out / "search.json").read_text())
    return {"out": out, "result": result, "doc": doc}


def _deployed_accuracy(artifact: str, x: np.ndarray, y: np.ndarray) -> float:
    out = np.asarray(next(iter(edgec.run(artifact, x).values())))
    scores = out.sum(1) if out.ndim == 3 else out  # spikes [N, T, classes]: counted over time
    return float((scores.reshape(len(x), -1).argmax(1) == y).mean())


@pytest.mark.parametrize("target", ["loihi", "cpu"])
def test_front_is_non_dominated_complete_and_its_artifacts_deploy(
    sequential: dict[str, Any], target: str
) -> None:
    doc, out = sequential["doc"], sequential["out"]
    assert doc["counts"]["complete"] == 4 and len(doc["trials"]) == 4
    pts = {
        t["number"]: (t["targets"][target]["accuracy"], t["targets"][target]["energy_uj"])
        for t in doc["trials"]
        if t["state"] == "complete" and t["targets"][target]["feasible"]
    }
    assert len(pts) == 4
    expected = {
        i
        for i, (a, e) in pts.items()
        if not any(b >= a and f <= e and (b > a or f < e) for j, (b, f) in pts.items() if j != i)
    }
    assert set(doc["front"][target]) == expected
    assert sequential["result"].front == doc["front"]
    kept = {n for front in doc["front"].values() for n in front}
    x, y = open_dataset("builtin:digits:holdout", purpose="evaluation").arrays(32)
    for t in doc["trials"]:
        row = t["targets"][target]
        trial_dir = out / "trials" / f"trial-{t['number']:04d}"
        if t["number"] in expected:
            # the recorded accuracy is that of the kept artifact, run again here on the same samples
            assert _deployed_accuracy(row["artifact"], x, y) == pytest.approx(row["accuracy"])
            assert row["energy_uj"] > 0 and row["energy_source"] == "estimate"
            assert json.loads((Path(row["artifact"]) / "report.json").read_text())["target"] == target
        elif t["number"] not in kept and t.get("reused_from") is None:
            assert not trial_dir.exists() and row["artifact"] is None  # on no front: removed
    assert (out / "report.md").read_text().count("## Pareto front on") == 2
    assert "<svg" in (out / "report.html").read_text()


def test_a_target_that_refuses_the_model_makes_the_trial_infeasible_with_the_reason(
    cli, tmp_path: Path
) -> None:
    # Loihi keeps 24-bit neuron state: a 4-bit membrane (q-snn) is refused there, the CPU runs it
    space = tmp_path / "space.toml"
    space.write_text('[space]\nrecipes = ["q-snn:bits={bits},state_bits=4"]\n[space.params]\nbits = [4]\n')
    opts = {**BASE, "target": "cpu,loihi", "trials": 1, "space": str(space)}
    res = edgec.search(MODEL, out=tmp_path / "out", **opts)
    (t,) = res.trials
    assert t.state == "complete"
    loihi, cpu = t.targets["loihi"], t.targets["cpu"]
    assert loihi["feasible"] is False and "accuracy" not in loihi
    assert {r["rule"] for r in loihi["why_not"]} == {"membrane-quantization"}
    assert loihi["reason"].startswith("refused (membrane-quantization)")
    assert cpu["feasible"] is True and cpu["accuracy"] is not None
    assert res.front == {"cpu": [0], "loihi": []}
    assert "No feasible trial on loihi" in (tmp_path / "out" / "report.md").read_text()
    # a front member is a model for the other commands: OUT#trial-N
    r = cli("compile", f"{tmp_path / 'out'}#trial-0", "--target", "cpu", "-o", str(tmp_path / "member"))
    assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "member" / "report.json").read_text())["target"] == "cpu"
    r = cli("compile", f"{tmp_path / 'out'}#trial-3", "--target", "cpu", "-o", str(tmp_path / "none"))
    assert r.exit_code == 2 and "trial 3 of the search" in r.stderr and not (tmp_path / "none").exists()


def test_tpe_fitness_and_a_constraint(tmp_path: Path) -> None:
    import optuna

    from edgec.search.objectives import fitness

    res = edgec.search(
        MODEL, out=tmp_path / "tpe", sampler="tpe", constraint=["bytes<=6000"], **{**BASE, "target": "loihi"}
    )
    study = optuna.load_study(study_name="edgec-search", storage=f"sqlite:///{tmp_path / 'tpe' / 'study.db'}")
    assert len(res.trials) == 4
    for t, st in zip(res.trials, study.trials, strict=True):
        row = t.targets["loihi"]
        # told to TPE: accuracy x (1 uJ / energy)^0.07, and how far past the bound the trial is
        assert st.values == [pytest.approx(fitness(row["accuracy"], row["energy_uj"], 0.07))]
        assert st.constraints == {"bytes<=6000": pytest.approx(row["bytes"] - 6000)}
        if row["bytes"] <= 6000:
            assert row["feasible"] is True
        else:
            assert (
                row["feasible"] is False and row["reason"] == f"constraint bytes<=6000 (got {row['bytes']})"
            )
    assert all(t.targets["loihi"]["bytes"] <= 6000 for t in res.front_trials("loihi"))


def test_same_seed_and_space_give_the_same_trials_with_two_workers(
    sequential: dict[str, Any], tmp_path: Path
) -> None:
    result = edgec.search(MODEL, out=tmp_path / "w2", workers=2, **BASE)
    doc = json.loads((tmp_path / "w2" / "search.json").read_text())
    assert params_by_number(doc) == params_by_number(sequential["doc"])
    assert doc["execution"] == {
        "kind": "local",
        "workers": 2,
        "threads_per_trial": 1,
    }
    assert result.front == sequential["result"].front  # the same trials measure the same


@pytest.mark.ray
def test_same_seed_and_space_give_the_same_trials_on_local_ray(
    sequential: dict[str, Any], tmp_path: Path
) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        edgec.search(MODEL, out=tmp_path / "ray", ray="auto", **BASE)
    finally:
        ray.shutdown()
    doc = json.loads((tmp_path / "ray" / "search.json").read_text())
    assert doc["execution"]["kind"] == "ray" and doc["execution"]["cluster_cpus"] == 2
    assert params_by_number(doc) == params_by_number(sequential["doc"])
    assert doc["front"] == sequential["doc"]["front"]


def _wait_for(pred: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _doc(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "search.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def test_a_search_killed_after_k_trials_resumes_to_n_with_none_run_twice(tmp_path: Path) -> None:
    out = tmp_path / "resume"
    (tmp_path / "space.toml").write_text(SPACE)
    cmd = [sys.executable, "-m", "edgec", "search", MODEL, *CLI, "--trials", "3", "-o", str(out)]
    cmd += ["--space", str(tmp_path / "space.toml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        first = _wait_for(lambda: (d := _doc(out)) and d["counts"]["complete"] >= 2 and d, 300, "2 trials")
        # the driver and its workers die mid-search, as on a lost machine
        _wait_for(lambda: (out / "trials" / "trial-0002" / "worker.pid").exists(), 120, "the next batch")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert json.loads((out / "search.json").read_text())["counts"]["complete"] == 2  # never half-written
    before = {t["number"]: t for t in first["trials"] if t["state"] == "complete"}
    r = subprocess.run([*cmd], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "search.json").read_text())
    finished = [t for t in doc["trials"] if t["state"] in ("complete", "failed")]
    assert len(finished) == 3
    for n, t in before.items():  # the trials finished before the kill were not run again
        after = next(x for x in doc["trials"] if x["number"] == n)
        assert (after["wall_s"], after["attempts"]) == (t["wall_s"], t["attempts"])
    ran = [json.dumps(t["params"], sort_keys=True) for t in finished if t.get("reused_from") is None]
    assert len(ran) == len(set(ran))  # no parameter set ran twice
    interrupted = [t for t in doc["trials"] if t["state"] == "interrupted"]
    assert [t["number"] for t in interrupted] == [2]  # killed in its worker: not counted, run again
    for t in interrupted:  # re-queued with the same parameters, and run once
        assert any(x["params"] == t["params"] for x in finished if x["number"] > t["number"])


def test_ctrl_c_stops_with_the_study_saved_and_the_search_resumes(tmp_path: Path) -> None:
    out = tmp_path / "ctrl-c"
    (tmp_path / "space.toml").write_text(SPACE)
    cmd = [sys.executable, "-m", "edgec", "search", MODEL, *CLI, "--trials", "2", "-o", str(out)]
    cmd += ["--space", str(tmp_path / "space.toml")]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=interruptible,
    )
    try:
        _wait_for(lambda: (out / "trials" / "trial-0000" / "worker.pid").exists(), 300, "a worker")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the driver and its workers
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    doc = json.loads((out / "search.json").read_text())
    counts = doc["counts"]
    assert counts["interrupted"] >= 1 and counts["queued"] == counts["interrupted"] and counts["running"] == 0
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "search.json").read_text())
    finished = [t for t in doc["trials"] if t["state"] in ("complete", "failed")]
    assert len(finished) == 2 and all(t["state"] == "complete" for t in finished)


def test_builtin_ann_space_deploys_at_the_precision_the_target_names(tmp_path: Path) -> None:
    opts = {**BASE, "target": "cpu:int8,cpu", "trials": 1}
    res = edgec.search("zoo:digits-cnn", out=tmp_path / "ann", **opts)
    (t,) = res.trials
    assert t.recipes[0].startswith("magnitude-prune:") and t.recipes[1].startswith("uniform-quant:bits=")
    int8, fp32 = t.targets["cpu:int8"], t.targets["cpu"]
    assert int8["energy_table"].startswith("cmos45-int8") and fp32["energy_table"].startswith("cmos45-fp32")
    report = json.loads((Path(int8["artifact"]) / "report.json").read_text())
    assert report["config"]["quantize"] == "int8" and int8["energy_uj"] < fp32["energy_uj"]


@pytest.mark.ray
def test_a_ray_worker_killed_by_sigkill_has_its_task_retried(tmp_path: Path) -> None:
    import threading

    import ray

    (tmp_path / "space.toml").write_text(SPACE)
    out = tmp_path / "ray-kill"
    opts = {**BASE, "target": "loihi", "trials": 1, "space": str(tmp_path / "space.toml")}
    box: dict[str, Any] = {}
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        thread = threading.Thread(
            target=lambda: box.update(res=edgec.search(MODEL, out=out, ray="auto", **opts))
        )
        thread.start()
        pid_file = out / "trials" / "trial-0000" / "worker.pid"
        pid = _wait_for(lambda: pid_file.exists() and int(pid_file.read_text() or 0), 300, "a Ray worker")
        os.kill(pid, signal.SIGKILL)  # a lost worker: Ray runs the task again (max_retries=1)
        thread.join(timeout=600)
    finally:
        ray.shutdown()
    (t,) = box["res"].trials
    assert (t.state, t.attempts) == ("complete", 2)
    assert t.targets["loihi"]["accuracy"] is not None


def test_a_worker_killed_by_sigkill_is_retried_once_then_recorded_failed(tmp_path: Path) -> None:
    out = tmp_path / "kill"
    (tmp_path / "space.toml").write_text(SPACE)
    cmd = [sys.executable, "-m", "edgec", "search", MODEL, *CLI, "--trials", "2", "-o", str(out)]
    cmd += ["--space", str(tmp_path / "space.toml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: list[int] = []

    def kill_worker_of(number: int) -> None:
        pid_file = out / "trials" / f"trial-{number:04d}" / "worker.pid"
        pid = _wait_for(
            lambda: pid_file.exists() and (p := int(pid_file.read_text() or 0)) not in killed and p,
            300,
            "a worker",
        )
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    try:
        kill_worker_of(0)  # once: retried, then completes
        kill_worker_of(1)  # twice: recorded as failed
        kill_worker_of(1)
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    doc = json.loads((out / "search.json").read_text())
    t0, t1 = doc["trials"]
    assert (t0["state"], t0["attempts"]) == ("complete", 2)
    assert (t1["state"], t1["attempts"]) == ("failed", 2)
    assert t1["reason"] == "worker killed by SIGKILL on both attempts"
    assert doc["counts"] == {"complete": 1, "failed": 1, "interrupted": 0, "queued": 0, "running": 0}
    assert not (out / "trials" / "trial-0001").exists()  # a failed trial keeps no artifact
