"""The CPU target's own options (``[target.cpu]`` in edgec.toml, ``--target-option KEY=VALUE``).

They are compile options: report.json ``target_report.options`` keeps them and every session of the
artifact (``run``, ``verify``, ``bench``) runs with them. The defaults are measured choices
(benchmarks/results/cpu_backends.md, docs/cpu.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgec.options import option

#: what ``precision`` may ask for: the precision float operations are computed in
PRECISIONS = ("f32", "bf16", "f16")


@dataclass
class CpuOptions:
    precision: str = option(
        "f32",
        "precision the runtime computes float operations in: f32 (the model's own; the default), or "
        "bf16 / f16 where the CPU has them (OpenVINO only: faster, less exact)",
        choices=PRECISIONS,
    )
    spinning: bool = option(
        False,
        "ONNX Runtime's worker threads spin while they wait for work (session.intra_op.allow_spinning): "
        "a little faster on an idle machine, much slower while other processes use the cores",
    )
    pinning: bool = option(
        False,
        "OpenVINO pins its threads to cores (ENABLE_CPU_PINNING): a pinned thread waits for its core "
        "while another process uses it",
    )
    device: str = option(
        "CPU",
        "OpenVINO device: CPU, or an Intel GPU / NPU where present (GPU, GPU.1, NPU, AUTO:GPU,CPU); "
        "anything but CPU runs on --backend openvino",
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> CpuOptions:
        """The options an artifact was compiled with (defaults for artifacts written before them)."""
        stored = report.get("target_report", {}).get("options") or {}
        known = {k: v for k, v in stored.items() if k in cls.__dataclass_fields__}
        return cls(**known)
