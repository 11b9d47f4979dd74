"""Pick a report's output format and render it as text (the terminal view prints instead)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgec.errors import UsageError

if TYPE_CHECKING:
    from edgec.energy.gate import GateResult
    from edgec.report.document import Report

FORMATS = ("table", "json", "md", "html")
_SUFFIX_FORMATS = {".json": "json", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


def format_for(fmt: str | None, output: Path | None) -> str:
    """The output format: ``fmt`` if given, else from ``output``'s suffix, else the terminal table."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown --format '{fmt}'", hint=f"choose one of: {', '.join(FORMATS)}")
        return fmt
    if output is None:
        return "table"
    suffix_fmt = _SUFFIX_FORMATS.get(output.suffix.lower())
    if suffix_fmt is None:
        raise UsageError(
            f"cannot tell the format of '{output}' from its suffix", hint="pass --format json|md|html"
        )
    return suffix_fmt


def render(report: Report, fmt: str, gate: GateResult | None = None) -> str:
    """``report`` as JSON, Markdown or HTML text, with the gate's result when there is one."""
    if fmt == "json":
        return report.to_json(gate=gate)
    if fmt == "md":
        from edgec.report.markdown import render_markdown

        return render_markdown(report, gate=gate)
    if fmt == "html":
        from edgec.report.html import render_html

        return render_html(report, gate=gate)
    raise UsageError(f"format '{fmt}' is not a text format")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling renamed into place: a reader sees the old
    file or the new one, never half of one. The new file keeps the old one's mode (or the umask's)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
