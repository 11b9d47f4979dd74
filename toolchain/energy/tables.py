"""Versioned energy cost tables: picojoules per operation and per memory access, with citations.

A target chooses a table by name (:meth:`edgec.target.Target.cost_table`); every energy figure
edgec prints names the table (``"cmos45-fp32@1"``) it was priced with. Figures in these tables are
*published constants*, and energies computed from them are *estimates*: counts (measured or
analytic) times a cited per-operation price. A measured figure (e.g. Jetson rail power integrated
over a run) replaces the estimate wherever one exists.

Prices (pJ) and where each comes from
-------------------------------------
``cmos45-fp32`` / ``cmos45-fp16`` / ``cmos45-int8``: Horowitz, "Computing's energy problem (and what
we can do about it)", ISSCC 2014, 45 nm at 0.9 V. A MAC is one multiply plus one add
(fp32: 3.7 + 0.9 = 4.6; fp16: 1.1 + 0.4 = 1.5; int8: 0.2 + 0.03 = 0.23); an accumulate-only
synaptic operation (AC) is one add (0.9 / 0.4 / 0.03). The SNN literature (e.g. Spike-driven
Transformer, NeurIPS 2023) uses E_MAC = 4.6 pJ and E_AC = 0.9 pJ. For int8 the accumulator is
wider in practice (Horowitz: int32 add 0.1 pJ); the table keeps the published 8-bit add.
Memory: SRAM (8 KB array) 64-bit read 10 pJ (Horowitz 2014); DRAM 32-bit access 640 pJ (Han et
al., "Learning both weights and connections", NIPS 2015, table derived from Horowitz).

``loihi1-davies2018``: Davies et al., "Loihi: a neuromorphic manycore processor with on-chip
learning", IEEE Micro 38(1), 2018, Table 2: synaptic spike operation (minimum) 23.6 pJ, neuron
update 81 pJ (active) / 52 pJ (inactive), within-tile spike energy 1.7 pJ. These are Loihi 1,
pre-silicon figures. No public per-operation figure exists for Loihi 2 (its published numbers are
per-inference measurements), so applying this table to a Loihi 2 deployment is an *assumption*,
and every report that uses it says so.

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

from dataclasses import dataclass, field
from typing import Any

from edgec.errors import UsageError

HOROWITZ_2014 = (
    "M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm CMOS at 0.9 V"
)
HAN_2015 = (
    "S. Han et al., 'Learning both weights and connections for efficient neural networks', "
    "NIPS 2015 (energy table derived from Horowitz 2014)"
)
ORIN_NANO_DATASHEET = (
    "NVIDIA Jetson Orin Nano Super Developer Kit datasheet (Dec 2024): 67 TOPS INT8 (sparse), 25 W, "
    "1024 CUDA cores / 32 tensor cores at 1.02 GHz; read from a secondary transcription"
)
DAVIES_2018 = (
    "M. Davies et al., 'Loihi: a neuromorphic manycore processor with on-chip learning', "
    "IEEE Micro 38(1), 2018, Table 2"
)


@dataclass(frozen=True)
class Price:
    """One priced operation: picojoules, and where the figure comes from."""

    pj: float
    source: str
    derived: str = ""  # how the figure follows from the source's numbers, if it is not quoted as is

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pj": self.pj, "source": self.source}
        if self.derived:
            d["derived"] = self.derived
        return d


@dataclass(frozen=True)
class CostTable:
    """Energy per operation for one technology / precision.

    Operation keys (a table may leave any of them out: what it does not price is reported as
    *not priced*, never as zero):

    ``mac``            one multiply-accumulate (dense MACs, and synaptic ops on non-binary input)
    ``ac``             one accumulate: a synaptic operation on a binary (spike) input
    ``add``            one element-wise operation (bias, norm, activation, pooling, residual add)
    ``neuron_update``  one neuron (membrane) update per timestep; ``neuron_update_inactive`` when
                       the neuron received no input that step
    ``spike``          moving one spike to its destination core
    ``dram_read_bit``  / ``sram_read_bit``  memory access per bit
    """

    name: str
    version: int
    title: str
    precision: str  # arithmetic the table prices: fp32 / fp16 / int8 / loihi
    weight_bits: int  # default weight storage width on this technology
    other_param_bits: int  # biases / norm parameters
    activation_bits: int  # activation storage width (peak activation memory)
    prices: dict[str, Price]
    memory_model: str  # how memory energy is estimated (see :func:`edgec.energy.estimate.price`)
    caveats: tuple[str, ...] = ()
    citations: tuple[str, ...] = field(default=())

    @property
    def ref(self) -> str:
        """``name@version``: what every energy figure names as its table."""
        return f"{self.name}@{self.version}"

    def pj(self, op: str) -> float | None:
        price = self.prices.get(op)
        return None if price is None else price.pj

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "title": self.title,
            "precision": self.precision,
            "weight_bits": self.weight_bits,
            "other_param_bits": self.other_param_bits,
            "activation_bits": self.activation_bits,
            "prices_pj": {k: v.to_dict() for k, v in self.prices.items()},
            "memory_model": self.memory_model,
            "caveats": list(self.caveats),
            "citations": list(self.citations),
        }


def _cmos45(precision: str, mult: float, add: float, bits: int, other_bits: int) -> CostTable:
    mac = round(mult + add, 4)
    src = f"{HOROWITZ_2014}: {precision} multiply {mult} pJ, add {add} pJ"
    prices = {
        "mac": Price(mac, src, derived=f"multiply + add = {mult} + {add}"),
        "ac": Price(add, src, derived="one add"),
        "add": Price(add, src, derived="one add per element-wise operation"),
        # a CUBA LIF step: current decay and voltage decay (2 multiplies), input and current
        # accumulation (2 adds); the threshold compare is not priced
        "neuron_update": Price(
            round(2 * mult + 2 * add, 4), src, derived=f"CUBA LIF step = 2 multiplies + 2 adds ({precision})"
        ),
        "sram_read_bit": Price(10 / 64, f"{HOROWITZ_2014}: 8 KB SRAM, 64-bit read 10 pJ", "10 pJ / 64 bit"),
        "dram_read_bit": Price(640 / 32, f"{HAN_2015}: DRAM 32-bit access 640 pJ", "640 pJ / 32 bit"),
    }
    return CostTable(
        name=f"cmos45-{precision}",
        version=1,
        title=f"45 nm CMOS, {precision} arithmetic (Horowitz 2014)",
        precision=precision,
        weight_bits=bits,
        other_param_bits=other_bits,
        activation_bits=bits,
        prices=prices,
        memory_model="dram-weights-sram-activations",
        caveats=(
            "45 nm figures: newer process nodes are several times cheaper per operation",
            "memory energy assumes every weight is read once from DRAM and every activation "
            "written and read once in SRAM per inference (no reuse beyond that, no caches modelled)",
        ),
        citations=(HOROWITZ_2014, HAN_2015),
    )


_LOIHI = CostTable(
    name="loihi1-davies2018",
    version=1,
    title="Loihi 1 per-operation energy, pre-silicon (Davies et al. 2018)",
    precision="loihi",
    weight_bits=8,  # Loihi 2 netx weights: 8-bit mantissa (see docs/loihi.md)
    other_param_bits=16,  # bias: 13-bit mantissa + 3-bit exponent
    activation_bits=1,  # binary spikes between cores
    prices={
        "ac": Price(23.6, f"{DAVIES_2018}: synaptic spike operation (minimum)"),
        "neuron_update": Price(81.0, f"{DAVIES_2018}: neuron update, active"),
        "neuron_update_inactive": Price(52.0, f"{DAVIES_2018}: neuron update, inactive"),
        "spike": Price(
            1.7, f"{DAVIES_2018}: within-tile spike energy (minimum; 3.0 / 4.0 pJ per hop E-W / N-S)"
        ),
    },
    memory_model="included",
    caveats=(
        "Loihi 1 pre-silicon figures (Davies et al. 2018, Table 2); no public per-operation energy exists "
        "for Loihi 2, so applying them to Loihi 2 is an assumption",
        "a secondary transcription gives 52 / 5 pJ for active / inactive neuron updates: unverified",
        "synaptic memory reads are part of the per-operation figures (weights live in core SRAM)",
        "synaptic operations on graded (non-binary) input are not priced by this table",
        "spike routing is priced at the within-tile minimum; hops between tiles cost 3.0-4.0 pJ more",
    ),
    citations=(DAVIES_2018,),
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


TABLES: dict[str, CostTable] = {
    t.name: t
    for t in (
        _cmos45("fp32", 3.7, 0.9, 32, 32),
        _cmos45("fp16", 1.1, 0.4, 16, 16),
        # int8 inference (ONNX Runtime QDQ): int8 weights, int32 biases, uint8 activations
        _cmos45("int8", 0.2, 0.03, 8, 32),
        _LOIHI,
        _orin_nano("int8", 1.493, "25 W / (33.5e12 dense INT8 ops/s / 2 ops per MAC)"),
        _orin_nano("fp16", 2.985, "25 W / (16.75e12 dense FP16 tensor ops/s / 2 ops per MAC)"),
        _orin_nano("fp32", 23.94, "25 W / (1024 CUDA cores x 1.02 GHz FMA/s)"),
    )
}


def get_table(name: str) -> CostTable:
    """The table called ``name`` (``name@version`` is accepted when the version matches)."""
    base, _, version = name.partition("@")
    table = TABLES.get(base)
    if table is None:
        raise UsageError(f"unknown energy cost table '{name}'", hint=f"choose one of: {', '.join(TABLES)}")
    if version and version != str(table.version):
        raise UsageError(
            f"energy cost table '{name}' is not available (this edgec has {table.ref})",
            hint="compare reports priced with the same table version",
        )
    return table
