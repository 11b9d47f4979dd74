"""edgec: compile trained PyTorch ANNs and SNNs for edge hardware, with an energy report per target.

Public API (imported lazily, so ``import edgec`` stays light)::

    import edgec
    artifact = edgec.compile("zoo:digits-cnn", target="cpu", quantize="int8", out="out/digits")
    small = edgec.compress("zoo:digits-snn-vgg", passes=["qp-snn:bits=4,prune=0.5"], train="builtin:digits")
    result = edgec.verify("out/digits")

Layers: this package (the core) imports none of ``edgec.targets``, ``edgec.models`` or
``edgec.calibration``; it finds them by name through lazy tables.
"""

from __future__ import annotations

from typing import Any

from edgec.errors import (
    ConstraintViolation,
    DataError,
    EdgecError,
    MissingDependency,
    ModelError,
    RegressionGateFailed,
    UsageError,
    VerificationFailed,
)

__version__ = "0.1.0"

_LAZY = {
    "compile": "edgec.api",
    "compress": "edgec.compression",
    "search": "edgec.search",  # the package, callable: edgec.search(model, ...)
    "check": "edgec.api",
    "verify": "edgec.api",
    "run": "edgec.api",
    "bench": "edgec.api",
    "energy_report": "edgec.api",
    "build_engine": "edgec.api",
    "load_program": "edgec.loading",
    "Program": "edgec.program",
    "CompileConfig": "edgec.config",
    "Dataset": "edgec.data",
    "open_dataset": "edgec.data",
    "Artifact": "edgec.artifact",
    "get_target": "edgec.target",
}

__all__ = [
    "ConstraintViolation",
    "DataError",
    "EdgecError",
    "MissingDependency",
    "ModelError",
    "RegressionGateFailed",
    "UsageError",
    "VerificationFailed",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgec' has no attribute {name!r}")
