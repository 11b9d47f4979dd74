"""The Target interface: a target decides (``check``), then emits (``lower``), after ExecuTorch.

A target owns its IR and its SDK. Core code never branches on a target's name; it looks the
target up once in :data:`TARGETS` (a lazy table of the installed ``edgec.targets`` entry points,
:mod:`edgec.plugins`: a target's module is imported only when chosen) and calls these methods:

``availability()``                  is it usable here, and what is missing (no SDK import)
``prepare_passes(program, config)`` passes the target wants before lowering (e.g. fold BN)
``check(program, config)``          a list of :class:`Violation` rows: what it cannot take, and why
``lower(program, out_dir, ctx)``    write the artifact files, return what was written
``estimate_energy(...)``            the target's energy estimate (cost table chosen by the target)
``session(artifact, backend, threads)``  a callable that executes the artifact on a batch of raw
                                    inputs ``[N, *input_shape]`` (any N) and returns its outputs by
                                    name, batch first, in the order of report.json
                                    ``program.outputs`` (``run``, ``verify`` and ``bench`` all go
                                    through it; see :data:`Session`)
``verify(artifact, program, data, backend)``  compare the artifact with its source model

Rejections are data (``Violation`` rows rendered as a table), never a bare ``False``.
See docs/adding-a-target.md.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from edgec.errors import MissingDependency, UsageError
from edgec.plugins import TARGET_GROUP, load, registered

if TYPE_CHECKING:
    from pathlib import Path

    from edgec.artifact import Artifact
    from edgec.config import CompileConfig
    from edgec.data import Dataset
    from edgec.energy.measured import Measurement
    from edgec.passes import Pass, PassContext
    from edgec.program import Program

#: what :meth:`Target.session` returns: raw inputs ``[N, *input_shape]`` -> ``{output name: array}``,
#: each array batch first (``[N, *shape]`` with the shapes of report.json ``program.outputs``). A
#: single-output model's output is named ``output``; a Loihi network's output is its spikes
#: ``[N, T, *out]``. A session may carry a ``runtime`` attribute (a dict: which runtime and version, the
#: precision it ran at, its threads, its device) that ``bench`` reports.
Session = Callable[[np.ndarray], dict[str, np.ndarray]]

#: name -> "module:Class", read from the ``edgec.targets`` entry points of the installed packages:
#: edgec's own three are declared in its pyproject.toml, and a target package adds itself the same way
#: in its own, so a new target touches no file of edgec's core (docs/adding-a-target.md)
TARGETS: dict[str, str] = dict(registered(TARGET_GROUP))


class EnergyProbe(Protocol):
    """Measures energy while ``bench`` times a run: returns per-call latencies (s) and the measurement."""

    def measure(
        self, fn: Callable[[], object], *, iterations: int, warmup: int, batch_size: int
    ) -> tuple[list[float], Measurement]: ...


@dataclass
class NoOptions:
    """The options of a target that takes none (any ``[target.NAME]`` key is then an error)."""


@dataclass(frozen=True)
class Violation:
    """One thing a target cannot take: which layer, which rule, what exactly, and what to do."""

    layer: str
    rule: str
    detail: str
    hint: str
    verified: bool = True  # False when the rule's source is secondary / unverified
    kind: str = ""  # the layer's kind (module class or op), for grouping; "" = from the name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ViolationGroup:
    """Violations of one rule by layers of one kind (what the why-not table shows as one row)."""

    rule: str
    kind: str
    names: tuple[str, ...]
    detail: str
    hint: str
    verified: bool

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def layers(self) -> str:
        if self.count == 1:
            return self.names[0]
        shown = ", ".join(self.names[:3])
        more = f", ... ({self.count} layers)" if self.count > 3 else ""
        return f"{shown}{more}"

    @property
    def suffix(self) -> str:
        return ("" if self.verified else " (unverified limit)") + (
            f" x{self.count}" if self.count > 1 else ""
        )


def _kind(v: Violation) -> str:
    import re

    return v.kind or re.sub(r"([._]?\d+)+$", "", v.layer) or v.layer


def group_violations(violations: list[Violation]) -> list[ViolationGroup]:
    """One group per (rule, layer kind, hint), in order of first appearance; a group's detail is its
    first layer's (noting that the others are alike)."""
    groups: dict[tuple[str, str, str], list[Violation]] = {}
    for v in violations:
        groups.setdefault((v.rule, _kind(v), v.hint), []).append(v)
    out = []
    for (rule, kind, hint), rows in groups.items():
        detail = rows[0].detail
        if len(rows) > 1 and any(r.detail != detail for r in rows):
            detail += f" (and {len(rows) - 1} more like it)"
        out.append(
            ViolationGroup(
                rule, kind, tuple(r.layer for r in rows), detail, hint, all(r.verified for r in rows)
            )
        )
    return out


@dataclass(frozen=True)
class Availability:
    usable: bool
    missing: tuple[str, ...] = ()
    note: str = ""


@dataclass
class Lowered:
    """What ``lower`` wrote: files by role (relative to the artifact dir) and its report section."""

    files: dict[str, str]
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyResult:
    passed: bool
    metrics: dict[str, Any]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "metrics": self.metrics, "summary": self.summary}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class Target(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    #: import names this target cannot work without
    requires: ClassVar[tuple[str, ...]] = ()
    #: optional features -> import name (e.g. {"backend lava": "lava"})
    optional: ClassVar[dict[str, str]] = {}
    #: execution backends for run / verify; the first is the default
    backends: ClassVar[tuple[str, ...]] = ("default",)
    #: whether ``compile --backend`` builds the artifact for one backend (recorded in its report and read
    #: back by :meth:`default_backend`); else one artifact serves every backend and compile refuses it
    backend_at_compile: ClassVar[bool] = False
    #: energy cost tables (edgec.energy.tables) by ``config.quantize`` value; "default" for the rest.
    #: Declaring them is all a target needs for energy reports: counting and pricing are core.
    cost_tables: ClassVar[dict[str, str]] = {}
    #: the precisions ``--quantize`` may ask of this target: value -> what the artifact computes in
    #: (a tuple of values is accepted too). The core keeps no list of its own: ``edgec targets``
    #: shows these, compile checks against them.
    precisions: ClassVar[Mapping[str, str] | tuple[str, ...]] = {"none": "the model's own floating point"}
    #: the target's own options (``[target.NAME]`` in edgec.toml, ``--target-option KEY=VALUE``,
    #: ``target_options={NAME: {...}}``): a dataclass whose fields may use
    #: :func:`edgec.options.option`, checked by the core; None: the target checks its own
    options: ClassVar[type | None] = None

    def availability(self) -> Availability:
        missing = tuple(m for m in self.requires if not _installed(m))
        opt_missing = [f"{feat} (needs {mod})" for feat, mod in self.optional.items() if not _installed(mod)]
        note = f"unavailable here: {', '.join(opt_missing)}" if opt_missing else ""
        return Availability(usable=not missing, missing=missing, note=note)

    def precision_table(self) -> dict[str, str]:
        """``--quantize`` value -> what it means, for this target."""
        p = self.precisions
        return dict(p) if isinstance(p, Mapping) else dict.fromkeys(p, "")

    def require_precision(self, quantize: str) -> None:
        table = self.precision_table()
        if quantize not in table:
            choices = "; ".join(f"{k} ({v})" if v else k for k, v in table.items())
            raise UsageError(
                f"target '{self.name}' has no precision '{quantize}' (--quantize)",
                hint=f"choose one of: {choices}",
            )

    def energy_probe(self, artifact: Artifact, *, backend: str) -> EnergyProbe | None:
        """A power meter for ``bench``'s timed run on ``backend`` (None: energy is not measured here)."""
        return None

    def require_usable(self) -> None:
        av = self.availability()
        if not av.usable:
            raise MissingDependency(
                f"target '{self.name}' needs {', '.join(av.missing)}, which is not installed",
                hint=f"install it (see `edgec targets`); {self.description}",
            )

    def resolve_backend(self, backend: str | None, artifact: Artifact | None = None) -> str:
        if backend is None:
            return self.default_backend(artifact)
        if backend not in self.backends:
            raise UsageError(
                f"target '{self.name}' has no backend '{backend}'",
                hint=f"choose from: {', '.join(self.backends)}",
            )
        return backend

    def default_backend(self, artifact: Artifact | None = None) -> str:
        """The backend ``run`` / ``verify`` / ``bench`` use when none is asked for: the first declared;
        a target may read the one an artifact was built for from its report."""
        return self.backends[0]

    def resolve_config(self, config: CompileConfig) -> CompileConfig:
        """``config`` checked against what this target declares (its precisions, backends, options)."""
        self.require_precision(config.quantize)
        if config.backend is not None:
            self.resolve_backend(config.backend)
            if not self.backend_at_compile:
                raise UsageError(
                    f"target '{self.name}' builds one artifact for all its backends: --backend is not a "
                    "compile option here",
                    hint=f"drop --backend; choose one ({', '.join(self.backends)}) with run, verify or bench",
                )
        self.target_options(config)
        return config

    def target_options(self, config: CompileConfig) -> Any:
        """This target's options from ``config`` (an instance of :attr:`options`), checked."""
        from edgec.options import check_fields

        values = config.target_options.get(self.name, {})
        if self.options is None:  # the target reads (and checks) its own
            return dict(values)
        return check_fields(self.options, values, f"target '{self.name}'")

    def prepare_passes(self, program: Program, config: CompileConfig) -> list[Pass]:
        return []

    def summary(self, report: dict[str, Any]) -> list[str]:
        """A few lines for people about an artifact this target wrote, from its report.json (the CLI
        prints them after compiling; it knows nothing of a target's report section)."""
        return [f"precision: {report.get('config', {}).get('quantize', 'none')}"]

    def check(self, program: Program, config: CompileConfig) -> list[Violation]:
        return []

    @abstractmethod
    def lower(self, program: Program, out_dir: Path, ctx: PassContext) -> Lowered: ...

    def cost_table(self, program: Program, config: CompileConfig) -> str | None:
        """Name of the cost table this target's energy is priced with (None: no estimate)."""
        return self.cost_tables.get(config.quantize, self.cost_tables.get("default"))

    def estimate_energy(
        self,
        program: Program,
        data: Dataset | None,
        config: CompileConfig,
        *,
        samples: int | None = None,
        weight_bits: int | None = None,
    ) -> dict[str, Any] | None:
        """Energy section of the report (docs/report-schema.md), or None without a cost table.

        Counting is core (:mod:`edgec.energy`); the target only names its table. ``samples`` inputs
        of ``data`` feed the activity counts (SOPs, spikes); ``weight_bits`` overrides the width.
        """
        table = self.cost_table(program, config)
        if table is None:
            return None
        from edgec.energy.analyze import DEFAULT_SAMPLES, energy_section

        return energy_section(
            program,
            data,
            table=table,
            target=self.name,
            samples=samples or DEFAULT_SAMPLES,
            weight_bits=weight_bits,
            comparison=cost_table_catalogue(),
        )

    @abstractmethod
    def session(
        self, artifact: Artifact, *, backend: str | None = None, threads: int | None = None
    ) -> Session:
        """Load the artifact once; the callable runs it on a batch of raw inputs ``[N, *input_shape]``
        (any N) and returns ``{output name: [N, *shape]}`` in report.json ``program.outputs`` order."""

    def run(self, artifact: Artifact, x: np.ndarray, *, backend: str | None = None) -> dict[str, np.ndarray]:
        return self.session(artifact, backend=backend)(x)

    def reference(self, program: Program, x: np.ndarray) -> dict[str, np.ndarray]:
        """The source model's outputs for the same inputs, named and shaped as the session's."""
        from edgec.snn import run_outputs

        return run_outputs(program, x)

    def verify(
        self,
        artifact: Artifact,
        program: Program,
        data: Dataset,
        *,
        backend: str | None = None,
        limit: int | None = None,
        min_agreement: float = 0.98,
        batch_size: int = 64,
    ) -> VerifyResult:
        """Default: run artifact and source on the same inputs and compare them as the program's task
        does (:mod:`edgec.tasks`): classification by max-abs error and top-1 agreement, detection by
        the mAP of both on the data's boxes."""
        from edgec.tasks import task_for

        task = task_for(program)
        x, y = task.inputs(data, limit)
        run = self.session(artifact, backend=backend)
        outs: list[dict[str, np.ndarray]] = []
        refs: list[dict[str, np.ndarray]] = []
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            outs.append(run(xb))
            refs.append(self.reference(program, xb))
        if program.kind == "snn":
            return compare_spikes(_stack(outs), _stack(refs), y, min_agreement=min_agreement)
        return task.compare(_stack(outs), _stack(refs), y, min_agreement=min_agreement)


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


#: an output that is not class scores passes when its max-abs error is at most this share of its range
REL_TOLERANCE = 0.05


#: the largest spread of a sample's class scores below which top-1 agreement is called uninformative
DEGENERATE_SPREAD = 1e-6


def compare_outputs(
    out: dict[str, np.ndarray], ref: dict[str, np.ndarray], labels: np.ndarray | None, *, min_agreement: float
) -> VerifyResult:
    """Every output by name: max-abs error; class scores ``[N, C]`` also top-1 agreement and (with
    labels, first output) accuracy of both. Passes when every output does: scores by agreement,
    other outputs by max-abs error within :data:`REL_TOLERANCE` of the reference's range."""
    if list(out) != list(ref) or any(out[k].shape != ref[k].shape for k in ref):
        got = {k: list(v.shape) for k, v in out.items()}
        want = {k: list(v.shape) for k, v in ref.items()}
        return VerifyResult(False, {"outputs": got, "expected": want}, f"outputs differ: {got} vs {want}")
    per: dict[str, dict[str, Any]] = {}
    errors = []
    passed = True
    parts = []
    metrics: dict[str, Any] = {"samples": len(next(iter(ref.values())))}
    for i, (name, r) in enumerate(ref.items()):
        o = out[name]
        err = np.abs(o.astype(np.float64) - r.astype(np.float64))
        errors.append(err.ravel())
        row: dict[str, Any] = {"max_abs_error": float(err.max()) if err.size else 0.0}
        if o.ndim == 2 and o.shape[1] > 1:
            top_out, top_ref = o.argmax(1), r.argmax(1)
            row["top1_agreement"] = float((top_out == top_ref).mean())
            ok = row["top1_agreement"] >= min_agreement
            text = f"top-1 agreement {row['top1_agreement']:.2%} (min {min_agreement:.0%})"
            spread = float((r.max(1) - r.min(1)).max()) if r.size else 0.0
            if spread < DEGENERATE_SPREAD:  # e.g. an untrained torchvision classifier: scores ~1e-10
                row["score_spread"] = spread
                text += (
                    f" (warning: the source model's scores differ by at most {spread:.2g} between "
                    "classes, so top-1 agreement says little here; an untrained model?)"
                )
            if i == 0:
                metrics["top1_agreement"] = row["top1_agreement"]
                if labels is not None:
                    metrics["accuracy_artifact"] = float((top_out == labels).mean())
                    metrics["accuracy_source"] = float((top_ref == labels).mean())
        else:
            scale = float(np.abs(r).max()) if r.size else 0.0
            allowed = REL_TOLERANCE * (scale or 1.0)
            ok = row["max_abs_error"] <= allowed
            text = f"max abs error {row['max_abs_error']:.3g} (allowed {allowed:.3g})"
        passed = passed and ok
        parts.append(text if len(ref) == 1 else f"{name}: {text}")
        per[name] = row
    flat = np.concatenate(errors) if errors else np.zeros(1)
    metrics["max_abs_error"] = float(flat.max()) if flat.size else 0.0
    metrics["mean_abs_error"] = float(flat.mean()) if flat.size else 0.0
    if len(ref) > 1:
        metrics["outputs"] = per
    summary = "; ".join(parts)
    if len(ref) == 1 and "top1_agreement" in metrics:
        summary += f", max abs error {metrics['max_abs_error']:.3g}"
    return VerifyResult(passed, metrics, summary)


def compare_spikes(
    out: dict[str, np.ndarray], ref: dict[str, np.ndarray], labels: np.ndarray | None, *, min_agreement: float
) -> VerifyResult:
    """A spiking network's outputs ``[N, T, ...]`` (spikes) compared as its class is read: by spike
    count per output neuron (:func:`compare_outputs` on the counts), with the share of identical output
    spikes reported (float rounding in a runtime may flip a spike at the threshold)."""
    if list(out) != list(ref) or any(out[k].shape != ref[k].shape for k in ref):
        return compare_outputs(out, ref, labels, min_agreement=min_agreement)
    counts = {k: v.sum(1).reshape(len(v), -1) for k, v in out.items()}
    ref_counts = {k: v.sum(1).reshape(len(v), -1) for k, v in ref.items()}
    result = compare_outputs(counts, ref_counts, labels, min_agreement=min_agreement)
    result.metrics["outputs_identical"] = float(np.mean([(out[k] == ref[k]).mean() for k in ref]))
    return result


def target_names() -> list[str]:
    return sorted(TARGETS)


def cost_table_catalogue() -> list[tuple[str, str, str]]:
    """``(target, variant, table)`` for every registered target and each of its cost tables: what an
    energy report prices the same counts with to compare targets."""
    import logging

    rows: list[tuple[str, str, str]] = []
    for name in target_names():
        try:
            tgt = get_target(name)
        except (ImportError, AttributeError) as exc:  # a target module that cannot load here
            logging.getLogger(__name__).warning("energy comparison leaves out target '%s': %s", name, exc)
            continue
        rows += [(name, variant, table) for variant, table in tgt.cost_tables.items()]
    return rows


def get_target(name: str) -> Target:
    """The target registered under ``name``; its module is imported now, its SDK not yet."""
    if name not in TARGETS:
        hint = (
            f"choose one of: {', '.join(target_names())}"
            if TARGETS
            else "no target is registered: install edgec (make setup; its targets are entry points)"
        )
        raise UsageError(f"unknown target '{name}'", hint=hint)
    cls = load(TARGETS[name])
    if not (isinstance(cls, type) and issubclass(cls, Target)):
        raise UsageError(
            f"the target registered as '{name}' ({TARGETS[name]}) is not a Target class",
            hint="fix the edgec.targets entry point of the package that registers it",
        )
    try:
        return cls()
    except TypeError as exc:  # e.g. an abstract method left out
        raise UsageError(
            f"the target registered as '{name}' ({TARGETS[name]}) cannot be created: {exc}",
            hint="complete the Target subclass of the package that registers it (docs/adding-a-target.md)",
        ) from exc
