"""Data from files the user brings: .npz / .npy arrays, image folders, or a Python callable."""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgec.data import Dataset, from_arrays
from edgec.errors import DataError, UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_array_file(path: Path) -> Dataset:
    """``.npy`` (inputs only) or ``.npz`` (inputs under ``x`` or the first key; labels under ``y``).

    Arrays are read with ``allow_pickle=False``: an object array is refused, never unpickled.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read '{path}' as a NumPy file: {exc}") from None
    if isinstance(loaded, np.ndarray):
        return from_arrays(loaded, name=str(path))
    with loaded as npz:
        keys = list(npz.keys())
        if not keys:
            raise DataError(f"'{path}' holds no arrays")
        x_key = "x" if "x" in keys else keys[0]
        y = npz["y"] if "y" in keys and x_key != "y" else None
        return from_arrays(npz[x_key], y, name=str(path))


def load_image_folder(root: Path) -> Dataset:
    """Images under ``root`` (or ``root/<class>/``), converted to float32 CHW in [0, 1].

    Sub-folder names, sorted, become class indices. Images are read lazily, one per sample;
    all images must have the same size and mode (the model's input shape is checked later).
    """
    from PIL import Image

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files: list[tuple[Path, int | None]] = []
    if classes:
        for idx, cls in enumerate(classes):
            files += [(f, idx) for f in sorted((root / cls).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [(f, None) for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under '{root}'")

    def transform(item: tuple[Path, int | None]) -> tuple[np.ndarray, int | None]:
        path, label = item
        try:
            with Image.open(path) as img:
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except OSError as exc:
            raise DataError(f"cannot read image '{path}': {exc}") from None
        arr = arr[None, :, :] if arr.ndim == 2 else np.transpose(arr, (2, 0, 1))
        return np.ascontiguousarray(arr), label

    return Dataset(files, transform, name=str(root), metadata={"num_samples": len(files), "classes": classes})


def load_from_callable(spec: str) -> Dataset:
    """``package.module:function``: call it; it returns an array, ``(x, y)``, or an iterable of samples."""
    module_name, _, attr = spec.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # let users name a module in the current directory
    try:
        fn: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load data function '{spec}': {exc}") from None
    result = fn()
    if isinstance(result, Dataset):
        return result
    if isinstance(result, tuple) and len(result) == 2:
        return from_arrays(np.asarray(result[0]), np.asarray(result[1]), name=spec)
    if isinstance(result, np.ndarray):
        return from_arrays(result, name=spec)
    try:
        items = [(np.asarray(x, dtype=np.float32), y) for x, y in result]
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"'{spec}' returned {type(result).__name__}; expected an array, (x, y), or (x, y) samples"
        ) from exc
    return Dataset(items, None, name=spec)
