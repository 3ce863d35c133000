"""tlt-dataset-convert at the command line: the guide's flags, and one clear line per bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlt.cli.dataset_convert import main, split_output
from tlt.data.synthetic import make_detection_dataset


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "data"
    make_detection_dataset(root, num_frames=6, width=96, height=64, seed=3, num_sequences=3)
    return root


def _spec_file(tmp_path: Path, root, extra: str = "") -> str:
    path = tmp_path / "convert_spec.txt"
    path.write_text(f'kitti_config {{\n  root_directory_path: "{root}"\n'
                    f'  image_dir_name: "images"\n  label_dir_name: "labels"\n'
                    f'  image_extension: ".png"\n  num_shards: 2\n'
                    f'{extra}}}\nimage_directory_path: "{root}"\n')
    return str(path)


def _error_line(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(lines) == 1, lines
    return lines[0]


def test_converts_with_the_guide_flags(dataset, tmp_path, capsys):
    out = tmp_path / "tfrecords" / "kitti_trainval"
    code = main(["-d", _spec_file(tmp_path, dataset), "-o", f"{out}/kitti_trainval", "-v",
                 "--workers", "1", "--no-progress"])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["kitti_trainval-fold-000-of-002-shard-00000-of-00002",
                     "kitti_trainval-fold-000-of-002-shard-00001-of-00002",
                     "kitti_trainval-fold-001-of-002-shard-00000-of-00002",
                     "kitti_trainval-fold-001-of-002-shard-00001-of-00002",
                     "metadata.json", "status.json"]
    err = capsys.readouterr().err
    assert "Writing partition 0, shard 0" in err and "Writing partition 1, shard 1" in err
    assert "Wrote the following numbers of objects:\ncar: " in err
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["num_frames"] == 6 and meta["validation_fold"] == 0


def test_sequence_mode_records_validation_fold(dataset, tmp_path):
    extra = ('  partition_mode: "sequence"\n  num_partitions: 3\n'
             '  kitti_sequence_to_frames_file: "kitti_seq_to_frames.json"\n')
    out = tmp_path / "o"
    assert main(["-d", _spec_file(tmp_path, dataset, extra), "-o", f"{out}/seq", "-f", "1",
                 "--no-progress", "--workers", "1"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["validation_fold"] == 1 and meta["num_partitions"] == 3
    assert sum(meta["frames_per_fold"]) == 6


def test_split_output():
    assert split_output("out/dir/name") == ("out/dir", "name")
    assert split_output("name") == (".", "name")
    assert split_output("s3://bucket/tf/kitti") == ("s3://bucket/tf", "kitti")


@pytest.mark.parametrize("body, expected", [
    ('kitti_config {\n  root_directory_path: "/x"\n  num_shard: 3\n}\n',
     ':3: unknown field "num_shard" in kitti_config; did you mean "num_shards"?'),
    ('kitti_config {\n  root_directory_path: "/x"\n  num_shards: "many"\n}\n',
     ':3: kitti_config.num_shards: expected an integer, got "many"'),
])
def test_bad_spec(body, expected, tmp_path, capsys):
    spec = tmp_path / "spec.txt"
    spec.write_text(body)
    assert main(["-d", str(spec), "-o", str(tmp_path / "o" / "x")]) == 2
    assert _error_line(capsys).startswith(f"tlt-dataset-convert: error: {spec}{expected}")


def test_missing_dataset_root(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["-d", _spec_file(tmp_path, missing), "-o", str(tmp_path / "o" / "x")]) == 1
    assert _error_line(capsys) == (f"tlt-dataset-convert: error: dataset root {missing} does not "
                                   "exist (kitti_config.root_directory_path)")


def test_empty_image_folder(dataset, tmp_path, capsys):
    for path in (dataset / "images").iterdir():
        path.unlink()
    assert main(["-d", _spec_file(tmp_path, dataset), "-o", str(tmp_path / "o" / "x")]) == 1
    assert _error_line(capsys) == (f"tlt-dataset-convert: error: image folder {dataset}/images "
                                   "is empty")


def test_label_with_14_fields(dataset, tmp_path, capsys):
    label = dataset / "labels" / "000002.txt"
    label.write_text("Car 0.00 0 -1.58 10 10 40 30 1.65 1.67 3.64 -0.65 1.71 46.70\n"
                     + label.read_text())
    spec = _spec_file(tmp_path, dataset)
    expected = f"{label}:1: 14 fields, expected 15 (or 16 with a score)"
    assert main(["-d", spec, "-o", str(tmp_path / "s" / "x"), "--strict", "--workers", "1"]) == 1
    assert _error_line(capsys) == f"tlt-dataset-convert: error: {expected}"
    assert not list((tmp_path / "s").glob("x-fold-*"))
    # default mode: the object is skipped, the run succeeds and the warning names file:line
    assert main(["-d", spec, "-o", str(tmp_path / "d" / "x"), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert expected in err and "Skipped 1 malformed object(s) and 0 frame(s)" in err


def test_truncated_image_strict(dataset, tmp_path, capsys):
    image = dataset / "images" / "000004.png"
    image.write_bytes(image.read_bytes()[:-100])
    assert main(["-d", _spec_file(tmp_path, dataset), "-o", str(tmp_path / "o" / "x"),
                 "--strict"]) == 1
    assert _error_line(capsys) == (f"tlt-dataset-convert: error: {image}: truncated PNG (no IEND "
                                   "chunk), expected a complete PNG file")


def test_validation_fold_out_of_range(dataset, tmp_path, capsys):
    extra = ('  partition_mode: "sequence"\n  num_partitions: 3\n'
             '  kitti_sequence_to_frames_file: "kitti_seq_to_frames.json"\n')
    assert main(["-d", _spec_file(tmp_path, dataset, extra), "-o", str(tmp_path / "o" / "x"),
                 "-f", "3"]) == 2
    assert _error_line(capsys) == ("tlt-dataset-convert: error: validation_fold must be in "
                                   "[0, 2] for 3 partitions, got 3")


def test_output_in_missing_bucket(s3_bucket, dataset, tmp_path, capsys):
    assert main(["-d", _spec_file(tmp_path, dataset), "-o",
                 "s3://tlt-no-such-bucket/tfrecords/x"]) == 1
    line = _error_line(capsys)
    assert line.startswith("tlt-dataset-convert: error: s3://tlt-no-such-bucket/tfrecords")
    assert "bucket does not exist" in line


def test_huge_num_shards_is_one_line_before_any_work(dataset, tmp_path, capsys):
    spec = tmp_path / "spec.txt"
    spec.write_text(f'kitti_config {{\n  root_directory_path: "{dataset}"\n'
                    "  num_shards: 2147483647\n}\n")
    out = tmp_path / "o"
    assert main(["-d", str(spec), "-o", f"{out}/x", "--workers", "1"]) == 2
    assert _error_line(capsys).startswith(f"tlt-dataset-convert: error: {spec}:3: "
                                          "kitti_config.num_shards must be in [1, 1024], got "
                                          "2147483647")
    assert not out.exists()
