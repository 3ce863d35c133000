"""Folder-per-class data sets: discovery, checks, the class map and the tf.data input pipeline."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from cls_fixtures import make_shapes, write_png, write_truncated_png
from tlt.data.augment import AugmentConfig
from tlt.data.classification import read_class_map, scan_image_folder, write_class_map
from tlt.data.classification_input import build_classification_input, load_image_for_inference
from tlt.errors import DataError


def test_scan_sorts_classes_accepts_extensions_in_any_case_and_ignores_other_files(tmp_path):
    write_png(tmp_path / "zebra" / "a.PNG")
    write_png(tmp_path / "zebra" / "b.jpeg")
    write_png(tmp_path / "apple" / "c.JPG")
    write_png(tmp_path / "apple" / "nested" / "d.Jpeg")
    write_png(tmp_path / "mango" / "e.png")
    (tmp_path / "mango" / "notes.txt").write_text("not an image")
    (tmp_path / "mango" / "f.bmp").write_bytes(b"BM")
    (tmp_path / ".cache").mkdir()  # hidden folders are not classes

    split = scan_image_folder(tmp_path)

    assert split.class_names == ["apple", "mango", "zebra"]
    names = [p.rsplit("/", 1)[-1] for p in split.files]
    assert sorted(names) == ["a.PNG", "b.jpeg", "c.JPG", "d.Jpeg", "e.png"]
    by_name = dict(zip(names, split.labels))
    assert by_name == {"c.JPG": 0, "d.Jpeg": 0, "e.png": 1, "a.PNG": 2, "b.jpeg": 2}
    assert split.class_counts() == {"apple": 2, "mango": 1, "zebra": 2}
    assert split.skipped == [] and len(split) == 5


def test_scan_skips_and_counts_a_corrupt_image_by_path(tmp_path, caplog):
    write_png(tmp_path / "a" / "ok1.png")
    write_png(tmp_path / "a" / "ok2.png")
    bad = write_truncated_png(tmp_path / "a" / "broken.png")
    write_png(tmp_path / "b" / "ok3.jpg")
    garbage = tmp_path / "b" / "garbage.jpg"
    garbage.write_bytes(b"this is not a jpeg at all")

    with caplog.at_level(logging.WARNING):
        split = scan_image_folder(tmp_path)

    assert len(split) == 3 and split.num_classes == 2
    assert len(split.skipped) == 2
    assert any(s.startswith(str(bad)) and "truncated PNG" in s for s in split.skipped)
    assert any(s.startswith(str(garbage)) and "unreadable image" in s for s in split.skipped)
    assert str(bad) not in split.files and str(garbage) not in split.files
    assert "skipped 2 unreadable image(s) of 5" in caplog.text
    assert str(bad) in caplog.text


def test_scan_empty_class_folder_is_an_error_naming_it(tmp_path):
    write_png(tmp_path / "cats" / "1.png")
    (tmp_path / "dogs").mkdir()
    (tmp_path / "dogs" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"dogs: class folder 'dogs' has no \.jpg/\.jpeg/\.png images"):
        scan_image_folder(tmp_path)


def test_scan_class_with_only_corrupt_images_is_an_error(tmp_path):
    write_png(tmp_path / "cats" / "1.png")
    write_truncated_png(tmp_path / "dogs" / "1.png")
    with pytest.raises(DataError, match="class folder 'dogs' has no readable image"):
        scan_image_folder(tmp_path)


def test_scan_missing_folder_and_folder_without_classes(tmp_path):
    with pytest.raises(DataError, match=r"nope: data set folder does not exist"):
        scan_image_folder(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    write_png(tmp_path / "flat" / "x.png")
    with pytest.raises(DataError, match="no class folders found"):
        scan_image_folder(tmp_path / "flat")


def test_scan_val_with_different_classes_names_missing_and_unexpected(tmp_path):
    for name in ("bird", "cat", "dog"):
        write_png(tmp_path / "train" / name / "1.png")
    for name in ("cat", "dog", "horse"):
        write_png(tmp_path / "val" / name / "1.png")
    train = scan_image_folder(tmp_path / "train")
    with pytest.raises(DataError) as err:
        scan_image_folder(tmp_path / "val", class_names=train.class_names)
    message = str(err.value)
    assert str(tmp_path / "val") in message
    assert "missing bird" in message and "unexpected horse" in message


def test_scan_val_with_same_classes_uses_training_indices(tmp_path):
    for name in ("b", "a"):
        write_png(tmp_path / "train" / name / "1.png")
        write_png(tmp_path / "val" / name / "1.png")
    val = scan_image_folder(tmp_path / "val", class_names=["a", "b"])
    assert val.class_names == ["a", "b"] and sorted(val.labels) == [0, 1]


def test_class_map_round_trip_and_errors(tmp_path):
    path = tmp_path / "classmap.json"
    write_class_map(path, ["audi", "bmw", "mercedes"])
    assert json.loads(path.read_text()) == {"audi": 0, "bmw": 1, "mercedes": 2}
    assert read_class_map(path) == ["audi", "bmw", "mercedes"]

    # Order comes from the indices, not from the JSON key order.
    path.write_text(json.dumps({"z": 1, "y": 0}))
    assert read_class_map(path) == ["y", "z"]

    path.write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(DataError, match=r"class indices must be 0\.\.1 without gaps"):
        read_class_map(path)
    path.write_text(json.dumps({"a": "0"}))
    with pytest.raises(DataError, match="class name -> index"):
        read_class_map(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="cannot read class map"):
        read_class_map(path)


@pytest.fixture(scope="module")
def shapes_split(tmp_path_factory):
    root = make_shapes(tmp_path_factory.mktemp("shapes"), per_class=(5, 1, 1), size=24)
    return scan_image_folder(root / "train")


def _batches(dataset, count):
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


def test_eval_pipeline_shapes_range_and_one_hot_labels(shapes_split):
    ds = build_classification_input(shapes_split, image_size=(3, 32, 32), batch_size=4,
                                    training=False)
    batches = _batches(ds, 100)
    assert [x.shape for x, _ in batches] == [(4, 3, 32, 32)] * 3 + [(3, 3, 32, 32)]
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    assert images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.min() < -0.5 and images.max() > 0.5  # really spans the range
    assert labels.shape == (15, 3)
    np.testing.assert_array_equal(labels.sum(axis=1), 1.0)
    np.testing.assert_array_equal(labels.argmax(axis=1), shapes_split.labels)
    # Evaluation keeps file order, and a batch equals the single-image inference preprocessing.
    single = load_image_for_inference(shapes_split.files[0], (3, 32, 32))
    np.testing.assert_allclose(images[0], single, atol=1e-5)


def test_grayscale_input_has_one_channel(shapes_split):
    ds = build_classification_input(shapes_split, image_size=(1, 16, 16), batch_size=2,
                                    training=False)
    x, _ = _batches(ds, 1)[0]
    assert x.shape == (2, 1, 16, 16)


def test_training_pipeline_is_deterministic_per_seed_and_epoch(shapes_split):
    aug = AugmentConfig(random_crop=True, hflip=True, brightness=0.2)

    def build(seed, epoch=0):
        return build_classification_input(shapes_split, image_size=(3, 32, 32), batch_size=4,
                                          training=True, augment=aug, seed=seed, epoch=epoch)

    steps = math.ceil(len(shapes_split) / 4)
    first = _batches(build(7), steps * 2)
    again = _batches(build(7), steps * 2)
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Batches never straddle epochs: each epoch has ceil(15/4) batches, the last one of 3.
    assert [len(y) for _, y in first] == [4, 4, 4, 3] * 2
    # Every image appears once per epoch.
    epoch0 = np.concatenate([y for _, y in first[:steps]]).argmax(axis=1)
    assert sorted(epoch0.tolist()) == sorted(shapes_split.labels)
    # Another epoch is shuffled differently; another seed too.
    assert not np.array_equal(first[0][0], first[steps][0])
    other = _batches(build(8), 1)
    assert not np.array_equal(first[0][0], other[0][0])


def test_resumed_pipeline_starts_exactly_where_the_uninterrupted_one_is(shapes_split):
    aug = AugmentConfig(random_crop=True, hflip=True)
    steps = math.ceil(len(shapes_split) / 4)

    def build(epoch):
        return build_classification_input(shapes_split, image_size=(3, 32, 32), batch_size=4,
                                          training=True, augment=aug, seed=3, epoch=epoch)

    uninterrupted = _batches(build(0), steps * 3)
    for k in (1, 2):
        resumed = _batches(build(k), steps)
        for j in range(steps):
            np.testing.assert_array_equal(resumed[j][0], uninterrupted[k * steps + j][0])
            np.testing.assert_array_equal(resumed[j][1], uninterrupted[k * steps + j][1])


def test_augmentation_changes_pixels_but_keeps_shape_and_range(shapes_split):
    def first_epoch(augment):
        ds = build_classification_input(shapes_split, image_size=(3, 32, 32), batch_size=15,
                                        training=True, augment=augment, seed=11)
        return _batches(ds, 1)[0]

    plain_x, plain_y = first_epoch(AugmentConfig(random_crop=False, hflip=False))
    aug_x, aug_y = first_epoch(AugmentConfig(random_crop=True, crop_scale=(0.3, 0.6), hflip=True,
                                             brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1))
    # Same shuffle (it depends on seed and epoch only), so the labels line up one to one.
    np.testing.assert_array_equal(plain_y, aug_y)
    assert aug_x.shape == plain_x.shape == (15, 3, 32, 32)
    assert aug_x.min() >= -1.0 and aug_x.max() <= 1.0
    per_image = np.abs(aug_x - plain_x).reshape(15, -1).mean(axis=1)
    assert (per_image > 0.01).all(), per_image


@pytest.mark.parametrize("content, message", [
    (b'{\n  "cat": 0,\n  "d\xe9g": 1\n}\n',
     r"classmap.json:3: not UTF-8 text \(invalid continuation byte at byte 18\), expected a JSON "
     r"class map$"),
    (b'{"cat": true}', r"classmap.json: class map must be a JSON object of class name -> index$"),
])
def test_read_class_map_bad_bytes_and_types_are_one_line(tmp_path, content, message):
    path = tmp_path / "classmap.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_class_map(path)
