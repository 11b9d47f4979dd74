"""The lowered network: Loihi integers per layer, and its lava-dl netx HDF5 file (``network.net``).

A :class:`Netlist` is what the lowering produces and what the emulator, the Lava backend and the
NIR writer consume. It holds exactly what a ``.net`` file holds, in edgec's (PyTorch) axis order:

``input``    binary spikes of shape ``input_shape`` (``(C, H, W)`` or ``(F,)``) every step
``dense``    ``weight[out, in]`` integers + a CUBA neuron per output
``conv``     ``weight[out, in/groups, kH, kW]`` integers, stride / padding / dilation / groups,
             + a CUBA neuron per output position ``(C, H, W)``
``flatten``  ``(C, H, W) -> (C*H*W,)`` in PyTorch order (netx connects ``out.transpose([2, 1, 0])
             .flatten()``, the same order)

A CUBA neuron is four per-layer integers and an optional bias, as netx reads them::

    iDecay   0..4096   current decay (x 2^-12): u <- u * (4096 - iDecay) / 4096 + (a << 6)
    vDecay   0..4096   voltage decay (x 2^-12): v <- v * (4096 - vDecay) / 4096 + u + (bias << 6)
    vThMant  0..131071 threshold mantissa: spike when v > vThMant << 6
    bias     13-bit signed per neuron (dense) or per channel (conv), stored as the layer's ``bias``

netx maps it to ``LIF(du=iDecay - 1, dv=vDecay, vth=vThMant, bias_mant=bias, bias_exp=6)``;
Lava's fixed-point LIF uses ``du + 1`` as the current decay, so ``iDecay`` is the decay itself.

File layout (lava-dl netx; every field is a dataset, ``type`` is ``|S10`` of shape ``(1,)``)::

    /layer/0   type=b'input'   shape=(C, H, W) or (F,)
    /layer/i   type=b'dense'   shape=(out,)  inFeatures outFeatures weight[out, in] [bias[out]] neuron/
    /layer/i   type=b'conv'    shape=(C, H, W)  inChannels outChannels kernelSize(2) stride(2)
                               padding(2) dilation(2) groups weight[out, in, kH, kW] [bias[C]] neuron/
    /layer/i   type=b'flatten' shape=(C*H*W,)
    neuron/    type=b'CUBA' iDecay vDecay vThMant refDelay=1 gradedSpike=False

Shapes are written ``(C, H, W)`` as slayer writes them (netx reverses them to ``(W, H, C)``), conv
weights in PyTorch's ``(out, in, kH, kW)`` correlation layout (netx flips and transposes them and
Lava flips them back). The file holds no weight exponent: netx derives one per dense layer on load
(``optimize_weight_bits``), so a layer's scale lives in its integers (see :mod:`.lowering`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgec.errors import ModelError

LayerKind = Literal["dense", "conv", "flatten"]

# Loihi / Lava fixed-point ranges (lava/proc/lif/models.py, PyLifModelBitAcc docstring)
DECAY_UNITY = 4096  # decays are 12-bit fractions of 2^12
VTH_MANT_MAX = (1 << 17) - 1  # unsigned 17-bit
BIAS_MANT_MIN, BIAS_MANT_MAX = -(1 << 12), (1 << 12) - 1  # signed 13-bit
STATE_BITS = 24  # u and v
STATE_SHIFT = 6  # activation, threshold and bias are MSB-aligned by 6 bits
WEIGHT_MIN, WEIGHT_MAX = -256, 254  # mixed-sign 8-bit weights as netx reads them (even, x2)
MAX_DELAY = 62  # netx clamps axonal delays to 62 steps


def conv_out_shape(
    in_shape: tuple[int, ...],
    out_channels: int,
    kernel: tuple[int, ...],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, ...]:
    """``(C_out, H_out, W_out)`` of a 2-D convolution on ``(C_in, H, W)`` (PyTorch's formula)."""
    hw = tuple(
        (in_shape[1 + i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(2)
    )
    return (out_channels, *hw)


def _pair(g: Any, name: str, default: tuple[int, int]) -> tuple[int, int]:
    if name not in g:
        return default
    a, b = (int(v) for v in np.broadcast_to(g[name][()], (2,)))
    return (a, b)


@dataclass
class CubaNeuron:
    i_decay: int
    v_decay: int
    vth_mant: int
    bias: np.ndarray | None = None  # int64, per neuron (dense) or per channel (conv)

    def to_dict(self) -> dict[str, Any]:
        return {
            "iDecay": self.i_decay,
            "vDecay": self.v_decay,
            "vThMant": self.vth_mant,
            "bias": None if self.bias is None else [int(self.bias.min()), int(self.bias.max())],
        }


@dataclass
class Layer:
    """One netx layer. ``in_shape`` / ``out_shape`` are per sample, PyTorch order."""

    kind: LayerKind
    name: str  # the source module's name (for reports and errors)
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: np.ndarray | None = None  # int64
    neuron: CubaNeuron | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def neurons(self) -> int:
        return int(np.prod(self.out_shape)) if self.neuron is not None else 0

    @property
    def synapses(self) -> int:
        """Stored synapses: non-zero weights (a conv's kernel counts once, as it is shared)."""
        return 0 if self.weight is None else int(np.count_nonzero(self.weight))


@dataclass
class Netlist:
    input_shape: tuple[int, ...]
    layers: list[Layer] = field(default_factory=list)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].out_shape if self.layers else self.input_shape

    @property
    def compute_layers(self) -> list[Layer]:
        return [la for la in self.layers if la.neuron is not None]

    @property
    def latency(self) -> int:
        """Steps a spike needs from the input to the output: one per synapse layer (Dense / Conv buffer)."""
        return len(self.compute_layers)

    def copy(self) -> Netlist:
        return dataclasses.replace(
            self,
            layers=[
                dataclasses.replace(
                    la,
                    weight=None if la.weight is None else la.weight.copy(),
                    neuron=None
                    if la.neuron is None
                    else dataclasses.replace(
                        la.neuron, bias=None if la.neuron.bias is None else la.neuron.bias.copy()
                    ),
                )
                for la in self.layers
            ],
        )


# ---- netx HDF5 ---------------------------------------------------------------------------------
def _type(value: str) -> np.ndarray:
    return np.array([value.encode("ascii")], dtype="S10")


def _write_neuron(group: Any, neuron: CubaNeuron) -> None:
    n = group.create_group("neuron")
    n.create_dataset("type", data=_type("CUBA"))
    n.create_dataset("iDecay", data=np.int64(neuron.i_decay))
    n.create_dataset("vDecay", data=np.int64(neuron.v_decay))
    n.create_dataset("vThMant", data=np.int64(neuron.vth_mant))
    n.create_dataset("refDelay", data=np.int64(1))
    n.create_dataset("gradedSpike", data=np.bool_(False))


def write_netx(net: Netlist, path: str | Path) -> None:
    """Write ``net`` as a lava-dl netx HDF5 file (layout in the module docstring)."""
    import h5py

    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        g = layers.create_group("0")
        g.create_dataset("type", data=_type("input"))
        g.create_dataset("shape", data=np.asarray(net.input_shape, dtype=np.int64))
        for i, la in enumerate(net.layers, start=1):
            g = layers.create_group(str(i))
            g.create_dataset("type", data=_type(la.kind))
            g.create_dataset("shape", data=np.asarray(la.out_shape, dtype=np.int64))
            if la.kind == "flatten":
                continue
            assert la.weight is not None and la.neuron is not None  # dense / conv layers carry both
            if la.kind == "dense":
                g.create_dataset("inFeatures", data=np.int64(la.weight.shape[1]))
                g.create_dataset("outFeatures", data=np.int64(la.weight.shape[0]))
            else:
                g.create_dataset("inChannels", data=np.int64(la.in_shape[0]))
                g.create_dataset("outChannels", data=np.int64(la.weight.shape[0]))
                g.create_dataset("kernelSize", data=np.asarray(la.weight.shape[2:], dtype=np.int64))
                g.create_dataset("stride", data=np.asarray(la.stride, dtype=np.int64))
                g.create_dataset("padding", data=np.asarray(la.padding, dtype=np.int64))
                g.create_dataset("dilation", data=np.asarray(la.dilation, dtype=np.int64))
                g.create_dataset("groups", data=np.int64(la.groups))
            g.create_dataset("weight", data=la.weight.astype(np.int64))
            if la.neuron.bias is not None:
                g.create_dataset("bias", data=la.neuron.bias.astype(np.int64))
            _write_neuron(g, la.neuron)


def _scalar(ds: Any) -> Any:
    value = ds[()]
    return value.item() if isinstance(value, np.ndarray) and value.size == 1 else value


def _str(ds: Any) -> str:
    value = ds[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def read_netx(path: str | Path) -> Netlist:
    """Read a netx file written by :func:`write_netx` (or by lava-dl slayer with CUBA neurons).

    Raises :class:`ModelError` for layer or neuron types edgec does not execute.
    """
    import h5py

    with h5py.File(path, "r") as f:
        if "layer" not in f:
            raise ModelError(f"'{path}' is not a netx network (no /layer group)")
        group = f["layer"]
        keys = sorted(group.keys(), key=int)
        net: Netlist | None = None
        shape: tuple[int, ...] = ()
        for k in keys:
            g = group[k]
            kind = _str(g["type"])
            out_shape = tuple(int(d) for d in np.atleast_1d(g["shape"][()]))
            if kind == "input":
                if "neuron" in g:
                    raise ModelError(f"layer {k} of '{path}': input neurons are not supported by edgec")
                net = Netlist(input_shape=out_shape)
                shape = out_shape
                continue
            if net is None:
                raise ModelError(f"'{path}' has no input layer to tell the input shape")
            if kind == "flatten":
                out = (int(np.prod(shape)),)
                net.layers.append(Layer("flatten", f"layer{k}", shape, out))
                shape = out
                continue
            if kind not in ("dense", "conv"):
                raise ModelError(f"layer {k} of '{path}' has type '{kind}', which edgec does not execute")
            n = g["neuron"]
            ntype = _str(n["type"])
            if ntype != "CUBA":
                raise ModelError(f"layer {k} of '{path}' has a '{ntype}' neuron; edgec executes CUBA only")
            bias = np.asarray(g["bias"][()], dtype=np.int64).reshape(-1) if "bias" in g else None
            neuron = CubaNeuron(
                int(_scalar(n["iDecay"])), int(_scalar(n["vDecay"])), int(_scalar(n["vThMant"])), bias
            )
            weight = np.asarray(g["weight"][()], dtype=np.int64)
            if kind == "dense":
                weight = weight.reshape(out_shape[0], -1)
                if "delay" in g:
                    raise ModelError(
                        f"layer {k} of '{path}' has synaptic delays, which edgec does not execute"
                    )
                net.layers.append(Layer("dense", f"layer{k}", shape, out_shape, weight, neuron))
            else:
                weight = weight.reshape(weight.shape[:4])
                net.layers.append(
                    Layer(
                        "conv",
                        f"layer{k}",
                        shape,
                        out_shape,
                        weight,
                        neuron,
                        stride=_pair(g, "stride", (1, 1)),
                        padding=_pair(g, "padding", (0, 0)),
                        dilation=_pair(g, "dilation", (1, 1)),
                        groups=int(_scalar(g["groups"])) if "groups" in g else 1,
                    )
                )
            shape = out_shape
    if net is None:
        raise ModelError(f"'{path}' has no layers")
    return net
