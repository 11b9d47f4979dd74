"""Pass infrastructure: :class:`Pass`, :class:`PassResult`, :class:`PassContext`, :class:`PassManager`."""

from __future__ import annotations

import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from edgec.errors import EdgecError, PassError, UsageError
from edgec.program import PassRecord, Program
from edgec.progress import NullProgress, Progress

if TYPE_CHECKING:
    from edgec.config import CompileConfig
    from edgec.data import Dataset
    from edgec.finetune import FinetuneOptions
    from edgec.target import Target

log = logging.getLogger(__name__)


@dataclass
class PassResult:
    program: Program
    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class PassContext:
    """What a pass may use besides the program.

    ``calib`` is unlabelled-or-labelled data for statistics (ranges, spike rates); ``train`` is
    labelled data for passes that fine-tune (QAT, distillation, pruning with fine-tuning). A pass
    declares what it needs in :attr:`Pass.needs`; the manager refuses to start it without.
    ``target`` lets a pass follow the target's rules (e.g. symmetric int8 for TensorRT).
    """

    config: CompileConfig | None = None
    calib: Dataset | None = None
    train: Dataset | None = None
    target: Target | None = None
    progress: Progress = field(default_factory=NullProgress)
    seed: int = 0
    #: held-out labelled data: training passes report accuracy on it and keep their best epoch
    holdout: Dataset | None = None
    #: options of the shared fine-tuning loop (--epochs, --lr, --batch-size, --seed, --device)
    finetune: FinetuneOptions | None = None


class Pass(ABC):
    """Base class. Subclasses are dataclasses whose fields are the pass's configuration."""

    name: ClassVar[str]
    #: data the pass needs from its context: "calibration" and/or "training"
    needs: ClassVar[frozenset[str]] = frozenset()
    #: run before the target's own preparation passes (a pass that must see BatchNorm before a
    #: target folds it); recipe passes otherwise run after them, in the recipe's order
    before_target: ClassVar[bool] = False

    def config(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def requires(self, program: Program) -> None:  # noqa: B027 - optional hook
        """Raise an :class:`EdgecError` if the program is not a valid input for this pass."""

    @abstractmethod
    def call(self, program: Program, ctx: PassContext) -> PassResult: ...

    def ensures(self, program: Program) -> None:  # noqa: B027 - optional hook
        """Raise if the pass's result breaks a promise the pass makes."""


_DATA_FLAGS = {"calibration": "--calib SRC", "training": "--train-data SRC"}


class PassManager:
    """Runs passes in order and records each one (name, config, duration, stats)."""

    def __init__(self, passes: list[Pass]) -> None:
        self.passes = list(passes)

    def run(self, program: Program, ctx: PassContext) -> Program:
        done: list[str] = [r.name for r in program.history]
        for p in self.passes:
            for need in sorted(p.needs):
                if (need == "calibration" and ctx.calib is None) or (
                    need == "training" and ctx.train is None
                ):
                    raise UsageError(f"pass '{p.name}' needs {need} data", hint=f"pass {_DATA_FLAGS[need]}")
            start = time.perf_counter()
            try:
                p.requires(program)
                result = p.call(program, ctx)
                p.ensures(result.program)
            except EdgecError as exc:
                chain = " -> ".join([*done, p.name])
                exc.message = f"pass '{p.name}' ({chain}): {exc.message}"
                raise
            except Exception as exc:
                raise PassError(p.name, done, exc) from exc
            record = PassRecord(
                name=p.name,
                config=p.config(),
                duration_s=round(time.perf_counter() - start, 4),
                modified=result.modified,
                stats=result.stats,
            )
            log.info(
                "pass %s: modified=%s %s (%.2fs)", p.name, result.modified, result.stats, record.duration_s
            )
            program = result.program.replace(history=[*result.program.history, record])
            done.append(p.name)
        return program
