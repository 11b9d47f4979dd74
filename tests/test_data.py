"""Calibration / evaluation data: every source kind yields the same samples the model sees."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from PIL import Image

from edgec.data import open_dataset
from edgec.errors import DataError, UsageError


def test_builtin_digits_split_is_fixed_stratified_30_percent():
    train = open_dataset("builtin:digits:train")
    hold = open_dataset("builtin:digits", purpose="evaluation")
    x_tr, y_tr = train.arrays()
    x_ho, y_ho = hold.arrays()
    assert len(x_tr) + len(x_ho) == 1797 and len(x_ho) == 540
    assert x_tr.shape[1:] == (1, 8, 8) and x_tr.dtype == np.float32
    assert x_tr.min() >= 0.0 and x_tr.max() <= 1.0
    # stratified: each class is ~30 % held out
    for c in range(10):
        frac = (y_ho == c).sum() / ((y_ho == c).sum() + (y_tr == c).sum())
        assert abs(frac - 0.3) < 0.02
    # the same split every time (seed 0), and disjoint
    x_again, _ = open_dataset("builtin:digits:holdout").arrays()
    np.testing.assert_array_equal(x_ho, x_again)
    assert not {r.tobytes() for r in x_ho[:50]} & {r.tobytes() for r in x_tr}
    # calibration defaults to the train split
    np.testing.assert_array_equal(open_dataset("builtin:digits").arrays(5)[0], x_tr[:5])


def test_npz_npy_and_labels(tmp_path):
    x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(6))
    np.save(tmp_path / "d.npy", x)
    xs, ys = open_dataset(str(tmp_path / "d.npz")).arrays()
    np.testing.assert_array_equal(xs, x)
    np.testing.assert_array_equal(ys, np.arange(6))
    xs2, ys2 = open_dataset(str(tmp_path / "d.npy")).arrays()
    np.testing.assert_array_equal(xs2, x)
    assert ys2 is None


def test_image_folder_with_classes(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    x, y = open_dataset(str(tmp_path)).arrays()
    assert x.shape == (6, 3, 8, 8) and x.dtype == np.float32 and x.max() <= 1.0
    assert list(y) == [0, 0, 0, 1, 1, 1]
    first = np.asarray(Image.open(tmp_path / "cat" / "0.png"), dtype=np.float32).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(x[0], first)


def test_python_function_source(tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            def load():
                return np.ones((4, 1, 8, 8), np.float32), np.array([1, 2, 3, 4])
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    x, y = open_dataset("mydata:load").arrays()
    assert x.shape == (4, 1, 8, 8) and list(y) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("spec", "exc", "words"),
    [
        ("builtin:cifar", UsageError, "unknown built-in dataset 'cifar'"),
        ("builtin:digits:valid", UsageError, "unknown split"),
        ("nowhere.npz", UsageError, "does not exist"),
        ("nosuchmodule_xyz:load", UsageError, "cannot load data function"),
    ],
)
def test_bad_specs(spec, exc, words):
    with pytest.raises(exc, match=words):
        open_dataset(spec)


def test_bad_arrays(tmp_path):
    np.save(tmp_path / "nan.npy", np.full((2, 1, 8, 8), np.nan, np.float32))
    with pytest.raises(DataError, match="NaN"):
        open_dataset(str(tmp_path / "nan.npy"))
    np.savez(tmp_path / "lab.npz", x=np.zeros((3, 2), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(DataError, match="one per sample"):
        open_dataset(str(tmp_path / "lab.npz"))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="truncated or not a NumPy file"):
        open_dataset(str(tmp_path / "junk.npz"))
    (tmp_path / "text.npy").write_text("1, 2, 3\n")  # numpy would call it "pickled data"
    with pytest.raises(DataError, match=r"is not a NumPy \.npy / \.npz file \(it starts with b'1, 2, '\)"):
        open_dataset(str(tmp_path / "text.npy"))
