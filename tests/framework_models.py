"""Small spiking networks built in other frameworks, as a user's package would define them: factories for
``--arch framework_models:NAME`` (called without arguments, seeded). Imported only by tests that
need the framework (each imports it inside its factory)."""

from __future__ import annotations

import torch
from torch import nn

TIMESTEPS = 8
ENCODER = {"kind": "rate", "gain": 1.0, "seed": 0}


def _declare(net: nn.Module) -> nn.Module:
    net.input_shape = (1, 8, 8)  # type: ignore[assignment]
    net.timesteps = TIMESTEPS  # type: ignore[assignment]
    net.encoder = dict(ENCODER)  # type: ignore[assignment]
    for p in net.parameters():  # strong enough weights that the tiny untrained nets spike
        if p.dim() > 1:
            p.data *= 4
    return net


def snntorch_mlp() -> nn.Module:
    import snntorch as snn

    torch.manual_seed(0)
    return _declare(
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 24),
            snn.Leaky(beta=0.75, init_hidden=True, reset_mechanism="zero"),
            nn.Linear(24, 10),
            snn.Leaky(beta=0.875, init_hidden=True, reset_mechanism="zero", output=True),
        )
    )


def snntorch_synaptic_cnn() -> nn.Module:
    import snntorch as snn

    torch.manual_seed(1)
    return _declare(
        nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False),
            snn.Synaptic(alpha=0.5, beta=0.75, init_hidden=True, reset_mechanism="zero", reset_delay=False),
            nn.Flatten(),
            nn.Linear(64, 10, bias=False),
            snn.Leaky(beta=0.875, init_hidden=True, reset_mechanism="zero"),
        )
    )


def snntorch_subtract() -> nn.Module:
    """snnTorch's defaults: reset by subtraction (Loihi resets to zero)."""
    import snntorch as snn

    torch.manual_seed(0)
    return _declare(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True)))


def snntorch_recurrent(kind: str = "RLeaky") -> nn.Module:
    """A recurrent snnTorch neuron (its own nn.Linear from its spikes back to its input)."""
    import snntorch as snn

    torch.manual_seed(0)
    extra = {"alpha": 0.5} if kind == "RSynaptic" else {}
    neuron = getattr(snn, kind)(
        beta=0.75, linear_features=10, init_hidden=True, reset_mechanism="zero", **extra
    )
    return _declare(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), neuron))


def snntorch_rsynaptic() -> nn.Module:
    return snntorch_recurrent("RSynaptic")


def norse_mlp() -> nn.Module:
    import norse.torch as norse

    torch.manual_seed(0)
    return _declare(
        norse.SequentialState(
            nn.Flatten(),
            nn.Linear(64, 24),
            norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(250.0))),
            nn.Linear(24, 10),
            norse.IAFCell(),
        )
    )


def spikingjelly_mlp() -> nn.Module:
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(0)
    return _declare(
        nn.Sequential(
            layer.Flatten(),
            layer.Linear(64, 24),
            neuron.LIFNode(tau=2.0),
            layer.Linear(24, 10),
            neuron.IFNode(),
        )
    )


def sinabs_mlp() -> nn.Module:
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, SingleSpike

    torch.manual_seed(0)
    return _declare(
        nn.Sequential(
            nn.Flatten(start_dim=2),
            nn.Linear(64, 24),
            sl.IAF(spike_fn=SingleSpike, reset_fn=MembraneReset()),
            nn.Linear(24, 10),
            sl.IAF(spike_fn=SingleSpike, reset_fn=MembraneReset()),
        )
    )


def sinabs_default() -> nn.Module:
    """sinabs' defaults: several spikes per step, reset by subtraction."""
    import sinabs.layers as sl

    torch.manual_seed(0)
    return _declare(nn.Sequential(nn.Flatten(start_dim=2), nn.Linear(64, 10), sl.IAF()))


def raises() -> nn.Module:
    raise RuntimeError("the factory needs a config file")


NOT_A_FACTORY = 3
