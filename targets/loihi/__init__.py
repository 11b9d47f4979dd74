"""Loihi 2 target: spiking networks -> lava-dl netx HDF5 (``network.net``) and NIR (``network.nir``).

``check``   :mod:`.graph` (what netx cannot take) + :mod:`.lowering` range checks, as violation rows
``lower``   fixed-point lowering with per-layer scales (:mod:`.lowering`), files, and a report with the
            per-layer quantization error and a calibration-data comparison float vs emulated
``session`` output spikes ``{"output": [N, T, *output_shape]}`` (uint8); backends ``emulator`` (default:
            :mod:`.emulator`, bit-exact with Lava fixed_pt, batched) and ``lava`` (:mod:`.lava_backend`:
            netx in ``Loihi2SimCfg(select_tag='fixed_pt')``)
``verify``  accuracy of the deployed network against the float SNN; with ``lava`` also Lava's spikes
            against the emulator's, every neuron at every step

Input: an artifact takes binary spikes; raw input is encoded on the host with the encoder recorded
in report.json (``program.encoder``). Lava is imported only by the ``lava`` backend (lazily, through
:mod:`.lava_compat`). See docs/loihi.md.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgec.errors import ConstraintViolation, DataError, UsageError
from edgec.target import Lowered, Session, Target, VerifyResult, Violation

from .options import LoweringOptions

if TYPE_CHECKING:
    from edgec.artifact import Artifact
    from edgec.config import CompileConfig
    from edgec.data import Dataset
    from edgec.passes import PassContext
    from edgec.program import Program

    from .graph import FloatLayer
    from .netlist import Netlist

log = logging.getLogger(__name__)

NET_FILE = "network.net"
NIR_FILE = "network.nir"
#: samples Lava simulates in ``verify --backend lava`` without --limit (Lava simulates only tens to
#: hundreds of steps per second)
LAVA_DEFAULT_SAMPLES = 20
#: largest drop of holdout accuracy from the float SNN to the deployed network that verify accepts
MAX_ACCURACY_DROP = 0.01


class LoihiTarget(Target):
    name = "loihi"
    description = (
        "Intel Loihi 2: lava-dl netx HDF5 + NIR; bit-exact batched emulator, or Lava's CPU simulation"
    )
    requires = ("torch", "h5py", "nir")
    optional: ClassVar[dict[str, str]] = {"backend lava": "lava"}  # lava-nc + lava-dl (netx)
    backends = ("emulator", "lava")
    # energy: Davies et al. 2018 Loihi (1) per-operation figures (edgec.energy.tables)
    cost_tables: ClassVar[dict[str, str]] = {"default": "loihi1-davies2018"}
    precisions: ClassVar[dict[str, str]] = {
        "none": "Loihi fixed point: 2..8-bit weights (weight_bits), 12-bit decays, 24-bit state, "
        "one scale per layer",
    }
    options: ClassVar[type | None] = LoweringOptions

    # ---- decide ---------------------------------------------------------------------------------
    def check(self, program: Program, config: CompileConfig) -> list[Violation]:
        from .graph import analyze
        from .lowering import plan_network

        options = self.target_options(config)
        analysis = analyze(program, full_precision_state=options.full_precision_state)
        if analysis.violations:
            return analysis.violations
        if not analysis.lowerable:
            return [
                Violation(
                    "(model)",
                    "unsupported-layer",
                    "no synapse + neuron layer found",
                    "a Loihi network is a sequence of nn.Linear / nn.Conv2d synapses, each followed by "
                    "a CubaLIF",
                )
            ]
        _, _, violations = plan_network(analysis.layers, program.input_shape, options)
        return violations

    # ---- emit -----------------------------------------------------------------------------------
    def lower(self, program: Program, out_dir: Path, ctx: PassContext) -> Lowered:
        from .emulator import Emulator
        from .graph import analyze
        from .lowering import plan_network
        from .netlist import read_netx, write_netx
        from .nir_io import DT, NirUnsupported, write_nir
        from .rules import resource_counts

        if ctx.config is None:
            raise UsageError("the Loihi target needs a compile configuration")
        options = self.target_options(ctx.config)
        analysis = analyze(program, full_precision_state=options.full_precision_state)
        if analysis.violations:
            raise ConstraintViolation(
                f"target 'loihi' cannot take this model: {len(analysis.violations)} violation(s)",
                analysis.violations,
            )
        calib_x: np.ndarray | None = None
        captured = None
        if ctx.calib is not None and options.calibrate:
            calib_x, calib_y = ctx.calib.arrays(ctx.config.calib_samples)
            captured = _capture(program, analysis.layers, calib_x)
        started = time.perf_counter()
        net, rows, violations = plan_network(analysis.layers, program.input_shape, options, captured)
        if violations:
            raise ConstraintViolation(
                f"target 'loihi' cannot take this model: {len(violations)} violation(s)", violations
            )
        quantize_s = time.perf_counter() - started
        write_netx(net, out_dir / NET_FILE)
        _same_network(net, read_netx(out_dir / NET_FILE))
        emulator = Emulator(net)
        load = {r["layer"]: r for r in emulator.load_report()}
        for row in rows:
            if row["layer"] in load:
                row["netx_load"] = {k: v for k, v in load[row["layer"]].items() if k != "layer"}
        files = {"network": NET_FILE}
        scales = [float(r["scale"]) for r in rows]
        nir_info: dict[str, Any] = {
            "dt": DT,
            "mapping": "tau_syn = dt/du, w_in = 1/du, tau_mem = dt/dv, "
            "r = 1/dv, v_leak = bias/dv, v_threshold = vThMant (docs/loihi.md)",
        }
        try:
            write_nir(
                net,
                out_dir / NIR_FILE,
                scales=scales,
                metadata={"timesteps": program.timesteps, "encoder": str(program.encoder)},
            )
            files["nir"] = NIR_FILE
            nir_info["written"] = True
        except NirUnsupported as exc:
            log.warning("network.nir not written: %s", exc)
            nir_info.update(written=False, reason=str(exc))
        neurons, synapses = resource_counts(analysis.layers)
        report: dict[str, Any] = {
            "format": "lava-dl netx HDF5 (network.net) + NIR (network.nir)",
            "input": f"binary spikes [T={program.timesteps}, {', '.join(map(str, program.input_shape))}] per "
            f"sample, encoded on the host: {program.encoder}",
            "timesteps": program.timesteps,
            "encoder": program.encoder,
            "latency_steps": net.latency,
            "neurons": neurons,
            "synapses": synapses,
            "quantize_s": round(quantize_s, 3),
            "layers": rows,
            "nir": nir_info,
            "lava": "run with netx reset_interval = T: one network, samples back to back (docs/loihi.md)",
        }
        if calib_x is not None:
            report["calibration_check"] = _compare(program, emulator, calib_x, calib_y, ctx.calib.name)  # type: ignore[union-attr]
        return Lowered(files=files, report=report)

    def summary(self, report: dict[str, Any]) -> list[str]:
        tr = report.get("target_report", {})
        lines = [
            f"{row['layer']}: {row['type']} {row['in_shape']}->{row['out_shape']}, "
            f"{row['effective_weight_bits']}-bit weights ({row['grid']}), vThMant {row['vThMant']}, "
            f"iDecay {row['iDecay']}, vDecay {row['vDecay']}, weight error {row['weight_rel_rms_error']:.2%}"
            for row in tr.get("layers", [])
        ]
        encoder = (tr.get("encoder") or {}).get("kind", "direct")
        lines.append(f"T = {tr.get('timesteps')}, input {encoder}-coded spikes")
        return lines

    # ---- execute --------------------------------------------------------------------------------
    def session(
        self, artifact: Artifact, *, backend: str | None = None, threads: int | None = None
    ) -> Session:
        """Output spikes ``{name: [N, T, *output_shape]}`` (uint8) for raw inputs ``[N, *input_shape]``.

        The ``lava`` session keeps the timing facts of its last run in ``session.facts``.
        """
        return _SpikeSession(artifact, self.resolve_backend(backend))

    # ---- verify ---------------------------------------------------------------------------------
    def verify(
        self,
        artifact: Artifact,
        program: Program,
        data: Dataset,
        *,
        backend: str | None = None,
        limit: int | None = None,
        min_agreement: float = 0.98,
        batch_size: int = 64,
    ) -> VerifyResult:
        """Deployed (emulated) network vs the float SNN; with ``lava``, Lava's spikes vs the emulator's.

        Passes when the deployed accuracy is at most 1 point below the float SNN's (labelled data) or
        the top-1 agreement reaches ``min_agreement`` (unlabelled), and, with ``lava``, every output
        spike of Lava equals the emulator's. Class scores are spike counts over time.
        """
        backend = self.resolve_backend(backend)
        x, y = data.arrays(limit)
        prog = artifact.report["program"]
        timesteps, encoder = int(prog["timesteps"]), prog.get("encoder")
        if program.timesteps != timesteps or program.encoder != encoder:
            program = program.replace(timesteps=timesteps, encoder=encoder)
        name = _output_name(artifact)
        emu = self.session(artifact, backend="emulator")(x)[name]
        ref = self.reference(program, x)
        metrics = _metrics(emu, next(iter(ref.values())), y)
        metrics["data"] = data.name
        parts = []
        passed = True
        if y is not None:
            drop = metrics["accuracy_source"] - metrics["accuracy_artifact"]
            passed = drop <= MAX_ACCURACY_DROP + 1e-12
            parts.append(
                f"accuracy float SNN {metrics['accuracy_source']:.2%} -> Loihi (emulated) "
                f"{metrics['accuracy_artifact']:.2%} ({-drop * 100:+.2f} points, "
                f"allowed -{MAX_ACCURACY_DROP * 100:g})"
            )
        else:
            passed = metrics["top1_agreement"] >= min_agreement
            parts.append(f"top-1 agreement {metrics['top1_agreement']:.2%} (min {min_agreement:.0%})")
        if backend == "lava":
            n = len(x) if limit is not None else min(len(x), LAVA_DEFAULT_SAMPLES)
            lava = _SpikeSession(artifact, "lava")
            lava_out = lava(x[:n])[name]
            facts = lava.facts
            same = lava_out == emu[:n]
            metrics.update(
                lava_samples=n,
                lava_spikes_identical=float(same.mean()),
                lava_samples_identical=int(same.reshape(n, -1).all(axis=1).sum()),
                lava_output_spikes=int(lava_out.sum()),
                lava_steps=facts["steps"],
                lava_seconds=facts["seconds"],
                lava_separation=facts["separation"],
            )
            if y is not None:
                metrics["accuracy_lava"] = float((lava_out.sum(1).reshape(n, -1).argmax(1) == y[:n]).mean())
            identical = bool(same.all())
            passed = passed and identical
            parts.append(
                f"Lava fixed_pt vs emulator: {metrics['lava_samples_identical']}/{n} samples, "
                f"{metrics['lava_spikes_identical']:.2%} of output neuron-steps identical"
            )
        return VerifyResult(passed, metrics, "; ".join(parts))


def _output_name(artifact: Artifact) -> str:
    outputs = artifact.report["program"].get("outputs") or [{"name": "output"}]
    return str(outputs[0]["name"])


class _SpikeSession:
    """The Loihi session: raw input -> encoded spikes -> emulator or Lava -> ``{name: [N, T, *out]}``."""

    def __init__(self, artifact: Artifact, backend: str) -> None:
        from .netlist import read_netx

        self.net_path = artifact.file("network")
        self.net = read_netx(self.net_path)
        prog = artifact.report["program"]
        self.timesteps, self.encoder = int(prog["timesteps"]), prog.get("encoder")
        self.name = _output_name(artifact)
        self.backend = backend
        self.facts: dict[str, Any] = {}
        self.emulator: Any = None
        if backend != "lava":
            from .emulator import Emulator

            self.emulator = Emulator(self.net)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        spikes = encode_spikes(x, self.timesteps, self.encoder)
        if self.backend == "lava":
            from .lava_backend import run_lava

            out, self.facts = run_lava(self.net_path, self.net, spikes)
            log.info("lava: %s", self.facts)
        else:
            out = self.emulator.run(spikes)
        return {self.name: np.ascontiguousarray(np.asarray(out).swapaxes(0, 1))}


def encode_spikes(x: np.ndarray, timesteps: int, encoder: dict[str, Any] | None) -> np.ndarray:
    """Raw input ``[N, *shape]`` -> binary spikes ``[T, N, *shape]`` (uint8), the artifact's encoder."""
    import torch

    from edgec.snn import encode, is_binary_encoder

    if not is_binary_encoder(encoder):
        raise UsageError(f"the artifact records encoder {encoder}; a Loihi artifact takes binary spikes")
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError("input has NaN / Inf values")
    return encode(torch.from_numpy(x), timesteps, encoder).numpy().astype(np.uint8)


def _metrics(out: np.ndarray, ref: np.ndarray, y: np.ndarray | None) -> dict[str, Any]:
    """Spikes ``[N, T, *out]`` of the deployed network vs the float SNN's; classes are spike counts."""
    n = out.shape[0]
    pred_out = out.sum(1).reshape(n, -1).argmax(1)
    pred_ref = ref.sum(1).reshape(n, -1).argmax(1)
    m: dict[str, Any] = {
        "samples": n,
        "timesteps": int(out.shape[1]),
        "top1_agreement": float((pred_out == pred_ref).mean()),
        "output_spike_agreement": float((out == (ref > 0.5)).mean()),
        "output_spikes_per_sample": float(out.sum() / n),
        "output_spikes_per_sample_float": float(ref.sum() / n),
    }
    if y is not None:
        m["accuracy_artifact"] = float((pred_out == y).mean())
        m["accuracy_source"] = float((pred_ref == y).mean())
    return m


def _compare(
    program: Program, emulator: Any, x: np.ndarray, y: np.ndarray | None, name: str
) -> dict[str, Any]:
    """Float SNN vs emulated network on the calibration samples (what the report's figures come from)."""
    from edgec.snn import run_outputs

    spikes = encode_spikes(x, program.timesteps, program.encoder)
    out = np.asarray(emulator.run(spikes)).swapaxes(0, 1)
    ref = next(iter(run_outputs(program, x).values()))
    m = _metrics(out, ref, y)
    m["data"] = f"{name} (calibration samples; `edgec verify` measures the holdout)"
    return m


def _capture(
    program: Program, layers: list[FloatLayer], x: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per compute layer: the float model's input spikes to its synapse and its neuron's output spikes."""
    import torch

    from edgec.snn import inference, run_model

    t_steps = program.timesteps
    inputs: dict[str, np.ndarray] = {}
    outputs: dict[str, np.ndarray] = {}
    handles = []
    for fl in layers:
        if fl.synapse is None or fl.neuron is None:
            continue
        name, in_shape = fl.name, fl.in_shape

        def syn_hook(
            m: Any, args: tuple[Any, ...], out: Any, name: str = name, in_shape: tuple = in_shape
        ) -> None:
            inputs[name] = args[0].detach().reshape(t_steps, -1, *in_shape).numpy().astype(np.uint8)

        def neu_hook(m: Any, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            outputs[name] = out.detach().numpy().astype(np.uint8)

        handles.append(fl.synapse.register_forward_hook(syn_hook))
        handles.append(fl.neuron.register_forward_hook(neu_hook))
    try:
        with inference(program.module):
            run_model(program, torch.from_numpy(np.asarray(x, dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()
    return {k: (inputs[k], outputs[k]) for k in inputs if k in outputs}


def _same_network(a: Netlist, b: Netlist) -> None:
    """The written file reads back as the netlist it was written from (else: a bug in edgec)."""
    same = a.input_shape == b.input_shape and len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers, strict=False):
        same = same and la.kind == lb.kind and la.out_shape == lb.out_shape
        if la.weight is not None and lb.weight is not None:
            same = (
                same
                and np.array_equal(la.weight, lb.weight)
                and la.neuron is not None
                and lb.neuron is not None
            )
            if same and la.neuron is not None and lb.neuron is not None:
                ba, bb = la.neuron.bias, lb.neuron.bias
                same = (
                    la.neuron.to_dict() == lb.neuron.to_dict()
                    and (ba is None) == (bb is None)
                    and (ba is None or bb is None or np.array_equal(ba, bb))
                )
    if not same:
        raise RuntimeError("network.net does not read back as the lowered network")
