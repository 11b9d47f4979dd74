"""The built-in model zoo: ``zoo:NAME`` and ``--arch NAME`` resolve here.

Each entry knows how to build its architecture, its input shape and, for the trained models, the
weights shipped with the package (trained in seconds on ``builtin:digits`` by
``python -m edgec.models.train NAME``, fixed seeds). This package imports the core only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgec.program import Program, SourceInfo


@dataclass(frozen=True)
class ZooEntry:
    name: str
    builder: str  # "module:function" returning an nn.Module
    input_shape: tuple[int, ...]  # one sample, no batch dimension
    description: str
    kind: str = "ann"
    timesteps: int = 1
    encoder: dict[str, Any] | None = None
    weights: str | None = None  # file under edgec/models/weights/ (None: random init, seed 0)
    dataset: str | None = None  # default calibration / evaluation data
    metadata: dict[str, Any] = field(default_factory=dict)

    def build(self, *, pretrained: bool = True) -> nn.Module:
        import torch

        module_name, _, fn = self.builder.partition(":")
        with torch.random.fork_rng(devices=[]):  # random-init entries are reproducible; the caller's RNG
            torch.manual_seed(0)  # state is left as it was (review: the zoo seeded the global RNG)
            model: nn.Module = getattr(importlib.import_module(module_name), fn)()
        if pretrained and self.weights is not None:
            with resources.as_file(resources.files("edgec.models") / "weights" / self.weights) as path:
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()

    def program(
        self,
        *,
        module: nn.Module | None = None,
        source: SourceInfo | None = None,
        example_input: torch.Tensor | None = None,
    ) -> Program:
        import torch

        from edgec.program import Program, SourceInfo

        if example_input is None:
            example_input = torch.rand((1, *self.input_shape), generator=torch.Generator().manual_seed(0))
        return Program(
            module=module if module is not None else self.build(),
            example_input=example_input,
            kind=self.kind,  # type: ignore[arg-type]
            timesteps=self.timesteps,
            encoder=self.encoder,
            source=source or SourceInfo("zoo", arch=self.name),
            name=self.name,
            metadata={"dataset": self.dataset, "trained": self.weights is not None, **self.metadata},
        )


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            "digits-cnn",
            "edgec.models.digits:DigitsCNN",
            (1, 8, 8),
            "small CNN trained on builtin:digits (the demo default)",
            weights="digits-cnn.pt",
            dataset="builtin:digits",
        ),
        ZooEntry(
            "digits-snn-mlp",
            "edgec.models.snn:SpikingMLP",
            (1, 8, 8),
            "spiking MLP 64-128-10 (CUBA LIF) on builtin:digits, rate-coded input; maps to Loihi 2",
            kind="snn",
            timesteps=16,
            encoder={"kind": "rate", "gain": 1.0, "seed": 0},
            weights="digits-snn-mlp.pt",
            dataset="builtin:digits",
        ),
        ZooEntry(
            "digits-snn-cnn",
            "edgec.models.snn:SpikingCNN",
            (1, 8, 8),
            "spiking CNN (2 conv + FC, CUBA LIF) on builtin:digits, rate-coded input; maps to Loihi 2",
            kind="snn",
            timesteps=16,
            encoder={"kind": "rate", "gain": 1.0, "seed": 0},
            weights="digits-snn-cnn.pt",
            dataset="builtin:digits",
        ),
        ZooEntry(
            "digits-snn-vgg",
            "edgec.models.spiking_vgg:SpikingVGG",
            (1, 8, 8),
            "spiking VGG (4 conv 32-32-64-64 + FC, CUBA LIF, T=8) on builtin:digits; maps to Loihi 2; "
            "the compression benchmark's model",
            kind="snn",
            timesteps=8,
            encoder={"kind": "rate", "gain": 1.0, "seed": 0},
            weights="digits-snn-vgg.pt",
            dataset="builtin:digits",
        ),
        ZooEntry(
            "digits-snn-resnet",
            "edgec.models.spiking_resnet:SpikingResNet",
            (1, 8, 8),
            "spiking ResNet (3 blocks, shortcut into the neuron current, T=8) on builtin:digits; "
            "residual adds: CPU yes, Loihi why-not",
            kind="snn",
            timesteps=8,
            encoder={"kind": "rate", "gain": 1.0, "seed": 0},
            weights="digits-snn-resnet.pt",
            dataset="builtin:digits",
        ),
        ZooEntry(
            "digits-sdt",
            "edgec.models.spike_driven_transformer:SpikeDrivenTransformer",
            (1, 8, 8),
            "tiny Spike-driven Transformer (spike-driven self-attention: mask and add; 2 blocks, D=32, T=8) "
            "on builtin:digits; CPU yes, Loihi why-not",
            kind="snn",
            timesteps=8,
            encoder={"kind": "rate", "gain": 1.0, "seed": 0},
            weights="digits-sdt.pt",
            dataset="builtin:digits",
        ),
        ZooEntry(
            "digits-vit",
            "edgec.models.vit:DigitsViT",
            (1, 8, 8),
            "DeiT-style ViT (2x2 patches, 2 blocks, 2 heads, width 32) on builtin:digits; q, k, v and the "
            "attention map tapped for the bi-vit recipe",
            weights="digits-vit.pt",
            dataset="builtin:digits",
        ),
        ZooEntry(
            "detr-shapes",
            "edgec.models.detr:TinyDETR",
            (3, 64, 64),
            "tiny DETR (conv backbone, 2+2 transformer layers, 16 queries) trained on builtin:shapes; "
            "outputs logits + boxes; the Q-DETR benchmark's model",
            weights="detr-shapes.pt",
            dataset="builtin:shapes",
            metadata={"task": "detection", "classes": ["disc", "square", "triangle"]},
        ),
        ZooEntry(
            "resnet18",
            "edgec.models.resnet:resnet18",
            (3, 224, 224),
            "torchvision ResNet-18, random init (benchmarks)",
        ),
        ZooEntry(
            "resnet20",
            "edgec.models.resnet:resnet20",
            (3, 32, 32),
            "CIFAR-style ResNet-20, random init (benchmarks)",
        ),
    ]
}
