"""VOC-style detection AP (tlt.metrics.detection_voc) on hand-made cases with hand-computed APs."""

from __future__ import annotations

import json

import pytest

from tlt.errors import SpecError
from tlt.metrics.detection import (Detection, EvaluationSettings, GroundTruth, build_evaluation_settings,
                                   evaluate_detections)


def gt(cls, x1, y1, x2, y2):
    return GroundTruth(cls, x1, y1, x2, y2)


def det(cls, x1, y1, x2, y2, score):
    return Detection(cls, x1, y1, x2, y2, score)


def voc(ap_mode="11", **kwargs):
    return build_evaluation_settings(mode="voc", ap_mode=ap_mode, **kwargs)


# 3 ground truths in 2 frames; ranked predictions: TP, FP (nothing there), TP, FP (duplicate).
# precision 1, 1/2, 2/3, 2/4 at recall 1/3, 1/3, 2/3, 2/3.
GT_3 = [[gt("pedestrian", 0, 0, 100, 100), gt("pedestrian", 200, 0, 300, 100)],
        [gt("pedestrian", 0, 0, 100, 100)]]
PRED_4 = [[det("pedestrian", 0, 0, 100, 100, 0.9), det("pedestrian", 200, 0, 300, 100, 0.7),
           det("pedestrian", 2, 0, 100, 100, 0.6)],
          [det("pedestrian", 500, 500, 600, 600, 0.8)]]


def test_eleven_point_ap_by_hand():
    # interpolated precision: 1 at recall 0 .. 0.3 (4 points), 2/3 at 0.4 .. 0.6 (3 points), 0 above
    r = evaluate_detections(GT_3, PRED_4, voc("11"))
    res = r.per_class["pedestrian"]["combined"]
    assert res.ap == pytest.approx(100 * 6 / 11, abs=1e-12)
    assert (res.num_ground_truth, res.num_detections, res.true_positives, res.false_positives) == (3, 4, 2, 2)
    assert res.precision == pytest.approx([1, 1, 1, 1, 2 / 3, 2 / 3, 2 / 3, 0, 0, 0, 0])
    assert r.mean_ap["combined"] == pytest.approx(100 * 6 / 11)


def test_all_point_ap_by_hand():
    # area: 1/3 * 1 + (2/3 - 1/3) * 2/3 = 5/9
    r = evaluate_detections(GT_3, PRED_4, voc("all"))
    assert r.ap("pedestrian") == pytest.approx(100 * 5 / 9, abs=1e-12)
    assert r.per_class["pedestrian"]["combined"].recall == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert r.per_class["pedestrian"]["combined"].precision == pytest.approx([1, 2 / 3, 0])


def test_forty_point_ap_by_hand():
    # recall 1/40 .. 13/40 -> 1, 14/40 .. 26/40 -> 2/3, above -> 0
    r = evaluate_detections(GT_3, PRED_4, voc("40"))
    assert r.ap("pedestrian") == pytest.approx(100 * (13 + 13 * 2 / 3) / 40, abs=1e-12)


def test_minimum_overlap_is_inclusive_and_per_class():
    frame = [gt("car", 0, 0, 100, 100)]
    exact = evaluate_detections([frame], [[det("car", 0, 0, 70, 100, 0.9)]], voc())  # IoU exactly 0.7
    assert exact.ap("car") == 100.0
    below = evaluate_detections([frame], [[det("car", 0, 0, 69, 100, 0.9)]], voc())  # IoU 0.69
    assert below.ap("car") == 0.0
    assert below.per_class["car"]["combined"].false_positives == 1
    relaxed = evaluate_detections([frame], [[det("car", 0, 0, 69, 100, 0.9)]],
                                  EvaluationSettings(mode="voc", min_overlap={"car": 0.6}))
    assert relaxed.ap("car") == 100.0


def test_match_goes_to_the_best_unmatched_ground_truth():
    # Two heavily overlapping people. The second detection's best ground truth is already taken,
    # the other one still overlaps it by 92/108 >= 0.5: a true positive, not a duplicate.
    frame = [gt("pedestrian", 0, 0, 100, 100), gt("pedestrian", 10, 0, 110, 100)]
    preds = [det("pedestrian", 10, 0, 110, 100, 0.9), det("pedestrian", 8, 0, 108, 100, 0.8)]
    r = evaluate_detections([frame], [preds], voc())
    assert r.ap("pedestrian") == 100.0
    assert r.per_class["pedestrian"]["combined"].true_positives == 2


def test_detections_only_match_their_own_frame_and_class():
    gts = [[gt("car", 0, 0, 100, 100)], [gt("cyclist", 0, 0, 100, 100)]]
    preds = [[det("cyclist", 0, 0, 100, 100, 0.9)], [det("car", 0, 0, 100, 100, 0.8)]]
    r = evaluate_detections(gts, preds, voc())
    assert r.classes == ["car", "cyclist"]
    assert r.ap("car") == 0.0 and r.ap("cyclist") == 0.0
    assert r.per_class["car"]["combined"].false_positives == 1


def test_mean_ap_skips_classes_without_ground_truth():
    gts = [[gt("car", 0, 0, 100, 100), gt("pedestrian", 200, 0, 250, 100)]]
    preds = [[det("car", 0, 0, 100, 100, 0.9), det("cyclist", 300, 0, 350, 100, 0.5)]]
    r = evaluate_detections(gts, preds, voc(classes=["car", "pedestrian", "cyclist"]))
    assert (r.ap("car"), r.ap("pedestrian"), r.ap("cyclist")) == (100.0, 0.0, None)
    assert r.mean_ap["combined"] == 50.0


def test_class_mapping_applies_to_ground_truth():
    gts = [[gt("Van", 0, 0, 100, 100), gt("DontCare", 300, 0, 400, 100)]]
    preds = [[det("car", 0, 0, 100, 100, 0.9)]]
    r = evaluate_detections(gts, preds, EvaluationSettings(mode="voc", class_mapping={"van": "car"}))
    assert r.classes == ["car"]
    assert r.ap("car") == 100.0


def test_table_and_json():
    gts = [[gt("car", 0, 0, 100, 100)]]
    r = evaluate_detections(gts, [[det("car", 0, 0, 100, 100, 1.0)]], voc(classes=["car", "pedestrian"]))
    assert r.table() == "\n".join([
        "AP (voc, 11 recall points), in %:",
        "==========  ========  ======  ========  ======",
        "class mAP   combined    easy  moderate    hard",
        "==========  ========  ======  ========  ======",
        "car           100.00  100.00    100.00  100.00",
        "pedestrian       n/a     n/a       n/a     n/a",
        "==========  ========  ======  ========  ======",
        "mAP           100.00  100.00    100.00  100.00",
        "==========  ========  ======  ========  ======",
    ])
    data = json.loads(r.to_json())
    assert data["mode"] == "voc" and data["buckets"] == ["combined", "easy", "moderate", "hard"]
    assert data["mean_ap"] == {"combined": 100.0, "easy": 100.0, "moderate": 100.0, "hard": 100.0}
    assert data["per_class"]["car"]["combined"]["ap"] == 100.0
    assert data["per_class"]["pedestrian"]["combined"]["ap"] is None
    assert data["min_overlap"] == {"car": 0.7, "pedestrian": 0.5}
    assert data["columns"] == {
        "ap_car_combined": 100.0, "ap_car_easy": 100.0, "ap_car_moderate": 100.0, "ap_car_hard": 100.0,
        "ap_pedestrian_combined": None, "ap_pedestrian_easy": None, "ap_pedestrian_moderate": None,
        "ap_pedestrian_hard": None,
        "mAP_combined": 100.0, "mAP_easy": 100.0, "mAP_moderate": 100.0, "mAP_hard": 100.0}


# One frame for the bucket columns (KITTI's default buckets, car needs IoU 0.7):
# A: 100 px, visible; B: 30 px (under easy's 40, over moderate's 25); C: 100 px, occlusion 2
# (hard only). Detections: A and B found; a 30 px false positive scores highest; C is missed.
BUCKET_GT = [[GroundTruth("car", 0, 0, 100, 100), GroundTruth("car", 200, 0, 230, 30),
              GroundTruth("car", 300, 0, 400, 100, truncation=0.0, occlusion=2)]]
BUCKET_DETS = [[det("car", 500, 0, 530, 30, 0.95), det("car", 0, 0, 100, 100, 0.9),
                det("car", 200, 0, 230, 30, 0.8)]]


def test_bucket_columns_ignore_ground_truth_outside_them():
    r = evaluate_detections(BUCKET_GT, BUCKET_DETS, voc())
    assert r.buckets == ["combined", "easy", "moderate", "hard"]
    counts = {b: (c.num_ground_truth, c.num_detections, c.true_positives, c.false_positives)
              for b, c in r.per_class["car"].items()}
    # easy: only A counts; the 30 px detections (B's and the false one) are ignored, not scored
    assert counts == {"combined": (3, 3, 2, 1), "easy": (1, 1, 1, 0), "moderate": (2, 3, 2, 1),
                      "hard": (3, 3, 2, 1)}
    # combined / hard: precision 0, 1/2, 2/3 at recall 0, 1/3, 2/3 -> 2/3 at 7 of 11 points;
    # moderate: recall 0, 1/2, 1 -> 2/3 at all 11 points
    assert [r.ap("car", b) for b in r.buckets] == pytest.approx([100 * 14 / 33, 100.0, 100 * 2 / 3,
                                                                 100 * 14 / 33])
    assert r.columns()["ap_car_easy"] == 100.0 and r.columns()["mAP_moderate"] == pytest.approx(200 / 3)


def test_guide_buckets_from_the_spec_in_voc_mode():
    import tlt.spec

    spec = tlt.spec.loads("""
evaluation_config {
  evaluation_bucket_config { key: "hard" value { minimum_height: 25 maximum_occlusion: 2 truncation { maximum: 0.5 } } }
  evaluation_bucket_config { key: "mdrt" value { minimum_height: 25 maximum_occlusion: 1 truncation { maximum: 0.3 } } }
  evaluation_bucket_config { key: "easy" value { minimum_height: 40 maximum_occlusion: 0 truncation { maximum: 0.15 } } }
}
cost_function_config { target_classes { name: "car" } }
""", "detection")
    r = evaluate_detections(BUCKET_GT, BUCKET_DETS, build_evaluation_settings(spec))
    assert r.mode == "voc" and r.buckets == ["combined", "easy", "mdrt", "hard"]
    assert r.table().splitlines()[2].split() == ["class", "mAP", "combined", "easy", "mdrt", "hard"]
    assert r.table().splitlines()[4].split() == ["car", "42.42", "100.00", "66.67", "42.42"]
    assert sorted(r.columns()) == ["ap_car_combined", "ap_car_easy", "ap_car_hard", "ap_car_mdrt",
                                   "mAP_combined", "mAP_easy", "mAP_hard", "mAP_mdrt"]


def test_combined_is_a_reserved_bucket_name():
    from tlt.metrics.detection import Bucket

    with pytest.raises(SpecError, match='evaluation_bucket_config key "combined" is reserved'):
        EvaluationSettings(buckets=(Bucket("combined"),))


def test_write_json(tmp_path):
    r = evaluate_detections([[gt("car", 0, 0, 100, 100)]], [[]], voc())
    r.write_json(tmp_path / "out" / "results.json")
    assert json.loads((tmp_path / "out" / "results.json").read_text())["per_class"]["car"]["combined"]["ap"] == 0.0


def test_bad_settings():
    with pytest.raises(SpecError, match="evaluation mode must be one of: voc, kitti; got 'coco'"):
        EvaluationSettings(mode="coco")
    with pytest.raises(SpecError, match="AP mode must be one of: 11, 40, all; got '101'"):
        EvaluationSettings(ap_mode="101")
    with pytest.raises(ValueError, match="2 ground-truth frames but 1 prediction frames"):
        evaluate_detections([[], []], [[]])
