"""Calibration feed dicts from an edgec Dataset, in batches the exported graph takes.

Shared by every target that calibrates an ONNX graph (:func:`edgec.onnxlib.calibrate` reads them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from edgec.onnxlib.export import INPUT_NAME

if TYPE_CHECKING:
    from edgec.data import Dataset
    from edgec.progress import Progress


class Feeds:
    """Feed dicts ``{INPUT_NAME: batch}`` over up to ``limit`` samples of ``data`` (checked against
    ``shape``), grouped in batches of ``batch`` (a graph with a fixed batch; None: one sample a batch),
    the last one padded with its last sample; the first ``keep`` samples are kept in :attr:`kept`
    (for a check after quantization) and :attr:`count` says how many samples were read."""

    def __init__(
        self,
        data: Dataset,
        shape: tuple[int, ...],
        batch: int | None,
        limit: int,
        progress: Progress,
        *,
        keep: int = 0,
    ) -> None:
        self.data, self.shape, self.batch = data, shape, batch or 1
        self.limit, self.progress, self.keep = limit, progress, keep
        self.count = 0
        self.kept: list[np.ndarray] = []

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        buf: list[np.ndarray] = []
        with self.progress.task("calibrating", total=self.limit) as task:
            for x, _ in self.data.checked(self.shape, self.limit):
                buf.append(x)
                if len(self.kept) < self.keep:
                    self.kept.append(x)
                self.count += 1
                task.advance()
                if len(buf) == self.batch:
                    yield {INPUT_NAME: np.stack(buf)}
                    buf = []
        if buf:
            buf += [buf[-1]] * (self.batch - len(buf))
            yield {INPUT_NAME: np.stack(buf)}
