"""``builtin:shapes``: a generated object-detection data set with exact boxes.

Each image (3 x 64 x 64, float32 in [0, 1]) shows one to three flat-coloured shapes -- a disc, a
square or a triangle -- at random positions and sizes (8 to 24 pixels) on a textured background
(a random base colour, a sinusoidal grating of random frequency and orientation, smooth low-frequency
noise and pixel noise). Shapes do not touch (one free pixel between boxes), and each one's colour
differs clearly from the background under it.

A sample's target is ``{"boxes": [K, 4] float32, "labels": [K] int64}`` (:data:`edgec.data.Target`):
boxes are ``(x0, y0, x1, y1)`` in pixels, the tight box of the pixels the shape was drawn on
(``x1``, ``y1`` exclusive), labels index :data:`CLASSES`.

Scene ``i`` is drawn from its own random stream ``numpy.random.default_rng([SEED, i])``: the same seed
gives the same images and boxes on every machine and run, and scenes do not depend on each other.
The split is fixed: scenes ``0 .. TRAIN_SAMPLES - 1`` are ``train``, the next ``HOLDOUT_SAMPLES`` the
``holdout``. ``builtin:shapes`` is the train split for calibration and training and the holdout for
evaluation; ``builtin:shapes:train`` / ``:holdout`` pick one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edgec.data import Dataset, Purpose, Target, from_targets
from edgec.errors import UsageError

CLASSES = ("disc", "square", "triangle")
IMAGE_SIZE = 64
SEED = 0
TRAIN_SAMPLES = 2000
HOLDOUT_SAMPLES = 500
MAX_OBJECTS = 3
MIN_SIZE, MAX_SIZE = 8, 24
#: least mean absolute difference (over RGB) between a shape's colour and the background it covers
MIN_CONTRAST = 0.25


@dataclass(frozen=True)
class Scene:
    """One generated image with what was drawn on it."""

    image: np.ndarray  # [3, H, W] float32 in [0, 1]
    boxes: np.ndarray  # [K, 4] float32, (x0, y0, x1, y1) pixels, x1 / y1 exclusive
    labels: np.ndarray  # [K] int64, index into CLASSES
    colors: np.ndarray  # [K, 3] float32: each shape is drawn in exactly this colour

    def target(self) -> Target:
        return {"boxes": self.boxes, "labels": self.labels}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(0.15, 0.85, size=3).astype(np.float32)
    theta = rng.uniform(0, np.pi)
    freq = rng.uniform(2.0, 8.0)
    phase = rng.uniform(0, 2 * np.pi)
    grating = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    tint = rng.uniform(-1.0, 1.0, size=3).astype(np.float32)
    amp = rng.uniform(0.03, 0.12)
    # smooth noise: a coarse 5 x 5 grid, bilinearly interpolated to the image
    coarse = rng.normal(0.0, 0.08, size=(3, 5, 5)).astype(np.float32)
    pos = np.linspace(0, 4, size, dtype=np.float32)
    i0 = np.minimum(pos.astype(int), 3)
    f = pos - i0
    rows = coarse[:, i0, :] * (1 - f)[None, :, None] + coarse[:, i0 + 1, :] * f[None, :, None]
    smooth = rows[:, :, i0] * (1 - f)[None, None, :] + rows[:, :, i0 + 1] * f[None, None, :]
    img = base[:, None, None] + amp * tint[:, None, None] * grating[None] + smooth
    img = img + rng.normal(0.0, 0.02, size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _mask(kind: int, x0: int, y0: int, s: int, size: int) -> np.ndarray:
    """Pixels (centres at +0.5) of shape ``kind`` filling the ``s`` x ``s`` square at (x0, y0)."""
    yy, xx = np.mgrid[y0 : y0 + s, x0 : x0 + s].astype(np.float32) + 0.5
    u, v = (xx - x0) / s, (yy - y0) / s  # position in the shape's square, [0, 1] inside
    if kind == 0:  # disc
        inside = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    elif kind == 1:  # square
        inside = np.ones_like(u, dtype=bool)
    else:  # triangle: apex at the top centre, base along the bottom
        inside = np.abs(u - 0.5) <= 0.5 * v
    mask = np.zeros((size, size), dtype=bool)
    mask[y0 : y0 + s, x0 : x0 + s] = inside
    return mask


def render(index: int, seed: int = SEED, size: int = IMAGE_SIZE) -> Scene:
    """Scene ``index`` of the data set drawn with ``seed`` (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    img = _background(rng, size)
    wanted = int(rng.integers(1, MAX_OBJECTS + 1))
    boxes: list[tuple[int, int, int, int]] = []
    labels: list[int] = []
    colors: list[np.ndarray] = []
    for _ in range(100):  # rejection sampling of non-touching places
        if len(boxes) == wanted:
            break
        kind = int(rng.integers(len(CLASSES)))
        s = int(rng.integers(MIN_SIZE, MAX_SIZE + 1))
        x0, y0 = (int(v) for v in rng.integers(0, size - s + 1, size=2))
        mask = _mask(kind, x0, y0, s, size)
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        if any(
            box[0] <= b[2] and b[0] <= box[2] and box[1] <= b[3] and b[1] <= box[3] for b in boxes
        ):  # overlapping or touching (no free pixel between): draw again
            continue
        under = img[:, mask].mean(axis=1)
        color = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        for _ in range(50):
            if np.abs(color - under).mean() >= MIN_CONTRAST:
                break
            color = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        else:
            color = np.where(under > 0.5, 0.0, 1.0).astype(np.float32)
        img[:, mask] = color[:, None]
        boxes.append(box)
        labels.append(kind)
        colors.append(color)
    return Scene(
        image=img,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        colors=np.asarray(colors, dtype=np.float32).reshape(-1, 3),
    )


SPLITS = {"train": (0, TRAIN_SAMPLES), "holdout": (TRAIN_SAMPLES, TRAIN_SAMPLES + HOLDOUT_SAMPLES)}


@lru_cache(maxsize=2)
def split_arrays(split: str) -> tuple[np.ndarray, tuple[Target, ...]]:
    start, stop = SPLITS[split]
    scenes = [render(i) for i in range(start, stop)]
    x = np.stack([s.image for s in scenes])
    x.setflags(write=False)
    return x, tuple(s.target() for s in scenes)


def load_shapes(purpose: Purpose = "calibration", split: str | None = None) -> Dataset:
    """``builtin:shapes``: the train split for calibration and training, the holdout for evaluation."""
    split = split or ("holdout" if purpose == "evaluation" else "train")
    if split not in SPLITS:
        raise UsageError(
            f"unknown split '{split}' of builtin:shapes", hint="use builtin:shapes:train or :holdout"
        )
    x, targets = split_arrays(split)
    return from_targets(
        x,
        list(targets),
        name=f"builtin:shapes:{split}",
        metadata={"split": split, "num_classes": len(CLASSES), "classes": list(CLASSES)},
    )
