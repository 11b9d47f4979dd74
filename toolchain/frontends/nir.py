"""NIR graphs (``nir.write`` HDF5 files) as edgec programs: :mod:`edgec.nirgraph` does the mapping."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edgec.errors import EdgecError, MissingDependency, ModelError, first_line
from edgec.frontends import Frontend, LoadOptions

if TYPE_CHECKING:
    from edgec.program import Program

log = logging.getLogger(__name__)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class NirFrontend(Frontend):
    name = "nir"
    description = (
        "NIR graph (HDF5, nir.write): spiking networks from snnTorch, Norse, Sinabs, SpikingJelly, ..."
    )

    def sniff(self, path: Path, head: bytes) -> bool:
        # HDF5 is NIR's container; a file named .nir is claimed too, so a damaged one is told so
        return head.startswith(HDF5_MAGIC) or path.suffix.lower() == ".nir"

    def load(self, path: Path, options: LoadOptions) -> Program:
        import torch

        from edgec.netspec import spec_of
        from edgec.nirgraph import module_from_nir
        from edgec.program import Program, SourceInfo, sha256_of
        from edgec.snn import DEFAULT_ENCODER, DEFAULT_TIMESTEPS

        graph = read_graph(path)
        imp = module_from_nir(
            graph, dt=options.dt, input_shape=options.input_shape[1:] if options.input_shape else None
        )
        defaults = []
        timesteps = options.timesteps or imp.timesteps
        if timesteps is None:
            timesteps = DEFAULT_TIMESTEPS
            defaults.append(f"timesteps {DEFAULT_TIMESTEPS} (the graph records none; --timesteps)")
        encoder = imp.encoder
        if encoder is None:
            encoder = dict(DEFAULT_ENCODER)
            defaults.append(f"encoder {encoder} (the graph records none)")
        if defaults:
            log.warning("NIR graph '%s': using %s", path, "; ".join(defaults))
        report = imp.report()
        report["defaults"] = defaults
        example = torch.rand((1, *imp.input_shape), generator=torch.Generator().manual_seed(0))
        return Program(
            module=imp.module,
            example_input=example,
            kind="snn",
            timesteps=int(timesteps),
            encoder=encoder,
            source=SourceInfo("nir", str(path.resolve()), sha256_of(path), dt=imp.dt),
            name=path.stem,
            metadata={"import": {"from": "nir", **report}, "arch_spec": spec_of(imp.module)},
        )


def read_graph(path: Path) -> object:
    """``nir.read`` with one-line errors: not HDF5, HDF5 but not NIR, a node type nir does not know."""
    try:
        import h5py
        import nir
    except ImportError as exc:  # both are dependencies of edgec; a broken install
        raise MissingDependency(f"reading NIR needs the nir package: {exc}", hint="pip install nir") from None
    with open(path, "rb") as f:
        head = f.read(8)
    if head != HDF5_MAGIC:
        raise ModelError(
            f"'{path}' is not a NIR graph: NIR files are HDF5 (written by nir.write), this one is not",
            hint="export the network with your framework's NIR exporter (e.g. nir.write(path, graph))",
        )
    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
    except OSError as exc:
        raise ModelError(f"'{path}' is a damaged HDF5 file: {first_line(exc)}") from None
    if "node" not in keys:
        extra = " (a lava-dl netx network? compile the model it came from)" if "layer" in keys else ""
        raise ModelError(f"'{path}' is an HDF5 file but not a NIR graph: it has no /node group{extra}")
    try:
        graph = nir.read(str(path))
    except EdgecError:
        raise
    except Exception as exc:
        raise ModelError(
            f"'{path}' is not a NIR graph nir {nir.version} can read: {first_line(exc)}",
            hint="write it with nir 1.0 (nir.write), or check which node types your exporter used",
        ) from None
    if not isinstance(graph, nir.NIRGraph):
        raise ModelError(f"'{path}' holds a single NIR {type(graph).__name__} node, not a graph")
    return graph
