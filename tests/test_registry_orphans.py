"""Leftovers of publishes that died: a real kill -9 mid-upload, failed and interrupted uploads,
and uploads with no lease; the next publish of the model removes exactly the orphans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tlt.errors import Interrupted, RegistryError, StorageError
from tlt.io import registry_orphans, storage
from tlt.io.registry import Registry, history, promote

# Publishes m:1 from argv[2] into registry argv[1], and kill -9s itself after the first file.
_KILLED_PUBLISH = textwrap.dedent("""
    import os, signal, sys
    from tlt.io import storage
    from tlt.io.registry import Registry

    real_upload = storage.upload_file

    def upload_then_die(local, uri):
        real_upload(local, uri)
        os.kill(os.getpid(), signal.SIGKILL)

    storage.upload_file = upload_then_die
    Registry(sys.argv[1]).publish("m", "1", sys.argv[2])
""")


def _source(tmp_path, content: bytes = b"weights"):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "a.tlt").write_bytes(content)
    (src / "b.txt").write_text("labels")
    return src


def _root(request, backend: str, tmp_path) -> str:
    if backend == "local":
        return str(tmp_path / "reg")
    return f"{request.getfixturevalue(backend)}/models"


@pytest.mark.parametrize("backend", ["local", "s3_bucket"])
def test_rerun_after_kill_9_removes_the_killed_upload(request, tmp_path, backend):
    root = _root(request, backend, tmp_path)
    src = _source(tmp_path)
    run = subprocess.run([sys.executable, "-c", _KILLED_PUBLISH, root, str(src)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == -9, run.stderr
    [left] = storage.list_files(storage.join(root, "m"))
    [held] = storage.list_files(storage.join(root, "_pending"))
    assert held.endswith(".json")
    with pytest.raises(RegistryError, match="has no index.json"):
        Registry(root).list_models()  # the killed publish committed nothing

    info = Registry(root).publish("m", "1", src)  # the rerun
    assert storage.list_files(storage.join(root, "m")) == sorted(
        storage.join(root, info.location, name) for name in ("a.tlt", "b.txt"))
    assert left not in storage.list_files(root)
    assert storage.list_files(storage.join(root, "_pending")) == []
    assert Registry(root).pull("m", "1", tmp_path / "out")[0].read_bytes() == b"weights"


@pytest.mark.parametrize("error", [StorageError("s3://b/x: write failed: boom"),
                                   Interrupted("terminated")])
def test_failed_or_interrupted_upload_leaves_nothing(tmp_path, monkeypatch, error):
    root = tmp_path / "reg"
    real_upload = storage.upload_file
    calls = []

    def upload(local, uri):
        calls.append(uri)
        if len(calls) == 2:
            raise error
        real_upload(local, uri)

    monkeypatch.setattr(storage, "upload_file", upload)
    with pytest.raises(type(error)):
        Registry(root).publish("m", "1", _source(tmp_path))
    assert storage.list_files(root) == []  # no files, no lease, no entry


def _age(folder, seconds: float) -> None:
    stamp = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (stamp, stamp))


def test_orphans_are_told_from_live_uploads(tmp_path):
    root = tmp_path / "reg"
    reg = Registry(root, orphan_grace=600)
    reg.publish("m", "1", _source(tmp_path))
    model = root / "m"
    for label in ("2-dead0001", "3-young001", "4-leased01", ".5-x.deleting-1"):
        (model / label).mkdir()
        (model / label / "part.bin").write_bytes(b"x")
    _age(model / "2-dead0001", 3600)  # no lease and untouched for an hour: an orphan
    _age(model / ".5-x.deleting-1", 3600)  # a delete killed half-way
    _age(model / "4-leased01", 3600)  # old files, but a live publisher holds the lease
    (root / "_pending" / "m").mkdir(parents=True, exist_ok=True)
    here = registry_orphans._machine()
    for label, pid in (("4-leased01", os.getpid()), ("9-gone0001", 999999999)):  # live, dead
        (root / "_pending" / "m" / f"{label}.json").write_text(json.dumps(
            {"machine": here, "pid": pid, "location": f"m/{label}"}))
    (root / "_pending" / "m" / "8-elsewhr.json").write_text(json.dumps(  # dead pid, other machine
        {"machine": "other-host|boot|pid:[1]", "pid": 999999999, "location": "m/8-elsewhr"}))

    killed_commit = root / "_versions" / "m" / ".7.json.k1ll3d.tmp"  # a local commit cut short
    killed_commit.write_text("{")
    _age(killed_commit, 3600)

    info = reg.publish("m", "6", _source(tmp_path))
    assert not killed_commit.exists()
    kept = sorted(p.name for p in model.iterdir())
    assert kept == sorted(["3-young001", "4-leased01", reg.get_version("m", "1").location[2:],
                           info.location[2:]])
    assert sorted(p.name for p in (root / "_pending" / "m").iterdir()) == [
        "4-leased01.json", "8-elsewhr.json"]


def test_remote_orphan_without_lease_after_grace(s3_bucket, tmp_path):
    root = f"{s3_bucket}/reg"
    storage.write_bytes(f"{root}/m/1-abandon1/a.tlt", b"x")
    Registry(root).publish("m", "2", _source(tmp_path))
    assert storage.exists(f"{root}/m/1-abandon1/a.tlt")  # within the hour: may be uploading
    removed = Registry(root, orphan_grace=0).remove_orphans("m")
    assert removed == ["m/1-abandon1"]
    assert not storage.exists(f"{root}/m/1-abandon1/a.tlt")
    assert [v.version for v in Registry(root).list_versions("m")] == ["2"]


def test_heartbeat_keeps_a_slow_upload_from_being_swept(tmp_path, monkeypatch):
    """An upload slower than the grace period survives a sweep: its lease is kept fresh."""
    import threading

    root = tmp_path / "reg"
    real_upload = storage.upload_file
    first_file_done = threading.Event()

    def slow_upload(local, uri):
        real_upload(local, uri)
        if not first_file_done.is_set():
            first_file_done.set()
            time.sleep(1.5)  # five grace periods

    monkeypatch.setattr(storage, "upload_file", slow_upload)
    publisher = threading.Thread(
        target=lambda: Registry(root, orphan_grace=0.3).publish("m", "1", _source(tmp_path)))
    publisher.start()
    assert first_file_done.wait(30)
    time.sleep(0.9)  # the uploaded file is now three grace periods old
    assert Registry(root, orphan_grace=0.3).remove_orphans("m") == []
    publisher.join(30)
    [info] = Registry(root).list_versions("m")
    assert Registry(root).pull("m", "1", tmp_path / "out")[0].read_bytes() == b"weights"


def test_killed_alias_writes_leave_no_temporaries(tmp_path):
    """Temporaries of alias and history writes cut short go; the swap's lock file stays."""
    root = tmp_path / "reg"
    reg = Registry(root)
    reg.publish("m", "1", _source(tmp_path))
    promote(reg, "m", "1")
    aliases_dir = root / "_aliases" / "m"
    killed = [aliases_dir / ".production.json.k1ll3d.tmp",
              aliases_dir / "production" / "history" / ".000002.json.k1ll3d.tmp"]
    young = aliases_dir / ".production.json.y0ung.tmp"  # a swap in progress right now
    for path in (*killed, young):
        path.write_text("{")
    for path in killed:
        _age(path, 3600)
    lock = aliases_dir / ".production.json.lock"
    assert lock.exists()
    _age(lock, 3600)
    reg.publish("m", "2", _source(tmp_path))
    assert [p.exists() for p in killed] == [False, False]
    assert young.exists() and lock.exists()
    assert [r.to_version for r in history(reg, "m")] == ["1"]
