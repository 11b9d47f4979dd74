"""A sequential spiking network as plain JSON: how converted networks are recorded without pickle.

Networks that edgec builds itself -- read from a NIR graph, converted from another SNN framework,
or converted from an ANN (``ann2snn``) -- are ``nn.Sequential`` chains of vocabulary layers
(:mod:`edgec.snn`) and standard synapses. Their architecture is a list of layer records::

    [{"type": "Flatten", "start_dim": 2, "end_dim": -1},
     {"type": "Linear", "in": 64, "out": 128, "bias": false},
     {"type": "CubaLIF", "features": 128, "du": 0.5, "dv": 0.25, "threshold": 1.0, "bias": true},
     {"type": "Conv2d", "in": 1, "out": 16, "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1],
      "dilation": [1, 1], "groups": 1, "bias": false},   (wrapped in TimeDistributed)
     ...]

which the program store records as ``{"kind": "layers", "layers": [...]}`` in ``program.json``
(:func:`edgec.store.build_arch`); the weights and the neurons' decays / thresholds (buffers) come from
``weights.safetensors`` as for every other architecture.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from edgec.errors import ModelError
from edgec.snn import IF, LI, LIF, CubaLIF, TimeDistributed

ARCH_KIND = "layers"


def _pair(v: Any) -> list[int]:
    return [int(x) for x in (v if isinstance(v, (tuple, list)) else (v, v))]


def layer_spec(m: nn.Module) -> dict[str, Any]:
    """One layer's record (raises ModelError for a layer outside the vocabulary)."""
    inner = m.module if isinstance(m, TimeDistributed) else m
    if isinstance(m, TimeDistributed) and isinstance(inner, (nn.Conv2d, nn.Conv1d)):
        return {
            "type": type(inner).__name__,
            "in": inner.in_channels,
            "out": inner.out_channels,
            "kernel": list(inner.kernel_size),
            "stride": list(inner.stride),
            "padding": list(inner.padding) if not isinstance(inner.padding, str) else inner.padding,
            "dilation": list(inner.dilation),
            "groups": inner.groups,
            "bias": inner.bias is not None,
        }
    if isinstance(m, nn.Linear):
        return {"type": "Linear", "in": m.in_features, "out": m.out_features, "bias": m.bias is not None}
    if isinstance(m, nn.Flatten):
        return {"type": "Flatten", "start_dim": m.start_dim, "end_dim": m.end_dim}
    if isinstance(m, LI):
        return {"type": "LI", "features": m.features, "dv": float(m.dv), "bias": m.bias is not None}
    if type(m) in (CubaLIF, LIF, IF):
        assert isinstance(m, CubaLIF)  # LIF and IF subclass CubaLIF
        spec: dict[str, Any] = {
            "type": type(m).__name__,
            "features": m.features,
            "threshold": float(m.threshold),
            "bias": m.bias is not None,
        }
        if type(m) is CubaLIF:
            spec["du"] = float(m.du)
        if type(m) in (CubaLIF, LIF):
            spec["dv"] = float(m.dv)
        return spec
    raise ModelError(f"layer {type(m).__name__} has no JSON record (edgec.netspec)")


def spec_of(module: nn.Sequential) -> dict[str, Any]:
    """The architecture record of a sequential network of vocabulary layers."""
    return {"kind": ARCH_KIND, "layers": [layer_spec(m) for m in module]}


def _build_layer(d: dict[str, Any]) -> nn.Module:
    kind = d.get("type")
    if kind == "Linear":
        return nn.Linear(int(d["in"]), int(d["out"]), bias=bool(d["bias"]))
    if kind in ("Conv2d", "Conv1d"):
        conv = nn.Conv2d if kind == "Conv2d" else nn.Conv1d
        padding = d["padding"] if isinstance(d["padding"], str) else tuple(d["padding"])
        return TimeDistributed(
            conv(
                int(d["in"]),
                int(d["out"]),
                tuple(d["kernel"]),
                stride=tuple(d["stride"]),
                padding=padding,
                dilation=tuple(d["dilation"]),
                groups=int(d["groups"]),
                bias=bool(d["bias"]),
            )
        )
    if kind == "Flatten":
        return nn.Flatten(start_dim=int(d["start_dim"]), end_dim=int(d["end_dim"]))
    features = d.get("features")
    if kind == "LI":
        return LI(features, dv=float(d["dv"]), bias=bool(d["bias"]))
    if kind == "IF":
        return IF(features, threshold=float(d["threshold"]), bias=bool(d["bias"]))
    if kind == "LIF":
        return LIF(features, dv=float(d["dv"]), threshold=float(d["threshold"]), bias=bool(d["bias"]))
    if kind == "CubaLIF":
        return CubaLIF(
            features,
            du=float(d["du"]),
            dv=float(d["dv"]),
            threshold=float(d["threshold"]),
            bias=bool(d["bias"]),
        )
    raise ModelError(f"unknown layer type {kind!r} in a layers architecture")


def build(spec: dict[str, Any]) -> nn.Sequential:
    """The ``nn.Sequential`` a :func:`spec_of` record describes (weights loaded afterwards)."""
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ModelError("a layers architecture needs a non-empty 'layers' list")
    try:
        return nn.Sequential(*[_build_layer(d) for d in layers])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"a layers architecture record is malformed: {exc}") from None
