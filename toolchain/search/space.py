"""Search spaces: which recipes a trial runs, with which values.

A space is a list of recipe templates (``"qp-snn:bits={bits},prune={prune}"``) and the parameters that fill
them. A parameter is a list of choices (categorical) or a range ``{low, high, step}`` (integers when
``low``, ``high`` and ``step`` are integers, else floats; ``log = true`` samples a float range on a log
scale). Two parameter names are reserved: ``timesteps`` sets the SNN's time steps T of the trial (the model's
own when absent); ``wide`` is per-layer-group mixed precision: the number of most quantization-sensitive
layer groups (ranked once per search, :mod:`edgec.search.sensitivity`) the trial keeps at 8 bits.
A TOML file::

    [space]
    recipes = ["qp-snn:bits={bits},prune={prune}"]

    [space.params]
    bits = [2, 4, 8]
    prune = {low = 0.0, high = 0.75, step = 0.25}
    timesteps = [4, 8]

Built-in spaces, by model kind (see :func:`builtin_space`):

* SNN: QP-SNN (ReScaW weights + SVS channel pruning, fine-tuned) at bits {2, 4, 8} x pruned channel
  share {0, 0.25, 0.5, 0.75} x T {4, 8}: 24 combinations.
* ANN: magnitude channel pruning {0, 0.25, 0.5} then uniform QAT weights at {4, 8} bits.

Every template is checked (pass names and options) with the first choice of every parameter before a
trial runs, so a bad space is a usage error, not a failed search.
"""

from __future__ import annotations

import math
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec.errors import UsageError

#: parameters that are not recipe options
RESERVED = ("timesteps", "wide")
_PARAM_KEYS = {"low", "high", "step", "log", "choices"}


@dataclass(frozen=True)
class Dimension:
    """One parameter: ``choices`` (categorical) or ``low..high`` with an optional ``step`` / ``log``."""

    name: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False

    def distribution(self) -> Any:
        """The Optuna distribution (imported here: optuna loads only when a search runs)."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.choices:
            return CategoricalDistribution(list(self.choices))
        assert self.low is not None and self.high is not None  # checked by parse_dimension
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return FloatDistribution(self.low, self.high, step=self.step, log=self.log)

    def first(self) -> Any:
        return self.choices[0] if self.choices else (int(self.low) if self.integer else self.low)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        if self.choices:
            return {"name": self.name, "choices": list(self.choices)}
        return {"name": self.name, "low": self.low, "high": self.high, "step": self.step, "log": self.log}


@dataclass(frozen=True)
class Space:
    """Recipe templates and their parameters."""

    name: str
    recipes: tuple[str, ...]
    dims: tuple[Dimension, ...] = field(default_factory=tuple)
    #: the layer groups, most sensitive first (set by the driver when the space has ``wide``)
    ranking: tuple[str, ...] = field(default=(), compare=False)

    def has(self, name: str) -> bool:
        return any(d.name == name for d in self.dims)

    def distributions(self) -> dict[str, Any]:
        return {d.name: d.distribution() for d in self.dims}

    def recipes_for(self, params: dict[str, Any]) -> list[str]:
        """The trial's recipe strings: every template filled with ``params`` (floats without noise), the
        ``wide`` most sensitive layer groups added as ``layers=NAME:8`` overrides."""
        from edgec.search.sensitivity import widen_recipes

        shown = {k: _show(v) for k, v in params.items()}
        return widen_recipes([t.format(**shown) for t in self.recipes], self.wide_layers(params))

    def wide_layers(self, params: dict[str, Any]) -> tuple[str, ...]:
        k = int(params.get("wide") or 0)
        if k > len(self.ranking):
            raise UsageError(
                f"space '{self.name}': wide={k} but the model has {len(self.ranking)} rankable layer groups"
            )
        return self.ranking[:k]

    def timesteps_for(self, params: dict[str, Any]) -> int | None:
        t = params.get("timesteps")
        return None if t is None else int(t)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "recipes": list(self.recipes), "params": [d.to_dict() for d in self.dims]}

    def check(self) -> None:
        """Every template names known parameters and parses as a recipe with known passes and options."""
        from edgec.recipes import parse_recipes

        names = {d.name for d in self.dims}
        used: set[str] = set()
        for t in self.recipes:
            for _, key, _, _ in string.Formatter().parse(t):
                if key is None:
                    continue
                if key == "wide":
                    raise UsageError(
                        f"space '{self.name}': recipe '{t}' uses {{wide}}; wide is reserved",
                        hint="a trial's wide layers are added to its recipes as layers=NAME:8 by the search",
                    )
                if key not in names:
                    raise UsageError(
                        f"space '{self.name}': recipe '{t}' uses {{{key}}}, which no parameter defines",
                        hint=f"parameters: {', '.join(sorted(names)) or '(none)'}",
                    )
                used.add(key)
        unused = names - used - set(RESERVED)
        if unused:
            raise UsageError(
                f"space '{self.name}': parameter(s) {', '.join(sorted(unused))} appear in no recipe",
                hint="use them as {name} in a recipe of [space] recipes, or remove them",
            )
        if not self.recipes:
            raise UsageError(
                f"space '{self.name}' has no recipe", hint='e.g. recipes = ["qp-snn:bits={bits}"]'
            )
        for d in self.dims:  # each choice / both ends of each range must make a valid recipe
            values = list(d.choices) if d.choices else [d.low, d.high]
            if d.name == "wide":  # checked against the model's layer groups by the driver
                if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
                    raise UsageError(
                        f"space '{self.name}': wide takes whole numbers of layer groups >= 0, got {values}",
                        hint="e.g. wide = [0, 1, 2]",
                    )
                continue
            for v in values:
                trial = {x.name: x.first() for x in self.dims if x.name != "wide"}
                trial[d.name] = int(v) if d.integer else v  # type: ignore[arg-type]
                try:
                    parse_recipes(self.recipes_for(trial))
                except UsageError as exc:
                    raise UsageError(
                        f"space '{self.name}': {d.name}={_show(v)} gives a bad recipe: {exc.message}",
                        hint=exc.hint,
                    ) from None


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def builtin_space(kind: str) -> Space:
    """The built-in space of a model kind (``snn`` or ``ann``), see the module docstring."""
    if kind == "snn":
        return Space(
            "builtin:snn",
            ("qp-snn:bits={bits},prune={prune}",),
            (
                Dimension("bits", choices=(2, 4, 8)),
                Dimension("prune", choices=(0.0, 0.25, 0.5, 0.75)),
                Dimension("timesteps", choices=(4, 8)),
            ),
        )
    return Space(
        "builtin:ann",
        ("magnitude-prune:prune={prune},epochs=0", "uniform-quant:bits={bits}"),
        (Dimension("bits", choices=(4, 8)), Dimension("prune", choices=(0.0, 0.25, 0.5))),
    )


def parse_dimension(name: str, value: Any, where: str) -> Dimension:
    """A parameter of a space file: a list of choices or a ``{low, high, step, log}`` table."""
    if isinstance(value, list):
        value = {"choices": value}
    if not isinstance(value, dict):
        raise UsageError(
            f"{where}: parameter '{name}' must be a list of choices or a {{low, high, step}} table, "
            f"got {value!r}",
            hint="e.g. bits = [2, 4, 8] or prune = {low = 0.0, high = 0.75, step = 0.25}",
        )
    unknown = set(value) - _PARAM_KEYS
    if unknown:
        raise UsageError(
            f"{where}: parameter '{name}' has unknown key(s) {', '.join(sorted(unknown))}",
            hint=f"a parameter takes {', '.join(sorted(_PARAM_KEYS))}",
        )
    if "choices" in value:
        choices = value["choices"]
        if set(value) != {"choices"} or not isinstance(choices, list) or not choices:
            raise UsageError(
                f"{where}: parameter '{name}' needs a non-empty list of choices and nothing else"
            )
        if len(set(map(repr, choices))) != len(choices):
            raise UsageError(f"{where}: parameter '{name}' lists a choice twice: {choices}")
        if not all(isinstance(c, (int, float, str, bool)) for c in choices):
            raise UsageError(f"{where}: parameter '{name}': choices must be numbers, strings or booleans")
        return Dimension(name, choices=tuple(choices))
    low, high, step, log = value.get("low"), value.get("high"), value.get("step"), value.get("log", False)
    nums = [v for v in (low, high, step) if v is not None]
    if (
        low is None
        or high is None
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in nums)
    ):
        raise UsageError(f"{where}: parameter '{name}' needs numeric low and high (and step), got {value!r}")
    if low > high:
        raise UsageError(f"{where}: parameter '{name}' has low {low} above high {high}")
    if step is not None and step <= 0:
        raise UsageError(f"{where}: parameter '{name}' has step {step}; it must be > 0")
    if not isinstance(log, bool):
        raise UsageError(f"{where}: parameter '{name}': log must be true or false")
    if log and (low <= 0 or step is not None):
        raise UsageError(f"{where}: parameter '{name}': a log range needs low > 0 and no step")
    integer = all(isinstance(v, int) for v in nums)
    return Dimension(name, low=low, high=high, step=step, log=log, integer=integer)


def load_space(spec: str, kind: str) -> Space:
    """``builtin`` (the model kind's space) or a TOML file (see the module docstring), checked."""
    if spec in ("builtin", f"builtin:{kind}"):
        space = builtin_space(kind)
        space.check()
        return space
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"search space '{spec}' is neither 'builtin' nor a file", hint="see docs/search.md")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"search space '{path}' is not valid TOML: {exc}") from None
    where = f"search space '{path}'"
    unknown = set(doc) - {"space"}
    if unknown or not isinstance(doc.get("space"), dict):
        raise UsageError(
            f"{where}: expected one [space] section, got {', '.join(sorted(doc)) or 'nothing'}",
            hint="see docs/search.md for an example",
        )
    sec = doc["space"]
    bad = set(sec) - {"recipes", "params"}
    if bad:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(sorted(bad))} in [space]", hint="use recipes, params"
        )
    recipes = sec.get("recipes")
    if not isinstance(recipes, list) or not all(isinstance(r, str) for r in recipes):
        raise UsageError(f"{where}: [space] recipes must be a list of recipe strings")
    params = sec.get("params", {})
    if not isinstance(params, dict):
        raise UsageError(f"{where}: [space.params] must be a table")
    dims = tuple(parse_dimension(k, v, where) for k, v in params.items())
    space = Space(str(path), tuple(recipes), dims)
    space.check()
    return space
