"""DetectNet_v2 bbox target encoding/decoding (tlt.models.detectnet_v2.bbox_codec)."""

from __future__ import annotations

import numpy as np
import pytest

import tlt.spec
from tlt.models.detectnet_v2.bbox_codec import BboxCodec, build_bbox_codec


def test_grid_centers_follow_stride_and_offset():
    gx, gy = BboxCodec().grid_centers(2, 3)
    assert gx.tolist() == [0.5, 16.5, 32.5]
    assert gy.tolist() == [0.5, 16.5]


def test_encode_hand_computed_values():
    boxes = np.zeros((2, 3, 4), dtype=np.float32)
    boxes[1, 2] = [10, 5, 60, 40]  # cell row 1, column 2: reference point (32.5, 16.5)
    targets = BboxCodec().encode(boxes)
    np.testing.assert_allclose(targets[1, 2], [22.5 / 35, 11.5 / 35, 27.5 / 35, 23.5 / 35], rtol=1e-6)


def test_decode_hand_computed_values_and_clipping():
    targets = np.zeros((1, 2, 4), dtype=np.float32)
    targets[0, 1] = [1.0, 0.5, 2.0, 1.0]  # reference point (16.5, 0.5)
    boxes = BboxCodec().decode_cells(targets)
    np.testing.assert_allclose(boxes[0, 1], [16.5 - 35, 0.5 - 17.5, 16.5 + 70, 0.5 + 35])
    clipped = BboxCodec().decode_cells(targets, image_size=(64, 32))
    np.testing.assert_allclose(clipped[0, 1], [0, 0, 64, 32])


def test_encode_decode_round_trip_with_custom_geometry():
    rng = np.random.default_rng(0)
    codec = BboxCodec(stride=8, scale=20.0, offset=0.25)
    xy = rng.uniform(0, 100, size=(3, 5, 7, 2))
    wh = rng.uniform(1, 50, size=(3, 5, 7, 2))
    boxes = np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)
    np.testing.assert_allclose(codec.decode_cells(codec.encode(boxes)), boxes, atol=1e-4)


def test_decode_channel_first_layout_per_class():
    codec = BboxCodec()
    raw = np.zeros((8, 2, 3), dtype=np.float32)  # 2 classes, 2x3 grid
    raw[4:8, 1, 0] = [0.1, 0.2, 0.3, 0.4]  # class 1, row 1, column 0: reference point (0.5, 16.5)
    boxes = codec.decode(raw)
    assert boxes.shape == (2, 2, 3, 4)
    np.testing.assert_allclose(boxes[1, 1, 0], [0.5 - 3.5, 16.5 - 7.0, 0.5 + 10.5, 16.5 + 14.0], rtol=1e-6)
    np.testing.assert_allclose(boxes[0, 1, 0], [0.5, 16.5, 0.5, 16.5])
    batch = codec.decode(np.stack([raw, raw]))
    assert batch.shape == (2, 2, 2, 3, 4)


def test_decode_at_matches_full_decode():
    rng = np.random.default_rng(1)
    codec = BboxCodec()
    raw = rng.uniform(-1, 3, size=(4, 6, 9)).astype(np.float32)
    full = codec.decode(raw, image_size=(144, 96))[0]
    rows, cols = np.array([0, 5, 3]), np.array([8, 0, 4])
    picked = codec.decode_at(raw[:, rows, cols].T, rows, cols, image_size=(144, 96))
    np.testing.assert_allclose(picked, full[rows, cols])


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"output_bbox must be \[\.\.\., C\*4, H, W\], got shape \(6, 2, 2\)"):
        BboxCodec().decode(np.zeros((6, 2, 2)))
    with pytest.raises(ValueError, match=r"boxes must be \[\.\.\., H, W, 4\]"):
        BboxCodec().encode(np.zeros((2, 3)))


def test_build_from_spec_objective():
    spec = tlt.spec.loads("model_config { objective_set { bbox { scale: 30.0 offset: 0.25 } } }", "detection")
    assert build_bbox_codec(spec) == BboxCodec(stride=16, scale=30.0, offset=0.25)
    assert build_bbox_codec(spec.model_config.objective_set.bbox, stride=8) == BboxCodec(8, 30.0, 0.25)
    assert build_bbox_codec(None) == BboxCodec(16, 35.0, 0.5)
