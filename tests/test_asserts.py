"""Structure: every ``assert`` in the package states an invariant, with a comment saying why it holds.

``python -O`` strips asserts, and a failed one shows users "internal error (AssertionError)", so no
assert may guard input a user controls (a model, a NIR graph, data, options, a space file): those
raise an :mod:`edgec.errors` class with a one-line message. What is left is type narrowing for mypy
after a check made elsewhere, and the comment on the assert's line names that check
(``# set by start()``, ``# the manager checks needs``).
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("toolchain", "targets", "models", "calibration")
PRAGMA = ("type:", "noqa", "pragma:", "fmt:")  # tool directives say nothing about why an assert holds


def _explaining_comments(source: str) -> dict[int, str]:
    """Line number -> the comment on it that is more than a tool directive."""
    out: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        parts = [p.strip() for p in tok.string.lstrip("#").split("#")]
        if any(p and not p.startswith(PRAGMA) for p in parts):
            out[tok.start[0]] = tok.string
    return out


def uncommented_asserts(root: Path = ROOT) -> tuple[list[str], int]:
    """``file:line: source`` of each assert without an explaining comment, and the number of asserts."""
    missing: list[str] = []
    count = 0
    for folder in PACKAGE_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            comments = _explaining_comments(source)
            lines = source.splitlines()
            for node in ast.walk(ast.parse(source, filename=str(path))):
                if not isinstance(node, ast.Assert):
                    continue
                count += 1
                span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
                if not any(n in comments for n in span):
                    rel = path.relative_to(root).as_posix()
                    missing.append(f"{rel}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return missing, count


def test_every_assert_in_the_package_says_why_it_holds():
    missing, count = uncommented_asserts()
    assert count > 0, f"no assert found under {', '.join(PACKAGE_DIRS)} of {ROOT}: wrong root?"
    assert not missing, (
        "asserts without a comment saying why they hold (an internal invariant: add "
        "'# <the check that guarantees it>'; input a user controls: raise an edgec.errors class "
        "instead):\n  " + "\n  ".join(missing)
    )


def test_the_check_names_the_file_and_line_of_an_uncommented_assert(tmp_path):
    pkg = tmp_path / "toolchain"
    pkg.mkdir()
    (pkg / "mod.py").write_text(
        "def f(x):\n"
        "    assert x is not None  # set by g()\n"
        "    assert x  # type: ignore[truthy-bool]\n"
        "    y = '# not a comment'\n"
        "    assert (\n"
        "        y\n"
        "    )  # y is a literal\n"
        "    assert y, '# a string, not a comment'\n"
    )
    missing, count = uncommented_asserts(tmp_path)
    assert count == 4
    assert missing == [
        "toolchain/mod.py:3: assert x  # type: ignore[truthy-bool]",
        "toolchain/mod.py:8: assert y, '# a string, not a comment'",
    ]
