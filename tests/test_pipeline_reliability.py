"""Reliability of local pipeline runs (issue 10, "Reliability check").

A run killed outright (SIGKILL to its whole process group: a crashed laptop, a closed terminal) and
resumed in its own folder reuses the steps that finished from kfp.local's cache, resumes the step
that was cut from its output folder, and runs the rest; a registry publisher killed at any write
leaves the registry with complete versions and a production alias that resolves.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cli_processes import VENV_BIN, subprocess_env
from tlt.errors import PipelineError
from tlt.orchestration.local_resume import CACHE_DIR, CACHE_HIT, check_resume_dir, run_folder

# A two-step pipeline of lightweight components with the shape of convert -> train: `prep` writes
# its output once (cacheable); `work` takes `steps` slow steps, keeps its progress in its output
# folder and resumes from it, like tlt.training's checkpoints. Every execution appends a line to the
# ledger file, so the test sees what ran.
_DRIVER = textwrap.dedent('''
    import logging, sys
    from contextlib import nullcontext

    from kfp import dsl, local
    from kfp.dsl import Dataset, Input, Model, Output

    from tlt.orchestration.local_resume import check_resume_dir, run_folder


    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def prep(ledger: str, out: Output[Dataset]):
        import os
        os.makedirs(out.path, exist_ok=True)
        open(os.path.join(out.path, "data.txt"), "w").write("frames\\n")
        open(ledger, "a").write("prep\\n")


    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def work(ledger: str, steps: int, data: Input[Dataset], model: Output[Model]):
        import os, time
        os.makedirs(model.path, exist_ok=True)
        progress = os.path.join(model.path, "progress.txt")
        done = len(open(progress).read().split()) if os.path.exists(progress) else 0
        open(ledger, "a").write(f"work from {done}\\n")
        if done:
            print(f"resumed from step {done}", flush=True)
        for step in range(done, steps):
            time.sleep(0.4)
            with open(progress, "a") as f:
                f.write(f"{step}\\n")


    @dsl.pipeline(name="toy")
    def toy(ledger: str, steps: int) -> Model:
        prep_task = prep(ledger=ledger)
        work_task = work(ledger=ledger, steps=steps, data=prep_task.outputs["out"])
        work_task.set_caching_options(False)  # as train: never served from the cache
        return work_task.outputs["model"]


    logging.basicConfig(level=logging.INFO)  # kfp.local logs its cache hits at INFO
    root, ledger, resume = sys.argv[1], sys.argv[2], (sys.argv[3:] or [None])[0]
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, enable_caching=True)
    with run_folder(check_resume_dir(resume, "toy").name) if resume else nullcontext():
        result = toy(ledger=ledger, steps=8)
    print("MODEL", result.output.path)
''')


def _run_toy(tmp_path: Path, *resume: str, kill_when=None) -> subprocess.CompletedProcess | None:
    driver = tmp_path / "toy_pipeline.py"  # KFP reads component sources from a real file
    driver.write_text(_DRIVER)
    argv = [sys.executable, str(driver), str(tmp_path / "runs"), str(tmp_path / "ledger.txt"), *resume]
    if kill_when is None:
        return subprocess.run(argv, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env(),
                            start_new_session=True)
    try:
        _wait_for(proc, kill_when, timeout=300)
    finally:
        _kill_group(proc)
    return None


def _wait_for(proc: subprocess.Popen, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before the kill"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.05)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the run and every task process it started (what a crash does)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def _progress(tmp_path: Path) -> list[str]:
    found = sorted((tmp_path / "runs").glob("toy-*/work/model/progress.txt"))
    return found[0].read_text().split() if found else []


def test_killed_run_resumed_in_its_folder_reuses_the_cache_and_the_cut_step(tmp_path):
    _run_toy(tmp_path, kill_when=lambda: len(_progress(tmp_path)) >= 3)
    [run_dir] = (tmp_path / "runs").glob("toy-*")
    cut_at = len(_progress(tmp_path))
    assert 3 <= cut_at < 8
    assert (tmp_path / "ledger.txt").read_text().split("\n")[:2] == ["prep", "work from 0"]
    assert list((tmp_path / "runs" / CACHE_DIR).glob("*.json")), "prep's cache entry was not written"

    done = _run_toy(tmp_path, str(run_dir))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # prep came from the cache; work resumed in the same folder where it stopped; no new run folder.
    assert (tmp_path / "ledger.txt").read_text().split("\n") == ["prep", "work from 0", f"work from {cut_at}", ""]
    assert f"resumed from step {cut_at}" in done.stdout
    output = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # kfp.local's colours
    assert [m.group(1) for m in CACHE_HIT.finditer(output)] == ["prep"]
    assert "Executing task 'prep'" not in output and "Executing task 'work'" in output
    assert _progress(tmp_path) == [str(i) for i in range(8)]  # every step once
    assert sorted(p.name for p in (tmp_path / "runs").glob("toy-*")) == [run_dir.name]
    assert f"MODEL {run_dir / 'work' / 'model'}" in done.stdout

    again = _run_toy(tmp_path)  # a plain rerun: a new folder, prep still cached, work from scratch
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "ledger.txt").read_text().split("\n")[3:] == ["work from 0", ""]
    assert len(list((tmp_path / "runs").glob("toy-*"))) == 2


def test_resume_dir_must_be_a_run_folder_of_the_pipeline(tmp_path):
    with pytest.raises(PipelineError, match=r"^--resume .*nowhere: no such run folder \(a folder under the "
                                            r"pipeline root named tlt-detection-<timestamp>\)$"):
        check_resume_dir(tmp_path / "nowhere", "tlt-detection")
    other = tmp_path / "tlt-classification-2026-11-28-12-00-00-123456"
    other.mkdir()
    with pytest.raises(PipelineError, match=r"not a run folder of pipeline tlt-detection \(expected a name "
                                            r"like tlt-detection-2026-01-31-12-00-00-000000\)$"):
        check_resume_dir(other, "tlt-detection")
    mine = tmp_path / "tlt-detection-2026-11-28-12-00-00-123456"
    mine.mkdir()
    assert check_resume_dir(mine, "tlt-detection") == mine.resolve()


def test_run_folder_is_restored_after_the_block():
    from kfp.local import executor_input_utils

    original = executor_input_utils.get_local_pipeline_resource_name
    with pytest.raises(RuntimeError):
        with run_folder("tlt-detection-2026-11-28-12-00-00-123456"):
            assert executor_input_utils.get_local_pipeline_resource_name("tlt-detection") == \
                "tlt-detection-2026-11-28-12-00-00-123456"
            raise RuntimeError("a failed run")
    assert executor_input_utils.get_local_pipeline_resource_name is original
    assert original("tlt-detection").startswith("tlt-detection-20")
