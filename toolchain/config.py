"""One configuration object, fed by CLI flags or an optional ``edgec.toml``.

``edgec.toml`` (read from the current directory, or ``--config FILE``)::

    [compile]
    target = "cpu"
    quantize = "int8"
    calib = "builtin:digits"
    calib_method = "percentile"
    passes = ["fold-bn"]

    [passes.fold-bn]         # options of one pass

    [target.loihi]           # options of one target
    weight_bits = 8

Precedence: command-line flags > edgec.toml > defaults.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgec.errors import UsageError

Quantize = Literal["none", "int8", "fp16", "int4-weights"]
CalibMethod = Literal["minmax", "percentile", "entropy"]
#: every precision some target declares (Target.precisions); each target accepts its own subset
QUANTIZE_CHOICES: tuple[str, ...] = ("none", "int8", "fp16", "int4-weights")
CALIB_METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy")
CONFIG_FILE = "edgec.toml"


@dataclass
class CompileConfig:
    target: str = "cpu"
    quantize: str = "none"
    calib: str | None = None  # data spec; a zoo model brings its own default
    calib_method: str = "minmax"
    calib_samples: int = 128
    train_data: str | None = None  # labelled data for training-time passes (QAT, distillation, ...)
    timesteps: int | None = None  # SNN timesteps (None: the model's own)
    input_shape: tuple[int, ...] | None = None
    arch: str | None = None
    trust_pickle: bool = False
    passes: list[str] = field(default_factory=list)
    pass_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    target_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_CHOICES:
            raise UsageError(
                f"unknown --quantize '{self.quantize}'", hint=f"choose one of: {', '.join(QUANTIZE_CHOICES)}"
            )
        if self.calib_method not in CALIB_METHODS:
            raise UsageError(
                f"unknown --calib-method '{self.calib_method}'",
                hint=f"choose one of: {', '.join(CALIB_METHODS)}",
            )
        if self.calib_samples < 1:
            raise UsageError(f"--calib-samples must be >= 1, got {self.calib_samples}")
        if self.timesteps is not None and self.timesteps < 1:
            raise UsageError(f"--timesteps must be >= 1, got {self.timesteps}")
        if self.input_shape is not None:
            self.input_shape = tuple(int(d) for d in self.input_shape)
            if not self.input_shape or any(d < 1 for d in self.input_shape):
                raise UsageError(f"--input-shape must be positive integers, got {self.input_shape}")

    def options_for_target(self) -> dict[str, Any]:
        return dict(self.target_options.get(self.target, {}))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        return d


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,32,32"`` -> ``(1, 3, 32, 32)`` (the leading batch dimension included)."""
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise UsageError(
            f"--input-shape '{text}' is not a list of integers", hint="e.g. --input-shape 1,3,32,32"
        ) from None
    if len(shape) < 2 or any(d < 1 for d in shape):
        raise UsageError(
            f"--input-shape '{text}' needs a batch dimension and positive sizes",
            hint="e.g. --input-shape 1,3,32,32",
        )
    return shape


def load_config(path: Path | None = None, **overrides: Any) -> CompileConfig:
    """Defaults, then ``edgec.toml`` (``path`` or ./edgec.toml if present), then non-None overrides."""
    values: dict[str, Any] = {}
    file = path if path is not None else (Path(CONFIG_FILE) if Path(CONFIG_FILE).is_file() else None)
    if file is not None:
        if not file.is_file():
            raise UsageError(f"config file '{file}' does not exist")
        try:
            doc = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"config file '{file}' is not valid TOML: {exc}") from None
        unknown_sections = set(doc) - {"compile", "passes", "target"}
        if unknown_sections:
            raise UsageError(
                f"config file '{file}' has unknown section(s): {', '.join(sorted(unknown_sections))}",
                hint="use [compile], [passes.NAME] and [target.NAME]",
            )
        values.update(doc.get("compile", {}))
        values["pass_options"] = doc.get("passes", {})
        values["target_options"] = doc.get("target", {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(CompileConfig)}
    unknown = set(values) - known
    if unknown:
        raise UsageError(
            f"unknown configuration key(s): {', '.join(sorted(unknown))}",
            hint=f"known keys: {', '.join(sorted(known))}",
        )
    if isinstance(values.get("input_shape"), str):
        values["input_shape"] = parse_shape(values["input_shape"])
    return CompileConfig(**values)
