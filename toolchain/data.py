"""One calibration / evaluation data abstraction, used by every pass and every target.

Shaped like ``nncf.Dataset``: an iterable ``source`` plus an optional ``transform`` that turns one
item into a sample. A sample is ``(x, y)`` with ``x`` a float32 array of one input (no batch
dimension) and ``y`` its target:

* an integer class label (classification), or ``None`` (unlabelled: calibration only);
* a target dict (detection, :data:`Target`): ``{"boxes": float32 [K, 4], "labels": int64 [K]}``,
  boxes as ``(x0, y0, x1, y1)`` in pixels of ``x`` (``x1``, ``y1`` exclusive: a box of width
  ``x1 - x0`` pixels), ``labels`` the class of each box (K may be 0). Such a dataset says
  ``metadata["task"] = "detection"``; :meth:`Dataset.targets` returns its samples' dicts, and
  :meth:`Dataset.arrays` gives ``y = None`` for it (there are no class labels).

Where data comes from is a *spec* string (``--calib SRC`` / ``--data SRC``)::

    data.npz / data.npy           arrays (npz: key "x" or the first array; optional "y")
    path/to/images/               a folder of images (sub-folders are classes)
    builtin:digits                scikit-learn's handwritten digits (real data shipped in the package)
    builtin:digits:train|holdout  one split of it (fixed stratified split, seed 0, 30 % holdout)
    package.module:function       your own loader, returning an array, (x, y), or an iterable

The loaders live in :mod:`edgec.calibration`; this module only resolves specs through a lazy table.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgec.errors import DataError, UsageError

Purpose = Literal["calibration", "training", "evaluation"]
#: a detection sample's target: ``{"boxes": float32 [K, 4] (x0, y0, x1, y1) pixels, "labels": int64 [K]}``
Target = dict[str, np.ndarray]
Sample = tuple[np.ndarray, int | Target | None]

# name -> "module:function(purpose, split) -> Dataset"; the core imports the loader only when used.
BUILTIN_DATASETS: dict[str, str] = {
    "digits": "edgec.calibration.builtin:load_digits",
    "shapes": "edgec.calibration.shapes:load_shapes",
}
_FILE_LOADER = "edgec.calibration.files:load_array_file"
_FOLDER_LOADER = "edgec.calibration.files:load_image_folder"
_CALLABLE_LOADER = "edgec.calibration.files:load_from_callable"


@dataclass
class Dataset:
    """An iterable of samples: ``source`` items, each mapped by ``transform`` to ``(x, y)``."""

    source: Iterable[Any]
    transform: Callable[[Any], Sample] | None = None
    name: str = "data"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Sample]:
        for item in self.source:
            yield self.transform(item) if self.transform is not None else item

    def take(self, n: int | None) -> Iterator[Sample]:
        return iter(self) if n is None else itertools.islice(iter(self), n)

    def checked(self, input_shape: tuple[int, ...], limit: int | None = None) -> Iterator[Sample]:
        """Like :meth:`take`, but every sample must be a finite float array of ``input_shape``."""
        for i, (x, y) in enumerate(self.take(limit)):
            x = np.asarray(x)
            if tuple(x.shape) != tuple(input_shape):
                raise DataError(
                    f"sample {i} of data '{self.name}' has shape {tuple(x.shape)}, "
                    f"the model takes {tuple(input_shape)}"
                )
            if not np.issubdtype(x.dtype, np.floating):
                raise DataError(
                    f"sample {i} of data '{self.name}' has dtype {x.dtype}; the model takes float input"
                )
            yield x.astype(np.float32, copy=False), y

    def arrays(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """All (or the first ``limit``) samples stacked: ``x`` [N, ...] float32, ``y`` [N] or None."""
        xs: list[np.ndarray] = []
        ys: list[int | Target | None] = []
        for x, y in self.take(limit):
            xs.append(x)
            ys.append(y)
        if not xs:
            raise DataError(f"data '{self.name}' is empty", hint="give at least one sample")
        x_all = np.stack(xs).astype(np.float32, copy=False)
        labels = all(y is not None and not isinstance(y, dict) for y in ys)
        y_all = np.asarray(ys, dtype=np.int64) if labels else None
        return x_all, y_all

    def targets(self, limit: int | None = None) -> tuple[np.ndarray, list[Target]]:
        """All (or the first ``limit``) samples of a detection dataset: ``x`` [N, ...] float32 and one
        target dict per sample (see the module docstring)."""
        xs: list[np.ndarray] = []
        ts: list[Target] = []
        for i, (x, y) in enumerate(self.take(limit)):
            if not isinstance(y, dict) or "boxes" not in y or "labels" not in y:
                raise DataError(
                    f"sample {i} of data '{self.name}' has no boxes (its target is {type(y).__name__})",
                    hint="detection needs samples (x, {'boxes': [K, 4], 'labels': [K]}), e.g. builtin:shapes",
                )
            xs.append(x)
            ts.append(
                {
                    "boxes": np.asarray(y["boxes"], np.float32).reshape(-1, 4),
                    "labels": np.asarray(y["labels"], np.int64).reshape(-1),
                }
            )
        if not xs:
            raise DataError(f"data '{self.name}' is empty", hint="give at least one sample")
        return np.stack(xs).astype(np.float32, copy=False), ts

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        buf: list[np.ndarray] = []
        for x, _ in self.take(limit):
            buf.append(x)
            if len(buf) == batch_size:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)

    def check_input_shape(self, input_shape: tuple[int, ...], hint: str | None = None) -> None:
        """Raise a one-line :class:`DataError` if samples do not fit ``input_shape`` (``hint``: what
        to do, when the caller knows better than "reshape the data or pass --input-shape")."""
        first = next(iter(self), None)
        if first is None:
            raise DataError(f"data '{self.name}' is empty", hint="give at least one sample")
        x = first[0]
        if tuple(x.shape) != tuple(input_shape):
            raise DataError(
                f"data '{self.name}' has samples of shape {tuple(x.shape)}, "
                f"the model takes {tuple(input_shape)} (one sample, no batch dimension)",
                hint=hint or "reshape the data or pass the right --input-shape",
            )


def from_arrays(x: np.ndarray, y: np.ndarray | None = None, *, name: str = "arrays") -> Dataset:
    """A dataset over in-memory arrays; ``x`` is [N, ...] and must be floating point."""
    x = validate_float_array(x, name)
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"labels of '{name}' have shape {tuple(y.shape)}, expected ({len(x)},) (one per sample)"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"labels of '{name}' have dtype {y.dtype}, expected integers (class indices)")
    labels = None if y is None else [int(v) for v in y]
    items = list(range(len(x)))

    def transform(i: int) -> Sample:
        return x[i], (None if labels is None else labels[i])

    return Dataset(items, transform, name=name, metadata={"num_samples": len(x)})


def from_targets(
    x: np.ndarray, targets: list[Target], *, name: str = "arrays", metadata: dict[str, Any] | None = None
) -> Dataset:
    """A detection dataset over in-memory inputs ``x`` [N, ...] and one target dict per sample."""
    x = validate_float_array(x, name)
    if len(targets) != len(x):
        raise DataError(f"'{name}' has {len(x)} inputs but {len(targets)} targets (one per sample)")
    items = list(range(len(x)))

    def transform(i: int) -> Sample:
        return x[i], targets[i]

    meta = {"num_samples": len(x), "task": "detection", **(metadata or {})}
    return Dataset(items, transform, name=name, metadata=meta)


def validate_float_array(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(
            f"data '{name}' has dtype {x.dtype}, the model takes floating-point input",
            hint="convert it to float32 with the model's preprocessing (e.g. x.astype('float32') / 255)",
        )
    if x.ndim < 1 or len(x) == 0:
        raise DataError(f"data '{name}' is empty or has no sample dimension (shape {tuple(x.shape)})")
    if not np.isfinite(x).all():
        raise DataError(f"data '{name}' contains NaN or Inf values", hint="clean the data before calibrating")
    return x.astype(np.float32, copy=False)


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def read_numpy(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """A ``.npy`` array or the arrays of a ``.npz`` (by name), read with ``allow_pickle=False``.

    NumPy reads any file that is neither as a pickle and then says it "contains pickled data";
    here a file that is no NumPy file says so, and an object array (which would need unpickling)
    is refused as what it is.
    """
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror}") from None
    if not head.startswith(_NPY_MAGIC) and not head.startswith(_ZIP_MAGIC):
        raise DataError(
            f"'{path}' is not a NumPy .npy / .npz file (it starts with {head!r})",
            hint="save arrays with np.save(path, x) or np.savez(path, x=x, y=y)",
        )
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickled" in str(exc) or "allow_pickle" in str(exc):
            raise DataError(
                f"'{path}' holds Python objects (an object array), not numbers; edgec never unpickles data",
                hint="save the inputs as a float array, e.g. np.save(path, x.astype('float32'))",
            ) from None
        raise DataError(f"'{path}' is not a readable NumPy file: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"'{path}' is truncated or not a NumPy file ({exc})") from None


def _import_ref(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_dataset(
    spec: str,
    *,
    purpose: Purpose = "calibration",
    input_shape: tuple[int, ...] | None = None,
    images: dict[str, str] | None = None,
) -> Dataset:
    """Resolve a data spec string (see the module docstring) into a :class:`Dataset`.

    ``input_shape`` (one sample) and ``images`` (``{"resize": none|fit|crop, "normalize":
    none|imagenet}``, the ``image_resize`` / ``image_normalize`` options) shape image folders.
    """
    if spec.startswith("builtin:"):
        name, _, split = spec[len("builtin:") :].partition(":")
        if name not in BUILTIN_DATASETS:
            raise UsageError(
                f"unknown built-in dataset '{name}'",
                hint=f"choose one of: {', '.join(sorted(BUILTIN_DATASETS))}",
            )
        return _import_ref(BUILTIN_DATASETS[name])(purpose=purpose, split=split or None)
    path = Path(spec)
    if path.is_dir():
        return _import_ref(_FOLDER_LOADER)(path, input_shape=input_shape, **(images or {}))
    if path.suffix in (".npz", ".npy"):
        if not path.exists():
            raise UsageError(f"data file '{spec}' does not exist")
        if path.is_dir() or not path.is_file():
            raise UsageError(f"data '{spec}' is not a file")
        return _import_ref(_FILE_LOADER)(path)
    if ":" in spec and not path.exists():
        return _import_ref(_CALLABLE_LOADER)(spec)
    if not path.exists():
        raise UsageError(
            f"data '{spec}' does not exist",
            hint="give a .npz/.npy file, an image folder, builtin:digits, or package.module:function",
        )
    raise UsageError(
        f"cannot read data '{spec}': unsupported file type '{path.suffix}'",
        hint="give a .npz/.npy file, an image folder, builtin:digits, or package.module:function",
    )
