"""Run ``network.net`` in real Lava: lava-dl ``netx.hdf5.Network`` in ``Loihi2SimCfg(select_tag='fixed_pt')``.

How samples are separated: all N samples stream through ONE network, back to back, T steps each,
built with netx's ``reset_interval=T`` (and ``reset_offset=1``). netx then resets layer l's neurons
(``LIFReset``: u = v = 0) at every step ``1 + l + k T`` -- the step at which sample k's first input
spikes reach layer l through the l one-step Dense / Conv buffers before it -- so no state of sample
k-1 survives into sample k, in any layer, and no idle steps are needed between samples. The run
lasts ``N T + L`` steps (L = number of synapse layers, the pipeline latency); sample k's output at
its step t is Lava's output at step ``1 + k T + L + t`` (the sink's column ``k T + L + t``).

Data layout: Lava's conv layers are ``(W, H, C)``; the source ring buffer gets the spikes transposed
to that order (flat inputs unchanged) and the sink's output is transposed back.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import DataError, EdgecError

from .lava_compat import load_lava, quiet_stdout
from .netlist import Netlist

log = logging.getLogger(__name__)


class LavaRunError(EdgecError):
    """Lava itself failed while simulating the network (exit code 1: report it with the message)."""


def _to_lava(x: np.ndarray) -> np.ndarray:
    """[steps, *shape] in edgec order -> [*lava_shape, steps]."""
    if x.ndim == 4:  # (C, H, W) -> (W, H, C)
        return np.ascontiguousarray(x.transpose(3, 2, 1, 0))
    return np.ascontiguousarray(np.moveaxis(x, 0, -1))


def _from_lava(y: np.ndarray) -> np.ndarray:
    """[*lava_shape, steps] -> [steps, *shape] in edgec order."""
    if y.ndim == 4:  # (W, H, C, steps) -> (steps, C, H, W)
        return y.transpose(3, 2, 1, 0)
    return np.moveaxis(y, -1, 0)


def _simulate(
    net_path: str | Path, in_shape: tuple[int, ...], stream: np.ndarray, *, reset_interval: int | None
) -> tuple[np.ndarray, float, float]:
    """Run ``stream`` [steps, *in_shape] through netx in fixed_pt; returns the output [steps, *out] and
    the seconds of the whole run and of the steps after the first (Lava compiles on the first)."""
    lava = load_lava()
    steps = stream.shape[0]
    started = time.perf_counter()
    with quiet_stdout():
        kwargs: dict[str, Any] = (
            {"reset_interval": reset_interval, "reset_offset": 1} if reset_interval else {}
        )
        network = lava.Network(net_config=str(net_path), **kwargs)
        if tuple(network.inp.shape) != _to_lava(stream[:1]).shape[:-1]:
            raise DataError(f"netx built an input port of shape {network.inp.shape} for input {in_shape}")
        source = lava.Source(data=_to_lava(stream))
        sink = lava.Sink(shape=network.out.shape, buffer=steps)
        source.s_out.connect(network.inp)
        network.out.connect(sink.a_in)
        try:
            cfg = lava.Loihi2SimCfg(select_tag="fixed_pt")
            network.run(condition=lava.RunSteps(num_steps=1), run_cfg=cfg)  # compiles and builds processes
            first = time.perf_counter()
            if steps > 1:
                network.run(condition=lava.RunSteps(num_steps=steps - 1), run_cfg=cfg)
            steady = time.perf_counter() - first
            data = sink.data.get()
        except Exception as exc:
            raise LavaRunError(f"Lava failed to simulate '{net_path}': {type(exc).__name__}: {exc}") from exc
        finally:
            try:
                network.stop()
            except Exception as exc:  # the run already failed or finished; stopping is cleanup
                log.debug("network.stop(): %s", exc)
    return _from_lava(np.asarray(data)), time.perf_counter() - started, steady


def _lava_input_shape(net: Netlist) -> tuple[int, ...]:
    # a leading flatten is not a Lava process: netx's first dense takes the flat vector itself
    return net.layers[0].out_shape if net.layers and net.layers[0].kind == "flatten" else net.input_shape


def _check(net: Netlist, x: np.ndarray) -> None:
    if x.ndim != len(net.input_shape) + 2 or tuple(x.shape[2:]) != tuple(net.input_shape):
        raise DataError(f"spikes of shape {tuple(x.shape)} do not fit the network input {net.input_shape}")


def run_lava(net_path: str | Path, net: Netlist, spikes: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Binary spikes ``[T, N, *input_shape]`` -> Lava's output spikes ``[T, N, *output_shape]`` (uint8),
    all samples in one network separated by ``reset_interval = T`` (module docstring).

    Returns the spikes and timing facts (steps, seconds, steps per second with and without Lava's compile
    and first step, Lava versions). The run is one step, then the rest: the same simulation, timed apart.
    """
    x = np.asarray(spikes)
    _check(net, x)
    t_steps, n = int(x.shape[0]), int(x.shape[1])
    latency = net.latency
    steps = n * t_steps + latency
    in_shape = _lava_input_shape(net)
    stream = np.zeros((steps, *in_shape), dtype=np.float64)
    stream[: n * t_steps] = x.transpose(1, 0, *range(2, x.ndim)).reshape(n * t_steps, *in_shape)
    lava = load_lava()
    out, elapsed, steady = _simulate(net_path, in_shape, stream, reset_interval=t_steps)
    windows = np.stack(
        [out[k * t_steps + latency : k * t_steps + latency + t_steps] for k in range(n)], axis=1
    )
    facts = {
        "steps": steps,
        "samples": n,
        "seconds": round(elapsed, 3),
        "steps_per_s": round(steps / elapsed, 2) if elapsed > 0 else None,
        # after Lava's compile and the first step: the simulator's own speed
        "steady_steps_per_s": round((steps - 1) / steady, 2) if steps > 1 and steady > 0 else None,
        "separation": f"netx reset_interval={t_steps}, reset_offset=1 (layer l resets at step 1 + l + kT)",
        "versions": lava.versions,
    }
    return windows.astype(np.uint8), facts


def run_lava_fresh(net_path: str | Path, net: Netlist, spikes: np.ndarray) -> np.ndarray:
    """Each sample in a fresh netx network without resets: Lava's raw timeline (uint8).

    ``spikes`` [H, N, *input_shape] (pad with zero steps to see the last inputs through the L buffered
    synapses) -> output spikes [H, N, *output_shape], step for step as Lava produces them; compare
    with ``Emulator.run(spikes, buffered=True)``. Slow: one Lava compile per sample.
    """
    x = np.asarray(spikes)
    _check(net, x)
    in_shape = _lava_input_shape(net)
    outs = []
    for k in range(x.shape[1]):
        stream = x[:, k].reshape(x.shape[0], *in_shape).astype(np.float64)
        out, _, _ = _simulate(net_path, in_shape, stream, reset_interval=None)
        outs.append(out)
    return np.stack(outs, axis=1).astype(np.uint8)
