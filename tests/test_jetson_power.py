"""Jetson power: tegrastats lines from real modules, the INA3221 sysfs reader, energy per inference.

The tegrastats lines are verbatim captures from real AGX Orin and Orin Nano/NX-class modules
(tests/data/tegrastats-samples.txt names their sources). The sysfs tree is a fake laid out as
JetPack 6's ina3221 hwmon driver lays it out (a Jetson's sysfs cannot exist here); the energy
integration is checked on synthetic traces whose integral is known in closed form.
"""

from __future__ import annotations

import datetime as dt
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgec.errors import MissingDependency, UsageError
from edgec.targets.jetson.measure import (
    SysfsSampler,
    TegrastatsSampler,
    check_arrivals,
    default_sampler,
    measure_energy,
)
from edgec.targets.jetson.power import (
    PowerTrace,
    choose_rail,
    energy_per_inference,
    find_ina3221,
    integrate,
    parse_tegrastats,
    read_ina3221,
)

SAMPLES = Path(__file__).parent / "data" / "tegrastats-samples.txt"


def _real_lines() -> list[str]:
    return [ln for ln in SAMPLES.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


# what each real line says, read off the line by hand
EXPECTED = [
    {  # 1: AGX Orin 64GB, JetPack 6 era
        "timestamp": dt.datetime(2025, 4, 11, 10, 36, 27),
        "ram": (4321, 62801),
        "rails": {
            "VDD_GPU_SOC": (2340, 2340),
            "VDD_CPU_CV": (390, 390),
            "VIN_SYS_5V0": (4025, 4025),
            "VDDQ_VDD2_1V8AO": (301, 301),
        },
        "cpus": [(0, 729)] * 12,
        "engines": {"EMC_FREQ": (0, (2133,)), "GR3D_FREQ": (0, (0, 0)), "VIC_FREQ": (None, (729,))},
        "temps": {"cpu": 44.562, "tboard": 32.0, "tj": 44.343, "cv0": None, "gpu": None},
        "default_rail": ("VDD_GPU_SOC+VDD_CPU_CV", 2.73),
    },
    {  # 2: Orin Nano/NX class, 6 cores
        "timestamp": dt.datetime(2025, 5, 15, 18, 30, 28),
        "ram": (6982, 7620),
        "rails": {"VDD_IN": (17946, 15710), "VDD_CPU_GPU_CV": (8896, 7585), "VDD_SOC": (3923, 3515)},
        "cpus": [(97, 1984), (95, 1984), (95, 1984), (91, 1984), (88, 1984), (93, 247)],
        "engines": {
            "GR3D_FREQ": (84, (713,)),
            "NVENC": (1, (115,)),
            "NVDEC": (40, (115,)),
            "VIC": (31, (115,)),
            "EMC_FREQ": (18, (3199,)),
            "NVJPG": "off",
            "NVJPG1": "off",
            "OFA": "off",
            "NVDLA0": "off",
            "PVA0_FREQ": "off",
            "APE": (None, (174,)),
        },
        "temps": {"cpu": 65.562, "gpu": 63.5, "tj": 65.562, "cv2": 60.875},
        "default_rail": ("VDD_IN", 17.946),
    },
    {  # 3: AGX Orin 32GB, JetPack 5 (tegrastats emulator line)
        "timestamp": dt.datetime(2023, 1, 3, 16, 7, 54),
        "ram": (2257, 30536),
        "rails": {
            "VDD_GPU_SOC": (2390, 2390),
            "VDD_CPU_CV": (796, 796),
            "VIN_SYS_5V0": (3522, 3522),
            "VDDQ_VDD2_1V8AO": (301, 301),
        },
        "cpus": [(0, 729)] * 12,
        "engines": {"GR3D_FREQ": (0, (0,)), "GR3D2_FREQ": (0, (0,)), "NVJPG1": (None, (729,))},
        "temps": {"cpu": 41.437, "tdiode": 30.75, "cv1": None},
        "default_rail": ("VDD_GPU_SOC+VDD_CPU_CV", 3.186),
    },
]


def test_sample_file_holds_both_module_families():
    lines = _real_lines()
    assert len(lines) == len(EXPECTED) == 3
    assert "VDD_IN" in lines[1] and "VDD_GPU_SOC" in lines[0]


@pytest.mark.parametrize("i", range(3), ids=["agx-orin-jp6", "orin-nano-nx", "agx-orin-jp5"])
def test_tegrastats_real_lines(i):
    line, exp = _real_lines()[i], EXPECTED[i]
    got = parse_tegrastats(line)
    assert got.timestamp == exp["timestamp"]
    assert (got.ram_used_mb, got.ram_total_mb) == exp["ram"]
    assert {n: (r.current_mw, r.average_mw) for n, r in got.rails.items()} == exp["rails"]
    assert "NC" not in got.rails  # not-connected channels are dropped
    assert list(got.cpus) == exp["cpus"]
    for name, want in exp["engines"].items():
        eng = got.engines[name]
        if want == "off":
            assert eng.off and eng.load_pct is None
        else:
            assert (eng.load_pct, eng.freqs_mhz) == want and not eng.off
    for name, want in exp["temps"].items():
        assert got.temps_c[name] == want
    rail, watts = exp["default_rail"]
    choice = choose_rail(got.rails)
    assert choice.rail == rail
    assert got.power_w(choice.rail) == pytest.approx(watts)


def test_tegrastats_line_without_timestamp_and_offline_core():
    got = parse_tegrastats("RAM 100/200MB CPU [10%@1000,off] VDD_IN 5000mW/4000mW")
    assert got.timestamp is None
    assert got.cpus == ((10, 1000), None)
    assert got.power_w("VDD_IN") == 5.0


def test_tegrastats_rejects_a_line_without_rails():
    with pytest.raises(ValueError, match="power rails"):
        parse_tegrastats("tegrastats: interval 100 ms")


# ---- rails --------------------------------------------------------------------------------------
def test_choose_rail_rules():
    nano = ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    assert choose_rail(nano).rail == "VDD_IN"
    assert choose_rail(nano, "VDD_CPU_GPU_CV+VDD_SOC").rail == "VDD_CPU_GPU_CV+VDD_SOC"
    with pytest.raises(UsageError, match="module input rail"):
        choose_rail(nano, "VDD_IN+VDD_SOC")
    with pytest.raises(UsageError, match="not on this device"):
        choose_rail(nano, "VDD_GPU")
    with pytest.raises(UsageError, match="no known total rail"):
        choose_rail(["VDD_SOC"])
    agx = choose_rail(["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"])
    assert agx.rail == "VDD_GPU_SOC+VDD_CPU_CV" and "VIN_SYS_5V0" in agx.note


# ---- INA3221 sysfs ------------------------------------------------------------------------------
def _ina3221(root: Path, device: str, hwmon: str, channels: dict[int, tuple[str, int, int]]) -> Path:
    d = root / "bus/i2c/drivers/ina3221" / device / "hwmon" / hwmon
    d.mkdir(parents=True)
    for k, (label, mv, ma) in channels.items():
        (d / f"in{k}_label").write_text(label + "\n")
        (d / f"in{k}_input").write_text(f"{mv}\n")
        (d / f"curr{k}_input").write_text(f"{ma}\n")
        (d / f"in{k + 3}_input").write_text("12\n")  # shunt voltage channels: not power
    return d


@pytest.fixture
def orin_nano_sysfs(tmp_path: Path) -> Path:
    _ina3221(
        tmp_path,
        "1-0040",
        "hwmon3",
        {1: ("VDD_IN", 5000, 1200), 2: ("VDD_CPU_GPU_CV", 5000, 400), 3: ("VDD_SOC", 5000, 300)},
    )
    return tmp_path


def test_ina3221_reader_on_a_fake_sysfs(orin_nano_sysfs, tmp_path):
    _ina3221(tmp_path, "1-0041", "hwmon4", {1: ("NC", 0, 0), 2: ("VDDQ_VDD2_1V8AO", 1800, 150)})
    chans = find_ina3221(tmp_path)
    assert [(c.label, c.device) for c in chans] == [
        ("VDD_IN", "1-0040"),
        ("VDD_CPU_GPU_CV", "1-0040"),
        ("VDD_SOC", "1-0040"),
        ("VDDQ_VDD2_1V8AO", "1-0041"),
    ]
    watts = read_ina3221(chans)
    # mV * mA / 1e6 = W
    want = {"VDD_IN": 6.0, "VDD_CPU_GPU_CV": 2.0, "VDD_SOC": 1.5, "VDDQ_VDD2_1V8AO": 0.27}
    assert watts == pytest.approx(want)


def test_ina3221_absent(tmp_path):
    assert find_ina3221(tmp_path) == []
    with pytest.raises(MissingDependency):
        SysfsSampler([])


def test_default_sampler_prefers_sysfs(orin_nano_sysfs):
    assert default_sampler(orin_nano_sysfs).source == "ina3221 sysfs"


def test_default_sampler_without_any_source(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tegrastats here
    with pytest.raises(MissingDependency, match="no power source"):
        default_sampler(tmp_path)


# ---- integration --------------------------------------------------------------------------------
def _ramp_trace() -> PowerTrace:
    """5 W idle until t = 1 s, then 5 + 3 (t - 1) W until 3 s, 5 W after; sampled every 10 ms."""
    tr = PowerTrace("synthetic")
    for t in np.round(np.arange(0.0, 4.0001, 0.01), 6):
        p = 5.0 + 3.0 * (t - 1.0) if 1.0 <= t <= 3.0 else 5.0
        tr.add(float(t), {"VDD_IN": p, "VDD_SOC": 1.0})
    return tr


def test_integrate_piecewise_linear_exact():
    tr = _ramp_trace()
    t, p = tr.series("VDD_IN")
    # integral of 5 + 3 (t - 1) over [1.005, 2.995] = 5 * 1.99 + 1.5 * (1.995^2 - 0.005^2)
    assert integrate(t, p, 1.005, 2.995) == pytest.approx(5 * 1.99 + 1.5 * (1.995**2 - 0.005**2), rel=1e-12)
    assert integrate(t, p, 0.1, 0.9) == pytest.approx(4.0, rel=1e-12)


def test_energy_per_inference_known_answer():
    res = energy_per_inference(
        _ramp_trace(), rail="VDD_IN", run=(1.005, 2.995), idle=(0.1, 0.9), inferences=1000
    )
    net = 1.5 * (1.995**2 - 0.005**2)  # 5.97 J above the 5 W idle
    assert res.idle_power_w == pytest.approx(5.0)
    assert res.energy_j == pytest.approx(net / 1000, rel=1e-9)
    assert res.gross_energy_j == pytest.approx((net + 5 * 1.99) / 1000, rel=1e-9)
    assert res.run_samples == 199 and res.idle_samples == 81
    assert "VDD_IN" in res.method and "idle baseline 5.000 W" in res.method


def test_energy_sums_disjoint_rails():
    res = energy_per_inference(
        _ramp_trace(), rail="VDD_IN+VDD_SOC", run=(1.0, 3.0), idle=(0.0, 1.0), inferences=2
    )
    assert res.idle_power_w == pytest.approx(6.0)
    assert res.energy_j == pytest.approx(1.5 * 4 / 2)  # the constant 1 W rail cancels with idle


def test_energy_refuses_what_it_cannot_measure():
    tr = _ramp_trace()
    with pytest.raises(UsageError, match="do not cover"):
        energy_per_inference(tr, rail="VDD_IN", run=(3.5, 4.5), idle=(0, 1), inferences=1)
    with pytest.raises(UsageError, match="power samples"):
        energy_per_inference(tr, rail="VDD_IN", run=(1.0, 1.02), idle=(0, 1), inferences=1)
    with pytest.raises(UsageError, match="no more power"):
        energy_per_inference(tr, rail="VDD_SOC", run=(1.0, 3.0), idle=(0, 1), inferences=1)
    with pytest.raises(UsageError, match="was not sampled"):
        energy_per_inference(tr, rail="VDD_GPU", run=(1.0, 3.0), idle=(0, 1), inferences=1)


def test_trace_with_a_rail_missing_from_some_samples():
    tr = PowerTrace("x")
    tr.add(0.0, {"A": 1.0})
    tr.add(1.0, {"A": 1.0, "B": 2.0})
    tr.add(2.0, {"A": 3.0})
    t, p = tr.series("B")
    assert t.tolist() == [1.0] and p.tolist() == [2.0]
    assert tr.series("A")[1].tolist() == [1.0, 1.0, 3.0]


# ---- samplers -----------------------------------------------------------------------------------
def test_measure_energy_on_fake_sysfs(orin_nano_sysfs):
    """The run raises VDD_IN from 6 W to 10 W; the net energy is 4 W times the run, per inference."""
    chans = find_ina3221(orin_nano_sysfs)
    vdd_in = chans[0].current_file

    def infer():
        tmp = vdd_in.with_name("curr1_input.new")  # atomic, as a sysfs read is
        tmp.write_text("2000\n")  # 5 V * 2 A = 10 W while running
        tmp.replace(vdd_in)
        time.sleep(0.002)

    run = measure_energy(
        infer, sampler=SysfsSampler(chans, 0.002), iterations=100, batch_size=4, warmup=30, idle_s=0.2
    )
    e = run.energy
    assert e.rail == "VDD_IN" and e.source == "ina3221 sysfs" and e.inferences == 400
    assert e.idle_power_w == pytest.approx(6.0, rel=1e-6)
    assert e.run_power_w == pytest.approx(10.0, rel=1e-6)
    assert e.energy_j == pytest.approx(4.0 * e.duration_s / 400, rel=1e-6)
    assert len(run.latencies_s) == 100 and sum(run.latencies_s) <= e.duration_s


FAKE_TEGRASTATS = """#!{python}
import sys, time
interval = int(sys.argv[sys.argv.index("--interval") + 1]) / 1000
line = {line!r}
for i in range(1000):
    print(line.replace("VDD_IN 17946mW", "VDD_IN %dmW" % (17000 + i)), flush=True)
    time.sleep(interval)
"""


def test_tegrastats_sampler_reads_lines_as_they_arrive(tmp_path):
    script = tmp_path / "tegrastats"
    script.write_text(FAKE_TEGRASTATS.format(python=sys.executable, line=_real_lines()[1]))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    s = TegrastatsSampler(20, command=(str(script),))
    s.start()
    time.sleep(0.5)
    trace = s.stop()
    n = len(trace.times_s)
    assert 5 <= n <= 30
    assert trace.rails_w["VDD_IN"][:3] == [17.0, 17.001, 17.002]
    assert trace.rails_w["VDD_SOC"][0] == 3.923
    assert float(np.median(np.diff(trace.times_s))) > 0.01


def test_tegrastats_missing_and_buffered(tmp_path):
    with pytest.raises(MissingDependency, match="not on PATH"):
        TegrastatsSampler(command=(str(tmp_path / "nope"),))
    check_arrivals([0.0, 0.05, 0.1, 0.15], 0.05)
    with pytest.raises(UsageError, match="bursts"):
        check_arrivals([1.0, 1.0001, 1.0002, 1.0003], 0.05)
