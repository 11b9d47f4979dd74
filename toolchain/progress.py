"""Progress reporting as a small interface: the library reports, the CLI decides how to show it.

Library code never prints. A long step (calibration, training, benchmarking) asks its context for a
task and advances it::

    with ctx.progress.task("calibrating", total=n) as task:
        for batch in data:
            ...
            task.advance()

The CLI passes a rich progress bar (on stderr); library users get :class:`NullProgress` unless
they pass their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Task]: ...


class _NullTask:
    def advance(self, n: int = 1) -> None:
        return None


class NullProgress:
    """Reports nothing."""

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        yield _NullTask()
