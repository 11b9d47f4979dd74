"""The Loihi target's energy cost table (registered as ``edgec.cost_tables`` in pyproject.toml).

Prices (pJ) and where each comes from
-------------------------------------
``loihi1-davies2018``: Davies et al., "Loihi: a neuromorphic manycore processor with on-chip
learning", IEEE Micro 38(1), 2018, Table 2: synaptic spike operation (minimum) 23.6 pJ, neuron
update 81 pJ (active) / 52 pJ (inactive), within-tile spike energy 1.7 pJ. These are Loihi 1,
pre-silicon figures. No public per-operation figure exists for Loihi 2 (its published numbers are
per-inference measurements), so applying this table to a Loihi 2 deployment is an *assumption*,
and every report that uses it says so.
"""

from __future__ import annotations

from edgec.energy.tables import CostTable, Price

DAVIES_2018 = (
    "M. Davies et al., 'Loihi: a neuromorphic manycore processor with on-chip learning', "
    "IEEE Micro 38(1), 2018, Table 2"
)

LOIHI1_DAVIES2018 = CostTable(
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
