"""builtin:shapes: deterministic, exact boxes, a fixed split, targets through the data abstraction."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.calibration import shapes
from edgec.data import from_arrays, from_targets, open_dataset
from edgec.errors import DataError, UsageError


def test_same_seed_same_images_and_boxes_other_seed_other() -> None:
    a, b = shapes.render(7), shapes.render(7)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = shapes.render(7, seed=1)
    assert not np.array_equal(a.image, c.image)
    # the split is built from the same scenes: holdout sample 0 is scene TRAIN_SAMPLES
    x, targets = open_dataset("builtin:shapes:holdout").targets(limit=2)
    first = shapes.render(shapes.TRAIN_SAMPLES)
    np.testing.assert_array_equal(x[0], first.image)
    np.testing.assert_array_equal(targets[0]["boxes"], first.boxes)


@pytest.mark.parametrize("index", range(0, 60, 3))
def test_drawn_pixels_lie_in_their_tight_box(index: int) -> None:
    scene = shapes.render(index)
    img = scene.image
    assert img.shape == (3, shapes.IMAGE_SIZE, shapes.IMAGE_SIZE) and img.dtype == np.float32
    assert 1 <= len(scene.labels) <= shapes.MAX_OBJECTS
    assert set(scene.labels.tolist()) <= set(range(len(shapes.CLASSES)))
    for box, color in zip(scene.boxes, scene.colors, strict=True):
        x0, y0, x1, y1 = (int(v) for v in box)
        assert np.array_equal(box, [x0, y0, x1, y1])  # whole pixels
        painted = np.all(img == color[:, None, None], axis=0)
        ys, xs = np.nonzero(painted)
        assert len(xs) >= 20
        # every pixel of the shape's colour is inside the box, and the box touches the shape on all sides
        assert xs.min() == x0 and xs.max() == x1 - 1
        assert ys.min() == y0 and ys.max() == y1 - 1
        assert shapes.MIN_SIZE - 1 <= x1 - x0 <= shapes.MAX_SIZE
    # boxes do not touch each other
    b = scene.boxes
    for i in range(len(b)):
        for j in range(i + 1, len(b)):
            apart = b[i, 2] < b[j, 0] or b[j, 2] < b[i, 0] or b[i, 3] < b[j, 1] or b[j, 3] < b[i, 1]
            assert apart


def test_shape_classes_look_different() -> None:
    """A disc fills ~pi/4 of its box, a square all of it, a triangle half: the labels match the pixels."""
    fill = {0: [], 1: [], 2: []}
    for i in range(40):
        scene = shapes.render(i)
        for box, color, label in zip(scene.boxes, scene.colors, scene.labels, strict=True):
            x0, y0, x1, y1 = (int(v) for v in box)
            inside = np.all(scene.image[:, y0:y1, x0:x1] == color[:, None, None], axis=0)
            fill[int(label)].append(inside.mean())
    assert 0.70 < np.mean(fill[0]) < 0.86
    assert np.mean(fill[1]) == 1.0
    assert 0.45 < np.mean(fill[2]) < 0.65


def test_builtin_spec_splits_and_targets() -> None:
    train = open_dataset("builtin:shapes")
    held = open_dataset("builtin:shapes", purpose="evaluation")
    assert train.name == "builtin:shapes:train" and held.name == "builtin:shapes:holdout"
    assert train.metadata["task"] == "detection" and train.metadata["classes"] == list(shapes.CLASSES)
    x, y = held.arrays(limit=5)
    assert x.shape == (5, 3, 64, 64) and y is None  # no class labels: targets() carries the boxes
    _, targets = held.targets(limit=5)
    assert targets[0]["boxes"].dtype == np.float32 and targets[0]["labels"].dtype == np.int64
    with pytest.raises(UsageError, match="unknown split 'test' of builtin:shapes"):
        open_dataset("builtin:shapes:test")


def test_targets_of_classification_data_is_a_clear_error() -> None:
    ds = from_arrays(np.zeros((3, 2), np.float32), np.array([0, 1, 0]), name="cls")
    with pytest.raises(DataError, match="sample 0 of data 'cls' has no boxes"):
        ds.targets()
    with pytest.raises(DataError, match="2 inputs but 1 targets"):
        from_targets(np.zeros((2, 3), np.float32), [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0)}])
