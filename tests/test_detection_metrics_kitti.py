"""Official KITTI 2D AP (tlt.metrics.detection_kitti) on hand-made cases with hand-derived APs.

With ``n <= 41`` counted boxes and every detection a true positive, the devkit takes one score
threshold per box, so the precision curve is 1 at its first ``n`` samples and 0 after: AP is
``#{0, 4, ..., 40} < n`` / 11 (11 points) or ``(n - 1) / 40`` (40 points). Hence 100 only from 41
boxes on, and 9.09 / 2.5 for 2 boxes (the devkit's known small-set behaviour, OpenPCDet#1060).
"""

from __future__ import annotations

import pytest

import tlt.spec
from tlt.errors import SpecError
from tlt.metrics.detection import (Bucket, Detection, GroundTruth, build_evaluation_settings,
                                   evaluate_detections)
from tlt.metrics.detection_kitti import get_thresholds

BUCKETS = ["easy", "moderate", "hard"]


def cars(n, cls="car"):
    """n ground-truth boxes 50 px high in a row (valid in every default bucket)."""
    return [GroundTruth(cls, 60 * k, 100, 60 * k + 50, 150) for k in range(n)]


def hits(boxes, score=1.0):
    return [Detection(b.class_name, b.xmin, b.ymin, b.xmax, b.ymax, score) for b in boxes]


def kitti(ap_mode="11", **kwargs):
    return build_evaluation_settings(mode="kitti", ap_mode=ap_mode, **kwargs)


def aps(results, cls="car"):
    """AP of the difficulty buckets (the ``combined`` column left out)."""
    return [results.per_class[cls][b].ap for b in BUCKETS]


@pytest.mark.parametrize("ap_mode", ["11", "40"])
def test_all_true_positives_with_41_boxes_is_100(ap_mode):
    gt = cars(41)
    r = evaluate_detections([gt], [hits(gt)], kitti(ap_mode))
    assert r.buckets == ["combined"] + BUCKETS
    assert aps(r) == [100.0, 100.0, 100.0] and r.ap("car", "combined") == 100.0
    res = r.per_class["car"]["easy"]
    assert (res.num_ground_truth, res.true_positives, res.false_positives) == (41, 41, 0)
    assert res.precision == [1.0] * 41


def test_all_true_positives_with_fewer_boxes_follow_the_devkit():
    gt40 = cars(40)
    r11 = evaluate_detections([gt40], [hits(gt40)], kitti("11"))
    r40 = evaluate_detections([gt40], [hits(gt40)], kitti("40"))
    assert r11.ap("car", "easy") == pytest.approx(100 * 10 / 11, abs=1e-12)  # sample 40 is 0
    assert r40.ap("car", "easy") == pytest.approx(100 * 39 / 40, abs=1e-12)
    gt2 = cars(2)
    assert evaluate_detections([gt2], [hits(gt2)], kitti("11")).ap("car") == pytest.approx(100 / 11)
    assert evaluate_detections([gt2], [hits(gt2)], kitti("40")).ap("car") == pytest.approx(2.5)


def frames_with_false_positive(fp, extra_gt=()):
    gt = cars(41) + list(extra_gt)
    dets = [Detection("car", b.xmin, b.ymin, b.xmax, b.ymax, 0.5 + k / 1000) for k, b in enumerate(cars(41))]
    return [gt], [dets + [fp]]


@pytest.mark.parametrize("ap_mode", ["11", "40"])
def test_one_false_positive_above_all_true_positives(ap_mode):
    # At the k-th threshold (k = 1..41) there are k TPs and the FP: precision k / (k + 1) rises,
    # so the max-interpolated curve is 41/42 everywhere.
    gt, dets = frames_with_false_positive(Detection("car", 0, 300, 50, 350, 0.99))
    r = evaluate_detections(gt, dets, kitti(ap_mode))
    assert aps(r) == pytest.approx([100 * 41 / 42] * 3, abs=1e-9)
    res = r.per_class["car"]["moderate"]
    assert (res.true_positives, res.false_positives, res.num_detections) == (41, 1, 42)


def test_detection_inside_dont_care_is_not_a_false_positive():
    dont_care = GroundTruth("dontcare", 0, 290, 60, 360, -1, -1)
    gt, dets = frames_with_false_positive(Detection("car", 0, 300, 50, 350, 0.99), [dont_care])
    r = evaluate_detections(gt, dets, kitti())
    assert aps(r) == [100.0, 100.0, 100.0]
    assert r.per_class["car"]["easy"].false_positives == 0
    # covering only half of the detection (0.5 <= 0.7) does not excuse it
    half = GroundTruth("dontcare", 25, 300, 100, 350, -1, -1)
    gt, dets = frames_with_false_positive(Detection("car", 0, 300, 50, 350, 0.99), [half])
    assert evaluate_detections(gt, dets, kitti()).ap("car") == pytest.approx(100 * 41 / 42)


def test_car_detection_on_a_van_is_not_a_false_positive():
    van = GroundTruth("van", 0, 300, 50, 350)
    gt, dets = frames_with_false_positive(Detection("car", 0, 300, 50, 350, 0.99), [van])
    r = evaluate_detections(gt, dets, kitti())
    assert aps(r) == [100.0, 100.0, 100.0]
    res = r.per_class["car"]["easy"]
    assert (res.num_ground_truth, res.num_ignored_ground_truth, res.false_positives) == (41, 1, 0)
    # an undetected van is not a miss either, and a detection labelled van plays no part for car
    gt41 = cars(41)
    r = evaluate_detections([gt41 + [van]], [hits(gt41) + [Detection("van", 0, 500, 50, 550, 0.99)]], kitti())
    assert aps(r) == [100.0, 100.0, 100.0]


def test_pedestrian_detection_on_a_sitting_person_is_not_a_false_positive():
    people = cars(41, "pedestrian")
    sitting = GroundTruth("person_sitting", 0, 300, 50, 350)
    dets = hits(people, 0.5) + [Detection("pedestrian", 0, 300, 50, 350, 0.99)]
    r = evaluate_detections([people + [sitting]], [dets], kitti())
    assert aps(r, "pedestrian") == [100.0, 100.0, 100.0]
    # but for cyclists nothing is a neighbour: a cyclist detection on a sitting person is an FP
    riders = cars(41, "cyclist")
    dets = hits(riders, 0.5) + [Detection("cyclist", 0, 300, 50, 350, 0.99)]
    r = evaluate_detections([riders + [sitting]], [dets], kitti())
    assert aps(r, "cyclist") == pytest.approx([100 * 41 / 42] * 3)


def test_short_detections_are_ignored_below_the_bucket_height():
    # a 30 px false positive: under easy's 40 px it is ignored, moderate and hard (25 px) count it
    gt, dets = frames_with_false_positive(Detection("car", 0, 300, 50, 330, 0.99))
    r = evaluate_detections(gt, dets, kitti())
    assert aps(r) == pytest.approx([100.0, 100 * 41 / 42, 100 * 41 / 42])


def test_ground_truth_outside_a_bucket_is_ignored_not_missed():
    occluded = GroundTruth("car", 0, 300, 50, 350, truncation=0.0, occlusion=2)
    truncated = GroundTruth("car", 100, 300, 150, 350, truncation=0.4, occlusion=0)
    short = GroundTruth("car", 200, 300, 250, 325)  # 25 px: height <= 25 is outside every bucket
    gt = cars(41) + [occluded, truncated, short]
    r = evaluate_detections([gt], [hits(cars(41))], kitti())
    assert [r.per_class["car"][b].num_ground_truth for b in BUCKETS] == [41, 41, 43]
    assert [r.per_class["car"][b].num_ignored_ground_truth for b in BUCKETS] == [3, 3, 1]
    assert r.ap("car", "easy") == 100.0 and r.ap("car", "moderate") == 100.0


def test_match_needs_iou_strictly_above_the_minimum_overlap():
    gt = cars(41)
    exact = [Detection("car", b.xmin, b.ymin, b.xmin + 35, b.ymax, 1.0) for b in gt]  # IoU exactly 0.7
    r = evaluate_detections([gt], [exact], kitti())
    assert r.ap("car") == 0.0
    assert r.per_class["car"]["easy"].false_positives == 41


def test_class_without_ground_truth_has_no_ap():
    gt = cars(41)
    r = evaluate_detections([gt], [hits(gt) + [Detection("cyclist", 0, 300, 50, 350, 0.9)]],
                            kitti(classes=["car", "cyclist"]))
    assert aps(r, "cyclist") == [None, None, None]
    assert r.per_class["cyclist"]["easy"].num_detections == 1
    assert r.mean_ap == {"combined": 100.0, "easy": 100.0, "moderate": 100.0, "hard": 100.0}


def test_get_thresholds_by_hand():
    # 80 boxes: recall steps of 1/80 against samples every 1/40; the third score is skipped
    assert get_thresholds([0.7, 0.9, 0.6, 0.8], 80) == [0.9, 0.8, 0.6]
    assert get_thresholds([0.5, 0.4], 2) == [0.5, 0.4]
    assert get_thresholds([], 3) == []


def test_buckets_and_overlaps_from_the_spec():
    spec = tlt.spec.loads("""
evaluation_config {
  evaluation_mode: KITTI
  num_recall_points: 40
  minimum_detection_ground_truth_overlap { key: "car" value: 0.5 }
  evaluation_bucket_config { key: "mdrt" value { minimum_height: 45 maximum_occlusion: 1 truncation { maximum: 0.3 } } }
  evaluation_bucket_config { key: "easy" value { minimum_height: 60 maximum_occlusion: 0 truncation { maximum: 0.15 } } }
}
dataset_config { target_class_mapping { key: "Automobile" value: "car" } }
""", "detection")
    settings = build_evaluation_settings(spec)
    assert (settings.mode, settings.ap_mode, settings.classes) == ("kitti", "40", ("car",))
    assert settings.min_overlap["car"] == 0.5
    assert settings.buckets == (Bucket("easy", 60, 9999, 0, 0, 0.0, 0.15), Bucket("mdrt", 45, 9999, 0, 1, 0.0, 0.3))
    gt = cars(41, "Automobile")
    loose = [Detection("car", b.xmin, b.ymin, b.xmin + 35, b.ymax, 1.0) for b in gt]  # IoU 0.7 > 0.5
    r = evaluate_detections([gt], [loose], settings)
    assert r.buckets == ["combined", "easy", "mdrt"]
    assert r.ap("car", "mdrt") == 100.0
    assert r.ap("car", "easy") is None  # 50 px boxes are all under easy's 60 px
    table = r.table().splitlines()
    assert table[0] == "AP (kitti, 40 recall points), in %:"
    assert table[2].split() == ["class", "mAP", "combined", "easy", "mdrt"]
    assert table[4].split() == ["car", "100.00", "n/a", "100.00"]
    assert table[6].split() == ["mAP", "100.00", "n/a", "100.00"]


def test_kitti_mode_has_no_area_mode():
    with pytest.raises(SpecError, match=r'AP mode "all" \(area under the curve\) is not part of the KITTI '
                                        r"benchmark; use 11 or 40"):
        kitti("all")


def test_combined_column_counts_every_object_of_the_class():
    # the three cars outside every bucket count (and are missed) in combined; the van stays ignored
    occluded = GroundTruth("car", 0, 300, 50, 350, truncation=0.0, occlusion=3)
    short = GroundTruth("car", 200, 300, 250, 320)  # 20 px
    truncated = GroundTruth("car", 100, 300, 150, 350, truncation=0.9, occlusion=0)
    van = GroundTruth("van", 300, 300, 350, 350)
    gt = cars(41)
    r = evaluate_detections([gt + [occluded, short, truncated, van]], [hits(gt)], kitti("40"))
    combined = r.per_class["car"]["combined"]
    assert (combined.num_ground_truth, combined.num_ignored_ground_truth) == (44, 1)
    assert [r.per_class["car"][b].num_ground_truth for b in BUCKETS] == [41, 41, 41]
    assert aps(r) == [100.0, 100.0, 100.0]
    # 41 of 44 found (recall 0.93): 38 thresholds, samples 0..37 -> precision 1 at 1..37 of 40
    assert len(get_thresholds([1.0] * 41, 44)) == 38
    assert r.ap("car", "combined") == pytest.approx(100 * 37 / 40)
    assert r.columns()["ap_car_combined"] == pytest.approx(92.5)
