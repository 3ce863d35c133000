"""The data gate (tlt.gates.data_gate): malformed labels, class changes, balance shift, lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tlt.artifacts import read_metadata, write_metadata
from tlt.errors import DataError, SpecError
from tlt.gates.data_gate import (
    DataGateConfig, balance_shift, check_classification_data, check_detection_data,
    class_counts_from_lineage,
)
from tlt.gates.report import GateError, require, write_gate_report

GOOD = "{cls} 0.00 0 0.00 {x1} 10.00 {x2} 40.00 1.5 1.6 3.9 0.0 1.6 20.0 0.0"


def _kitti(root: Path, frames: dict[str, list[str]], size=(64, 64)) -> Path:
    """A KITTI set with one size x size PNG per frame and the given label lines."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for fid, lines in frames.items():
        Image.new("RGB", size, (40, 80, 120)).save(root / "images" / f"{fid}.png")
        (root / "labels" / f"{fid}.txt").write_text("".join(l + "\n" for l in lines))
    return root


def _line(cls: str, x1: int = 5, x2: int = 30) -> str:
    return GOOD.format(cls=cls, x1=f"{x1:.2f}", x2=f"{x2:.2f}")


def _dataset(root: Path, counts: dict[str, int], malformed: int = 0) -> Path:
    """Frames of 10 lines each holding ``counts`` objects and ``malformed`` bad lines."""
    lines = [_line(c) for c, n in counts.items() for _ in range(n)]
    lines += ["Car 0.0 0 0.0 30.00 10.00 5.00 40.00 1 1 1 0 0 0 0"] * malformed  # x1 > x2
    frames = {f"{i:06d}": lines[i:i + 10] for i in range(0, len(lines), 10)}
    return _kitti(root, frames)


def test_ten_percent_malformed_fails_a_five_percent_gate(tmp_path):
    root = _dataset(tmp_path / "new", {"Car": 18, "Pedestrian": 9}, malformed=3)
    report = check_detection_data(root, {"car": 20, "pedestrian": 10})
    check = {c.name: c for c in report.checks}["malformed_label_rate"]
    assert check.value == pytest.approx(0.1)
    assert not check.passed and not report.passed
    assert check.reason == "malformed-label rate 10.0% (3 of 30 label lines) > max 5.0%"
    assert [c.name for c in report.failed] == ["malformed_label_rate"]
    assert report.details["class_counts"] == {"car": 18, "pedestrian": 9}
    assert "x1=30.00 >= x2=5.00" in report.details["problems"][0]
    with pytest.raises(GateError) as err:
        require(report)
    assert str(err.value) == ("data gate failed: malformed-label rate 10.0% (3 of 30 label "
                              "lines) > max 5.0%")
    assert "\n" not in str(err.value)
    # The same data passes a gate that tolerates 10%.
    assert require(check_detection_data(root, {"car": 2, "pedestrian": 1},
                                        config=DataGateConfig(max_malformed_rate=0.1))).passed


def test_missing_and_new_classes_are_named(tmp_path):
    root = _dataset(tmp_path / "new", {"Car": 10, "Truck": 5})
    report = check_detection_data(root, {"car": 10, "cyclist": 4, "pedestrian": 6,
                                         "dontcare": 99})
    checks = {c.name: c for c in report.checks}
    assert checks["missing_classes"].value == ["cyclist", "pedestrian"]
    assert checks["missing_classes"].reason == ("classes missing versus the champion's training "
                                                "data: cyclist, pedestrian")
    assert checks["new_classes"].value == ["truck"]
    assert not checks["new_classes"].passed
    assert "truck" in report.summary() and "cyclist, pedestrian" in report.summary()
    allowed = check_detection_data(root, {"car": 10, "cyclist": 4, "pedestrian": 6},
                                   config=DataGateConfig(allow_missing_classes=True,
                                                         allow_new_classes=True,
                                                         max_balance_shift=1.0))
    assert allowed.passed
    # ignored classes leave every class check, whatever their case
    ignored = check_detection_data(root, {"car": 10}, config=DataGateConfig(
        ignore_classes=["DontCare", "Truck"], max_balance_shift=0.0))
    assert ignored.passed and ignored.details["class_counts"] == {"car": 10}


def test_balance_shift_is_total_variation_distance_on_a_hand_made_example(tmp_path):
    # champion shares (0.6, 0.3, 0.1), new (0.3, 0.5, 0.2): 1/2 (0.3 + 0.2 + 0.1) = 0.3
    assert balance_shift({"car": 60, "pedestrian": 30, "cyclist": 10},
                         {"car": 30, "pedestrian": 50, "cyclist": 20}) == pytest.approx(0.3)
    assert balance_shift({"a": 1}, {"b": 5}) == 1.0
    assert balance_shift({"a": 2, "b": 2}, {"a": 1, "b": 1}) == 0.0
    root = _dataset(tmp_path / "new", {"Car": 3, "Pedestrian": 5, "Cyclist": 2})
    report = check_detection_data(root, {"Car": 60, "Pedestrian": 30, "Cyclist": 10})
    shift = {c.name: c for c in report.checks}["balance_shift"]
    assert shift.value == pytest.approx(0.3) and shift.threshold == 0.2 and not shift.passed
    assert shift.reason == "class-balance shift (total variation distance) 0.30 > max 0.20"
    assert check_detection_data(root, {"car": 60, "pedestrian": 30, "cyclist": 10},
                                config=DataGateConfig(max_balance_shift=0.3)).passed


def test_first_run_skips_class_checks_and_says_so(tmp_path):
    root = _dataset(tmp_path / "new", {"Car": 4})
    report = check_detection_data(root, None)
    assert report.passed
    skipped = [c for c in report.checks if c.value is None]
    assert [c.name for c in skipped] == ["missing_classes", "new_classes", "balance_shift"]
    assert all("first run" in c.reason for c in skipped)


def test_no_frames_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "labels").mkdir()
    with pytest.raises(DataError, match=r"^new data .*empty holds no frames: no \.png image in "
                                        r".*images has a label file in .*labels$"):
        check_detection_data(empty)
    with pytest.raises(DataError, match=r"holds no frames: folder .*nowhere/images does not "):
        check_detection_data(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"holds no frames: expected one sub-folder per class"):
        check_classification_data(empty / "images")


def test_unreadable_images_and_boxes_outside_the_image(tmp_path):
    root = _kitti(tmp_path / "new", {"a": [_line("Car", 5, 30)], "b": [_line("Car", 5, 90)],
                                     "c": [_line("Car")]})
    (root / "images" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    report = check_detection_data(root, {"car": 3})
    checks = {c.name: c for c in report.checks}
    # b's box ends at x2=90 in a 64 pixel wide image; c's labels still count without a size
    assert checks["malformed_label_rate"].value == pytest.approx(1 / 3)
    assert checks["unreadable_image_rate"].reason == ("unreadable-image rate 33.3% (1 of 3 "
                                                      "images) > max 5.0%")
    assert report.details["class_counts"] == {"car": 2}


def test_classification_folders(tmp_path):
    from tlt.data.synthetic import make_classification_dataset

    make_classification_dataset(tmp_path / "cls", classes=("circle", "square", "triangle"),
                                images_per_class=(6, 0, 0), size=16)
    train = tmp_path / "cls" / "train"
    report = check_classification_data(train, {"circle": 6, "square": 6, "triangle": 6})
    assert report.passed
    assert report.details["class_counts"] == {"circle": 6, "square": 6, "triangle": 6}
    assert "malformed_label_rate" not in [c.name for c in report.checks]
    for path in sorted((train / "triangle").iterdir()):
        path.unlink()
    (train / "square" / "square_0000.png").write_bytes(b"not an image")
    report = check_classification_data(train, {"circle": 6, "square": 6, "triangle": 6})
    assert [c.name for c in report.failed] == ["unreadable_image_rate", "missing_classes",
                                               "balance_shift"]
    assert report.failed[1].value == ["triangle"]
    # shares (1/3, 1/3, 1/3) vs (6/11, 5/11, 0): 1/2 (7/33 + 4/33 + 1/3) = 1/3
    assert report.failed[2].value == pytest.approx(1 / 3)


def test_lineage_counts_from_convert_metadata(tmp_path):
    from tlt.data.synthetic import make_detection_dataset
    from tlt.stages import convert

    data = make_detection_dataset(tmp_path / "kitti", num_frames=8, width=64, height=64)
    spec = tmp_path / "convert.txt"
    spec.write_text(f'kitti_config {{ root_directory_path: "{data["root"]}" image_dir_name: '
                    '"images" label_dir_name: "labels" image_extension: ".png" '
                    'partition_mode: "random" num_partitions: 2 val_split: 25 num_shards: 1 }\n')
    out = tmp_path / "tfrecords"
    result = convert.run(str(spec), out, num_workers=1, progress=False)
    meta = read_metadata(out)
    assert class_counts_from_lineage(meta) == result.class_counts["total"]
    # Training records the shard pattern as its parent; the lineage leads back to convert.
    train_dir = tmp_path / "train"
    write_metadata(train_dir, "train", parents=[{"uri": f"{out}/tfrecords-fold-* (all but fold 0)"}])
    train_meta = read_metadata(train_dir)
    assert class_counts_from_lineage(train_meta) is None
    assert class_counts_from_lineage(train_meta, follow_uris=True) == result.class_counts["total"]
    # A registry version's metadata carrying the counts inline.
    registry_meta = {"task": "detection", "training_data": {"class_counts": {
        "fold-000": {"car": 2}, "fold-001": {"car": 3, "van": 1}}}}
    assert class_counts_from_lineage(registry_meta) == {"car": 5, "van": 1}
    with pytest.raises(DataError, match=r"class_counts\['car'\] is -1, expected a count >= 0"):
        class_counts_from_lineage({"class_counts": {"car": -1}})


def test_config_bounds_and_rendering(tmp_path):
    with pytest.raises(SpecError, match=r"max_balance_shift must be a number in \[0, 1\], got 1.5"):
        DataGateConfig(max_balance_shift=1.5)
    root = _dataset(tmp_path / "new", {"Car": 6, "Van": 4})
    report = check_detection_data(root, {"car": 6})
    path = write_gate_report(report, tmp_path / "out")
    data = json.loads(path.read_text())
    assert data["passed"] is False and data["checks"][3]["value"] == ["van"]
    md = (tmp_path / "out" / "data_gate.md").read_text()
    assert "| new_classes | van | none | FAIL |" in md
    html = (tmp_path / "out" / "data_gate.html").read_text()
    assert '<tr class="fail"><td>new_classes</td><td>van</td>' in html


def test_remote_prefix(s3_bucket, tmp_path):
    from tlt.io import storage

    root = _dataset(tmp_path / "new", {"Car": 5, "Pedestrian": 5})
    storage.upload_tree(root, f"{s3_bucket}/drop/2026-11-28")
    report = check_detection_data(f"{s3_bucket}/drop/2026-11-28", {"car": 1, "pedestrian": 1})
    assert report.passed and report.details["num_labels"] == 10
    with pytest.raises(DataError, match=r"^new data s3://.*/drop/empty holds no frames: folder "):
        check_detection_data(f"{s3_bucket}/drop/empty")
