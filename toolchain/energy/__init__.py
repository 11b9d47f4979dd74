"""Energy counting and estimation: MACs, synaptic operations, memory, and energy per target.

The core counts (analytic MACs of one traced inference, synaptic operations and spikes measured
on real inputs, parameter and activation memory); a target only names the cost table it is priced
with (:attr:`edgec.target.Target.cost_tables`). Every energy figure names its table and says
whether it is an estimate or a measurement.

Modules: :mod:`~edgec.energy.tables` (cited cost tables), :mod:`~edgec.energy.counts` (what is
counted, and the conventions), :mod:`~edgec.energy.rules` (analytic rules of layers),
:mod:`~edgec.energy.ops` (rules of ATen operators), :mod:`~edgec.energy.graphs` (torch.export and
TorchScript programs run node by node, operators given back to their layers),
:mod:`~edgec.energy.counter` (the traced inference), :mod:`~edgec.energy.activity` (SOPs and
spikes on real inputs), :mod:`~edgec.energy.count` (a program's counts),
:mod:`~edgec.energy.estimate` (pricing), :mod:`~edgec.energy.analyze` (the report section),
:mod:`~edgec.energy.gate` (CI regression gate), :mod:`~edgec.energy.measured` (measured figures
replace estimates).

``import edgec.energy`` is light; torch is imported by the counting modules only.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "count_program": "edgec.energy.count",
    "energy_section": "edgec.energy.analyze",
    "neuron_types": "edgec.energy.count",
    "CostTable": "edgec.energy.tables",
    "TABLES": "edgec.energy.tables",
    "get_table": "edgec.energy.tables",
    "table_names": "edgec.energy.tables",
    "Measurement": "edgec.energy.measured",
    "attach_measurement": "edgec.energy.measured",
    "ModelCounts": "edgec.energy.counts",
    "LayerCounts": "edgec.energy.counts",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgec.energy' has no attribute {name!r}")
