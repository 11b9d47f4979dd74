"""``OUT#trial-7``: a trial of a search as a model for ``edgec compile``, ``check``, ``report``, ``compress``.

The trial's compressed program is kept in ``OUT/trials/trial-0007/program`` (a program directory: it
reloads without pickle) when the trial is on a front, or when the search ran with ``--keep-all``.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgec.errors import UsageError

SEARCH_JSON = "search.json"
TRIALS_DIR = "trials"


def trial_dir(out: Path, number: int) -> Path:
    """A trial's directory in a search's OUT (spec, result, and the front's artifacts)."""
    return out / TRIALS_DIR / f"trial-{number:04d}"


def resolve_member(spec: str) -> Path | None:
    """``OUT#trial-7`` / ``OUT#7`` -> the trial's program directory; None when ``spec`` names no search
    directory (then it is an ordinary path)."""
    base, sep, fragment = spec.rpartition("#")
    if not sep or not (Path(base) / SEARCH_JSON).is_file():
        return None
    m = re.fullmatch(r"(?:trial-?)?(\d+)", fragment)
    if m is None:
        raise UsageError(f"'{spec}': '#{fragment}' names no trial of the search", hint="e.g. OUT#trial-7")
    program = trial_dir(Path(base), int(m.group(1))) / "program"
    if not program.is_dir():
        raise UsageError(
            f"trial {int(m.group(1))} of the search in '{base}' has no kept program",
            hint="only the front's trials keep theirs (see report.md); search with --keep-all to keep all",
        )
    return program
