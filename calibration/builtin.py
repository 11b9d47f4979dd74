"""Built-in datasets that ship inside installed packages (no download at run time)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgec.data import Dataset, Purpose, from_arrays
from edgec.errors import UsageError

DIGITS_HOLDOUT_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0


@lru_cache(maxsize=1)
def digits_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's handwritten digits (1797 real 8x8 images, UCI), one fixed stratified split.

    Images are scaled from 0..16 to [0, 1] and shaped [N, 1, 8, 8]; 30 % holdout, seed 0.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_ho, y_tr, y_ho = train_test_split(
        x, y, test_size=DIGITS_HOLDOUT_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    return {"train": (x_tr, y_tr), "holdout": (x_ho, y_ho)}


def load_digits(purpose: Purpose = "calibration", split: str | None = None) -> Dataset:
    """``builtin:digits``: the train split for calibration and training, the holdout for evaluation."""
    split = split or ("holdout" if purpose == "evaluation" else "train")
    splits = digits_split()
    if split not in splits:
        raise UsageError(
            f"unknown split '{split}' of builtin:digits", hint="use builtin:digits:train or :holdout"
        )
    x, y = splits[split]
    ds = from_arrays(x, y, name=f"builtin:digits:{split}")
    ds.metadata.update({"split": split, "num_classes": 10})
    return ds
