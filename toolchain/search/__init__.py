"""``edgec search``: the accuracy x energy Pareto front over compression recipes and targets.

``edgec.search(model, target="loihi,cpu", train_data="builtin:digits", trials=24, out="OUT")`` samples
recipes from a space (:mod:`edgec.search.space`) with Optuna (NSGA-II, or TPE on a scalar fitness:
:mod:`edgec.search.objectives`), runs each trial (:mod:`edgec.search.trial`: compress, compile for every
target, deployed accuracy, energy, bytes) on worker processes or Ray tasks (:mod:`edgec.search.execute`),
keeps the study in Optuna storage (resumable) and writes OUT/search.json, report.md and report.html
(:mod:`edgec.search.result`, :mod:`edgec.search.report`). Optuna and Ray are imported only when a search
runs. See docs/search.md.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["SearchResult", "TrialResult", "search"]


def __getattr__(name: str) -> Any:
    if name == "search":
        from edgec.search.runner import search

        return search
    if name in ("SearchResult", "TrialResult"):
        from edgec.search import result

        return getattr(result, name)
    raise AttributeError(f"module 'edgec.search' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """``edgec.search(...)`` calls :func:`edgec.search.runner.search`: importing this package sets the
    attribute ``edgec.search`` to the package itself, so the package is what users call."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from edgec.search.runner import search

        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
