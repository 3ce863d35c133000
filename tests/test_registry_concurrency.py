"""Concurrent publishes on local disk, a moto S3 server and the GCS emulator, forced to race.

Two publishers run in threads. Every write of a catalogue object (``index.json`` or an entry
under ``_versions/``) first waits until both publishers have reached that point, so each has
read the catalogue before either commits: the interleaving that lost a version when publishing
rewrote ``index.json`` (read, modify, write back).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from tlt.errors import RegistryError
from tlt.io import storage
from tlt.io.registry import Registry

BACKENDS = ["local", "s3_bucket", "gcs_bucket"]


def _root(request, backend: str, tmp_path) -> str:
    if backend == "local":
        return str(tmp_path / "reg")
    return f"{request.getfixturevalue(backend)}/models"


def _is_catalogue(uri) -> bool:
    text = str(uri)
    return text.endswith("/index.json") or "/_versions/" in text


@pytest.fixture
def commit_barrier(monkeypatch):
    """Hold each racing thread's first catalogue write until two threads are there.

    The main thread (set-up publishes) passes straight through.
    """
    barrier = threading.Barrier(2, timeout=20)
    seen: set[int] = set()
    real_write_bytes, real_write_new = storage.write_bytes, storage.write_new

    def wait_once(uri) -> None:
        me = threading.get_ident()
        if threading.current_thread() is threading.main_thread():
            return
        if _is_catalogue(uri) and me not in seen:
            seen.add(me)
            try:
                barrier.wait()
            except threading.BrokenBarrierError:  # a publisher serialised by a lock: go on
                pass

    def write_bytes(uri, data):
        wait_once(uri)
        return real_write_bytes(uri, data)

    def write_new(uri, data):
        wait_once(uri)
        return real_write_new(uri, data)

    monkeypatch.setattr(storage, "write_bytes", write_bytes)
    monkeypatch.setattr(storage, "write_new", write_new)
    return barrier


def _race(*jobs) -> list[BaseException | None]:
    """Run the jobs in threads at once; each one's exception (or None)."""
    outcome: list[BaseException | None] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            jobs[i]()
        except BaseException as err:  # noqa: BLE001 - reported to the test
            outcome[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcome


def _files(tmp_path, name: str, content: bytes):
    path = tmp_path / name / "model.tlt"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_racing_publishes_of_different_versions_both_land(request, tmp_path, backend,
                                                         commit_barrier):
    root = _root(request, backend, tmp_path)
    Registry(root).publish("m", "1", _files(tmp_path, "v1", b"one"))
    a, b = _files(tmp_path, "a", b"two"), _files(tmp_path, "b", b"three")
    errors = _race(lambda: Registry(root).publish("m", "2", a),
                   lambda: Registry(root).publish("n", "1", b))
    assert errors == [None, None]
    assert not commit_barrier.broken  # both really were between read and commit together
    reg = Registry(root)
    assert [v.version for v in reg.list_versions("m")] == ["1", "2"]
    assert [m.name for m in reg.list_models()] == ["m", "n"]
    assert reg.pull("m", "2", tmp_path / "out2")[0].read_bytes() == b"two"
    assert reg.pull("n", "1", tmp_path / "outn")[0].read_bytes() == b"three"


@pytest.mark.parametrize("backend", BACKENDS)
def test_racing_publishes_of_one_version_one_wins(request, tmp_path, backend, commit_barrier):
    root = _root(request, backend, tmp_path)
    a, b = _files(tmp_path, "a", b"from-a"), _files(tmp_path, "b", b"from-b")
    errors = _race(lambda: Registry(root).publish("m", "7", a),
                   lambda: Registry(root).publish("m", "7", b))
    assert not commit_barrier.broken
    [loser] = [e for e in errors if e is not None]
    assert isinstance(loser, RegistryError)
    assert str(loser).startswith("version 7 of 'm' was published by someone else meanwhile")
    winner = b"from-a" if errors[0] is None else b"from-b"

    reg = Registry(root)
    [info] = reg.list_versions("m")
    assert reg.pull("m", "7", tmp_path / "out")[0].read_bytes() == winner
    # The loser's upload is gone: only the winner's folder is left, and no lease.
    assert storage.list_files(storage.join(root, "m")) == [
        storage.join(root, info.location, "model.tlt")]
    assert storage.list_files(storage.join(root, "_pending")) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_threads_publishing_versions(request, tmp_path, backend):
    root = _root(request, backend, tmp_path)
    src = _files(tmp_path, "src", b"w")
    errors = _race(*[lambda i=i: Registry(root).publish("m", str(i), src) for i in range(5)])
    assert errors == [None] * 5
    assert [v.version for v in Registry(root).list_versions("m")] == ["0", "1", "2", "3", "4"]


# Publishes argv[2]:argv[3] from file argv[4] into registry argv[1]. Before its first catalogue
# write it waits until every publisher named in argv[6:] has reached its own (files in argv[5]).
_PROCESS_PUBLISH = textwrap.dedent("""
    import os, sys, time
    from tlt.io import storage
    from tlt.io.registry import Registry

    root, name, version, src, meet, *everyone = sys.argv[1:]
    real = {"write_new": storage.write_new, "write_bytes": storage.write_bytes}

    def meet_once(uri):
        text = str(uri)
        if not (text.endswith("/index.json") or "/_versions/" in text):
            return
        if os.path.exists(os.path.join(meet, version)):
            return
        open(os.path.join(meet, version), "w").close()
        deadline = time.monotonic() + 60
        while sorted(os.listdir(meet)) != sorted(everyone):
            if time.monotonic() > deadline:
                sys.exit("the other publisher never reached its commit")
            time.sleep(0.02)

    def hooked(fn):
        def write(uri, data):
            meet_once(uri)
            return real[fn](uri, data)
        return write

    storage.write_new = hooked("write_new")
    storage.write_bytes = hooked("write_bytes")
    Registry(root).publish(name, version, src)
""")


@pytest.mark.parametrize("backend", ["s3_bucket", "gcs_bucket"])
def test_racing_publisher_processes(request, tmp_path, backend):
    """Two real processes, each past its catalogue read before either commits."""
    root = _root(request, backend, tmp_path)
    meet = tmp_path / "meet"
    meet.mkdir()
    jobs = [subprocess.Popen([sys.executable, "-c", _PROCESS_PUBLISH, root, "m", version,
                              str(_files(tmp_path, f"v{version}", version.encode())), str(meet),
                              "1", "2"], stderr=subprocess.PIPE, text=True)
            for version in ("1", "2")]
    for job in jobs:
        _, err = job.communicate(timeout=180)
        assert job.returncode == 0, err
    reg = Registry(root)
    assert [v.version for v in reg.list_versions("m")] == ["1", "2"]
    assert reg.pull("m", "1", tmp_path / "o1")[0].read_bytes() == b"1"
    assert reg.pull("m", "2", tmp_path / "o2")[0].read_bytes() == b"2"
