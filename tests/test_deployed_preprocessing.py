"""The TensorFlow-free input of deployed models equals the tf.data pipelines pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest

from det_fixtures import spec_text, tiny_data
from tlt.data.image_arrays import resize_bilinear, to_network, warp_axis_aligned


@pytest.mark.parametrize("src, out", [((40, 40), (32, 32)), ((64, 128), (32, 64)),
                                      ((37, 53), (64, 100)), ((32, 32), (32, 32))])
def test_resize_equals_tf_image_resize(src, out):
    import tensorflow as tf

    image = np.random.default_rng(sum(src)).integers(0, 256, (*src, 3)).astype(np.float32)
    expected = tf.image.resize(image, out).numpy()
    np.testing.assert_array_equal(resize_bilinear(image, *out), expected)


@pytest.mark.parametrize("crop", [(0, 0, 0, 0), (3, 2, 67, 34), (1, 1, 90, 75), (5, 4, 101, 68)])
def test_warp_equals_the_detection_evaluation_warp(crop):
    """Crop + resize (bilinear, nearest fill) and whole-pixel crops (copy, black padding)."""
    from tlt.data.detection_augment import preprocessing_matrix, warp_image

    image = np.random.default_rng(7).integers(0, 256, (80, 96, 3)).astype(np.float32)
    m = preprocessing_matrix(80, 96, 32, 64, crop).numpy()
    expected = warp_image(image, m, 32, 64, fill="nearest").numpy()
    got = warp_axis_aligned(image, 32, 64, (m[0, 0], m[1, 1], m[0, 2], m[1, 2]))
    # Equal up to float32 rounding of the inverted matrix (TensorFlow inverts it numerically).
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=0)


def test_classification_input_equals_the_evaluation_pipeline(tmp_path):
    from cls_fixtures import make_shapes
    from tlt.data.classification import scan_image_folder
    from tlt.data.classification_input import PREPROCESSING, build_classification_input
    from tlt.evaluation.deployed_classification import _network_input

    root = make_shapes(tmp_path, per_class=(1, 1, 2), size=45, seed=2)
    split = scan_image_folder(root / "test", class_names=["circle", "square", "triangle"])
    dataset = build_classification_input(split, image_size=(3, 32, 32), batch_size=8,
                                         training=False)
    expected = next(iter(dataset))[0].numpy()
    got = np.stack([_network_input(f, (3, 32, 32), PREPROCESSING) for f in split.files])
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size, crop", [((64, 32), None), ((128, 64), None),
                                        ((64, 32), (4, 3, 100, 60)), ((64, 32), (10, 6, 74, 38))])
def test_detection_frames_equal_the_tf_data_frames(tmp_path_factory, tmp_path, size, crop):
    """Same frames, order, pixels, labels and source transform as iter_validation_frames."""
    from tlt import spec
    from tlt.data.classification_input import PREPROCESSING
    from tlt.data.detection_frames import iter_validation_frames
    from tlt.data.detection_frames_numpy import iter_validation_frames_numpy

    data = tiny_data(tmp_path_factory.getbasetemp() / "detection_shared")
    text = spec_text(data, width=size[0], height=size[1])
    if crop:  # resized (4, 3, 100, 60) or copied (a 64x32 window) from the 128x64 frames
        anchor = "    enable_auto_resize: true\n"
        assert text.count(anchor) == 1, "examples/specs/detection_tiny.txt changed"
        fields = "".join(f"    crop_{k}: {v}\n" for k, v in zip(("left", "top", "right", "bottom"),
                                                                  crop))
        text = text.replace(anchor, anchor + fields)
    experiment = spec.loads(text, "detection", path="<spec>")
    expected = list(iter_validation_frames(experiment, batch_size=3))
    got = list(iter_validation_frames_numpy(experiment, batch_size=3,
                                            preprocessing=PREPROCESSING))
    assert [b.frame_ids for b in got] == [b.frame_ids for b in expected] and expected
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.images, b.images, atol=1e-6, rtol=0)
        np.testing.assert_allclose(a.to_network, b.to_network, rtol=1e-6)
        assert a.class_names == b.class_names
        for field in ("boxes", "class_ids", "truncation", "occlusion"):
            for x, y in zip(getattr(a, field), getattr(b, field)):
                np.testing.assert_array_equal(x, y)


def test_to_network_is_the_recorded_formula():
    pixels = np.array([[[0.0, 127.5, 255.0]]], np.float32)
    out = to_network(pixels, {"scale": 1 / 127.5, "offset": 127.5})
    assert out.shape == (3, 1, 1)
    np.testing.assert_allclose(out.ravel(), [-1.0, 0.0, 1.0], atol=1e-7)
