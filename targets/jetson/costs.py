"""The Jetson target's energy cost tables (registered as ``edgec.cost_tables`` in pyproject.toml).

Prices (pJ) and where each comes from
-------------------------------------
``orin-nano-int8`` / ``orin-nano-fp16`` / ``orin-nano-fp32``: Jetson Orin Nano 8 GB (Ampere GPU, 1024
CUDA cores, 32 tensor cores, 25 W mode of JetPack 6.1+), priced as *module power at peak throughput
divided by the peak rate*: 25 W over the datasheet's 67 sparse INT8 TOPS (33.5 dense: Ampere's 2:4
sparsity doubles the sparse figure; 2 operations per MAC) gives 1.49 pJ per INT8 MAC; FP16 tensor
cores run at half the INT8 rate (2.99 pJ); FP32 runs on the CUDA cores, 1024 x 1.02 GHz FMAs
(23.9 pJ), which also price element-wise operations. No primary per-operation energy figure for
Ampere or Orin is published: these are derived from NVIDIA's module datasheet figures (read here
from a secondary transcription), include everything the module draws (CPU, DRAM, I/O) and assume
a fully used GPU, so they are coarse estimates; a measured figure (``edgec bench`` on the module,
integrated rail power) replaces them.
"""

from __future__ import annotations

from edgec.energy.tables import CostTable, Price

ORIN_NANO_DATASHEET = (
    "NVIDIA Jetson Orin Nano Super Developer Kit datasheet (Dec 2024): 67 TOPS INT8 (sparse), 25 W, "
    "1024 CUDA cores / 32 tensor cores at 1.02 GHz; read from a secondary transcription"
)


def _orin_nano(precision: str, pj_mac: float, derived: str) -> CostTable:
    """Jetson Orin Nano 8 GB GPU: module power at peak over the peak rate (see the module docstring)."""
    fp32_op = round(25.0 / (1024 * 1.02e9) * 1e12, 3)
    bits = {"int8": 8, "fp16": 16, "fp32": 32}[precision]
    return CostTable(
        name=f"orin-nano-{precision}",
        version=1,
        title=f"Jetson Orin Nano 8 GB GPU, {precision}, 25 W module power at peak throughput (estimate)",
        precision=precision,
        weight_bits=bits,
        other_param_bits=32 if precision == "int8" else bits,
        activation_bits=bits,
        prices={
            "mac": Price(pj_mac, ORIN_NANO_DATASHEET, derived=derived),
            "add": Price(
                fp32_op, ORIN_NANO_DATASHEET, derived="25 W / (1024 CUDA cores x 1.02 GHz): one CUDA-core op"
            ),
        },
        memory_model="included",
        caveats=(
            "no primary per-operation energy figure is published for Ampere or Orin: derived from NVIDIA's "
            "module datasheet figures (peak throughput at the 25 W mode), read from a secondary "
            "transcription",
            "includes everything the module draws at full load (CPU, DRAM, I/O): memory energy is part of "
            "the per-operation price, not priced apart",
            "assumes a fully used GPU: small models and batch 1 run far below peak, so real energy per "
            "inference is higher; an estimate until `edgec bench` on the module measures it",
        ),
        citations=(ORIN_NANO_DATASHEET,),
    )


ORIN_NANO_INT8 = _orin_nano("int8", 1.493, "25 W / (33.5e12 dense INT8 ops/s / 2 ops per MAC)")
ORIN_NANO_FP16 = _orin_nano("fp16", 2.985, "25 W / (16.75e12 dense FP16 tensor ops/s / 2 ops per MAC)")
ORIN_NANO_FP32 = _orin_nano("fp32", 23.94, "25 W / (1024 CUDA cores x 1.02 GHz FMA/s)")
