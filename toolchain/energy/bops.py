"""Low-bit operations and the theoretical speed-up of a quantized model, in the papers' convention.

The low-bit papers (Bi-Real Net, ReActNet, Q-DETR, Bi-ViT) count a multiply-accumulate between a
``b_w``-bit weight and a ``b_a``-bit activation as ``b_w * b_a`` binary operations (BOPs), and price
them against full-precision work as ``OPs = BOPs / 64 + FLOPs``: a MAC at ``b_w x b_a`` bits counts
``b_w * b_a / 64`` of a full-precision one (a 4 x 4-bit MAC a quarter, 8 x 8 bits one), a MAC left in
float counts one. The theoretical speed-up is ``MACs / OPs``. It is a *theoretical estimate* (what
an ideal b-bit datapath would save), not a measurement: ONNX Runtime on x86 runs these layers in
int8.

Which MACs are low-bit comes from the quantization record (:attr:`Program.quant`): a conv / linear
layer with both ``weight_bits`` and ``act_bits``; an activation x activation matmul (attention's
``q k^T``, ``attn v``) whose operands are quantized (records named under it with ``act_bits`` and no
weight). Everything else counts as full precision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgec.energy.counts import ModelCounts
    from edgec.quant import LayerQuant

CONVENTION = (
    "OPs = BOPs / 64 + FLOPs (Bi-Real Net / ReActNet, as Q-DETR and Bi-ViT report their theoretical "
    "speed-up): a MAC of b_w-bit weights and b_a-bit activations counts b_w * b_a / 64, a MAC in full "
    "precision 1; speed-up = MACs / OPs. A theoretical estimate, not measured."
)


def _bits(name: str, role: str, record: dict[str, LayerQuant]) -> tuple[int, int] | None:
    q = record.get(name)
    if q is not None and q.weight_bits is not None and q.act_bits is not None:
        return q.weight_bits, q.act_bits
    if role == "matmul":
        inner = [
            r.act_bits
            for k, r in record.items()
            if k.startswith(name + ".") and r.weight_bits is None and r.act_bits
        ]
        if inner:
            b = max(int(v) for v in inner if v is not None)
            return b, b
    return None


def low_bit_ops(counts: ModelCounts, record: dict[str, LayerQuant]) -> dict[str, Any] | None:
    """BOPs, OPs and the theoretical speed-up (see the module docstring); None without activation
    quantization in ``record`` (weight-only quantization saves memory, not operations)."""
    if not any(q.act_bits for q in record.values()):
        return None
    macs = ops = 0.0
    bops = 0
    low_macs = 0
    rows = []
    for r in counts.layers:
        if not r.macs:
            continue
        bits = _bits(r.name, r.role, record)
        macs += r.macs
        if bits is None:
            ops += r.macs
            continue
        b = r.macs * bits[0] * bits[1]
        bops += b
        low_macs += r.macs
        ops += b / 64
        rows.append({"name": r.name, "macs": r.macs, "weight_bits": bits[0], "act_bits": bits[1], "bops": b})
    return {
        "convention": CONVENTION,
        "source": "theoretical estimate",
        "macs": int(macs),
        "low_bit_macs": low_macs,
        "full_precision_macs": int(macs - low_macs),
        "bops": bops,
        "ops": ops,
        "theoretical_speedup": macs / ops if ops else None,
        "layers": rows,
    }
