"""The thing that flows through edgec: an eager PyTorch module plus what a target needs to know.

Compression passes work on eager ``nn.Module`` objects (QAT, calibration hooks, stateful spiking
neurons and module swaps need them); targets lower a :class:`Program` into their own IR (ONNX,
lava-dl netx HDF5, NIR).

Conventions
-----------
* ``example_input`` is one batch of *raw* model input, shape ``[B, *input_shape]``.
* An ANN maps ``[B, *input_shape] -> [B, *output]``.
* An SNN (``kind == "snn"``) built from :mod:`edgec.snn` layers maps a time-major tensor
  ``[T, B, *input_shape] -> [T, B, *output]``; ``encoder`` says how raw input becomes that
  tensor (rate / latency spikes computed on the host, or direct real-valued input).
* ``static_batch``: a graph traced for exactly this batch size (a ``torch.export`` program exported
  at batch 1 asserts ``batch == 1``); ``None`` when it takes any batch. :func:`edgec.snn.run_model`
  splits batches into what the graph takes, so callers never need to know.
* ``outputs``: the program's outputs by name, batch first (:class:`OutputSpec`): one tensor is
  ``output``; a tuple's items are ``output_0``, ``output_1``, ...; a dict's are its keys (nested
  containers join with ``.``). An SNN's output is its spikes ``[T, *out]`` per sample (time after
  the batch). Every target's session returns this dict (docs/adding-a-target.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # torch is heavy: imported lazily so `edgec --help` stays fast
    import torch
    from torch import nn

    from edgec.quant import LayerQuant

ModelKind = Literal["ann", "snn"]
SourceFormat = Literal["zoo", "state_dict", "torchscript", "export", "pickle", "module", "program", "nir"]


@dataclass(frozen=True)
class SourceInfo:
    """Where a program came from; recorded in every artifact so it can be verified later."""

    format: SourceFormat
    path: str | None = None  # file the model was read from (None for zoo / in-memory modules)
    sha256: str | None = None
    arch: str | None = None  # zoo architecture for state_dicts and zoo models
    trusted_pickle: bool = False  # loaded with --trust-pickle (verify must be told again)
    dt: float | None = None  # NIR: the time step (s) the graph was discretised with (edgec.nirgraph)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class OutputSpec:
    """One output of a program: its name and the shape of one sample's value (no batch dimension)."""

    name: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape)}


@dataclass(frozen=True)
class PassRecord:
    """What the pass manager records about one pass (part of every report)."""

    name: str
    config: dict[str, Any]
    duration_s: float
    modified: bool
    stats: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Program:
    module: nn.Module
    example_input: torch.Tensor
    kind: ModelKind = "ann"
    timesteps: int = 1
    encoder: dict[str, Any] | None = None  # SNN input encoding, e.g. {"kind": "rate", "gain": 1.0}
    source: SourceInfo = field(default_factory=lambda: SourceInfo(format="module"))
    name: str = "model"
    metadata: dict[str, Any] = field(default_factory=dict)  # class names, dataset, zoo facts, ...
    history: list[PassRecord] = field(default_factory=list)
    #: per-layer weight grids and state widths learned by compression passes (edgec.quant), by module name
    quant: dict[str, LayerQuant] = field(default_factory=dict)
    #: structural changes made by passes (pruned channels, swapped neurons), replayed by edgec.store
    edits: list[dict[str, Any]] = field(default_factory=list)
    static_batch: int | None = None  # the graph takes exactly this batch (None: any)
    outputs: tuple[OutputSpec, ...] = ()  # recorded by load_program (edgec.snn.output_specs)

    def __post_init__(self) -> None:
        if self.kind not in ("ann", "snn"):
            raise ValueError(f"Program.kind must be 'ann' or 'snn', got {self.kind!r}")
        if self.timesteps < 1:
            raise ValueError(f"Program.timesteps must be >= 1, got {self.timesteps}")
        if self.example_input.dim() < 1:
            raise ValueError("Program.example_input needs a batch dimension, got a scalar")
        if self.static_batch is not None and self.static_batch < 1:
            raise ValueError(f"Program.static_batch must be >= 1 or None, got {self.static_batch}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample (without the batch dimension)."""
        return tuple(int(d) for d in self.example_input.shape[1:])

    def replace(self, **changes: Any) -> Program:
        """A shallow copy with some fields changed (passes return new programs)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        extra = {"import": self.metadata["import"]} if "import" in self.metadata else {}
        return {
            **extra,
            "name": self.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "static_batch": self.static_batch,
            "outputs": [o.to_dict() for o in self.outputs],
            "timesteps": self.timesteps,
            "encoder": self.encoder,
            "source": self.source.to_dict(),
        }


def sha256_of(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
