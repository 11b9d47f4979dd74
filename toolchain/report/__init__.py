"""Reports: one typed document, built once, rendered as report.json, report.md, report.html or tables.

Layers, each importing only those above it in this list (none imports :mod:`edgec.api`; the API
calls the builder):

:mod:`~edgec.report.document`  :class:`Report`, the report.json document (docs/report-schema.md)
:mod:`~edgec.report.build`     the one builder of ``edgec compile`` and ``edgec report``
:mod:`~edgec.report.rows`      every table's rows, formatted once (numbers, units, sources)
:mod:`~edgec.report.markdown`  report.md, for CI comments
:mod:`~edgec.report.charts`,
:mod:`~edgec.report.html`      report.html, self-contained (inline SVG charts, no network)
:mod:`~edgec.report.terminal`  rich tables for the terminal
:mod:`~edgec.report.render`    the output format and text rendering of a report
"""

from __future__ import annotations

from edgec.report.build import artifact_report, build_report, stored_config
from edgec.report.document import Report
from edgec.report.html import render_html
from edgec.report.markdown import render_markdown
from edgec.report.render import FORMATS, format_for, render, write_atomic
from edgec.report.terminal import render_terminal

__all__ = [
    "FORMATS",
    "Report",
    "artifact_report",
    "build_report",
    "format_for",
    "render",
    "render_html",
    "render_markdown",
    "render_terminal",
    "stored_config",
    "write_atomic",
]
