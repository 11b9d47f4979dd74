"""The ``edgec`` command line: a thin typer shell over :mod:`edgec.api`.

Results go to stdout (``--json`` prints only JSON there: anything a library writes, even from C,
goes to stderr); progress, warnings and errors go to stderr. Every
:class:`~edgec.errors.EdgecError` becomes a one-line ``error:`` message and its documented exit
code (see ``edgec.errors``). Options come from their one declaration (:mod:`edgec.config`), so the
flags, the API keywords and edgec.toml cannot drift. Heavy libraries are imported inside commands,
so ``edgec --help`` answers quickly. The CLI holds no target knowledge: targets describe their own
artifacts (:meth:`edgec.target.Target.summary`).

``shell``     consoles, error handling, --json plumbing, option generation, the why-not table
``model``     compile, check, report (commands on a model)
``artifact``  verify, run, bench (commands on an artifact directory)
``info``      targets, models, demo
``compress``  compress, recipes (training-time compression)
``search``    search (the accuracy x energy Pareto front over recipes and targets)
"""

from __future__ import annotations

import logging
import os
import sys

from edgec.cli import artifact, compress, info, model, search  # noqa: F401  (registers the commands)
from edgec.cli.shell import app

__all__ = ["app", "main"]


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("EDGEC_LOG", "WARNING").upper(),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    app()
