"""The distribution installs one namespace, `edgec`, with every sub-package and the shipped weights."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "toolchain": "edgec",
    "targets": "edgec.targets",
    "models": "edgec.models",
    "calibration": "edgec.calibration",
}


def test_every_package_folder_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"] == {v: k for k, v in FOLDERS.items()}
    expected = set()
    for folder, pkg in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            expected.add(".".join([pkg, *rel.parts]))
    assert expected == set(cfg["packages"])


def test_core_imports_no_plugin_folder():
    """The core finds targets, models and loaders by name; it never imports them directly."""
    offenders = []
    for path in (ROOT / "toolchain").rglob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import edgec.", "from edgec.")) and any(
                s.split()[1].startswith(f"edgec.{p}") for p in ("targets", "models", "calibration")
            ):
                offenders.append(f"{path.relative_to(ROOT)}: {s}")
    assert not offenders, offenders


@pytest.mark.parametrize("plugin", ["targets", "models", "calibration"])
def test_plugins_do_not_import_each_other(plugin):
    others = {"targets", "models", "calibration"} - {plugin}
    offenders = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in (ROOT / plugin).rglob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith(("import edgec.", "from edgec."))
        and any(line.split()[1].startswith(f"edgec.{o}") for o in others)
    ]
    assert not offenders, offenders


def test_shipped_weights_are_package_data():
    from importlib import resources

    from edgec.models import ZOO

    for entry in ZOO.values():
        if entry.weights:
            assert (resources.files("edgec.models") / "weights" / entry.weights).is_file(), entry.name
