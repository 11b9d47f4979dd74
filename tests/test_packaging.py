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


def _module_files() -> dict[str, Path]:
    """Every module of the installed namespace, by dotted name."""
    mods = {}
    for folder, pkg in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = path
    return mods


def _runtime_imports(path: Path, name: str, mods: dict[str, Path]) -> set[str]:
    """edgec modules ``name`` imports when it runs: top-level and inside functions (lazy imports
    close a cycle as surely as eager ones), but not under ``if TYPE_CHECKING:``."""
    import ast

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in mods:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    tree = ast.parse(path.read_text())
    type_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for n in ast.walk(stmt)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        found |= {t for t in map(resolve, targets) if t and t != name}
    return found


def test_no_module_imports_itself_back_through_another():
    """The import graph of every edgec module, lazy imports included, has no cycle."""
    mods = _module_files()
    graph = {name: _runtime_imports(path, name, mods) for name, path in mods.items()}
    assert {"edgec.api", "edgec.report", "edgec.energy.analyze", "edgec.target"} <= set(graph)
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_edgec_call_in_the_docs_and_benchmarks_exists():
    """`edgec.NAME(...)` as README, docs/ and benchmarks/ write it resolves (benchmarks/jetson.py's
    edgec.build_engine did not: only a Jetson would have found out)."""
    import re

    import edgec

    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks").glob("*.py")]
    called = {m for p in texts for m in re.findall(r"\bedgec\.([a-z_]+)\(", p.read_text())}
    assert {"compile", "compress", "build_engine"} <= called
    missing = sorted(name for name in called if not callable(getattr(edgec, name, None)))
    assert not missing, f"edgec has no {missing}: add them to edgec/__init__.py's _LAZY"
