"""Price a program's counts per target: the ``energy`` section of report.json (docs/report-schema.md).

:func:`energy_section` counts the program (:func:`edgec.energy.count.count_program`), sets each
layer's storage widths (:func:`apply_bits`), prices the counts with the target's cost table and
with every table the caller hands in for the comparison across targets (the energy package never
looks targets up), and totals them.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from edgec.energy.count import DEFAULT_SAMPLES, count_program, neuron_types
from edgec.energy.counts import ModelCounts
from edgec.energy.estimate import price_model
from edgec.energy.tables import CostTable, get_table
from edgec.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

    from edgec.data import Dataset
    from edgec.program import Program

__all__ = ["DEFAULT_SAMPLES", "apply_bits", "count_program", "energy_section", "neuron_types", "totals"]
ENERGY_SECTION_VERSION = 1


def apply_bits(
    counts: ModelCounts,
    module: nn.Module,
    table: CostTable,
    *,
    weight_bits: int | None = None,
    overrides: dict[str, int] | None = None,
    scales: dict[str, int] | None = None,
) -> None:
    """Set each row's storage widths and packed parameter bytes.

    Weight width, first match wins: ``weight_bits`` (everywhere), ``overrides[layer]`` (e.g.
    ``program.metadata["weight_bits"]`` written by a compression pass), a ``weight_bits``
    attribute on the module, the table's width. Other parameters use the table's
    ``other_param_bits``. Bytes are packed per tensor: ``ceil(numel * bits / 8)`` (4-bit: two
    weights a byte; 1-bit: eight). ``scales[layer]``: the per-channel scales of a recorded grid
    (``program.quant``), stored at ``other_param_bits`` beside the weights.
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
        row.weight_scales = int((scales or {}).get(row.name, 0)) if row.weight_params else 0
        row.param_bytes = (
            math.ceil(row.weight_params * bits / 8)
            + math.ceil((row.params - row.weight_params) * table.other_param_bits / 8)
            + math.ceil(row.weight_scales * table.other_param_bits / 8)
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
    scales: dict[str, int] | None = None,
) -> tuple[ModelCounts, list[Any], dict[str, Any]]:
    c = copy.deepcopy(counts)
    apply_bits(c, module, table, weight_bits=weight_bits, overrides=overrides, scales=scales)
    priced, total = price_model(c, table)
    return c, priced, total


def totals(counts: ModelCounts, table: CostTable) -> dict[str, Any]:
    spiking = counts.workload.kind == "snn"
    other: dict[str, int] = {}
    for r in counts.layers:
        for k, v in r.other_ops.items():
            other[k] = other.get(k, 0) + v
    act_bits = table.activation_bits if not spiking else 32
    bops = int(counts.total("bops"))
    t: dict[str, Any] = {
        "macs": int(counts.total("macs")),
        "other_ops": sum(other.values()),
        "other_ops_detail": other,
        "params": int(counts.total("params")),
        "param_bytes": int(counts.total("param_bytes")),
        "peak_activation_bytes": math.ceil(counts.peak_activation_elements * act_bits / 8),
        "peak_activation_elements": counts.peak_activation_elements,
        "peak_activation_at": counts.peak_at,
        "bops": bops,
        "ops_bop64": bops / 64 + (int(counts.total("macs")) - bops),
        "sops": None,
        "spikes": None,
        "neuron_updates": None,
        "firing_rate": None,
        "uncounted": [dict(u) for u in counts.uncounted],
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
    "computed analytically from shapes; padding-unaware for convolutions (as fvcore / torchvision); "
    "recurrent layers (LSTM / GRU / RNN): every weight matrix once per timestep, batch element, layer "
    "and direction",
    "other_ops": "separate line items, per element: bias 1, batch norm 2, layer/group norm 5, activation 1, "
    "softmax 3, pooling prod(kernel) per output (adaptive: 1 per input), element-wise add/mul/compare 1, "
    "reduction 1 per input element; recurrent layers per hidden unit and step: LSTM 5 activations + 8 "
    "element-wise, GRU 3 + 8, RNN 1 + 1",
    "uncounted": "layers that ran operators edgec has no counting rule for (listed with the operators); "
    "their work is left out of every total and the headline energy is then n/a, never a silent zero",
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
    "param_bytes": "packed storage at each layer's bit width: ceil(numel * bits / 8) per tensor, plus the "
    "per-channel scales of a recorded weight grid (program.quant) at the width of the other parameters",
    "bops": "binary operations: the MACs whose two operands are 1-bit (XNOR + popcount; XNOR-Net, "
    "Rastegari et al., ECCV 2016), from the quantization record: layers with 1-bit weights and binarized "
    "inputs, and matmuls of modules recorded with 1-bit operands (Bi-ViT attention); priced as the table's "
    "MACs (no cited per-operation energy of a binary operation exists in these tables)",
    "ops_bop64": "OPs = BOPs / 64 + FLOPs, FLOPs the remaining MACs: the convention of Bi-Real Net (Liu et "
    "al., ECCV 2018) and Bi-ViT (AAAI 2024), 64 binary operations per instruction of a 64-bit processor; a "
    "theoretical figure, not a measurement",
    "peak_activation_bytes": "estimate: the largest sum of live activation tensors over the op sequence of "
    "one inference (tensor lifetimes from first write to last read; no in-place reuse), at the table's "
    "activation width (SNN: float32, as executed in PyTorch)",
    "energy": "estimate = counts x cited per-operation prices of the named table; a measured figure, when "
    "present, replaces it as the headline",
}


def _bit_overrides(program: Program) -> dict[str, int] | None:
    """Per-layer weight widths a compression pass recorded (``program.quant``, or the older
    ``program.metadata["weight_bits"]``)."""
    out: dict[str, int] = {}
    legacy = program.metadata.get("weight_bits")
    if isinstance(legacy, dict):
        out.update({str(k): int(v) for k, v in legacy.items()})
    for name, lq in getattr(program, "quant", {}).items():
        if getattr(lq, "weight_bits", None):
            out[name] = int(lq.weight_bits)
    return out or None


def binary_layers(program: Program) -> set[str]:
    """Layers whose MACs are binary operations (the ``bops`` convention): 1-bit weights with a binarized
    input, or a module recorded with 1-bit operands and no weights (its matmuls: Bi-ViT attention)."""
    if program.kind != "ann":
        return set()
    return {
        name
        for name, q in getattr(program, "quant", {}).items()
        if getattr(q, "act_bits", None) == 1 and getattr(q, "weight_bits", None) in (1, None)
    }


def mark_bops(counts: ModelCounts, binary: set[str]) -> None:
    """Set ``bops`` of every row: its MACs where the row is a binary layer's (or its matmuls')."""
    for row in counts.layers:
        row.bops = row.macs if row.name in binary and row.role in ("conv", "linear", "matmul") else 0


def _scale_counts(program: Program) -> dict[str, int] | None:
    """Per-channel scales of each recorded weight grid (stored beside the packed weights)."""
    out = {
        name: len(q.weight_scale)
        for name, q in getattr(program, "quant", {}).items()
        if getattr(q, "weight_bits", None) and len(q.weight_scale) > 1
    }
    return out or None


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
    overrides = _bit_overrides(program)
    scales = _scale_counts(program)
    mark_bops(counts, binary_layers(program))
    c, priced, total = priced_copy(
        counts, program.module, tab, weight_bits=weight_bits, overrides=overrides, scales=scales
    )
    tot = totals(c, tab)
    tot["energy"] = total
    comp = []
    variants: dict[str, int] = {}
    for tgt_name, _, _ in comparison or []:
        variants[tgt_name] = variants.get(tgt_name, 0) + 1
    for tgt_name, variant, table_name in comparison or []:
        other = get_table(table_name)
        oc, _, ototal = priced_copy(
            counts, program.module, other, weight_bits=weight_bits, overrides=overrides, scales=scales
        )
        comp.append(
            {
                "target": tgt_name,
                "variant": variant,
                "label": f"{tgt_name} ({other.precision})" if variants[tgt_name] > 1 else tgt_name,
                "table": other.ref,
                "energy_j": ototal["total_j"] if ototal["complete"] and not counts.uncounted else None,
                "compute_j": ototal["compute_j"],
                "memory_j": ototal["memory_j"],
                "complete": ototal["complete"] and not counts.uncounted,
                "unpriced": ototal["unpriced"],
                "param_bytes": int(oc.total("param_bytes")),
                "current": tgt_name == target and other.ref == tab.ref,
            }
        )
    notes = list(counts.notes)
    if tot["bops"]:
        notes.append(
            f"{tot['bops']:,} of the {tot['macs']:,} MACs are binary operations (1-bit x 1-bit, from the "
            f"quantization record); table {tab.ref} prices them as MACs: no cited per-operation energy of "
            "an XNOR-popcount is used"
        )
    from edgec.energy.bops import low_bit_ops

    low_bit = low_bit_ops(counts, program.quant)
    if total["unpriced"]:
        notes.append(
            f"table {tab.ref} prices no {', '.join(total['unpriced'])}: the total leaves those operations out"
        )
    complete = total["complete"] and not counts.uncounted
    return {
        "version": ENERGY_SECTION_VERSION,
        "target": target,
        "headline": {
            # an incomplete estimate (unpriced or uncounted work) is no figure to quote: what was
            # priced stays in `estimate`
            "energy_j": total["total_j"] if complete else None,
            "source": "estimate",
            "table": tab.ref,
            "complete": complete,
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
        # low-bit (weights and activations) programs: BOPs and the papers' theoretical speed-up
        **({"low_bit_ops": low_bit} if low_bit is not None else {}),
    }
