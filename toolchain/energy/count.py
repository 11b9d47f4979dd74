"""Count a program: one traced inference (dense counts per layer) plus activity on real inputs.

:func:`count_program` gives :class:`~edgec.energy.counts.ModelCounts`: MACs and other operations
per layer (:mod:`edgec.energy.counter`), parameters per layer at their storage class (weights or
the rest), peak activation memory, and what real inputs make of it: synaptic operations, spikes
and firing rates of an SNN, activation densities of an ANN (:mod:`edgec.energy.activity`).
Module trees are counted with hooks; torch.export and TorchScript programs node by node, each
operator given back to its layer (:mod:`edgec.energy.graphs`). What cannot be attributed or
counted is said in the counts' notes and ``uncounted`` list.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from edgec.energy.activity import Activity, measure_activity, measure_graph_density
from edgec.energy.counter import Trace, analytic_layers, iter_param_owners, trace_counts
from edgec.energy.counts import LayerCounts, ModelCounts, SynapticOps, Workload
from edgec.energy.graphs import GraphProgram, Unsupported, graph_of
from edgec.energy.rules import WEIGHTED_CLASSES, WEIGHTED_NAMES, is_weight
from edgec.errors import UsageError

if TYPE_CHECKING:
    from edgec.data import Dataset
    from edgec.program import Program

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 32


def neuron_types() -> tuple[type[nn.Module], ...]:
    """Spiking neuron classes of the core vocabulary (:mod:`edgec.snn`)."""
    import edgec.snn as snn

    explicit = getattr(snn, "NEURON_TYPES", None)
    if explicit:
        return tuple(explicit)
    return tuple(
        v
        for v in vars(snn).values()
        if isinstance(v, type) and issubclass(v, nn.Module) and getattr(v, "is_spiking_neuron", False)
    )


def _model_input(program: Program, x: torch.Tensor) -> torch.Tensor:
    """What the module itself receives: an SNN's encoded ``[T, B, ...]`` spikes (encoding runs on the
    host, outside the counted network), an ANN's raw input."""
    if program.kind != "snn":
        return x
    from edgec.snn import encode

    return encode(x, program.timesteps, program.encoder)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Count in inference mode (eval), restoring the module's mode afterwards.

    Modules that cannot switch (a ``torch.export`` program's module) are counted as they are.
    """
    was_training = module.training
    try:
        module.eval()
    except NotImplementedError:
        yield
        return
    try:
        yield
    finally:
        module.train(was_training)


def _batches(
    program: Program, data: Dataset | None, samples: int, batch_size: int = 64
) -> Iterator[torch.Tensor]:
    if data is None:
        yield program.example_input
        return
    for xb in data.batches(batch_size, limit=samples):
        yield torch.from_numpy(xb).float()


def _first_sample(program: Program, data: Dataset | None) -> torch.Tensor:
    if data is not None:
        for x, _ in data.take(1):
            return torch.from_numpy(x[None]).float()
    return program.example_input[:1]


def count_program(
    program: Program,
    data: Dataset | None = None,
    *,
    samples: int = DEFAULT_SAMPLES,
) -> ModelCounts:
    """Dense counts of one inference, plus activity measured on ``samples`` inputs of ``data``.

    Without data the program's example input is used (for an ANN every count but the activation
    density is analytic and does not depend on it).
    """
    if samples < 1:
        raise UsageError(f"--samples must be >= 1, got {samples}")
    module = program.module
    static = getattr(program, "static_batch", None)
    graph = graph_of(module) if program.kind == "ann" and static in (None, 1) else None
    types = neuron_types() + tuple(
        {type(m) for m in module.modules() if getattr(type(m), "is_spiking_neuron", False)}
    )
    notes: list[str] = []
    with _eval_mode(module), torch.no_grad():  # inside a caller's inference_mode the fused paths run
        first = _first_sample(program, data)
        if static not in (None, 1):  # a graph that takes exactly `static` samples: one call of them
            first = first.expand(static, *first.shape[1:]).clone()
            notes.append(
                f"the program takes a fixed batch of {static}: its counts are of one call on {static} "
                f"copies of a sample (per-sample counts are 1/{static} of the batch-proportional ones); "
                "export with a batch of 1 or a dynamic batch for per-inference figures"
            )
        x1 = _model_input(program, first)
        trace = _trace_graph(graph, module, x1, notes) if graph is not None else None
        if trace is None:
            trace = trace_counts(module, lambda: module(x1), neuron_types=types)
            if graph is not None:
                graph = None  # activity by layer needs the graph run that just failed
        if data is None and program.kind == "ann":
            # nothing but the activation density depends on the input, and the trace measured it
            activity = Activity(1, {}, {}, {})
        elif graph is not None:
            activity = measure_graph_density(graph, _batches(program, data, samples))
        elif isinstance(module, torch.jit.ScriptModule):
            activity = Activity(0, {}, {}, {})  # no hooks, no graph run: no per-layer activity
        else:
            from edgec.snn import run_model

            activity = measure_activity(
                module,
                _batches(program, data, samples),
                lambda xb: run_model(program, xb),
                neuron_types=types,
                synapses_too=program.kind == "snn",
            )
    layer_types = _layer_types(module, graph)
    rows = trace.layer_counts()
    _attach_activity(rows, activity, spiking=program.kind == "snn")
    _attach_params(rows, module, analytic_layers(module, types, layer_types), layer_types)
    rows = [r for r in rows if not _empty(r)]
    data_name = data.name if data is not None else "the program's example input"
    if data is None and program.source.format in ("zoo", "state_dict", "export", "torchscript", "pickle"):
        data_name = "the program's example input (uniform random, seed 0)"
    if data is None and program.kind == "snn":
        notes.append(
            "activity (synaptic operations, spikes) was measured on one random input, not on data: "
            "pass --data for representative figures"
        )
    counts = ModelCounts(
        layers=rows,
        workload=Workload(
            samples=activity.samples,
            data=data_name,
            timesteps=program.timesteps,
            encoder=program.encoder,
            kind=program.kind,
        ),
        peak_activation_elements=trace.peak_elements,
        peak_activation_bytes=int(trace.peak_bytes),
        peak_at=trace.peak_at,
        notes=notes,
        uncounted=[
            {"layer": layer, "type": type_, "ops": ops} for (layer, type_), ops in trace.uncounted.items()
        ],
    )
    for u in counts.uncounted:
        counts.notes.append(
            f"uncounted: {u['layer']} ({u['type']}) runs {', '.join(u['ops'])}, which edgec has no counting "
            "rule for; the totals leave that work out"
        )
    if program.kind == "snn":
        counts.notes.append(
            "the encoding layer sees the encoded input on every timestep and is charged T times "
            "(as executed, and as NeuroBench counts)"
        )
    return counts


def _trace_graph(graph: GraphProgram, module: nn.Module, x: torch.Tensor, notes: list[str]) -> Trace | None:
    """Trace a torch.export / TorchScript program node by node, each operator as its layer's work.

    None (and a note saying why) when the graph cannot be run here node by node, or its result
    differs from the program's own: the caller then counts it per operator under ``(model)``.
    """
    what = {"export": "torch.export program", "torchscript": "TorchScript module"}[graph.kind]
    try:
        trace = trace_counts(module, lambda: None, graph=graph, graph_input=x)
        expected = module(x)
        got, want = tree_flatten(trace.output)[0], tree_flatten(expected)[0]
        if len(got) != len(want) or not all(
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.allclose(a, b, atol=1e-5)
            for a, b in zip(got, want, strict=True)
        ):
            raise Unsupported("running its graph node by node gave another result than the program")
    except Unsupported as exc:
        log.info("%s counted per operator: %s", what, exc)
        notes.append(
            f"{what}: operators could not be attributed to layers ({exc}); MACs and other operations are "
            "counted per operator under (model), parameters per layer"
        )
        return None
    return trace


def _empty(r: LayerCounts) -> bool:
    """A row that computes, stores and moves nothing (an Identity, a Flatten, an eval-mode Dropout)."""
    return not (r.macs or r.other_ops or r.params or r.output_elements or r.sops or r.neuron_updates) and (
        r.output_density is None
    )


def _layer_types(module: nn.Module, graph: GraphProgram | None) -> dict[str, str] | None:
    """Class names of layers known by name only (graphs, TorchScript); None for a module tree."""
    if graph is not None:
        return graph.layer_types()
    if isinstance(module, torch.jit.ScriptModule):
        return {n: str(getattr(m, "original_name", type(m).__name__)) for n, m in module.named_modules()}
    return None


def _attach_activity(rows: list[LayerCounts], act: Activity, *, spiking: bool) -> None:
    n = max(act.samples, 1)
    by_name = {r.name: r for r in rows if not r.type.startswith("aten.")}
    for name, st in act.synapses.items():
        row = by_name.get(name)
        if row is None or not spiking:
            continue
        row.sops = SynapticOps(
            exact=st.exact / n,
            effective_acs=st.acs / n,
            effective_macs=st.macs / n,
            dense=st.dense / n,
            literature=(st.nnz / st.numel * st.flops / n) if st.numel else 0.0,
            exact_run=st.exact,
            effective_acs_run=st.acs,
            effective_macs_run=st.macs,
            dense_run=st.dense,
        )
        row.input_rate = st.nnz / st.numel if st.numel else 0.0
        row.input_spikes = st.nnz / n
    for name, nst in act.neurons.items():
        row = by_name.get(name)
        if row is None:
            continue
        row.spikes = nst.spikes / n
        row.neuron_updates = nst.updates / n
        row.active_neuron_updates = nst.active / n
        row.firing_rate = nst.spikes / nst.updates if nst.updates else 0.0
        row.output_bits = 1
    for name, dst in act.density.items():
        row = by_name.get(name)
        if row is not None and dst.numel:
            row.output_density = dst.nnz / dst.numel


def _attach_params(
    rows: list[LayerCounts], module: nn.Module, analytic: set[str], types: dict[str, str] | None
) -> None:
    """Parameters per layer; weights of weighted layers apart (stored at the weight width)."""
    by_name = {r.name: r for r in rows if not r.type.startswith("aten.")}
    modules = dict(module.named_modules())
    for name, type_, params in iter_param_owners(module, analytic, types):
        row = by_name.get(name)
        if row is None:
            row = LayerCounts(name=name, type=type_, role="params")
            rows.append(row)
            by_name[name] = row
        m = modules.get("" if name == "(model)" else name)
        weighted = type_ in WEIGHTED_NAMES or (types is None and isinstance(m, WEIGHTED_CLASSES))
        for pname, p in params:
            row.params += int(p.numel())
            if weighted and is_weight(pname):
                row.weight_params += int(p.numel())
