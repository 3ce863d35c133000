"""Scoring folders of KITTI prediction files (tlt.evaluation.detection_files)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import tlt.spec
from tlt.errors import DataError
from tlt.evaluation.detection_files import evaluate_prediction_files, read_prediction_file

CLASSES = ["car", "cyclist", "misc", "pedestrian", "truck"]


def write_predictions(labels: Path, out: Path, drop=None) -> Path:
    """Prediction files = the label files' objects (no DontCare) with score 1; ``drop`` = (frame, line)."""
    out.mkdir()
    for label in sorted(labels.glob("*.txt")):
        lines = [line for line in label.read_text().splitlines() if line.split() and line.split()[0] != "DontCare"]
        if drop and drop[0] == label.stem:
            lines = [line for line in lines if not line.startswith(drop[1])]
        (out / label.name).write_text("".join(f"{line} 1.0\n" for line in lines))
    return out


@pytest.mark.parametrize("ap_mode", ["11", "all"])
def test_voc_perfect_predictions_on_real_frames(kitti_samples, tmp_path, ap_mode):
    preds = write_predictions(kitti_samples / "labels", tmp_path / "pred")
    r = evaluate_prediction_files(kitti_samples / "labels", preds, mode="voc", ap_mode=ap_mode)
    assert r.classes == CLASSES
    assert [r.ap(c) for c in CLASSES] == [100.0] * 5
    assert r.mean_ap["combined"] == 100.0
    assert r.num_frames == 7
    assert [r.per_class[c]["combined"].num_ground_truth for c in CLASSES] == [8, 2, 1, 2, 1]
    assert r.frames_without_predictions == [] and r.predictions_without_labels == []


# Counted (bucket-valid) boxes per class in the 7 frames, by hand from the labels: cars 103 and 50 px
# high are easy; 33 and 30 px ones moderate/hard; 22, 21, 21 and 18 px ones are in no bucket
# (height <= 25). Pedestrians 165 and 60 px: everywhere. The 37.5 px cyclist is moderate/hard; the
# other one has occlusion 3 (no bucket). Truck 33 px: moderate/hard. Misc 161 px: everywhere.
# The first column, combined, counts every box of the class.
COUNTED = {"car": [8, 2, 4, 4], "cyclist": [2, 0, 1, 1], "misc": [1, 1, 1, 1], "pedestrian": [2, 2, 2, 2],
           "truck": [1, 0, 1, 1]}
COLUMNS = ["combined", "easy", "moderate", "hard"]


def test_kitti_perfect_predictions_on_real_frames(kitti_samples, tmp_path):
    preds = write_predictions(kitti_samples / "labels", tmp_path / "pred")
    r11 = evaluate_prediction_files(kitti_samples / "labels", preds, mode="kitti", ap_mode="11")
    r40 = evaluate_prediction_files(kitti_samples / "labels", preds, mode="kitti", ap_mode="40")
    assert r11.buckets == COLUMNS
    for cls, counts in COUNTED.items():
        assert [r11.per_class[cls][b].num_ground_truth for b in r11.buckets] == counts
        assert [r11.per_class[cls][b].false_positives for b in r11.buckets] == [0, 0, 0, 0]
        # n <= 41 perfect boxes: the devkit's curve is 1 at samples 0 .. n-1, 0 after (see
        # test_detection_metrics_kitti): 11 points -> #{0, 4, ..} < n / 11; 40 points -> (n - 1) / 40
        assert [r11.per_class[cls][b].ap for b in r11.buckets] == pytest.approx(
            [100 * len(range(0, n, 4)) / 11 if n else None for n in counts])
        assert [r40.per_class[cls][b].ap for b in r40.buckets] == pytest.approx(
            [100 * (n - 1) / 40 if n else None for n in counts])


def test_dropping_one_car(kitti_samples, tmp_path):
    # the 103 px car of frame 000003 (counted in every bucket) is not predicted
    preds = write_predictions(kitti_samples / "labels", tmp_path / "pred", drop=("000003", "Car"))
    labels = kitti_samples / "labels"
    voc11 = evaluate_prediction_files(labels, preds, mode="voc", ap_mode="11")
    assert voc11.ap("car") == pytest.approx(100 * 9 / 11)  # recall 7/8: points 0 .. 0.8
    assert voc11.ap("pedestrian") == 100.0
    assert evaluate_prediction_files(labels, preds, mode="voc", ap_mode="all").ap("car") == pytest.approx(87.5)
    k40 = evaluate_prediction_files(labels, preds, mode="kitti", ap_mode="40")
    # combined: 7 of 8 -> 6/40; easy: 1 of 2 found -> one threshold -> sample 0 only -> 0;
    # moderate/hard: 3 of 4 -> 2/40
    assert [k40.ap("car", b) for b in k40.buckets] == pytest.approx([15.0, 0.0, 5.0, 5.0])
    k11 = evaluate_prediction_files(labels, preds, mode="kitti", ap_mode="11")
    assert [k11.ap("car", b) for b in k11.buckets] == pytest.approx([200 / 11] + [100 / 11] * 3)


def test_missing_and_unlabelled_prediction_files(kitti_samples, tmp_path, caplog):
    preds = write_predictions(kitti_samples / "labels", tmp_path / "pred")
    (preds / "000005.txt").unlink()  # its pedestrian is now missed
    (preds / "000099.txt").write_text("Car 0 0 0 10 10 60 60 0 0 0 0 0 0 0 0.9\n")
    with caplog.at_level(logging.WARNING, logger="tlt.evaluation.detection_files"):
        r = evaluate_prediction_files(kitti_samples / "labels", preds, mode="voc", ap_mode="all")
    assert r.frames_without_predictions == ["000005"]
    assert r.predictions_without_labels == ["000099"]
    assert "have no label file and are not scored: 000099" in caplog.text
    assert r.ap("pedestrian") == pytest.approx(50.0)
    assert r.ap("car") == 100.0


def test_spec_supplies_mapping_classes_and_overlaps(tmp_path):
    labels, preds = tmp_path / "labels", tmp_path / "pred"
    labels.mkdir()
    preds.mkdir()
    (labels / "a.txt").write_text("Automobile 0.00 0 0 0 0 100 100 0 0 0 0 0 0 0\n"
                                  "Person 0.00 0 0 200 0 250 100 0 0 0 0 0 0 0\n")
    # official KITTI result format (-1 / -1000 placeholders); the car box has IoU 0.6 with the label
    (preds / "a.txt").write_text("car -1 -1 -10 0 0 60 100 -1 -1 -1 -1000 -1000 -1000 -10 0.8\n")
    spec = tlt.spec.loads("""
dataset_config { target_class_mapping { key: "automobile" value: "car" }
                 target_class_mapping { key: "person" value: "pedestrian" } }
evaluation_config { minimum_detection_ground_truth_overlap { key: "car" value: 0.6 } }
""", "detection")
    r = evaluate_prediction_files(labels, preds, spec=spec)
    assert (r.mode, r.ap_mode, r.classes) == ("voc", "11", ["car", "pedestrian"])
    assert (r.ap("car"), r.ap("pedestrian")) == (100.0, 0.0)
    plain = evaluate_prediction_files(labels, preds)  # without the mapping labels keep their names
    assert (plain.classes, plain.ap("automobile"), plain.min_overlap) == (
        ["automobile", "person"], 0.0, {"automobile": 0.5, "person": 0.5})
    assert evaluate_prediction_files(labels, preds, classes=["car"]).ap("car") is None


def test_read_prediction_file_fields(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("Car 0.00 0 0.00 1.5 2.5 30.0 40.0 0 0 0 0 0 0 0 0.75\n\n"
                    "Pedestrian -1 -1 -10 5 6 7 8 -1 -1 -1 -1000 -1000 -1000 -10 0.5\n")
    dets = read_prediction_file(path)
    assert [(d.class_name, d.xmin, d.ymin, d.xmax, d.ymax, d.confidence) for d in dets] == [
        ("car", 1.5, 2.5, 30.0, 40.0, 0.75), ("pedestrian", 5.0, 6.0, 7.0, 8.0, 0.5)]


def test_malformed_prediction_lines(tmp_path):
    path = tmp_path / "000001.txt"
    path.write_text("Car 0 0 0 1 2 30 40 0 0 0 0 0 0 0 0.7\nCar 0 0 0 1 2 30 40 0 0 0 0 0 0 0\n")
    with pytest.raises(DataError, match=r"000001\.txt:2: 15 fields, expected 16 \(a KITTI label line "
                                        r"with the score as 16th field\)"):
        read_prediction_file(path)
    path.write_text("Car 0 0 0 1 2 30 40 0 0 0 0 0 0 0 high\n")
    with pytest.raises(DataError, match=r"000001\.txt:1: field 16 \(score\) is 'high', expected a number"):
        read_prediction_file(path)
    path.write_text("Car 0 0 0 1 nan 30 40 0 0 0 0 0 0 0 0.5\n")
    with pytest.raises(DataError, match=r"000001\.txt:1: field 6 \(y1\) is 'nan', expected a number"):
        read_prediction_file(path)


def test_malformed_files_and_folders_name_the_file(tmp_path):
    labels, preds = tmp_path / "labels", tmp_path / "pred"
    labels.mkdir()
    preds.mkdir()
    with pytest.raises(DataError, match=r"labels: no label files \(\*\.txt\)"):
        evaluate_prediction_files(labels, preds)
    (labels / "f.txt").write_text("Car 0 0 0 1 2 30 40 0 0 0\n")
    with pytest.raises(DataError, match=r"f\.txt:1: 11 fields, expected 15"):
        evaluate_prediction_files(labels, preds)
    with pytest.raises(DataError, match=r"nowhere: predictions folder does not exist"):
        evaluate_prediction_files(labels, tmp_path / "nowhere")
