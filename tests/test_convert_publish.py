"""Convert's publishing and bad inputs: the swap, the commit point, leftovers, bounds, paths."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import tlt.data.convert_publish as publish_lib
from tlt import spec as spec_lib
from tlt.cli.dataset_convert import main as convert_main
from tlt.data.synthetic import make_detection_dataset
from tlt.data.tfrecord import read_records
from tlt.errors import DataError, SpecError, StorageError
from tlt.io import storage
from tlt.stages.convert import run

FRAMES = 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("publish") / "data"
    make_detection_dataset(root, num_frames=FRAMES, width=64, height=64, seed=9)
    return root


def _spec(root, **fields):
    body = "".join(f" {k}: {v}" for k, v in {"root_directory_path": f'"{root}"', **fields}.items())
    return spec_lib.loads(f"kitti_config {{{body} }}", "dataset_export")


def _convert(dataset, out, **fields):
    return run(_spec(dataset, **fields), out, output_name="kitti", num_workers=1, progress=False)


def test_swap_replaces_the_folder_whole_and_keeps_other_files(dataset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _convert(dataset, out, num_shards=3)
    (out / "notes.txt").write_text("keep me")
    os.symlink("notes.txt", out / "link")
    inode = out.stat().st_ino
    swaps = []
    real = publish_lib._exchange
    monkeypatch.setattr(publish_lib, "_exchange", lambda a, b: swaps.append(b) or real(a, b))
    _convert(dataset, out, num_shards=1)
    assert swaps == [out.resolve()] and out.stat().st_ino != inode  # a new folder, swapped in
    assert sorted(p.name for p in out.iterdir()) == [
        "kitti-fold-000-of-002-shard-00000-of-00001", "kitti-fold-001-of-002-shard-00000-of-00001",
        "link", "metadata.json", "notes.txt", "status.json"]
    assert (out / "link").read_text() == "keep me" and os.readlink(out / "link") == "notes.txt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # staging folder removed


def test_folder_with_sub_folders_is_published_file_by_file(dataset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / "x.png").write_bytes(b"mine")
    monkeypatch.setattr(publish_lib, "_exchange", lambda a, b: pytest.fail("swapped"))
    _convert(dataset, out, num_shards=2)
    _convert(dataset, out, num_shards=1)
    assert sorted(p.name for p in out.iterdir()) == [
        "images", "kitti-fold-000-of-002-shard-00000-of-00001",
        "kitti-fold-001-of-002-shard-00000-of-00001", "metadata.json", "status.json"]
    assert (out / "images" / "x.png").read_bytes() == b"mine"


def test_working_directory_is_not_swapped(dataset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    monkeypatch.setattr(publish_lib, "_exchange", lambda a, b: pytest.fail("swapped the cwd"))
    assert convert_main(["-d", _spec_file(tmp_path, dataset), "-o", "kitti", "--workers", "1",
                         "--no-progress"]) == 0
    assert json.loads((out / "metadata.json").read_text())["num_frames"] == FRAMES


def _spec_file(tmp_path: Path, root: Path, extra: str = "") -> str:
    path = tmp_path / "spec.txt"
    path.write_text(f'kitti_config {{\n  root_directory_path: "{root}"\n  num_shards: 1\n'
                    f"{extra}}}\n")
    return str(path)


def test_rerun_removes_leftovers_of_dead_runs_only(dataset, tmp_path):
    out = tmp_path / "out"
    _convert(dataset, out, num_shards=1)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        dead = [out / ".kitti.convert-999999999-abc.partial", out / ".kitti.x1y2.partial",
                tmp_path / ".out.convert-999999999-def.partial"]
        for folder in dead:
            folder.mkdir()
            (folder / "kitti-fold-000-of-002-shard-00000-of-00001").write_bytes(b"half")
        (out / ".metadata.json.k3j4.tmp").write_text("{")
        (out / ".status.json.a1b2.tmp").write_text("{")
        live = tmp_path / f".out.convert-{sleeper.pid}-ghi.partial"
        live.mkdir()
        _convert(dataset, out, num_shards=1)
        assert not any(p.exists() for p in dead)
        assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
        assert live.is_dir()  # its writer still runs
    finally:
        sleeper.kill()
        sleeper.wait()


def test_failure_keeps_the_previous_output(dataset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _convert(dataset, out, num_shards=2)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "status.json"}
    import tlt.data.convert_shards as shards_lib

    monkeypatch.setattr(shards_lib, "encode_example",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk on fire")))
    with pytest.raises(RuntimeError, match="disk on fire"):
        _convert(dataset, out, num_shards=1)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "status.json"} == before
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "failed" and status["message"] == "disk on fire"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_num_shards_above_the_frames_is_capped_with_a_warning(dataset, tmp_path, caplog):
    result = _convert(dataset, tmp_path / "out", num_shards=1000, val_split=25)
    assert result.frames_per_fold == [2, 6]
    assert len(result.shards) == 12  # 6 per fold: the largest fold has 6 frames
    assert all(s.endswith("-of-00006") for s in result.shards)
    assert result.metadata["num_shards"] == 6 and result.metadata["num_shards_requested"] == 1000
    assert ("kitti_config.num_shards is 1000 but the largest fold has 6 frame(s); writing 6 "
            "shard(s) per fold") in caplog.text
    sizes = [sum(1 for _ in read_records(s)) for s in result.shards]
    assert sizes == [1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("field, value, message", [
    ("num_shards", 2147483647, r"kitti_config.num_shards must be in \[1, 1024\], got 2147483647"),
    ("num_partitions", 5000, r"kitti_config.num_partitions must be in \[1, 100\], got 5000"),
])
def test_huge_counts_are_refused_before_any_work(field, value, message, dataset, tmp_path):
    from google.protobuf import text_format

    from tlt.proto.dataset_export_config_pb2 import DatasetExportConfig

    extra = ' partition_mode: "sequence" kitti_sequence_to_frames_file: "s.json"' \
        if field == "num_partitions" else ""
    spec = text_format.Parse(f'kitti_config {{ root_directory_path: "{dataset}" {field}: {value}'
                             f"{extra} }}", DatasetExportConfig())  # not through tlt.spec's rules
    with pytest.raises(SpecError, match=message):
        run(spec, tmp_path / "out", num_workers=1, progress=False)
    assert not (tmp_path / "out").exists()


def test_output_folder_that_is_a_file(dataset, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("a file")
    assert convert_main(["-d", _spec_file(tmp_path, dataset), "-o", f"{target}/kitti"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert err == [f"tlt-dataset-convert: error: output folder {target} is an existing file, "
                   "expected a folder (or a new path) for the shards"]
    assert target.read_text() == "a file"


def test_label_file_not_utf8_is_one_line_and_nothing_written(dataset, tmp_path, capsys):
    root = tmp_path / "data"
    make_detection_dataset(root, num_frames=3, width=64, height=64, seed=1)
    label = root / "labels" / "000001.txt"
    label.write_bytes(label.read_bytes() + b"Car \xff\xfe 0 0 1 1 2 2 1 1 1 1 1 1 1\n")
    lines = label.read_bytes().count(b"\n")
    offset = label.read_bytes().index(b"\xff")
    out = tmp_path / "out"
    assert convert_main(["-d", _spec_file(tmp_path, root), "-o", f"{out}/kitti", "--strict",
                         "--workers", "1", "--no-progress"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert err == [f"tlt-dataset-convert: error: {label}:{lines}: not UTF-8 text (invalid start "
                   f"byte at byte {offset}), expected a KITTI label file"]
    assert sorted(p.name for p in out.iterdir()) == ["status.json"]
    assert json.loads((out / "status.json").read_text())["state"] == "failed"


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        convert_main(["-h"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("0-based fold training validates on, recorded in metadata.json (default: none; random "
            "partition mode always uses fold 0)") in text
    assert "--workers N worker processes (default: one per core)" in text


def test_object_storage_commit_point_after_a_failed_upload(s3_bucket, dataset, tmp_path,
                                                           monkeypatch):
    out = f"{s3_bucket}/out"
    _convert(dataset, out, num_shards=2)
    real, calls = storage.upload_file, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the second new shard: the first is already replaced
            raise StorageError(f"{dst}: connection reset")
        return real(src, dst)

    monkeypatch.setattr(storage, "upload_file", flaky)
    with pytest.raises(StorageError, match="connection reset"):
        _convert(dataset, out, num_shards=1)
    monkeypatch.setattr(storage, "upload_file", real)
    # No metadata.json: no reader takes the mixed shards for a complete output.
    assert not storage.exists(f"{out}/metadata.json")
    status = json.loads(storage.read_bytes(f"{out}/status.json"))
    assert status["state"] == "failed"
    result = _convert(dataset, out, num_shards=1)
    listed = sorted(u.rsplit("/", 1)[1] for u in storage.list_files(out, recursive=True))
    assert listed == ["kitti-fold-000-of-002-shard-00000-of-00001",
                      "kitti-fold-001-of-002-shard-00000-of-00001", "metadata.json", "status.json"]
    meta = json.loads(storage.read_bytes(f"{out}/metadata.json"))
    assert meta["shards"] == [s.rsplit("/", 1)[1] for s in result.shards]
    assert json.loads(storage.read_bytes(f"{out}/status.json"))["state"] == "done"


def test_remote_rerun_removes_local_staging_of_dead_runs(s3_bucket, dataset, tmp_path,
                                                         monkeypatch):
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    dead = tmp_path / "tlt-convert-999999999-x7y8"
    dead.mkdir()
    (dead / "kitti-fold-000-of-002-shard-00000-of-00001").write_bytes(b"half")
    _convert(dataset, f"{s3_bucket}/out", num_shards=1)
    assert not dead.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tlt-convert-")] == []
