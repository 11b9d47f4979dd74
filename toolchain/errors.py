"""One error hierarchy for the whole toolchain, mapped to documented CLI exit codes.

Every failure a user can cause raises a subclass of :class:`EdgecError`. The CLI prints
``error: <message>`` (one line, plus an optional ``hint:`` line) and exits with the class's
``exit_code``. Anything else that escapes is a bug in edgec and exits with code 1.

==== =========================================================================
code meaning
==== =========================================================================
0    success
1    internal error (a bug in edgec; rerun with ``EDGEC_DEBUG=1`` for the traceback)
2    usage error: unknown option value, unknown target / arch / pass, bad path
3    bad model or data: unreadable / truncated / untrusted model, wrong shape or dtype
4    constraint violation: the target cannot take the model (a table says why)
5    verification failed: the artifact disagrees with its source model
6    regression gate: a metric grew beyond the allowed increase over a baseline
7    missing optional dependency: a target or backend needs a package not installed
==== =========================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class EdgecError(Exception):
    """Root of every error edgec raises on purpose."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(EdgecError):
    """The command line or configuration asks for something that does not exist."""

    exit_code = 2


class ModelError(EdgecError):
    """The model file (or the model itself) cannot be used."""

    exit_code = 3


class DataError(EdgecError):
    """Calibration / evaluation data cannot be used with this model."""

    exit_code = 3


class ConstraintViolation(EdgecError):
    """The target cannot take the model. ``violations`` holds one row per problem."""

    exit_code = 4

    def __init__(self, message: str, violations: Sequence[Any], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.violations = list(violations)


class VerificationFailed(EdgecError):
    """A compiled artifact disagrees with its source model beyond the tolerance."""

    exit_code = 5


class RegressionGateFailed(EdgecError):
    """A metric regressed beyond the allowed increase over a baseline report."""

    exit_code = 6

    def __init__(self, message: str, regressions: Sequence[Any], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.regressions = list(regressions)


class MissingDependency(EdgecError):
    """An optional package (lava, tensorrt, ...) is needed but not importable."""

    exit_code = 7


class PassError(EdgecError):
    """A pass crashed unexpectedly; names the pass and those that ran before it.

    A pass that rejects its input on purpose raises a specific :class:`EdgecError` instead
    (the pass manager re-raises those unchanged, prefixed with the pass chain).
    """

    exit_code = 1

    def __init__(self, pass_name: str, before: Sequence[str], cause: BaseException) -> None:
        chain = " -> ".join([*before, pass_name])
        super().__init__(f"pass '{pass_name}' failed ({chain}): {cause}")
        self.pass_name = pass_name
        self.before = list(before)
        self.cause = cause


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's run to pages), without terminal colours."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "internal error",
    2: "usage error",
    3: "bad model or data",
    4: "constraint violation",
    5: "verification failed",
    6: "regression gate failed",
    7: "missing optional dependency",
}
