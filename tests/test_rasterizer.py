"""DetectNet_v2 ground-truth rasterizer: hand-computed coverage, deadzones, order, targets."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from tlt.errors import DataError, SpecError
from tlt.models.detectnet_v2.bbox_codec import BboxCodec
from tlt.models.detectnet_v2.rasterizer import BboxRasterizer, ClassEllipse, build_rasterizer
from tlt.proto.detection_config_pb2 import BboxRasterizerConfig


def rasterizer(*ellipses, deadzone=0.67, height=128, width=128):
    return BboxRasterizer(list(ellipses) or [ClassEllipse()], deadzone, input_height=height,
                          input_width=width)


def test_one_box_coverage_deadzone_ring_and_background_cells():
    # 128x128 box over an 8x8 grid: ellipse centre (4, 4) cells, semi-axes 0.5 * 4 = 2 cells,
    # deadzone semi-axes 0.5 * 2 + 0.5 * 4 = 3 cells.
    r = rasterizer(ClassEllipse(cov_radius_x=0.5, cov_radius_y=0.5), deadzone=0.5)
    t = r.rasterize([[0, 0, 128, 128]], [0])
    assert [a.shape for a in t] == [(1, 8, 8), (1, 8, 8), (4, 8, 8), (1, 8, 8)]
    assert all(a.dtype == np.float32 for a in t)
    cov, mask = t.cov[0], t.cov_mask[0]
    # The four cells around the centre lie wholly inside the circle of radius 2.
    assert (cov[3:5, 3:5] == 1.0).all()
    # Cell (2, 2): 6 of its 16 sub-samples satisfy (x-4)^2 + (y-4)^2 < 4.
    assert cov[2, 2] == 6 / 16 and cov[2, 5] == 6 / 16 and cov[5, 5] == 6 / 16
    # Cell (2, 3): all but the 3 sub-samples of its top row at dy = 1.875 beyond |dx| = 0.875.
    assert cov[2, 3] == 15 / 16
    assert np.count_nonzero(cov) == 16
    # Ring: cell (4, 1) is outside the circle (its nearest sub-sample is 2.125 away) but
    # inside the deadzone radius 3; cell (4, 0) (3.125 away) and corner (1, 1) (3.005) are not.
    assert cov[4, 1] == 0 and mask[4, 1] == 0
    assert mask[4, 0] == 1 and mask[1, 1] == 1 and mask[0, 0] == 1
    expected_mask = np.array([
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0, 0, 1, 1],
        [1, 0, 1, 1, 1, 1, 0, 1],
        [1, 0, 1, 1, 1, 1, 0, 1],
        [1, 0, 1, 1, 1, 1, 0, 1],
        [1, 0, 1, 1, 1, 1, 0, 1],
        [1, 1, 0, 0, 0, 0, 1, 1],
        [1, 1, 1, 1, 1, 1, 1, 1]], np.float32)
    np.testing.assert_array_equal(mask, expected_mask)
    # bbox weight = coverage / (4 * 2 * 2).
    np.testing.assert_array_equal(t.bbox_weight[0], cov / 16)
    # Targets at cell (3, 3), reference point 3 * 16 + 0.5 = 48.5 px.
    np.testing.assert_allclose(t.bbox[:, 3, 3], np.array([48.5, 48.5, 79.5, 79.5]) / 35, rtol=1e-6)
    assert (t.bbox[:, cov == 0] == 0).all()


def test_tiny_box_gets_the_minimum_radius():
    # A 16x16 px box centred on a grid corner: semi-axes 0.4 * 0.5 = 0.2 cells grow to 1 cell.
    r = rasterizer()
    geometry = r.geometry([[56, 56, 72, 72]], [0])
    assert geometry["rx"][0] == 1.0 and geometry["ry"][0] == 1.0
    # Deadzone: max(0.33 * 1 + 0.67 * 0.5, 1) = 1, no ring; area 4 * 1 * 1.
    assert geometry["dx"][0] == 1.0 and geometry["inv_area"][0] == 0.25
    t = r.rasterize([[56, 56, 72, 72]], [0])
    # A quarter disc of radius 1 over each of the 4 cells meeting at (4, 4): 13 of 16 samples.
    expected = np.zeros((8, 8), np.float32)
    expected[3:5, 3:5] = 13 / 16
    np.testing.assert_array_equal(t.cov[0], expected)
    assert (t.cov_mask == 1).all()
    np.testing.assert_array_equal(t.bbox_weight[0], expected * 0.25)
    np.testing.assert_allclose(t.bbox[:, 4, 4], np.array([8.5, 8.5, 7.5, 7.5]) / 35, rtol=1e-6)
    np.testing.assert_allclose(t.bbox[:, 3, 3], np.array([-7.5, -7.5, 23.5, 23.5]) / 35,
                               rtol=1e-6)


def test_minimum_radius_keeps_the_aspect_ratio():
    # 160x16 px: semi-axes (2, 0.2) cells; y grows to 1 and x by the same factor 5, as TLT does.
    g = rasterizer(height=64, width=256).geometry([[0, 0, 160, 16]], [0])
    np.testing.assert_allclose([g["rx"][0], g["ry"][0]], [10.0, 1.0])


def test_targets_decode_back_to_the_box():
    box = np.array([21.0, 9.0, 83.0, 57.0])
    r = rasterizer(ClassEllipse(cov_radius_x=1.0, cov_radius_y=1.0), height=64)
    t = r.rasterize([box], [0])
    rows, cols = np.nonzero(t.cov[0])
    assert len(rows) > 4
    decoded = BboxCodec().decode_at(t.bbox[:, rows, cols].T, rows, cols)
    np.testing.assert_allclose(decoded, np.tile(box, (len(rows), 1)), atol=1e-4)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_overlaps_keep_max_coverage_and_nearer_box_wins_ties(order):
    far, near = [0.0, 0.0, 96.0, 64.0], [32.0, 16.0, 128.0, 96.0]  # near has the larger ymax
    r = rasterizer(ClassEllipse(cov_radius_x=1.0, cov_radius_y=1.0))
    alone = {name: r.rasterize([box], [0]) for name, box in (("far", far), ("near", near))}
    boxes = [[far, near][i] for i in order]
    t = r.rasterize(boxes, [0, 0])
    np.testing.assert_array_equal(t.cov, np.maximum(alone["far"].cov, alone["near"].cov))
    cf, cn = alone["far"].cov[0], alone["near"].cov[0]
    near_wins = (cn >= cf) & (cn > 0)
    far_wins = cf > cn
    assert near_wins.any() and far_wins.any() and ((cn == cf) & (cn == 1)).any()
    np.testing.assert_array_equal(t.bbox[:, near_wins], alone["near"].bbox[:, near_wins])
    np.testing.assert_array_equal(t.bbox[:, far_wins], alone["far"].bbox[:, far_wins])
    np.testing.assert_array_equal(t.bbox_weight[0][near_wins],
                                  alone["near"].bbox_weight[0][near_wins])
    # Cell (3, 3) is fully covered by both: the nearer box's edges are the target.
    assert cf[3, 3] == cn[3, 3] == 1.0
    np.testing.assert_allclose(t.bbox[:, 3, 3], np.array([16.5, 32.5, 79.5, 47.5]) / 35,
                               rtol=1e-6)
    # A deadzone ring never masks a cell another box covers.
    assert (t.cov_mask[t.cov > 0] == 1).all()


def test_classes_draw_into_their_own_channels():
    r = rasterizer(ClassEllipse(), ClassEllipse(cov_radius_x=1.0, cov_radius_y=1.0))
    t = r.rasterize([[32, 32, 96, 96]], [1])
    assert t.cov.shape == (2, 8, 8) and t.bbox.shape == (8, 8, 8)
    assert (t.cov[0] == 0).all() and (t.bbox[:4] == 0).all() and (t.cov_mask[0] == 1).all()
    assert t.cov[1, 3, 3] == 1.0
    np.testing.assert_allclose(t.bbox[4:, 3, 3], np.array([16.5, 16.5, 47.5, 47.5]) / 35,
                               rtol=1e-6)


def test_ignore_regions_mask_every_class():
    r = rasterizer(ClassEllipse(cov_radius_x=1.0, cov_radius_y=1.0), ClassEllipse())
    # Cells whose centre (8 + 16 k px) lies in x 30..70, y 0..39: columns 2-3, rows 0-1.
    t = r.rasterize([[0, 0, 128, 128], [30, 0, 70, 39]], [0, -1])
    expected = np.ones((8, 8), np.float32)
    expected[0:2, 2:4] = 0
    np.testing.assert_array_equal(t.cov_mask[1], expected)
    assert (t.cov_mask[0][0:2, 2:4] == 0).all() and (t.bbox_weight[0][0:2, 2:4] == 0).all()
    assert t.bbox_weight[0][3, 3] > 0
    # A tiny ignore box still masks the cell holding its centre.
    tiny = r.rasterize([[100, 100, 102, 103]], [-1])
    assert np.argwhere(tiny.cov_mask[0] == 0).tolist() == [[6, 6]]
    assert (tiny.cov == 0).all()


def test_empty_and_degenerate_boxes_give_background():
    r = rasterizer()
    for boxes, ids in (([], []), ([[10, 10, 10, 40]], [0])):
        t = r.rasterize(np.asarray(boxes, np.float32).reshape(-1, 4), ids)
        assert (t.cov == 0).all() and (t.cov_mask == 1).all() and (t.bbox == 0).all()


def test_bad_class_ids_and_shapes_raise_data_errors():
    r = rasterizer()
    with pytest.raises(DataError, match=r"class id 1 is out of range \(expected -1 for an "
                                        r"ignore region or 0\.\.0\)"):
        r.rasterize([[0, 0, 10, 10]], [1])
    with pytest.raises(DataError, match="2 boxes but 1 class ids"):
        r.rasterize([[0, 0, 10, 10], [0, 0, 5, 5]], [0])


def test_grid_is_rounded_up():
    r = rasterizer(height=100, width=90)
    assert (r.grid_height, r.grid_width) == (7, 6)
    assert r.output_shapes()["bbox"] == (4, 7, 6)


def test_tf_rasterize_has_static_shapes_inside_tf_data():
    r = rasterizer(ClassEllipse(), ClassEllipse(), height=64, width=128)
    boxes = np.array([[10, 5, 60, 50], [70, 10, 120, 60]], np.float32)
    ids = np.array([0, 1], np.int32)
    ds = tf.data.Dataset.from_tensors((boxes, ids)).map(r.tf_rasterize)
    assert [tuple(s.shape) for s in ds.element_spec] == [(2, 4, 8), (2, 4, 8), (8, 4, 8),
                                                         (2, 4, 8)]
    got = next(iter(ds))
    for tensor, expected in zip(got, r.rasterize(boxes, ids)):
        np.testing.assert_array_equal(tensor.numpy(), expected)


def test_build_from_spec_uses_defaults_and_names_missing_classes():
    config = text_format.Parse("""
        target_class_config { key: "car" value { cov_radius_x: 1.0 cov_radius_y: 1.0 } }
        target_class_config { key: "pedestrian" value { } }
    """, BboxRasterizerConfig())
    r = build_rasterizer(config, ["pedestrian", "car"], input_height=544, input_width=960,
                         scale=30.0)
    assert r.ellipses == (ClassEllipse(0.5, 0.5, 0.4, 0.4, 1.0), ClassEllipse(0.5, 0.5, 1, 1, 1))
    assert r.deadzone_radius == pytest.approx(0.67) and r.scale == 30.0
    assert (r.grid_height, r.grid_width) == (34, 60)
    config.deadzone_radius = 0.0
    assert build_rasterizer(config, ["car"], input_height=64, input_width=64).deadzone_radius == 0
    with pytest.raises(SpecError, match=r'bbox_rasterizer_config.target_class_config has no '
                                        r'entry for class "cyclist" \(entries: car, pedestrian\)'):
        build_rasterizer(config, ["car", "cyclist"], input_height=64, input_width=64)
