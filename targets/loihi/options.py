"""The Loihi target's options (``[target.loihi]`` in edgec.toml, ``--target-option KEY=VALUE``).

Declared with :func:`edgec.options.option`, so edgec.toml, the command line and the API check them the
same way (type, range) and ``edgec targets`` lists them. Light on purpose: no numpy, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgec.options import option

MIN_BITS, MAX_BITS = 2, 8


@dataclass
class LoweringOptions:
    """How the float SNN is lowered onto Loihi's integers."""

    weight_bits: int = option(
        8,
        "weight width for layers that declare none and are not already on a grid (Loihi weights are 8-bit)",
        minimum=MIN_BITS,
        maximum=MAX_BITS,
    )
    calibrate: bool = option(True, "choose per-layer clipping on calibration data when there is some")
    full_precision_state: bool = option(
        False,
        "deploy neurons trained with a low-bit membrane (q-snn) with Loihi's 24-bit state anyway "
        "(the deployed network then differs from the trained one; edgec verify measures by how much)",
    )
