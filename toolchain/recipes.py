"""Recipes: a pass by name with its options, as users write them on the command line or in edgec.toml.

``--recipe NAME[:key=value,...]`` (repeatable, applied in order)::

    --recipe qp-snn:bits=4,prune=0.5,criterion=svs
    --recipe magnitude-prune:prune=0.5,epochs=0 --recipe uniform-quant:bits=4

Values are read as TOML (``4``, ``0.5``, ``true``; a bare word is a string) and checked against the
option's declared type and range (:mod:`edgec.options`); an unknown pass or option is a usage error that
lists the valid ones. A pass may appear several times with different options. ``--recipe`` and
``--pass`` are the same option; in edgec.toml ``passes = ["qp-snn:bits=4"]`` (or tables) under
``[compile]``.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from typing import Any

from edgec.errors import UsageError
from edgec.passes.base import Pass


@dataclass(frozen=True)
class OptionInfo:
    name: str
    type: str
    default: Any
    help: str


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    description: str
    model_kind: str | None
    trains: bool
    options: tuple[OptionInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _pass_class(name: str) -> type[Pass]:
    from edgec.passes import PASSES

    if name not in PASSES:
        raise UsageError(f"unknown recipe '{name}'", hint=f"choose one of: {', '.join(sorted(PASSES))}")
    module, _, cls_name = PASSES[name].partition(":")
    cls: type[Pass] = getattr(importlib.import_module(module), cls_name)
    return cls


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return f"{_type_name(args[0])} (optional)"
    return getattr(tp, "__name__", str(tp))


def _help(f: dataclasses.Field[Any]) -> str:
    info = f.metadata.get("edgec")
    return str(getattr(info, "help", "")) if info is not None else ""


def describe(name: str) -> RecipeInfo:
    """A pass's options with their types, defaults and help (``edgec recipes``)."""
    cls = _pass_class(name)
    hints = _field_types(cls)
    fields: tuple[dataclasses.Field[Any], ...] = (
        dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
    )
    options = tuple(
        OptionInfo(f.name, _type_name(hints.get(f.name, str)), f.default, _help(f)) for f in fields
    )
    return RecipeInfo(
        name=name,
        description=str(getattr(cls, "description", "") or (cls.__doc__ or "").strip().splitlines()[0]),
        model_kind=getattr(cls, "model_kind", None),
        trains="training" in getattr(cls, "needs", frozenset()),
        options=options,
    )


def all_recipes() -> list[RecipeInfo]:
    from edgec.passes import PASSES

    return [describe(n) for n in sorted(PASSES)]


def parse_recipes(items: list[Any] | None) -> list[Pass]:
    """Recipes as ``"NAME[:key=value,...]"`` strings, ``PassSpec`` / ``{"name": ...}`` tables, or ready
    pass objects (the Python API takes all of them), in order."""
    from edgec.options import parse_pass
    from edgec.passes import get_pass

    out: list[Pass] = []
    for item in items or []:
        if isinstance(item, Pass):
            out.append(item)
            continue
        spec = parse_pass(item, "--recipe")
        out.append(get_pass(spec.name, **dict(spec.options)))
    return out
