"""The evaluate adapter's Kubeflow Metrics carry the AP table's columns, as the results JSON does."""

from __future__ import annotations

import json

import pytest

from tlt.evaluation.detection import DetectionEvaluation
from tlt.metrics.detection import Detection, GroundTruth, build_evaluation_settings, evaluate_detections
from tlt.orchestration.adapters import detection_scalars

# car A 100 px (every bucket), car B 30 px (not easy); a 30 px false positive ranks first.
GT = [[GroundTruth("car", 0, 0, 100, 100), GroundTruth("car", 200, 0, 230, 30)]]
DETS = [[Detection("car", 500, 0, 530, 30, 0.95), Detection("car", 0, 0, 100, 100, 0.9),
         Detection("car", 200, 0, 230, 30, 0.8)]]


@pytest.mark.parametrize("mode", ["voc", "kitti"])
def test_metrics_have_every_column_of_the_table(mode):
    results = evaluate_detections(GT, DETS, build_evaluation_settings(
        mode=mode, classes=["car", "pedestrian"]))
    evaluation = DetectionEvaluation(results, validation_cost=0.25, num_frames=1)
    scalars = detection_scalars(evaluation)
    columns = ["combined", "easy", "moderate", "hard"]
    # pedestrian has no ground truth: its cells are n/a and left out (a metric must be a number)
    assert sorted(scalars) == sorted(["validation_cost", "num_frames", "mAP"]
                                     + [f"ap_car_{c}" for c in columns]
                                     + [f"mAP_{c}" for c in columns])
    assert scalars["mAP"] == scalars["mAP_combined"] == results.ap("car", "combined")
    assert scalars["ap_car_easy"] == results.ap("car", "easy")
    assert (scalars["validation_cost"], scalars["num_frames"]) == (0.25, 1)
    assert all(isinstance(v, (int, float)) for v in scalars.values())
    # the JSON of the same evaluation has the same numbers under "columns"
    data = json.loads(json.dumps(evaluation.to_dict()))
    assert {k: v for k, v in data["columns"].items() if v is not None} == {
        k: v for k, v in scalars.items() if k.startswith(("ap_", "mAP_"))}
    assert data["validation_cost"] == 0.25 and data["use_training_set"] is False


def test_voc_bucket_metrics_by_hand():
    results = evaluate_detections(GT, DETS, build_evaluation_settings(mode="voc", classes=["car"]))
    scalars = detection_scalars(DetectionEvaluation(results, None, 1))
    # combined / moderate / hard: FP, TP, TP over 2 boxes -> 2/3 at all 11 points; easy: only A
    # counts and both 30 px detections are ignored -> 100
    assert scalars["ap_car_combined"] == pytest.approx(200 / 3)
    assert scalars["ap_car_easy"] == 100.0
    assert scalars["ap_car_moderate"] == scalars["ap_car_hard"] == pytest.approx(200 / 3)
