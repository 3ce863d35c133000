"""Convert under kill -9 and SIGTERM, in real processes: one consistent output, always.

A wrapper process runs ``tlt-dataset-convert``'s main with one library function hooked to kill
the process (SIGKILL) on its n-th call, or to slow every frame down so that a signal lands in
the middle of the work. After every kill the output folder holds the previous run's output or
the new one, whole (or, when published file by file, no metadata.json at all), ``status.json``
never says done early, and a rerun leaves exactly the new output and no temporary files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cli_processes import subprocess_env
from tlt import spec as spec_lib
from tlt.cli.dataset_convert import main as convert_main
from tlt.data.synthetic import make_detection_dataset
from tlt.data.tfrecord import read_records
from tlt.stages.convert import run

FRAMES = 12

_WRAPPER = textwrap.dedent("""
    import importlib, os, signal, sys, time
    module, attr, nth, mode = sys.argv[1:5]
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, name)
    calls = [0]
    def hooked(*args, **kwargs):
        calls[0] += 1
        if mode == "kill" and calls[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "slow":
            open(os.environ["HOOK_MARKER"], "a").close()
            time.sleep(float(nth))
        return real(*args, **kwargs)
    setattr(owner, name, hooked)
    from tlt.cli.dataset_convert import main
    sys.exit(main(sys.argv[5:]))
""")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash") / "data"
    make_detection_dataset(root, num_frames=FRAMES, width=64, height=64, seed=4)
    return root


def _spec_file(path: Path, root: Path, shards: int, val_split: int) -> str:
    path.write_text(f'kitti_config {{\n  root_directory_path: "{root}"\n  num_shards: {shards}\n'
                    f'  val_split: {val_split}\n}}\n')
    return str(path)


def _old_output(dataset: Path, tmp_path: Path, out: Path) -> None:
    """A finished earlier run: 3 shards per fold, 25 % validation."""
    spec = spec_lib.load(_spec_file(tmp_path / "old.txt", dataset, 3, 25), "dataset_export")
    run(spec, out, output_name="kitti", num_workers=1, progress=False)


def _new_args(dataset: Path, tmp_path: Path, out: Path, *extra: str) -> list[str]:
    spec = _spec_file(tmp_path / "new.txt", dataset, 2, 50)
    return ["-d", spec, "-o", f"{out}/kitti", "--no-progress", *extra]


def _hooked(hook: tuple[str, str, object, str], args: list[str], log: Path,
            **popen) -> subprocess.Popen:
    """The CLI in a wrapper process; output goes to ``log``, not to pipes: an orphaned worker
    holding a pipe would make a reader wait for it, hiding whether it outlived the CLI."""
    module, attr, nth, mode = hook
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, module, attr, str(nth), mode, *args],
            env=subprocess_env(**popen.pop("env", {})), stdout=out, stderr=subprocess.STDOUT,
            **popen)


def _output(out: Path) -> str | None:
    """"old"/"new" when ``out`` holds that run's whole output, None when metadata.json is absent.

    Fails when metadata.json and the shards on disk disagree.
    """
    meta_file = out / "metadata.json"
    shards = sorted(p.name for p in out.iterdir() if p.name.startswith("kitti-fold-"))
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    assert meta["shards"] == shards
    per_fold = [sum(1 for s in shards if f"-fold-{f:03d}-" in s for _ in read_records(out / s))
                for f in range(2)]
    assert per_fold == meta["frames_per_fold"] and sum(per_fold) == meta["num_frames"] == FRAMES
    assert (meta["num_shards"], per_fold) in ((3, [3, 9]), (2, [6, 6]))
    return "old" if meta["num_shards"] == 3 else "new"


def _leftovers(out: Path) -> list[str]:
    pattern = re.compile(r"\..*\.(partial|tmp)")
    return sorted(p.name for folder in (out, out.parent) for p in folder.iterdir()
                  if pattern.fullmatch(p.name))


def _state(out: Path) -> str:
    return json.loads((out / "status.json").read_text())["state"]


def _session_alive(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``: the CLI and its workers."""
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                alive.append(int(entry))
    return alive


def _wait_gone(sid: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while _session_alive(sid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _session_alive(sid)


def _slow_convert_at_work(dataset: Path, tmp_path: Path, out: Path, *,
                          seconds_per_frame: float) -> subprocess.Popen:
    """Start a convert with two workers, every frame slowed down; return once a frame is being
    encoded. The process leads its own session: the caller kills it and its workers as a group."""
    marker = tmp_path / "started"
    proc = _hooked(("tlt.data.convert_shards", "encode_example", seconds_per_frame, "slow"),
                   _new_args(dataset, tmp_path, out, "--workers", "2"), tmp_path / "log",
                   env={"HOOK_MARKER": str(marker)}, start_new_session=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not marker.exists():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError((tmp_path / "log").read_text())
    return proc


def _rerun_gives_new_output(dataset: Path, tmp_path: Path, out: Path) -> None:
    assert convert_main(_new_args(dataset, tmp_path, out, "--workers", "1")) == 0
    assert _output(out) == "new" and _state(out) == "done"
    assert _leftovers(out) == []


# (hooked function, n-th call that kills, folder swapped whole?, output visible after the kill)
KILL_POINTS = {
    "writing_shards": (("tlt.data.convert_shards", "write_shard", 3), True, "old"),
    "before_swap": (("tlt.data.convert_publish", "_exchange", 1), True, "old"),
    "after_swap_before_status": (("tlt.status", "StatusWriter.done", 1), True, "new"),
    "between_shard_moves": (("tlt.data.convert_publish", "_move", 2), False, None),
    "before_metadata": (("tlt.data.convert_publish", "_move", 5), False, None),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_rerun_gives_one_consistent_output(point, dataset, tmp_path):
    (module, attr, nth), swapped, visible = KILL_POINTS[point]
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    if not swapped:  # a sub-folder: the output is published file by file, metadata.json last
        (out / "sub").mkdir()
        (out / "sub" / "keep.txt").write_text("keep me too")
    _old_output(dataset, tmp_path, out)
    proc = _hooked((module, attr, nth, "kill"), _new_args(dataset, tmp_path, out, "--workers", "1"),
                   tmp_path / "log")
    assert proc.wait(timeout=120) == -signal.SIGKILL, (tmp_path / "log").read_text()
    assert _output(out) == visible
    assert _state(out) == "running"  # never "done" before the output is in place
    assert (out / "notes.txt").read_text() == "keep me"
    _rerun_gives_new_output(dataset, tmp_path, out)
    assert (out / "notes.txt").read_text() == "keep me"
    assert swapped or (out / "sub" / "keep.txt").read_text() == "keep me too"


def test_kill_9_takes_the_workers_down_too(dataset, tmp_path):
    out = tmp_path / "out"
    _old_output(dataset, tmp_path, out)
    proc = _slow_convert_at_work(dataset, tmp_path, out, seconds_per_frame=1.5)
    try:
        assert len(_session_alive(proc.pid)) == 3  # the CLI and two workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # A worker left alive would keep writing (each frame takes 1.5 s here) beside the rerun.
        assert _wait_gone(proc.pid, 3.0) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert _output(out) == "old" and _state(out) == "running"
    _rerun_gives_new_output(dataset, tmp_path, out)


def test_sigterm_stops_cleanly_and_rerun_works(dataset, tmp_path):
    out = tmp_path / "out"
    _old_output(dataset, tmp_path, out)
    proc = _slow_convert_at_work(dataset, tmp_path, out, seconds_per_frame=0.5)
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)  # a worker surviving the pool's SIGTERM would hang the CLI
        assert _wait_gone(proc.pid, 3.0) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    err = (tmp_path / "log").read_text()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("tlt-dataset-convert: error: stopped by SIGTERM; "
                                            "rerun the same command to resume")
    assert "Traceback" not in err
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "interrupted" and "SIGTERM" in status["message"]
    assert _output(out) == "old" and _leftovers(out) == []
    _rerun_gives_new_output(dataset, tmp_path, out)


def test_kill_9_during_an_upload_to_object_storage(s3_bucket, dataset, tmp_path):
    from tlt.io import storage

    out = f"{s3_bucket}/out"
    _old_output(dataset, tmp_path, out)
    # upload_file calls: 1 = status.json "running", 2 = the first new shard, 3 = the second.
    proc = _hooked(("tlt.io.storage", "upload_file", 3, "kill"),
                   _new_args(dataset, tmp_path, out, "--workers", "1"), tmp_path / "log")
    assert proc.wait(timeout=120) == -signal.SIGKILL, (tmp_path / "log").read_text()
    # Old and new shards are mixed now, so the commit point is gone: no reader takes them whole.
    assert not storage.exists(f"{out}/metadata.json")
    assert json.loads(storage.read_bytes(f"{out}/status.json"))["state"] == "running"
    assert convert_main(_new_args(dataset, tmp_path, out, "--workers", "1")) == 0
    local = tmp_path / "copy"
    storage.download_tree(out, local)
    assert _output(local) == "new" and _state(local) == "done"
