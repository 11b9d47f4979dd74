"""The built-in zoo, looked up by name through a lazy reference (the core never imports edgec.models)."""

from __future__ import annotations

import importlib
from typing import Any

ZOO_REF = "edgec.models:ZOO"


def zoo() -> dict[str, Any]:
    """``name -> ZooEntry`` of the built-in zoo (``zoo:NAME``, ``--arch NAME``)."""
    module, _, attr = ZOO_REF.partition(":")
    table: dict[str, Any] = getattr(importlib.import_module(module), attr)
    return table
