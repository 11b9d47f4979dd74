"""Price counts with a cost table: per-layer and total energy, every figure naming its table.

Compute energy of one layer (pJ), with prices ``E_op`` from the table:

* ANN rows, and SNN rows without measured synaptic activity: ``MACs * E_mac``;
* SNN synapses: ``effective_ACs * E_ac + effective_MACs * E_mac`` (the exact synaptic operations,
  split by whether the input was binary), i.e. ``E = E_MAC * FLOPs(encoding layer) + E_AC * SOPs``
  of the SNN literature, with exact counts in place of ``rate x T x FLOPs``;
* other operations (bias, norm, activation, softmax, pooling, element-wise): ``ops * E_add``;
* spiking neurons: ``active updates * E_neuron + inactive updates * E_neuron_inactive
  + spikes * E_spike``.

Memory energy (``memory_model = dram-weights-sram-activations``): every stored parameter bit read
once from DRAM, every activation bit written and read once in SRAM:
``param_bits * E_dram_bit + 2 * output_bits * E_sram_bit``. With ``memory_model = included`` (Loihi)
memory access is part of the per-operation figures and is not added.

Operations a table has no price for are listed under ``unpriced`` (never priced at zero), and a
total that leaves something out says so (``complete: false``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edgec.energy.counts import LayerCounts, ModelCounts
from edgec.energy.tables import CostTable

PJ = 1e-12


@dataclass
class Priced:
    compute_pj: float = 0.0
    memory_pj: float = 0.0
    parts_pj: dict[str, float] = field(default_factory=dict)
    unpriced: dict[str, float] = field(default_factory=dict)

    def charge(
        self, op: str, count: float, table: CostTable, *, part: str, fallback: str | None = None
    ) -> None:
        if not count:
            return
        price = table.pj(op)
        if price is None and fallback is not None:
            price = table.pj(fallback)
        if price is None:
            self.unpriced[op] = self.unpriced.get(op, 0.0) + count
            return
        self.parts_pj[part] = self.parts_pj.get(part, 0.0) + count * price
        if part.startswith("memory"):
            self.memory_pj += count * price
        else:
            self.compute_pj += count * price

    @property
    def total_pj(self) -> float:
        return self.compute_pj + self.memory_pj

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_pj": _r(self.total_pj),
            "compute_pj": _r(self.compute_pj),
            "memory_pj": _r(self.memory_pj),
            "parts_pj": {k: _r(v) for k, v in self.parts_pj.items()},
            "unpriced": {k: _num(v) for k, v in self.unpriced.items()},
        }


def _r(x: float) -> float:
    return float(x)


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else round(x, 4)


def price_layer(row: LayerCounts, table: CostTable, *, spiking: bool) -> Priced:
    p = Priced()
    if spiking and row.sops is not None:
        p.charge("ac", row.sops.effective_acs, table, part="synaptic_acs")
        p.charge("mac", row.sops.effective_macs, table, part="synaptic_macs")
    else:
        p.charge("mac", row.macs, table, part="macs")
    p.charge("add", row.total_other_ops(), table, part="other_ops")
    if row.neuron_updates:
        active = row.active_neuron_updates if row.active_neuron_updates is not None else row.neuron_updates
        p.charge("neuron_update", active, table, part="neuron_updates")
        p.charge(
            "neuron_update_inactive",
            row.neuron_updates - active,
            table,
            part="neuron_updates",
            fallback="neuron_update",
        )
    if row.spikes and table.pj("spike") is not None:
        p.charge("spike", row.spikes, table, part="spike_routing")
    if table.memory_model == "dram-weights-sram-activations":
        bits = row.param_bytes * 8
        p.charge("dram_read_bit", bits, table, part="memory_weights")
        act_bits = row.output_bits if row.output_bits is not None else table.activation_bits
        p.charge("sram_read_bit", 2 * row.output_elements * act_bits, table, part="memory_activations")
    return p


def price_model(counts: ModelCounts, table: CostTable) -> tuple[list[Priced], dict[str, Any]]:
    """Price every layer; return the per-layer figures and the totals section."""
    spiking = counts.workload.kind == "snn"
    priced = [price_layer(r, table, spiking=spiking) for r in counts.layers]
    unpriced: dict[str, float] = {}
    parts: dict[str, float] = {}
    for p in priced:
        for k, v in p.unpriced.items():
            unpriced[k] = unpriced.get(k, 0.0) + v
        for k, v in p.parts_pj.items():
            parts[k] = parts.get(k, 0.0) + v
    compute = math.fsum(p.compute_pj for p in priced)
    memory = math.fsum(p.memory_pj for p in priced)
    total = {
        "kind": "estimate",
        "table": table.ref,
        "total_j": (compute + memory) * PJ,
        "compute_j": compute * PJ,
        "memory_j": memory * PJ,
        "parts_j": {k: v * PJ for k, v in parts.items()},
        "unpriced": {k: _num(v) for k, v in unpriced.items()},
        "complete": not unpriced,
    }
    return priced, total
