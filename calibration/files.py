"""Data from files the user brings: .npz / .npy arrays, image folders, or a Python callable."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgec.data import Dataset, from_arrays, read_numpy
from edgec.errors import DataError, UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_array_file(path: Path) -> Dataset:
    """``.npy`` (inputs only) or ``.npz`` (inputs under ``x`` or the first key; labels under ``y``).

    Arrays are read with ``allow_pickle=False``: an object array is refused, never unpickled.
    """
    loaded = read_numpy(path)
    if isinstance(loaded, np.ndarray):
        return from_arrays(loaded, name=str(path))
    keys = list(loaded)
    if not keys:
        raise DataError(f"'{path}' holds no arrays")
    x_key = "x" if "x" in keys else keys[0]
    y = loaded["y"] if "y" in keys and x_key != "y" else None
    return from_arrays(loaded[x_key], y, name=str(path))


#: ImageNet's per-channel statistics (torchvision's reference transforms): ``image_normalize imagenet``
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``image_resize crop``: the shorter side goes to size / CROP_FRACTION first (ImageNet: 256 -> 224)
CROP_FRACTION = 0.875
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
IMAGE_HINT = (
    "pass --image-resize fit (stretch to the model's size) or crop (ImageNet's recipe: shorter side to "
    "size / 0.875, centre crop), and --image-normalize imagenet for a model trained on ImageNet "
    "statistics (edgec.toml: image_resize, image_normalize)"
)


def load_image_folder(
    root: Path,
    *,
    input_shape: tuple[int, ...] | None = None,
    resize: str = "none",
    normalize: str = "none",
) -> Dataset:
    """Images under ``root`` (or ``root/<class>/``), converted to float32 CHW in [0, 1].

    Sub-folder names, sorted, become class indices. Images are read lazily, one per sample. With
    the model's ``input_shape`` (C, H, W) known, images are converted to C channels (L, RGB,
    RGBA); ``resize`` ``fit`` stretches them to H x W, ``crop`` resizes the shorter side to
    ``H / 0.875`` and cuts the centre H x W (ImageNet's 256 -> 224), ``none`` keeps them as they
    are (an image of another size is then an error naming these options). ``normalize``
    ``imagenet`` subtracts :data:`IMAGENET_MEAN` and divides by :data:`IMAGENET_STD` per channel.
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
    chw = tuple(input_shape) if input_shape is not None and len(input_shape) == 3 else None
    if normalize == "imagenet" and chw is not None and chw[0] != 3:
        raise DataError(
            f"--image-normalize imagenet needs 3-channel (RGB) input; the model takes {chw[0]} channel(s)"
        )

    def transform(item: tuple[Path, int | None]) -> tuple[np.ndarray, int | None]:
        path, label = item
        try:
            with Image.open(path) as img:
                if chw is not None and chw[0] in _MODES and img.mode != _MODES[chw[0]]:
                    img = img.convert(_MODES[chw[0]])
                img = _resized(img, chw, resize, path)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except OSError as exc:
            raise DataError(f"cannot read image '{path}': {exc}") from None
        arr = arr[None, :, :] if arr.ndim == 2 else np.transpose(arr, (2, 0, 1))
        if normalize == "imagenet":
            if arr.shape[0] != 3:
                raise DataError(
                    f"--image-normalize imagenet needs RGB images; '{path}' has {arr.shape[0]} channel(s)"
                )
            arr = (arr - np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]) / np.asarray(
                IMAGENET_STD, np.float32
            )[:, None, None]
        return np.ascontiguousarray(arr, dtype=np.float32), label

    meta = {"num_samples": len(files), "classes": classes, "resize": resize, "normalize": normalize}
    return Dataset(files, transform, name=str(root), metadata=meta)


def _resized(img: Any, chw: tuple[int, ...] | None, resize: str, path: Path) -> Any:
    from PIL import Image

    if chw is None:
        if resize != "none":
            raise DataError(f"--image-resize {resize} needs the model's input shape (C, H, W)")
        return img
    h, w = int(chw[1]), int(chw[2])
    if resize == "fit":
        return img.resize((w, h), Image.Resampling.BILINEAR)
    if resize == "crop":
        scale = max(h, w) / CROP_FRACTION / min(img.size)
        size = (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR)
        left, top = (size[0] - w) // 2, (size[1] - h) // 2
        return img.crop((left, top, left + w, top + h))
    if img.size != (w, h):
        raise DataError(
            f"image '{path}' is {img.size[0]} x {img.size[1]} pixels; the model takes {w} x {h}",
            hint=IMAGE_HINT,
        )
    return img


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
