"""What the counters measure, per layer and in total (plain data; no torch import).

Every count is *per inference*: one sample (batch 1) through the whole network, all T timesteps
of an SNN included. Counts measured on real inputs over N samples are per-sample means (the exact
integer sums over the run are kept in :attr:`SynapticOps` as ``*_run`` totals).

Conventions (docs/report-schema.md has the full list)
-----------------------------------------------------
MAC
    A weight multiply-accumulate of conv / linear / matmul, attention ``q k^T`` and ``attn v``
    included, computed analytically from shapes (so fused inference kernels cannot hide it):

    * ``ConvNd``: ``numel(y) * (C_in / groups) * prod(kernel)`` (padding-unaware, as fvcore);
    * ``ConvTransposeNd``: ``numel(x) * (C_out / groups) * prod(kernel)``;
    * ``Linear``: ``numel(x) / in_features * in_features * out_features``;
    * ``MultiheadAttention``: projections ``B*L*E*E + B*S*kdim*E + B*S*vdim*E + B*L*E*E`` plus
      ``q k^T`` and ``attn v``, ``B*L*S*E`` each;
    * ``mm`` ``[n,k]@[k,m]``: ``n*k*m``; ``bmm``: ``b*n*k*m``; scaled-dot-product attention:
      ``B*H*L*S*(E_k + E_v)``.

Other operations (separate line items, never inside MACs), per element of the named tensor:
    bias 1 (output), batch norm 2 (scale, shift), layer / group norm 5 (mean, variance,
    normalize, scale, shift; as fvcore), activation 1, softmax 3 (exp, sum, divide), max / avg
    pooling ``prod(kernel)`` per output, adaptive pooling 1 per input, element-wise add / mul 1.

Synaptic operations (SOPs) of a Linear / Conv synapse, measured on its real input ``x``:
    ``exact = sum_t sum(conv((x_t != 0), (w != 0)))``: the (non-zero input, non-zero weight)
    pairs that produce a contribution; boundary-, stride-, group- and pruning-aware. Calls whose
    input lies in {-1, 0, 1} count as ``effective_acs``, others as ``effective_macs`` (NeuroBench
    2.3). ``dense = sum_t sum(conv(1, 1))``: every in-bounds (input, weight) pair. ``literature =
    rate * T * FLOPs``, with ``rate = nnz(x) / numel(x)`` and FLOPs the padding-unaware dense MACs
    of one step (Spikformer / Spike-driven Transformer / syops): shown separately, labelled.

Binary operations (BOPs) of a binarized network, from its quantization record (``Program.quant``):
    the MACs of a layer with 1-bit weights whose input is binarized too (``act_bits=1``), and the
    matmuls of a module recorded with 1-bit operands and no weights (Bi-ViT's attention), are BOPs:
    an XNOR and a popcount each (XNOR-Net, Rastegari et al. ECCV 2016). ``OPs = BOPs / 64 + FLOPs``,
    FLOPs the remaining MACs, is the convention of Bi-Real Net (Liu et al., ECCV 2018) and Bi-ViT
    (AAAI 2024): a 64-bit processor does 64 binary operations per instruction. A layer with 1-bit
    weights and real inputs (1W/32A) does no BOPs: its MACs are sign-flipped accumulates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: keys of :attr:`LayerCounts.other_ops`
OTHER_OPS = ("bias", "norm", "activation", "softmax", "pool", "elementwise")


@dataclass
class SynapticOps:
    """Synaptic operations of one synapse layer, per inference (means over the measured samples)."""

    exact: float = 0.0
    effective_acs: float = 0.0
    effective_macs: float = 0.0
    dense: float = 0.0
    literature: float = 0.0  # rate x T x FLOPs (padding-unaware), the literature's shortcut
    # integer sums over all measured samples (exact counts, no averaging)
    exact_run: int = 0
    effective_acs_run: int = 0
    effective_macs_run: int = 0
    dense_run: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LayerCounts:
    """One row of the report: a module (or a group of functional ops inside one)."""

    name: str
    type: str
    role: str  # "conv" | "linear" | "attention" | "recurrent" | "matmul" | "neuron" | "op" | "params"
    calls: int = 0  # forward calls in one inference (T for a synapse applied per step)
    macs: int = 0  # dense MACs per inference (analytic)
    macs_detail: dict[str, int] = field(default_factory=dict)  # e.g. attention projections / qk / av
    other_ops: dict[str, int] = field(default_factory=dict)
    params: int = 0
    weight_params: int = 0  # the part of params stored at weight_bits (conv / linear / attention weights)
    weight_bits: int | None = None
    weight_scales: int = 0  # per-channel scales of a recorded weight grid, stored at other_bits
    bops: int = 0  # the part of macs that are binary operations (1-bit x 1-bit), per the record
    other_bits: int | None = None
    param_bytes: int = 0
    output_shape: list[int] | None = None  # of the last call, batch 1
    output_elements: int = 0  # produced per inference (all calls)
    output_bits: int | None = None  # 1 for spiking neuron outputs
    # measured on real inputs
    sops: SynapticOps | None = None
    input_rate: float | None = None  # fraction of non-zero inputs (synapses)
    input_spikes: float | None = None  # non-zero inputs per inference (synapses)
    spikes: float | None = None  # output spikes per inference (neurons)
    firing_rate: float | None = None  # spikes / (neurons x T)
    neuron_updates: float | None = None  # neurons x T per inference
    active_neuron_updates: float | None = None  # updates where the neuron received non-zero input
    output_density: float | None = None  # fraction of non-zero outputs (ANN activations)
    energy: dict[str, Any] | None = None  # filled by pricing (edgec.energy.estimate)

    def total_other_ops(self) -> int:
        return sum(self.other_ops.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.sops is None:
            d["sops"] = None
        return d


@dataclass
class Workload:
    """What the counts were measured on."""

    samples: int  # inputs the activity counts average over
    data: str  # where they came from
    timesteps: int
    encoder: dict[str, Any] | None
    kind: str  # ann | snn

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelCounts:
    """All counts of one model: per-layer rows plus the figures that only exist model-wide."""

    layers: list[LayerCounts]
    workload: Workload
    peak_activation_elements: int = 0  # live activation elements at the worst moment (batch 1)
    peak_activation_bytes: int = 0
    peak_at: str = ""  # the layer running at that moment
    notes: list[str] = field(default_factory=list)
    #: layers that ran operators with no counting rule: {"layer", "type", "ops"}; never counted as 0
    uncounted: list[dict[str, Any]] = field(default_factory=list)

    def total(self, attr: str) -> float:
        return sum(float(getattr(r, attr) or 0) for r in self.layers)

    def sop_total(self, attr: str) -> float:
        return sum(float(getattr(r.sops, attr)) for r in self.layers if r.sops is not None)
