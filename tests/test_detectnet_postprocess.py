"""DetectNet_v2 post-processing: coverage/bbox maps -> detections (DBSCAN and NMS)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tlt.spec
from tlt.errors import DataError, SpecError
from tlt.models.detectnet_v2.postprocess import (ClassSettings, PostProcessor, build_postprocessor,
                                                 cluster_dbscan)

GRID = (8, 12)  # rows, columns -> a 192x128 image


def make_outputs(cells, n_classes=1, grid=GRID):
    """Raw outputs where each (class, row, col, coverage, box) cell proposes ``box``."""
    cov = np.zeros((n_classes, *grid), dtype=np.float32)
    bbox = np.zeros((4 * n_classes, *grid), dtype=np.float32)
    for c, row, col, value, box in cells:
        gx, gy = col * 16 + 0.5, row * 16 + 0.5
        cov[c, row, col] = value
        bbox[4 * c:4 * c + 4, row, col] = [(gx - box[0]) / 35, (gy - box[1]) / 35,
                                           (box[2] - gx) / 35, (box[3] - gy) / 35]
    return cov, bbox


def boxes_of(detections):
    return [[d.xmin, d.ymin, d.xmax, d.ymax] for d in detections]


def test_two_separated_blobs_give_two_boxes():
    a, b = (10, 10, 70, 60), (120, 60, 180, 120)
    cov, bbox = make_outputs([(0, 1, 1, 0.6, a), (0, 1, 2, 0.8, a), (0, 2, 1, 0.5, a), (0, 2, 2, 0.7, a),
                              (0, 5, 8, 0.9, b), (0, 5, 9, 0.4, b), (0, 6, 8, 0.3, b)])
    dets = PostProcessor(["car"])(cov, bbox)
    assert len(dets) == 2
    np.testing.assert_allclose(boxes_of(dets), [a, b], atol=1e-4)
    assert [d.class_name for d in dets] == ["car", "car"]
    assert [d.confidence for d in dets] == pytest.approx([2.6, 1.6], abs=1e-6)
    assert [d.max_coverage for d in dets] == pytest.approx([0.8, 0.9], abs=1e-6)
    assert [d.mean_coverage for d in dets] == pytest.approx([0.65, 1.6 / 3], abs=1e-6)
    assert [d.num_cells for d in dets] == [4, 3]


# Three proposals: IoU(p1, p2) = 0.875 (distance 0.125 < eps 0.15), IoU(p1, p3) = 0.5,
# IoU(p2, p3) = 2640 / 4560.
P1, P2, P3 = (20, 20, 80, 80), (24, 20, 84, 80), (40, 20, 100, 80)
OVERLAPPING = [(0, 2, 2, 0.6, P1), (0, 2, 3, 0.2, P2), (0, 3, 2, 0.3, P3)]


def test_overlapping_cells_merge_into_the_weighted_mean_box():
    cov, bbox = make_outputs(OVERLAPPING)
    dets = PostProcessor(["car"], {"car": ClassSettings(minimum_height=0)})(cov, bbox)
    # merged: x = (0.6 * 20 + 0.2 * 24) / 0.8 = 21 and (0.6 * 80 + 0.2 * 84) / 0.8 = 81
    np.testing.assert_allclose(boxes_of(dets), [(21, 20, 81, 80), P3], atol=1e-4)
    assert [d.confidence for d in dets] == pytest.approx([0.8, 0.3], abs=1e-6)
    assert [d.num_cells for d in dets] == [2, 1]


def test_min_samples_is_a_fractional_sum_of_coverages():
    settings = {"car": ClassSettings(dbscan_min_samples=0.05, confidence_threshold=0.0, minimum_height=0)}
    alone = make_outputs([(0, 1, 1, 0.04, P1)])
    assert PostProcessor(["car"], settings)(*alone) == []  # 0.04 < 0.05: noise
    enough = make_outputs([(0, 1, 1, 0.06, P1)])
    assert len(PostProcessor(["car"], settings)(*enough)) == 1
    # two overlapping proposals of 0.03 each are core points together (0.06 >= 0.05)
    pair = make_outputs([(0, 1, 1, 0.03, P1), (0, 1, 2, 0.03, P2)])
    dets = PostProcessor(["car"], settings)(*pair)
    assert len(dets) == 1 and dets[0].confidence == pytest.approx(0.06, abs=1e-7)


def test_cluster_dbscan_with_zero_min_samples_keeps_every_proposal():
    boxes = np.array([P1, (150, 0, 190, 30)], dtype=np.float64)
    clusters = cluster_dbscan(boxes, np.array([0.01, 0.02]), eps=0.15, min_samples=0.0)
    assert [c[1] for c in clusters] == pytest.approx([0.02, 0.01])


def test_minimum_height_and_confidence_filters():
    short, tall = (10, 10, 60, 25), (100, 10, 150, 35)  # heights 15 and 25
    cov, bbox = make_outputs([(0, 1, 1, 0.5, short), (0, 1, 7, 0.5, tall), (0, 6, 2, 0.08, (10, 80, 60, 120))])
    dets = PostProcessor(["car"], {"car": ClassSettings(minimum_height=20)})(cov, bbox)
    # the short box is dropped by height, the 0.08 one by dbscan_confidence_threshold 0.1
    np.testing.assert_allclose(boxes_of(dets), [tall], atol=1e-4)


def test_coverage_threshold_selects_cells():
    cov, bbox = make_outputs([(0, 1, 1, 0.5, P1), (0, 5, 9, 0.3, (130, 70, 180, 120))])
    dets = PostProcessor(["car"], {"car": ClassSettings(coverage_threshold=0.3)})(cov, bbox)
    np.testing.assert_allclose(boxes_of(dets), [P1], atol=1e-4)  # 0.3 is not above 0.3


def test_nms_mode():
    cov, bbox = make_outputs(OVERLAPPING)
    nms = ClassSettings(algorithm="nms", nms_iou_threshold=0.5, confidence_threshold=0.0, minimum_height=0)
    dets = PostProcessor(["car"], {"car": nms})(cov, bbox)
    # P2 overlaps P1 by 0.875 and goes; P3 overlaps P1 by exactly 0.5, not above: kept
    np.testing.assert_allclose(boxes_of(dets), [P1, P3], atol=1e-4)
    assert [d.confidence for d in dets] == pytest.approx([0.6, 0.3])
    stricter = ClassSettings(algorithm="nms", nms_iou_threshold=0.4, confidence_threshold=0.0, minimum_height=0)
    assert len(PostProcessor(["car"], {"car": stricter})(cov, bbox)) == 1
    floor = ClassSettings(algorithm="nms", nms_iou_threshold=0.5, confidence_threshold=0.35, minimum_height=0)
    np.testing.assert_allclose(boxes_of(PostProcessor(["car"], {"car": floor})(cov, bbox)), [P1], atol=1e-4)


def test_classes_use_their_own_channels_and_clip_to_the_image():
    cov, bbox = make_outputs([(1, 1, 1, 0.9, (-30, 5, 50, 60)), (0, 6, 10, 0.9, (150, 90, 250, 140))],
                             n_classes=2)
    dets = PostProcessor(["car", "pedestrian"])(cov, bbox)
    assert [d.class_name for d in dets] == ["car", "pedestrian"]
    np.testing.assert_allclose(boxes_of(dets), [(150, 90, 192, 128), (0, 5, 50, 60)], atol=1e-4)
    low = {"car": ClassSettings(minimum_height=0)}
    dets = PostProcessor(["car", "pedestrian"], low, image_size=(180, 100))(cov, bbox)
    np.testing.assert_allclose(boxes_of(dets)[0], (150, 90, 180, 100), atol=1e-4)


def test_batch_matches_single_images():
    first = make_outputs([(0, 1, 1, 0.6, P1)])
    second = make_outputs([(0, 5, 8, 0.9, (120, 60, 180, 120))])
    proc = PostProcessor(["car"])
    batch = proc.process_batch(np.stack([first[0], second[0]]), np.stack([first[1], second[1]]))
    assert batch == [proc(*first), proc(*second)]


def test_shape_mismatch_is_a_data_error():
    cov, bbox = make_outputs([], n_classes=2)
    with pytest.raises(DataError, match=r"output_cov has shape \(2, 8, 12\), expected \[3, H, W\] for "
                                        r"classes car, cyclist, pedestrian"):
        PostProcessor(["car", "cyclist", "pedestrian"])(cov, bbox)
    with pytest.raises(DataError, match=r"output_bbox has shape \(4, 8, 12\), expected \(8, 8, 12\)"):
        PostProcessor(["car", "cyclist"])(cov, bbox[:4])


def write_cluster_params(tmp_path, **overrides):
    data = {
        "dbscan_criterion": "IOU",
        "dbscan_eps": {"car": 0.3, "default": 0.2},
        "dbscan_min_samples": {"default": 0.05},
        "min_cov_to_cluster": {"car": 0.075, "default": 0.01},
        "min_obj_height": {"default": 4},
        "target_classes": ["car", "cyclist"],
        "confidence_th": {"car": 0.3},
        "output_map": {"car": "vehicle"},
        "image_height": 128, "image_width": 192,
    }
    data.update(overrides)
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(data))
    return tlt.spec.load_cluster_params(path)


def test_cluster_params_values_with_default_fallback(tmp_path):
    proc = build_postprocessor(write_cluster_params(tmp_path), ["car", "cyclist"])
    assert proc.settings["car"] == ClassSettings(coverage_threshold=0.075, dbscan_eps=0.3, dbscan_min_samples=0.05,
                                                 minimum_height=4.0, confidence_threshold=0.3,
                                                 output_name="vehicle")
    assert proc.settings["cyclist"] == ClassSettings(coverage_threshold=0.01, dbscan_eps=0.2, dbscan_min_samples=0.05,
                                                     minimum_height=4.0, confidence_threshold=0.0,
                                                     output_name="cyclist")
    assert proc.image_size == (192, 128)
    cov, bbox = make_outputs([(0, 1, 1, 0.6, P1), (1, 5, 8, 0.2, (120, 60, 180, 120))], n_classes=2)
    assert [d.class_name for d in proc(cov, bbox)] == ["vehicle", "cyclist"]


def test_cluster_params_postproc_classes_and_model_order(tmp_path):
    params = write_cluster_params(tmp_path, postproc_classes=["cyclist"])
    proc = build_postprocessor(params, ["cyclist", "car", "pedestrian"])
    assert proc.class_names == ["cyclist", "car", "pedestrian"]
    assert [proc.settings[c].enabled for c in proc.class_names] == [True, False, False]
    cov, bbox = make_outputs([(0, 1, 1, 0.6, P1), (1, 5, 8, 0.9, (120, 60, 180, 120))], n_classes=3)
    assert [d.class_name for d in proc(cov, bbox)] == ["cyclist"]


def test_cluster_params_class_the_model_lacks(tmp_path):
    params = write_cluster_params(tmp_path, target_classes=["car", "truck"])
    with pytest.raises(SpecError, match=r"target_classes names 'truck', which the model does not have "
                                        r"\(model classes: car, cyclist\)"):
        build_postprocessor(params, ["car", "cyclist"])


SPEC = """
postprocessing_config {
  target_class_config { key: "car" value { clustering_config {
    coverage_threshold: 0.01 dbscan_eps: 0.2 dbscan_min_samples: 0.1 minimum_bounding_box_height: 12
    dbscan_confidence_threshold: 0.25 } } }
  target_class_config { key: "pedestrian" value { clustering_config {
    clustering_algorithm: NMS nms_iou_threshold: 0.4 nms_confidence_threshold: 0.2 } } }
}
cost_function_config { target_classes { name: "pedestrian" } target_classes { name: "car" } }
model_config { objective_set { bbox { scale: 30.0 offset: 0.5 } } }
augmentation_config { preprocessing { output_image_width: 320 output_image_height: 160 } }
"""


def test_build_from_detection_spec():
    spec = tlt.spec.loads(SPEC, "detection")
    proc = build_postprocessor(spec)
    assert proc.class_names == ["pedestrian", "car"]
    assert proc.settings["car"] == ClassSettings(coverage_threshold=0.01, dbscan_eps=0.2, dbscan_min_samples=0.1,
                                                 minimum_height=12, confidence_threshold=0.25)
    assert proc.settings["pedestrian"] == ClassSettings(algorithm="nms", nms_iou_threshold=0.4,
                                                        confidence_threshold=0.2)
    assert (proc.codec.scale, proc.image_size) == (30.0, (320, 160))
    with pytest.raises(SpecError, match=r"target_class_config has no entry for 'cyclist' \(it has: car, pedestrian\)"):
        build_postprocessor(spec.postprocessing_config, ["car", "cyclist"])
    with pytest.raises(SpecError, match="the model's class names are needed"):
        build_postprocessor(spec.postprocessing_config)


def test_inverted_boxes_of_an_untrained_model_are_dropped():
    """Offsets that put the right edge left of the left edge describe no object (even with
    minimum height 0); the report and the KITTI writer never see such a box."""
    inverted, fine = (60, 10, 20, 40), (100, 10, 150, 35)
    cov, bbox = make_outputs([(0, 1, 1, 0.5, inverted), (0, 1, 7, 0.5, fine)])
    dets = PostProcessor(["car"], {"car": ClassSettings(minimum_height=0)})(cov, bbox)
    np.testing.assert_allclose(boxes_of(dets), [fine], atol=1e-4)


def test_report_draws_an_inverted_box_instead_of_failing():
    from tlt.evaluation.report import draw_boxes

    image = draw_boxes(np.zeros((32, 32, 3), np.uint8), [(20, 5, 4, 25, (255, 0, 0), "car")])
    pixels = np.asarray(image)
    assert pixels[5, 4:21, 0].min() == 255 and pixels[:, :, 0].sum() > 0
