"""Front-ends: model files edgec reads besides PyTorch's own, found like targets, through a lazy table.

A front-end says whether a file is its format (:meth:`Frontend.sniff`, by content, cheaply) and loads
it into a :class:`~edgec.program.Program` (:meth:`Frontend.load`). :func:`edgec.loading.load_program`
asks this table before it reads a file as a PyTorch format, so a new format is one module and one
line here, not another branch in the loader.

Spiking networks of other PyTorch frameworks (snnTorch, SpikingJelly, Norse, Sinabs) are modules,
not files: :mod:`edgec.frameworks` turns them into edgec's layers, whatever file they came from.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from edgec.program import Program

# name -> "module:Class" (imported only when a file is sniffed)
FRONTENDS: dict[str, str] = {
    "nir": "edgec.frontends.nir:NirFrontend",
}


@dataclass(frozen=True)
class LoadOptions:
    """What a front-end may need from the command (each is None when not given)."""

    input_shape: tuple[int, ...] | None = None
    dt: float | None = None
    timesteps: int | None = None


class Frontend:
    """A file format edgec reads into a Program."""

    name: ClassVar[str] = ""
    #: what `edgec compile --help` and error hints call the format
    description: ClassVar[str] = ""

    def sniff(self, path: Path, head: bytes) -> bool:
        """Whether ``path`` is (or claims to be) this format; ``head`` is its first 512 bytes."""
        raise NotImplementedError

    def load(self, path: Path, options: LoadOptions) -> Program:
        raise NotImplementedError


def _instance(name: str) -> Frontend:
    module, _, cls = FRONTENDS[name].partition(":")
    made: Frontend = getattr(importlib.import_module(module), cls)()
    return made


def frontend_for(path: Path) -> Frontend | None:
    """The front-end that claims ``path``, or None (then it is read as a PyTorch file)."""
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        head = f.read(512)
    for name in FRONTENDS:
        fe = _instance(name)
        if fe.sniff(path, head):
            return fe
    return None


def describe() -> dict[str, Any]:
    return {name: _instance(name).description for name in FRONTENDS}
