"""Running an ONNX Runtime session on any batch size, also when the graph fixes its batch."""

from __future__ import annotations

from typing import Any

import numpy as np


def run_batched(sess: Any, name: str, x: np.ndarray, fixed: int | None) -> list[np.ndarray]:
    """All outputs for ``x``; a graph with a fixed batch ``fixed`` gets ``x`` in pieces of that size
    (the last one padded by repeating its last sample, the padding dropped again)."""
    if fixed is None or len(x) == fixed:
        return [np.asarray(o) for o in sess.run(None, {name: x})]
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(x), fixed):
        chunk = x[start : start + fixed]
        real = len(chunk)
        if real < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - real, axis=0)])
        parts.append([np.asarray(o)[:real] for o in sess.run(None, {name: chunk})])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
