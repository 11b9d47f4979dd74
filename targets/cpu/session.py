"""Running a CPU artifact on any batch size (also when its graph fixes the batch), and the session
object both runtimes return: the callable of the session contract plus what ran (``runtime``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgec.errors import DataError

#: one call of a runtime: an input batch -> all outputs, in the graph's order
Runner = Callable[[np.ndarray], list[np.ndarray]]


def run_batched(run: Runner, x: np.ndarray, fixed: int | None) -> list[np.ndarray]:
    """All outputs for ``x``; a graph with a fixed batch ``fixed`` gets ``x`` in pieces of that size
    (the last one padded by repeating its last sample, the padding dropped again)."""
    if fixed is None or len(x) == fixed:
        return [np.asarray(o) for o in run(x)]
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(x), fixed):
        chunk = x[start : start + fixed]
        real = len(chunk)
        if real < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - real, axis=0)])
        parts.append([np.asarray(o)[:real] for o in run(chunk)])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


class RuntimeSession:
    """``[N, *input]`` -> ``{output name: [N, *shape]}`` through one runtime (edgec.target.Session).

    ``input_shape`` is the graph's input shape (``None`` for a free dimension; a fixed batch is
    split by :func:`run_batched`); ``runtime`` says what runs it (name and version, device, the
    precision float operations run at, threads), for ``bench`` and ``verify`` to report.
    """

    def __init__(
        self, run: Runner, input_shape: Sequence[int | None], names: list[str], runtime: dict[str, Any]
    ) -> None:
        self._run = run
        self._shape = list(input_shape)
        self._names = names
        self.runtime = runtime

    @property
    def fixed_batch(self) -> int | None:
        return self._shape[0]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = self._shape[1:]
        if x.ndim != len(self._shape) or any(
            e not in (None, d) for e, d in zip(expected, x.shape[1:], strict=True)
        ):
            shown = ", ".join("?" if d is None else str(d) for d in expected)
            raise DataError(
                f"input of shape {tuple(x.shape)} does not fit the artifact (expects [N, {shown}])"
            )
        outs = run_batched(self._run, x, self.fixed_batch)
        return dict(zip(self._names, outs, strict=True))


def output_names(declared: list[str], graph: list[str]) -> list[str]:
    """The names outputs are returned by: report.json ``program.outputs`` where it lists as many as the
    graph has, else the graph's own."""
    return declared if len(declared) == len(graph) else graph
