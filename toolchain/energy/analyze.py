"""Count a program (one traced inference + activity on real inputs) and price it per target.

``count_program`` gives :class:`~edgec.energy.counts.ModelCounts`; ``energy_section`` prices them
with the target's cost table (and every other target's, for the comparison) and returns the
``energy`` section of report.json (docs/report-schema.md).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgec.energy.activity import Activity, measure_activity
from edgec.energy.counter import is_synapse, iter_param_owners, trace_counts
from edgec.energy.counts import LayerCounts, ModelCounts, SynapticOps, Workload
from edgec.energy.estimate import price_model
from edgec.energy.tables import CostTable, get_table
from edgec.errors import UsageError
from edgec.snn import run_model

if TYPE_CHECKING:
    from edgec.data import Dataset
    from edgec.program import Program

log = logging.getLogger(__name__)

#: parameter names stored at a layer's weight width (the rest: biases, norms, embeddings' extras)
_WEIGHT_NAMES = (
    "weight",
    "in_proj_weight",
    "q_proj_weight",
    "k_proj_weight",
    "v_proj_weight",
    "out_proj.weight",
)
DEFAULT_SAMPLES = 32
ENERGY_SECTION_VERSION = 1


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
    scripted = isinstance(module, torch.jit.ScriptModule)
    types = neuron_types() + tuple(
        {type(m) for m in module.modules() if getattr(type(m), "is_spiking_neuron", False)}
    )
    with _eval_mode(module):
        x1 = _model_input(program, _first_sample(program, data))
        with torch.no_grad():  # inside a caller's torch.inference_mode the fused paths run: same counts
            trace = trace_counts(
                module,
                lambda: module(x1),
                neuron_types=types,
                module_hooks=not scripted,
            )
        if scripted or (data is None and program.kind == "ann"):
            # TorchScript modules take no Python hooks: no per-layer activity. An ANN without data:
            # nothing but the activation density depends on the input, and the trace measured it.
            activity = Activity(1 if not scripted else 0, {}, {}, {})
            if scripted:
                for xb in _batches(program, data, samples):
                    activity.samples += int(xb.shape[0])
        else:
            activity = measure_activity(
                module,
                _batches(program, data, samples),
                lambda xb: run_model(program, xb),  # splits batches a fixed-batch graph cannot take
                neuron_types=types,
                synapses_too=program.kind == "snn",
            )
    rows = trace.layer_counts()
    _attach_activity(rows, activity, spiking=program.kind == "snn")
    _attach_params(rows, module, trace.analytic_modules)
    data_name = data.name if data is not None else "the program's example input"
    if data is None and program.source.format in ("zoo", "state_dict", "export", "torchscript", "pickle"):
        data_name = "the program's example input (uniform random, seed 0)"
    workload = Workload(
        samples=activity.samples,
        data=data_name,
        timesteps=program.timesteps,
        encoder=program.encoder,
        kind=program.kind,
    )
    counts = ModelCounts(
        layers=rows,
        workload=workload,
        peak_activation_elements=trace.peak_elements,
        peak_activation_bytes=int(trace.peak_bytes),
        peak_at=trace.peak_at,
    )
    if scripted:
        counts.notes.append(
            "TorchScript module: counted per operator (no per-layer names, no synaptic activity); "
            "compile from a torch.export .pt2 or a state_dict for per-layer figures"
        )
    if program.kind == "snn":
        counts.notes.append(
            "the encoding layer sees the encoded input on every timestep and is charged T times "
            "(as executed, and as NeuroBench counts)"
        )
    return counts


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


def _attach_params(rows: list[LayerCounts], module: nn.Module, analytic: set[str]) -> None:
    by_name = {r.name: r for r in rows if not r.type.startswith("aten.")}
    for name, type_, m, params in iter_param_owners(module, analytic):
        row = by_name.get(name)
        if row is None:
            row = LayerCounts(name=name, type=type_, role="params")
            rows.append(row)
            by_name[name] = row
        weighted = is_synapse(m) or isinstance(m, (nn.MultiheadAttention, nn.Embedding))
        for pname, p in params:
            row.params += int(p.numel())
            if weighted and pname in _WEIGHT_NAMES:
                row.weight_params += int(p.numel())


def apply_bits(
    counts: ModelCounts,
    module: nn.Module,
    table: CostTable,
    *,
    weight_bits: int | None = None,
    overrides: dict[str, int] | None = None,
) -> None:
    """Set each row's storage widths and packed parameter bytes.

    Weight width, first match wins: ``weight_bits`` (everywhere), ``overrides[layer]`` (e.g.
    ``program.metadata["weight_bits"]`` written by a compression pass), a ``weight_bits``
    attribute on the module, the table's width. Other parameters use the table's
    ``other_param_bits``. Bytes are packed per tensor: ``ceil(numel * bits / 8)`` (4-bit: two
    weights a byte; 1-bit: eight).
    """
    modules = dict(module.named_modules())
    for row in counts.layers:
        if not row.params:
            continue
        m = modules.get("" if row.name == "(model)" else row.name)
        bits = weight_bits
        if bits is None and overrides and row.name in overrides:
            bits = int(overrides[row.name])
        if bits is None and m is not None and isinstance(getattr(m, "weight_bits", None), int):
            bits = int(m.weight_bits)
        if bits is None:
            bits = table.weight_bits
        if not 1 <= bits <= 64:
            raise UsageError(f"weight width of '{row.name}' must be 1..64 bits, got {bits}")
        row.weight_bits = bits if row.weight_params else None
        row.other_bits = table.other_param_bits if row.params > row.weight_params else None
        row.param_bytes = math.ceil(row.weight_params * bits / 8) + math.ceil(
            (row.params - row.weight_params) * table.other_param_bits / 8
        )


def _fmt_rows(counts: ModelCounts, priced: list[Any]) -> list[dict[str, Any]]:
    out = []
    for row, p in zip(counts.layers, priced, strict=True):
        d = row.to_dict()
        d.pop("energy", None)
        d["energy"] = p.to_dict()
        out.append(d)
    return out


def priced_copy(
    counts: ModelCounts,
    module: nn.Module,
    table: CostTable,
    *,
    weight_bits: int | None = None,
    overrides: dict[str, int] | None = None,
) -> tuple[ModelCounts, list[Any], dict[str, Any]]:
    c = copy.deepcopy(counts)
    apply_bits(c, module, table, weight_bits=weight_bits, overrides=overrides)
    priced, total = price_model(c, table)
    return c, priced, total


def totals(counts: ModelCounts, table: CostTable) -> dict[str, Any]:
    spiking = counts.workload.kind == "snn"
    other: dict[str, int] = {}
    for r in counts.layers:
        for k, v in r.other_ops.items():
            other[k] = other.get(k, 0) + v
    act_bits = table.activation_bits if not spiking else 32
    t: dict[str, Any] = {
        "macs": int(counts.total("macs")),
        "other_ops": sum(other.values()),
        "other_ops_detail": other,
        "params": int(counts.total("params")),
        "param_bytes": int(counts.total("param_bytes")),
        "peak_activation_bytes": math.ceil(counts.peak_activation_elements * act_bits / 8),
        "peak_activation_elements": counts.peak_activation_elements,
        "peak_activation_at": counts.peak_at,
        "sops": None,
        "spikes": None,
        "neuron_updates": None,
        "firing_rate": None,
    }
    if spiking:
        t["sops"] = {
            "exact": counts.sop_total("exact"),
            "effective_acs": counts.sop_total("effective_acs"),
            "effective_macs": counts.sop_total("effective_macs"),
            "dense": counts.sop_total("dense"),
            "literature": counts.sop_total("literature"),
            "exact_run": int(counts.sop_total("exact_run")),
            "effective_acs_run": int(counts.sop_total("effective_acs_run")),
            "effective_macs_run": int(counts.sop_total("effective_macs_run")),
            "dense_run": int(counts.sop_total("dense_run")),
        }
        spikes = sum(r.spikes or 0 for r in counts.layers)
        updates = sum(r.neuron_updates or 0 for r in counts.layers)
        t["spikes"] = spikes
        t["neuron_updates"] = updates
        t["firing_rate"] = spikes / updates if updates else 0.0
    return t


CONVENTIONS = {
    "unit": "every count and energy is per inference: one sample, all timesteps of an SNN",
    "macs": "weight multiply-accumulates of conv / linear / matmul, attention q k^T and attn v included; "
    "computed analytically from shapes; padding-unaware for convolutions (as fvcore / torchvision)",
    "other_ops": "separate line items, per element: bias 1, batch norm 2, layer/group norm 5, activation 1, "
    "softmax 3, pooling prod(kernel) per output (adaptive: 1 per input), element-wise add/mul 1",
    "sops.exact": "sum over calls of sum(conv((x != 0), (w != 0))): (non-zero input, non-zero weight) "
    "pairs that produce a contribution; boundary-, stride-, group- and pruning-aware",
    "sops.effective_acs / effective_macs": "the exact count split by input: calls whose input is all in "
    "{-1, 0, 1} are ACs, others MACs (NeuroBench 2.3 SynapticOperations)",
    "sops.dense": "sum(conv(1, 1)): every in-bounds (input, weight) pair (NeuroBench 'Dense')",
    "sops.literature": "firing rate x T x FLOPs (padding-unaware dense MACs): the literature's shortcut "
    "(Spikformer, Spike-driven Transformer, syops), shown for comparison only; ignores padding and pruning",
    "neuron_updates": "neurons x timesteps; 'active' updates received non-zero synaptic input",
    "firing_rate": "spikes / (neurons x timesteps)",
    "output_density": "ANN activations: fraction of non-zero outputs (measured)",
    "param_bytes": "packed storage at each layer's bit width: ceil(numel * bits / 8) per tensor",
    "peak_activation_bytes": "estimate: the largest sum of live activation tensors over the op sequence of "
    "one inference (tensor lifetimes from first write to last read; no in-place reuse), at the table's "
    "activation width (SNN: float32, as executed in PyTorch)",
    "energy": "estimate = counts x cited per-operation prices of the named table; a measured figure, when "
    "present, replaces it as the headline",
}


def energy_section(
    program: Program,
    data: Dataset | None,
    *,
    table: str,
    target: str,
    samples: int = DEFAULT_SAMPLES,
    weight_bits: int | None = None,
    comparison: list[tuple[str, str, str]] | None = None,
    counts: ModelCounts | None = None,
) -> dict[str, Any]:
    """The ``energy`` section of report.json: counts, prices, totals, comparison (schema in docs).

    ``comparison`` lists ``(target, variant, table name)`` to price the same counts with.
    """
    tab = get_table(table)
    if counts is None:
        counts = count_program(program, data, samples=samples)
    overrides = (
        program.metadata.get("weight_bits") if isinstance(program.metadata.get("weight_bits"), dict) else None
    )
    c, priced, total = priced_copy(counts, program.module, tab, weight_bits=weight_bits, overrides=overrides)
    tot = totals(c, tab)
    tot["energy"] = total
    comp = []
    variants: dict[str, int] = {}
    for tgt_name, _, _ in comparison or []:
        variants[tgt_name] = variants.get(tgt_name, 0) + 1
    for tgt_name, variant, table_name in comparison or []:
        other = get_table(table_name)
        oc, _, ototal = priced_copy(
            counts, program.module, other, weight_bits=weight_bits, overrides=overrides
        )
        comp.append(
            {
                "target": tgt_name,
                "variant": variant,
                "label": f"{tgt_name} ({other.precision})" if variants[tgt_name] > 1 else tgt_name,
                "table": other.ref,
                "energy_j": ototal["total_j"] if ototal["complete"] else None,
                "compute_j": ototal["compute_j"],
                "memory_j": ototal["memory_j"],
                "complete": ototal["complete"],
                "unpriced": ototal["unpriced"],
                "param_bytes": int(oc.total("param_bytes")),
                "current": tgt_name == target and other.ref == tab.ref,
            }
        )
    notes = list(counts.notes)
    if not total["complete"]:
        notes.append(
            f"table {tab.ref} prices no {', '.join(total['unpriced'])}: the total leaves those operations out"
        )
    return {
        "version": ENERGY_SECTION_VERSION,
        "target": target,
        "headline": {
            # an incomplete estimate is no figure to quote: what was priced stays in `estimate`
            "energy_j": total["total_j"] if total["complete"] else None,
            "source": "estimate",
            "table": tab.ref,
            "complete": total["complete"],
        },
        "estimate": total,
        "measured": None,
        "table": tab.to_dict(),
        "workload": c.workload.to_dict(),
        "bits": {
            "weight_bits": weight_bits if weight_bits is not None else tab.weight_bits,
            "other_param_bits": tab.other_param_bits,
            "activation_bits": tab.activation_bits,
            "overrides": overrides or {},
        },
        "layers": _fmt_rows(c, priced),
        "totals": tot,
        "comparison": comp,
        "conventions": CONVENTIONS,
        "notes": notes,
    }
