"""The convert stage: partitions, shards, record contents, determinism, failures, object storage."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from google.protobuf import text_format

import tlt.data.convert as convert_lib
import tlt.data.convert_shards as shards_lib
from tlt import spec as spec_lib
from tlt.data.kitti import read_label_file
from tlt.data.synthetic import make_detection_dataset
from tlt.data.tfrecord import decode_example, read_records
from tlt.errors import DataError, SpecError, StorageError
from tlt.io import storage
from tlt.proto.dataset_export_config_pb2 import DatasetExportConfig
from tlt.stages.convert import run

NUM_FRAMES = 24


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kitti") / "data"
    make_detection_dataset(root, num_frames=NUM_FRAMES, width=160, height=96, seed=11,
                           num_sequences=5)
    return root


def _spec(root, **fields):
    body = {"root_directory_path": f'"{root}"', **fields}
    text = "kitti_config {\n" + "".join(f"  {k}: {v}\n" for k, v in body.items()) + "}\n"
    return spec_lib.loads(text, "dataset_export")


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if "-fold-" in p.name}


def _records(paths) -> list[dict]:
    return [decode_example(r) for p in paths for r in read_records(p)]


def _label_counts(root: Path, ids=None) -> Counter:
    counts = Counter()
    for path in sorted((root / "labels").iterdir()):
        if ids is None or path.stem in ids:
            counts.update(line.split()[0].lower() for line in path.read_text().splitlines())
    return counts


def test_random_mode_shards_folds_and_counts(dataset, tmp_path):
    out = tmp_path / "out"
    result = run(_spec(dataset, num_shards=3, val_split=25), out, output_name="kitti",
                 num_workers=1, progress=False)
    names = [f"kitti-fold-{f:03d}-of-002-shard-{s:05d}-of-00003" for f in (0, 1) for s in range(3)]
    assert result.shards == [str(out / n) for n in names]
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["metadata.json", "status.json"])
    assert result.num_frames == NUM_FRAMES and result.frames_per_fold == [6, 18]
    assert result.validation_fold == 0
    fold_ids = []
    for fold in (0, 1):
        records = _records(out / n for n in names if f"fold-{fold:03d}" in n)
        ids = {r["frame/id"][0].decode() for r in records}
        fold_ids.append(ids)
        assert result.class_counts[f"fold-{fold:03d}"] == dict(_label_counts(dataset, ids))
    assert not fold_ids[0] & fold_ids[1] and len(fold_ids[0] | fold_ids[1]) == NUM_FRAMES
    assert result.class_counts["total"] == dict(_label_counts(dataset))
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["stage"] == "convert" and meta["parents"] == [{"uri": str(dataset)}]
    assert meta["shards"] == names and meta["frames_per_fold"] == [6, 18]
    assert meta["frame_sizes"] == {"160x96": NUM_FRAMES} and meta["validation_fold"] == 0
    assert meta["class_counts"] == result.class_counts


def test_records_parse_back_with_tensorflow(kitti_samples, tmp_path):
    import tensorflow as tf

    from tlt.data.tfrecord import parse_example

    result = run(_spec(kitti_samples, num_shards=1), tmp_path / "o", num_workers=1, progress=False)
    seen = set()
    for shard in result.shards:
        for raw in tf.data.TFRecordDataset(shard).as_numpy_iterator():
            ex = {k: v.numpy() for k, v in parse_example(raw).items()}
            fid = ex["frame/id"].decode()
            seen.add(fid)
            image_file = kitti_samples / "images" / f"{fid}.png"
            assert ex["frame/encoded"] == image_file.read_bytes()
            assert ex["frame/format"] == b"png"
            assert (ex["frame/width"], ex["frame/height"]) == (
                (1224, 370) if fid == "000000" else (1242, 375))
            lines = [ln.split() for ln in (kitti_samples / "labels" / f"{fid}.txt").read_text()
                     .splitlines()]
            classes = [c.decode() for c in ex["target/object_class"]]
            assert classes == [ln[0].lower() for ln in lines]
            assert list(ex["target/occlusion"]) == [int(ln[2]) for ln in lines]
            keys = ["truncation", "occlusion", "observation_angle", "coordinates_x1",
                    "coordinates_y1", "coordinates_x2", "coordinates_y2", "world_bbox_h",
                    "world_bbox_w", "world_bbox_l", "world_bbox_x", "world_bbox_y",
                    "world_bbox_z", "world_bbox_rot_y"]
            values = np.array([[float(v) for v in ln[1:]] for ln in lines], dtype=np.float32)
            boxes = values[:, 3:7].copy()
            boxes[:, [0, 2]] = np.sort(boxes[:, [0, 2]], axis=1)  # DontCare boxes normalised
            boxes[:, [1, 3]] = np.sort(boxes[:, [1, 3]], axis=1)
            values[:, 3:7] = boxes
            for i, key in enumerate(keys):
                if key != "occlusion":
                    np.testing.assert_array_equal(ex[f"target/{key}"], values[:, i], err_msg=key)
            assert ex["target/score"].size == 0
    assert seen == {"000000", "000001", "000002", "000003", "000004", "000005", "000007"}
    assert result.class_counts["total"] == {"car": 8, "cyclist": 2, "dontcare": 18, "misc": 1,
                                            "pedestrian": 2, "truck": 1}


def test_score_column_is_written(tmp_path):
    root = tmp_path / "scored"
    make_detection_dataset(root, num_frames=2, width=96, height=64, seed=1)
    label = root / "labels" / "000000.txt"
    label.write_text("Car 0.00 0 0.1 10 10 40 30 1.5 1.6 4.0 1 1.65 20 0.2 0.75\n")
    result = run(_spec(root, num_shards=1, val_split=0), tmp_path / "o", num_workers=1,
                 progress=False)
    (rec,) = [r for r in _records(result.shards) if r["frame/id"] == [b"000000"]]
    assert rec["target/score"] == [pytest.approx(0.75)]
    assert rec["target/object_class"] == [b"car"]


def test_sequence_mode_keeps_sequences_whole_and_balanced(dataset, tmp_path):
    seq_map = json.loads((dataset / "kitti_seq_to_frames.json").read_text())
    result = run(_spec(dataset, partition_mode='"sequence"', num_partitions=3, num_shards=2,
                       kitti_sequence_to_frames_file='"kitti_seq_to_frames.json"'),
                 tmp_path / "o", validation_fold=2, num_workers=1, progress=False)
    assert len(result.shards) == 6 and result.validation_fold == 2
    folds = []
    for fold in range(3):
        recs = _records(s for s in result.shards if f"-fold-{fold:03d}-of-003-" in s)
        folds.append({r["frame/id"][0].decode() for r in recs})
    assert [len(f) for f in folds] == result.frames_per_fold
    assert sum(result.frames_per_fold) == NUM_FRAMES
    for frames in seq_map.values():
        assert sum(1 for f in folds if set(frames) <= f) == 1  # each sequence in exactly one fold
    largest = max(len(v) for v in seq_map.values())
    assert max(result.frames_per_fold) - min(result.frames_per_fold) <= largest
    assert result.metadata["frames_not_in_sequence"] == []


def test_frames_outside_the_sequence_map_are_reported(dataset, tmp_path):
    seq_map = json.loads((dataset / "kitti_seq_to_frames.json").read_text())
    first = sorted(seq_map)[0]
    dropped = seq_map[first].pop()
    seq_map[first].append("999999")
    seq_file = tmp_path / "seq.json"
    seq_file.write_text(json.dumps(seq_map))
    result = run(_spec(dataset, partition_mode='"sequence"', num_partitions=2, num_shards=1,
                       kitti_sequence_to_frames_file=f'"{seq_file}"'), tmp_path / "o",
                 num_workers=1, progress=False)
    assert result.num_frames == NUM_FRAMES - 1
    assert result.metadata["frames_not_in_sequence"] == [dropped]
    assert result.metadata["sequence_frames_missing"] == ["999999"]


def test_deterministic_and_parallel_equals_serial(dataset, tmp_path):
    spec = _spec(dataset, num_shards=2, val_split=20)
    run(spec, tmp_path / "a", num_workers=1, progress=False)
    run(spec, tmp_path / "b", num_workers=1, progress=False)
    run(spec, tmp_path / "c", num_workers=2, progress=False)
    a = _shard_bytes(tmp_path / "a")
    assert len(a) == 4
    assert a == _shard_bytes(tmp_path / "b") == _shard_bytes(tmp_path / "c")


def test_failure_mid_run_leaves_no_shard(dataset, tmp_path, monkeypatch):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    real, calls = shards_lib.encode_example, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 10:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(shards_lib, "encode_example", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run(_spec(dataset, num_shards=4), out, num_workers=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "status.json"]
    assert json.loads((out / "status.json").read_text())["state"] == "failed"


def test_rerun_replaces_stale_shards_and_keeps_other_files(dataset, tmp_path):
    out = tmp_path / "o"
    run(_spec(dataset, num_shards=3), out, output_name="kitti", num_workers=1, progress=False)
    (out / "notes.txt").write_text("keep me")
    (out / "other-fold-000-of-002-shard-00000-of-00003").write_text("another data set")
    run(_spec(dataset, num_shards=1), out, output_name="kitti", num_workers=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "kitti-fold-000-of-002-shard-00000-of-00001", "kitti-fold-001-of-002-shard-00000-of-00001",
        "metadata.json", "notes.txt", "other-fold-000-of-002-shard-00000-of-00003", "status.json"]


def test_malformed_data_is_skipped_and_reported(dataset, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(dataset, root)
    label = root / "labels" / "000003.txt"
    good = label.read_text().splitlines()
    label.write_text("\n".join(good + ["Car 0 0 0 1 2 3"]) + "\n")
    image = root / "images" / "000005.png"
    image.write_bytes(image.read_bytes()[:-200])
    (root / "labels" / "000007.txt").unlink()
    (root / "labels" / "000100.txt").write_text("")
    result = run(_spec(root, num_shards=1), tmp_path / "o", num_workers=1, progress=False)
    assert result.num_frames == NUM_FRAMES - 2
    assert result.skipped_objects == 1
    assert result.skipped_frames == ["000005"]
    assert result.images_without_labels == ["000007"]
    assert result.labels_without_images == ["000100"]
    assert result.metadata["problems"] == [
        f"{root}/images/000005.png: truncated PNG (no IEND chunk), expected a complete PNG file",
        f"{root}/labels/000003.txt:{len(good) + 1}: 7 fields, expected 15 (or 16 with a score)",
    ]
    # strict: the first problem met (frames are shuffled) fails the run
    with pytest.raises(DataError, match=r"(labels/000003.txt:\d+: 7 fields, expected 15|"
                                        r"images/000005.png: truncated PNG)"):
        run(_spec(root, num_shards=1), tmp_path / "s", strict=True, num_workers=1, progress=False)
    assert not list((tmp_path / "s").glob("*-fold-*"))


@pytest.mark.parametrize("case, error, message", [
    ("missing_root", DataError, r"dataset root .*/nowhere does not exist"),
    ("empty_images", DataError, r"image folder .*/images is empty"),
    ("wrong_extension", DataError, r"has no '.jpg' images \(found .png\); check "
                                   r"kitti_config.image_extension"),
    ("unknown_extension", DataError, r"unknown image extension '.tif'"),
    ("all_unreadable", DataError, r"no frames left to convert under .*: 2 skipped"),
    ("random_partitions", SpecError, r"kitti_config.num_partitions must be 2 in random "
                                     r"partition mode .*got 3"),
    ("fold_out_of_range", SpecError, r"validation_fold must be in \[0, 1\] for 2 partitions, "
                                     r"got 2"),
    ("random_fold", SpecError, r"validation_fold must be 0 in random partition mode"),
])
def test_bad_input_errors(case, error, message, dataset, tmp_path):
    root, fields, kwargs = tmp_path / "d", {}, {}
    if case != "missing_root":
        make_detection_dataset(root, num_frames=2, width=64, height=64)
    if case == "missing_root":
        root = tmp_path / "nowhere"
    elif case == "empty_images":
        for p in (root / "images").iterdir():
            p.unlink()
    elif case == "wrong_extension":
        fields["image_extension"] = '".jpg"'
    elif case == "unknown_extension":
        fields["image_extension"] = '".tif"'
    elif case == "all_unreadable":
        for p in (root / "images").iterdir():
            p.write_bytes(b"junk")
    elif case == "random_partitions":
        fields["num_partitions"] = 3
    elif case == "fold_out_of_range":
        fields.update(partition_mode='"sequence"', num_partitions=2,
                      kitti_sequence_to_frames_file='"kitti_seq_to_frames.json"')
        kwargs["validation_fold"] = 2
    elif case == "random_fold":
        kwargs["validation_fold"] = 1
    # A message built directly (not through tlt.spec) is checked by the stage itself.
    body = "".join(f" {k}: {v}" for k, v in fields.items())
    spec = text_format.Parse(f'kitti_config {{ root_directory_path: "{root}"{body} }}',
                             DatasetExportConfig())
    with pytest.raises(error, match=message):
        run(spec, tmp_path / "o", num_workers=1, progress=False, **kwargs)
    assert not list((tmp_path / "o").glob("*-fold-*"))


def _remote_round_trip(dataset: Path, bucket: str, tmp_path: Path) -> None:
    small = tmp_path / "small"
    make_detection_dataset(small, num_frames=4, width=96, height=64, seed=2)
    storage.upload_tree(small, f"{bucket}/data")
    storage.write_bytes(f"{bucket}/out/unrelated.txt", b"keep")
    result = run(_spec(f"{bucket}/data", num_shards=1, val_split=50), f"{bucket}/out",
                 output_name="kitti", num_workers=1, progress=False)
    names = [f"kitti-fold-{f:03d}-of-002-shard-00000-of-00001" for f in (0, 1)]
    assert result.shards == [f"{bucket}/out/{n}" for n in names]
    listed = storage.list_files(f"{bucket}/out", recursive=True)
    assert sorted(listed) == sorted([f"{bucket}/out/{n}" for n in names] + [
        f"{bucket}/out/metadata.json", f"{bucket}/out/status.json", f"{bucket}/out/unrelated.txt"])
    meta = json.loads(storage.read_bytes(f"{bucket}/out/metadata.json"))
    assert meta["parents"] == [{"uri": f"{bucket}/data"}] and meta["num_frames"] == 4
    local = tmp_path / "shard"
    local.write_bytes(storage.read_bytes(result.shards[0]))
    (rec, *_rest) = _records([local])
    fid = rec["frame/id"][0].decode()
    assert rec["frame/encoded"][0] == (small / "images" / f"{fid}.png").read_bytes()
    objects = read_label_file(small / "labels" / f"{fid}.txt")
    assert rec["target/object_class"] == [o.object_class.encode() for o in objects]


def test_s3_input_and_output(s3_bucket, dataset, tmp_path):
    _remote_round_trip(dataset, s3_bucket, tmp_path)


def test_gcs_input_and_output(gcs_bucket, dataset, tmp_path):
    _remote_round_trip(dataset, gcs_bucket, tmp_path)


def test_missing_bucket_fails_before_any_work(s3_bucket, dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(convert_lib, "write_shards", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-for-tlt/out: .*bucket does not "
                                           r"exist"):
        run(_spec(dataset), "s3://no-such-bucket-for-tlt/out", num_workers=1, progress=False)
