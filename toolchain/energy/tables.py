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

Tables a target brings with it live in its own package and are found through the entry-point
group ``edgec.cost_tables`` (:mod:`edgec.plugins`): ``loihi1-davies2018`` in
``edgec.targets.loihi.costs``, ``orin-nano-int8`` / ``-fp16`` / ``-fp32`` in
``edgec.targets.jetson.costs``. This module keeps the technology-neutral CMOS tables that every
report compares targets with, and the :class:`CostTable` / :class:`Price` types.
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


#: the core's own tables; :func:`table_names` and :func:`get_table` add those targets register
TABLES: dict[str, CostTable] = {
    t.name: t
    for t in (
        _cmos45("fp32", 3.7, 0.9, 32, 32),
        _cmos45("fp16", 1.1, 0.4, 16, 16),
        # int8 inference (ONNX Runtime QDQ): int8 weights, int32 biases, uint8 activations
        _cmos45("int8", 0.2, 0.03, 8, 32),
    )
}


def table_names() -> list[str]:
    """Every cost table: the core's and those installed packages register (``edgec.cost_tables``)."""
    from edgec.plugins import COST_TABLE_GROUP, registered

    return sorted({*TABLES, *registered(COST_TABLE_GROUP)})


def get_table(name: str) -> CostTable:
    """The table called ``name`` (``name@version`` is accepted when the version matches)."""
    from edgec.plugins import COST_TABLE_GROUP, load, registered

    base, _, version = name.partition("@")
    table = TABLES.get(base)
    if table is None and base in registered(COST_TABLE_GROUP):
        found = load(registered(COST_TABLE_GROUP)[base])
        if not isinstance(found, CostTable) or found.name != base:
            raise UsageError(
                f"the cost table registered as '{base}' ({registered(COST_TABLE_GROUP)[base]}) is not a "
                f"CostTable named '{base}'",
                hint="fix the edgec.cost_tables entry point of the package that registers it",
            )
        table = found
    if table is None:
        raise UsageError(
            f"unknown energy cost table '{name}'", hint=f"choose one of: {', '.join(table_names())}"
        )
    if version and version != str(table.version):
        raise UsageError(
            f"energy cost table '{name}' is not available (this edgec has {table.ref})",
            hint="compare reports priced with the same table version",
        )
    return table
