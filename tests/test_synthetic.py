"""Synthetic sample data: deterministic, well-formed, and really showing what the labels say."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlt.cli.sample_data import main as sample_data_main
from tlt.data.kitti import read_label_file
from tlt.data.synthetic import make_classification_dataset, make_detection_dataset
from tlt.errors import DataError


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_detection_dataset_is_deterministic(tmp_path):
    a = make_detection_dataset(tmp_path / "a", num_frames=5, width=160, height=96, seed=3)
    b = make_detection_dataset(tmp_path / "b", num_frames=5, width=160, height=96, seed=3)
    make_detection_dataset(tmp_path / "c", num_frames=5, width=160, height=96, seed=4)
    assert a["class_counts"] == b["class_counts"]
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    assert _tree_bytes(tmp_path / "a") != _tree_bytes(tmp_path / "c")
    assert len(_tree_bytes(tmp_path / "a")) == 11  # 5 images, 5 labels, the sequence map


def test_detection_labels_valid_and_classes_present(tmp_path):
    info = make_detection_dataset(tmp_path / "d", num_frames=30, width=240, height=136, seed=1,
                                  image_format="jpg", num_sequences=4)
    root = Path(info["root"])
    counts, raw_names = Counter(), set()
    for i in range(30):
        image = Image.open(root / "images" / f"{i:06d}.jpg")
        assert image.size == (240, 136) and image.format == "JPEG"
        label = root / "labels" / f"{i:06d}.txt"
        raw_names.update(line.split()[0] for line in label.read_text().splitlines())
        # strict: every line well-formed and every box inside the image
        for obj in read_label_file(label, width=240, height=136, strict=True):
            counts[obj.object_class] += 1
            assert 0 <= obj.x1 < obj.x2 <= 239 and 0 <= obj.y1 < obj.y2 <= 135
            if obj.object_class != "dontcare":
                assert 0.0 <= obj.truncation <= 1.0 and obj.occlusion in (0, 1, 2)
    assert {"car", "pedestrian", "cyclist", "dontcare"} <= set(counts)
    assert raw_names <= {"Car", "Van", "Pedestrian", "Cyclist", "DontCare"}
    assert {k.lower(): v for k, v in info["class_counts"].items()} == dict(counts)
    seq_map = json.loads((root / "kitti_seq_to_frames.json").read_text())
    assert len(seq_map) == 4
    listed = [f for frames in seq_map.values() for f in frames]
    assert sorted(listed) == [f"{i:06d}" for i in range(30)]


def test_truncated_objects_are_cut_at_the_border(tmp_path):
    root = tmp_path / "t"
    make_detection_dataset(root, num_frames=40, width=200, height=112, seed=2)
    truncated = [o for p in sorted((root / "labels").iterdir())
                 for o in read_label_file(p) if o.object_class != "dontcare" and o.truncation > 0]
    assert truncated, "some objects leave the image"
    assert all(o.x1 == 0 or o.y1 == 0 or o.x2 == 199 or o.y2 == 111 for o in truncated)


def test_boxes_match_the_drawn_cars(tmp_path):
    root = tmp_path / "cars"
    make_detection_dataset(root, num_frames=30, width=320, height=180, seed=5)
    checked = 0
    for label in sorted((root / "labels").iterdir()):
        objects = read_label_file(label)
        pixels = np.asarray(Image.open(root / "images" / f"{label.stem}.png").convert("RGB"),
                            dtype=int)
        # Car bodies are the only strongly red pixels (the background is dim and grey-blue).
        red = (pixels[..., 0] > 140) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)
        for obj in objects:
            others = [o for o in objects if o is not obj]
            alone = all(o.x2 < obj.x1 - 3 or o.x1 > obj.x2 + 3 or o.y2 < obj.y1 - 3
                        or o.y1 > obj.y2 + 3 for o in others)
            if obj.object_class != "car" or obj.truncation > 0 or not alone:
                continue
            x1, y1, x2, y2 = (int(round(v)) for v in (obj.x1, obj.y1, obj.x2, obj.y2))
            window = red[max(0, y1 - 3):y2 + 4, max(0, x1 - 3):x2 + 4]
            ys, xs = np.nonzero(window)
            assert abs(xs.min() + max(0, x1 - 3) - obj.x1) <= 2
            assert abs(xs.max() + max(0, x1 - 3) - obj.x2) <= 2
            assert abs(ys.min() + max(0, y1 - 3) - obj.y1) <= 2
            checked += 1
    assert checked >= 3


def test_classification_dataset_deterministic_and_learnable(tmp_path):
    kwargs = dict(classes=("circle", "square", "triangle"), images_per_class=(20, 5, 10), size=24)
    info = make_classification_dataset(tmp_path / "a", seed=1, **kwargs)
    make_classification_dataset(tmp_path / "b", seed=1, **kwargs)
    assert info["splits"] == {"train": 20, "val": 5, "test": 10}
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    for split, n in info["splits"].items():
        for cls in kwargs["classes"]:
            files = sorted((tmp_path / "a" / split / cls).glob("*.png"))
            assert len(files) == n
            assert Image.open(files[0]).size == (24, 24)

    def features(split):
        xs, ys = [], []
        for c, cls in enumerate(kwargs["classes"]):
            for path in sorted((tmp_path / "a" / split / cls).glob("*.png")):
                pixels = np.asarray(Image.open(path), dtype=float).reshape(-1, 3)
                xs.append(pixels[pixels.max(axis=1) > 130].mean(axis=0))  # the shape's colour
                ys.append(c)
        return np.array(xs), np.array(ys)

    # Even a nearest-centroid classifier on the shape's colour separates held-out images.
    x_train, y_train = features("train")
    x_test, y_test = features("test")
    centroids = np.stack([x_train[y_train == c].mean(axis=0) for c in range(3)])
    predicted = np.argmin(((x_test[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == y_test).mean() >= 0.9


def test_refuses_to_overwrite_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="exists and is not empty"):
        make_detection_dataset(tmp_path, num_frames=2, width=64, height=64)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_sample_data_cli(tmp_path, capsys):
    assert sample_data_main(["detection", str(tmp_path / "det"), "--frames", "3", "--width", "96",
                             "--height", "64", "--format", "jpg", "--seed", "7"]) == 0
    assert sorted(p.name for p in (tmp_path / "det" / "images").iterdir()) == [
        "000000.jpg", "000001.jpg", "000002.jpg"]
    assert sample_data_main(["classification", str(tmp_path / "cls"), "--classes", "a,b",
                             "--train", "2", "--val", "1", "--test", "1", "--size", "16"]) == 0
    assert len(list((tmp_path / "cls" / "train" / "b").iterdir())) == 2
    assert sample_data_main(["detection", str(tmp_path / "det"), "--frames", "3"]) == 1
    assert "exists and is not empty" in capsys.readouterr().err


def test_out_dir_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("a file")
    with pytest.raises(DataError, match=rf"^{target} is an existing file, expected a folder"):
        make_classification_dataset(target, overwrite=True)
    for kind in ("detection", "classification"):
        assert sample_data_main([kind, str(target), "--overwrite"]) == 1
        err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
        assert err == [f"tlt-sample-data: error: {target} is an existing file, expected a folder "
                       "(new or empty) for the data set"]
    assert target.read_text() == "a file"


@pytest.mark.parametrize("argv, message", [
    (["detection", "--width", "2000000000"],
     "argument --width: must be in [64, 4096], got 2000000000"),
    (["detection", "--height", "2e9"], "argument --height: expected an integer, got '2e9'"),
    (["detection", "--frames", "100000000"],
     "argument --frames: must be in [1, 20000], got 100000000"),
    (["detection", "--sequences", "0"], "argument --sequences: must be in [1, 1000], got 0"),
    (["classification", "--train", "50000000"],
     "argument --train: must be in [0, 10000], got 50000000"),
    (["classification", "--size", "2000000000"],
     "argument --size: must be in [8, 1024], got 2000000000"),
])
def test_sizes_out_of_range_are_usage_errors(argv, message, tmp_path, capsys):
    kind, *flags = argv
    with pytest.raises(SystemExit) as exit_info:
        sample_data_main([kind, str(tmp_path / "out"), *flags])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"tlt-sample-data {kind}: error: {message}"
    assert not (tmp_path / "out").exists()


def test_disk_flooding_combinations_are_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert sample_data_main(["detection", str(out), "--frames", "20000", "--width", "4096",
                             "--height", "4096"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert err == ["tlt-sample-data: error: num_frames x width x height = 335,544,320,000 pixels, "
                   "at most 2,000,000,000 (a few GB of images); ask for fewer or smaller images"]
    with pytest.raises(DataError, match=r"images x size x size = 20,971,520,000 pixels"):
        make_classification_dataset(out, classes=[f"c{i}" for i in range(20)],
                                    images_per_class=(1000, 0, 0), size=1024)
    with pytest.raises(DataError, match=r"^width must be in \[64, 4096\], got 2000000000$"):
        make_detection_dataset(out, num_frames=1, width=2_000_000_000, height=64)
    assert not out.exists()


def test_help_shows_defaults_and_ranges(capsys):
    with pytest.raises(SystemExit):
        sample_data_main(["detection", "-h"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--frames FRAMES number of frames, 1-20000 (default: 60)" in text
    assert "--width WIDTH image width in pixels, 64-4096 (default: 480)" in text
    with pytest.raises(SystemExit):
        sample_data_main(["classification", "-h"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--size SIZE image side in pixels, 8-1024 (default: 32)" in text
    assert "--classes CLASSES comma-separated class names (default: circle,square,triangle)" in text
