"""A target package registers itself through entry points and edgec uses it: no file of edgec changes.

The package is written here as installed packages are laid out (a module and its .dist-info with
entry_points.txt on sys.path) and used from a fresh process, as a user who pip-installed it would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from edgec.energy.tables import TABLES, table_names
from edgec.target import TARGETS, target_names

PLUGIN = """
from edgec.energy.tables import CostTable, Price
from edgec.target import Lowered, Target


class MyChipTarget(Target):
    name = "mychip"
    description = "a chip from another package"
    backends = ("default",)
    cost_tables = {"default": "mychip-int8"}

    def lower(self, program, out_dir, ctx):
        (out_dir / "model.bin").write_bytes(b"mychip")
        return Lowered(files={"model": "model.bin"})

    def session(self, artifact, *, backend=None, threads=None):
        return lambda x: {"output": np.zeros((len(x), 10), np.float32)}


MYCHIP_INT8 = CostTable(
    name="mychip-int8",
    version=3,
    title="MyChip int8 (test)",
    precision="int8",
    weight_bits=8,
    other_param_bits=32,
    activation_bits=8,
    prices={"mac": Price(0.5, "the test"), "add": Price(0.1, "the test")},
    memory_model="included",
)
"""


def _install(site: Path) -> None:
    (site / "mychip_edgec.py").write_text(PLUGIN)
    info = site / "mychip_edgec-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mychip-edgec\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[edgec.targets]\nmychip = mychip_edgec:MyChipTarget\n\n"
        "[edgec.cost_tables]\nmychip-int8 = mychip_edgec:MYCHIP_INT8\n"
    )


def _edgec(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "edgec", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_edgecs_own_targets_and_tables_are_entry_points():
    assert target_names() == ["cpu", "jetson", "loihi"]
    assert TARGETS["loihi"] == "edgec.targets.loihi:LoihiTarget"
    assert set(TABLES) == {"cmos45-fp32", "cmos45-fp16", "cmos45-int8"}  # the core keeps only these
    assert {"loihi1-davies2018", "orin-nano-int8", "orin-nano-fp16", "orin-nano-fp32"} <= set(table_names())


def test_an_installed_target_package_is_listed_compiled_for_and_priced_with_its_table(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install(site)
    listed = _edgec(site, tmp_path, "targets", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {"cpu", "jetson", "loihi", "mychip"} == {r["name"] for r in json.loads(listed.stdout)}

    out = tmp_path / "art"
    done = _edgec(site, tmp_path, "compile", "zoo:digits-cnn", "--target", "mychip", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "model.bin").read_bytes() == b"mychip"
    assert "mychip-int8@3" in (out / "report.json").read_text()  # its energy, priced by its own table


def test_a_broken_registration_is_a_one_line_error(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install(site)
    ep = site / "mychip_edgec-0.1.dist-info" / "entry_points.txt"
    ep.write_text("[edgec.targets]\nmychip = mychip_edgec:MYCHIP_INT8\n")  # not a Target class
    bad = tmp_path / "a"
    done = _edgec(site, tmp_path, "compile", "zoo:digits-cnn", "--target", "mychip", "-o", str(bad))
    assert done.returncode == 2
    assert "the target registered as 'mychip' (mychip_edgec:MYCHIP_INT8) is not a Target class" in done.stderr
    assert not bad.exists()
    ep.write_text("[edgec.targets]\nmychip = edgec.target:Target\n")  # abstract: cannot be created
    done = _edgec(site, tmp_path, "targets")
    assert done.returncode == 2
    assert "the target registered as 'mychip' (edgec.target:Target) cannot be created: " in done.stderr
    code = textwrap.dedent(
        """
        from edgec.energy.tables import get_table
        from edgec.errors import UsageError
        try:
            get_table("mychip-int8")
        except UsageError as e:
            print(e)
        """
    )
    ep.write_text("[edgec.cost_tables]\nmychip-int8 = mychip_edgec:MyChipTarget\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "is not a CostTable named 'mychip-int8'" in got.stdout, got.stderr
