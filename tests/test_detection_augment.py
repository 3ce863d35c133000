"""DetectNet_v2 augmentation: boxes follow the image content exactly; colour ops; determinism."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tlt import spec as spec_lib
from tlt.data import detection_augment as da

H, W = 64, 128


def _seed(i: int):
    return tf.constant([7, i], tf.int64)


def _white_box_image(box, height=H, width=W) -> np.ndarray:
    image = np.zeros((height, width, 3), np.float32)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255.0
    return image


def _found_box(image: np.ndarray):
    ys, xs = np.nonzero(image[..., 0] > 127.5)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_hflip_and_vflip_give_exact_coordinates():
    box = [[10.0, 5.0, 40.0, 25.0]]
    m = da.random_spatial_matrix(da.SpatialConfig(hflip_probability=1.0), H, W, _seed(0))
    boxes, keep = da.transform_boxes(box, m, H, W)
    assert boxes.numpy().tolist() == [[88.0, 5.0, 118.0, 25.0]] and keep.numpy().tolist() == [True]
    m = da.random_spatial_matrix(da.SpatialConfig(vflip_probability=1.0), H, W, _seed(0))
    assert da.transform_boxes(box, m, H, W)[0].numpy().tolist() == [[10.0, 39.0, 40.0, 59.0]]
    # The image flips with the box: the white rectangle lands exactly on the new box.
    m = da.random_spatial_matrix(da.SpatialConfig(hflip_probability=1.0), H, W, _seed(0))
    out = da.warp_image(_white_box_image((10, 5, 40, 25)), m, H, W).numpy()
    assert np.array_equal(out, _white_box_image((88, 5, 118, 25)))


def test_flip_probability_zero_and_one():
    never = da.SpatialConfig(hflip_probability=0.0)
    always = da.SpatialConfig(hflip_probability=1.0)
    for i in range(10):
        assert da.random_spatial_matrix(never, H, W, _seed(i)).numpy()[0, 0] == 1.0
        assert da.random_spatial_matrix(always, H, W, _seed(i)).numpy()[0, 0] == -1.0


def test_integer_translation_shifts_pixels_exactly():
    config = da.SpatialConfig(translate_max_x=8, translate_max_y=8)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3)).astype(np.float32)
    shifts = set()
    for i in range(12):
        m = da.random_spatial_matrix(config, H, W, _seed(i)).numpy()
        tx, ty = int(m[0, 2]), int(m[1, 2])
        assert m[0, 2] == tx and m[1, 2] == ty and abs(tx) <= 8 and abs(ty) <= 8
        shifts.add((tx, ty))
        out = da.warp_image(image, m, H, W).numpy()
        expected = np.zeros_like(image)
        src = image[max(0, -ty):H - max(0, ty), max(0, -tx):W - max(0, tx)]
        expected[max(0, ty):max(0, ty) + src.shape[0], max(0, tx):max(0, tx) + src.shape[1]] = src
        assert np.array_equal(out, expected), (tx, ty)
    assert len(shifts) > 6  # really random


@pytest.mark.parametrize("box", [(30, 12, 70, 40), (2, 40, 30, 62), (100, 3, 126, 20)])
def test_zoom_translate_flip_move_box_with_content(box):
    config = da.SpatialConfig(hflip_probability=0.5, vflip_probability=0.5, zoom_min=0.6,
                              zoom_max=1.7, translate_max_x=10, translate_max_y=6)
    image = _white_box_image(box)
    checked = zooms = 0
    for i in range(16):
        m = da.random_spatial_matrix(config, H, W, _seed(i))
        zooms += abs(float(m[0, 0]) - 1.0) > 0.05
        boxes, keep = da.transform_boxes([box], m, H, W)
        found = _found_box(da.warp_image(image, m, H, W).numpy())
        if not keep.numpy()[0]:
            assert found is None or (found[2] - found[0]) * (found[3] - found[1]) <= 2
            continue
        assert found is not None
        np.testing.assert_allclose(found, boxes.numpy()[0], atol=1.0)
        checked += 1
    assert checked >= 10 and zooms >= 10


def test_zoom_keeps_canvas_covered_or_content_inside():
    for zoom, covered in ((1.5, True), (0.5, False)):
        config = da.SpatialConfig(zoom_min=zoom, zoom_max=zoom)
        for i in range(8):
            m = da.random_spatial_matrix(config, H, W, _seed(i)).numpy()
            corners = m @ np.array([[0, W], [0, H], [1, 1]], np.float64)
            if covered:   # magnified content still fills the whole canvas
                assert corners[0, 0] <= 1e-4 and corners[0, 1] >= W - 1e-4
                assert corners[1, 0] <= 1e-4 and corners[1, 1] >= H - 1e-4
            else:         # shrunk content stays entirely inside it
                assert corners[0, 0] >= -1e-4 and corners[0, 1] <= W + 1e-4
                assert corners[1, 0] >= -1e-4 and corners[1, 1] <= H + 1e-4


def test_boxes_are_clipped_dropped_and_filtered_by_size():
    m = da.preprocessing_matrix(H, W, H, W)
    boxes, keep = da.transform_boxes(
        [[-10, 5, 20, 30], [130, 5, 150, 30], [10, 10, 12, 40], [10, 10, 40, 12.5]], m, H, W,
        min_width=3.0, min_height=3.0)
    assert boxes.numpy()[0].tolist() == [0.0, 5.0, 20.0, 30.0]
    assert keep.numpy().tolist() == [True, False, False, False]


def test_crop_and_resize_matrix():
    # Crop x 16..112, y 8..56 (96x48) and resize to 192x96: scale 2 after moving the origin.
    m = da.preprocessing_matrix(H, W, 96, 192, crop=(16, 8, 112, 56)).numpy()
    np.testing.assert_allclose(m, [[2, 0, -32], [0, 2, -16], [0, 0, 1]])
    out = da.warp_image(_white_box_image((40, 20, 60, 30)), m, 96, 192, fill="nearest").numpy()
    np.testing.assert_allclose(_found_box(out), [48, 24, 88, 44], atol=1.0)
    # A crop to the output size is a whole-pixel move: the pixels are copied.
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    m = da.preprocessing_matrix(H, W, 48, 96, crop=(16, 8, 112, 56))
    np.testing.assert_array_equal(da.warp_image(image, m, 48, 96).numpy(), image[8:56, 16:112])
    flipped = da.random_spatial_matrix(da.SpatialConfig(1.0, 1.0), 48, 96, _seed(0)) @ m
    chw = da.warp_image(image, flipped, 48, 96, channels_first=True).numpy()
    np.testing.assert_array_equal(chw, image[8:56, 16:112][::-1, ::-1].transpose(2, 0, 1))
    # Plain resizing matches tf.image.resize (half-pixel centres, edges repeated).
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (H, W, 3)).astype(np.float32)
    m = da.preprocessing_matrix(H, W, 48, 80)
    ours = da.warp_image(image, m, 48, 80, fill="nearest").numpy()
    np.testing.assert_allclose(ours, tf.image.resize(image, (48, 80)).numpy(), atol=0.01)


def test_colour_identity_shape_range_and_grey_axis():
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 255, (H, W, 3)).astype(np.float32)
    identity = da.random_color_matrix(da.ColorConfig(), _seed(0))
    np.testing.assert_allclose(identity.numpy(), np.eye(4), atol=1e-7)
    np.testing.assert_allclose(da.apply_color_matrix(image, identity).numpy(), image, atol=1e-3)
    strong = da.ColorConfig(color_shift_stddev=0.1, hue_rotation_max=90, saturation_shift_max=0.9,
                            contrast_scale_max=0.8, contrast_center=0.5)
    for i in range(5):
        out = da.apply_color_matrix(image, da.random_color_matrix(strong, _seed(i))).numpy()
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 255.0 and not np.allclose(out, image, atol=1)
    matrix = da.random_color_matrix(strong, _seed(9))
    np.testing.assert_allclose(
        da.apply_color_matrix(image.transpose(2, 0, 1), matrix, channels_first=True).numpy(),
        da.apply_color_matrix(image, matrix).numpy().transpose(2, 0, 1), atol=1e-3)
    # Hue rotation and saturation turn about the grey axis: grey pixels stay put (within one
    # level: TLT's coefficients are rounded to three decimals).
    grey = np.repeat(rng.uniform(0, 255, (H, W, 1)), 3, axis=2).astype(np.float32)
    hue_sat = da.ColorConfig(hue_rotation_max=120, saturation_shift_max=0.9)
    for i in range(5):
        out = da.apply_color_matrix(grey, da.random_color_matrix(hue_sat, _seed(i))).numpy()
        np.testing.assert_allclose(out, grey, atol=1.0)
    # Contrast pivots on contrast_center: that grey level is a fixed point.
    pivot = np.full((4, 4, 3), 0.25 * 255, np.float32)
    contrast = da.ColorConfig(contrast_scale_max=0.9, contrast_center=0.25)
    out = da.apply_color_matrix(pivot, da.random_color_matrix(contrast, _seed(3))).numpy()
    np.testing.assert_allclose(out, pivot, atol=1e-3)


def test_colour_shift_is_per_channel_and_bounded():
    config = da.ColorConfig(color_shift_stddev=0.05)
    offsets = np.array([da.random_color_matrix(config, _seed(i)).numpy()[3, :3]
                        for i in range(40)])
    # Truncated normal: within two standard deviations, and the three channels differ.
    assert np.abs(offsets).max() <= 0.1 + 1e-6 and offsets.std() > 0.02
    assert np.all(np.ptp(offsets, axis=1) > 0)


def test_same_seed_same_augmentation_other_seed_differs():
    experiment = spec_lib.loads(
        "augmentation_config { preprocessing { output_image_width: 128 output_image_height: 64 "
        "enable_auto_resize: true } spatial_augmentation { hflip_probability: 0.5 zoom_min: 0.8 "
        "zoom_max: 1.2 translate_max_x: 8 translate_max_y: 8 } color_augmentation { "
        "color_shift_stddev: 0.05 hue_rotation_max: 25 saturation_shift_max: 0.2 "
        "contrast_scale_max: 0.1 } }", "detection")
    augment = da.build_detection_augment(experiment.augmentation_config, training=True)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (80, 160, 3)).astype(np.uint8)
    boxes = tf.constant([[20.0, 10.0, 90.0, 60.0]])
    a = augment(image, boxes, _seed(5))
    b = augment(image, boxes, _seed(5))
    c = augment(image, boxes, _seed(6))
    for x, y in zip(a, b):
        assert np.array_equal(x.numpy(), y.numpy())
    assert a[0].shape == (64, 128, 3) and not np.array_equal(a[0].numpy(), c[0].numpy())
    # Evaluation: no randomness, only the resize 160x80 -> 128x64 (scale 0.8).
    evaluate = da.build_detection_augment(experiment.augmentation_config, training=False)
    _, moved, keep, m = evaluate(image, boxes, _seed(5))
    np.testing.assert_allclose(moved.numpy(), [[16.0, 8.0, 72.0, 48.0]], rtol=1e-6)
    np.testing.assert_allclose(m.numpy(), [[0.8, 0, 0], [0, 0.8, 0], [0, 0, 1]], rtol=1e-6)
