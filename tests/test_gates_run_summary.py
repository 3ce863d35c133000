"""The ExitHandler's run summary (tlt.gates.run_summary)."""

from __future__ import annotations

import json
import os

import pytest

from tlt.errors import PipelineError
from tlt.gates.run_summary import (
    TaskStatus, build_run_summary, parse_task_statuses, task_status_from_status_json,
    write_run_summary,
)
from tlt.status import StatusWriter

TRACEBACK = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
             "tlt.errors.DataError: labels/000003.txt:2: 14 fields, expected 15\n")


def test_failed_run_summary_files(tmp_path):
    tasks = [{"name": "convert", "state": "SUCCEEDED", "seconds": 12.5},
             json.dumps({"name": "train", "status": "failed", "duration": "95",
                         "message": TRACEBACK}),
             TaskStatus.of("export", "skipped")]
    summary = write_run_summary(tmp_path / "out", "detection", tasks, run_id="run-7",
                                metrics={"mAP": 0.4321, "num_frames": 60, "bad": float("nan")},
                                notes=["data gate passed (5 checks)"])
    assert summary["state"] == "FAILED"
    assert summary["error"] == "train: tlt.errors.DataError: labels/000003.txt:2: 14 fields, expected 15"
    assert [t["state"] for t in summary["tasks"]] == ["SUCCEEDED", "FAILED", "SKIPPED"]
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["metrics"]["bad"] is None and on_disk["tasks"][1]["seconds"] == 95.0
    md = (tmp_path / "out" / "summary.md").read_text()
    assert md.startswith("# detection: FAILED\n")
    assert "| train | FAILED | 1m35s | tlt.errors.DataError: labels/000003.txt:2: 14 fields" in md
    assert "| convert | SUCCEEDED | 12.5s |  |" in md and "| mAP | 0.4321 |" in md
    page = (tmp_path / "out" / "summary.html").read_text()
    assert "<h1>detection: FAILED</h1>" in page and "<p>data gate passed (5 checks)</p>" in page
    assert sorted(os.listdir(tmp_path / "out")) == ["summary.html", "summary.json", "summary.md"]


def test_state_from_kfp_final_status_wins():
    tasks = [TaskStatus.of("train", "SUCCEEDED", 3)]
    summary = build_run_summary("retraining", tasks, final_state="CANCELED",
                                error="run was cancelled by user\n")
    assert (summary["state"], summary["error"]) == ("CANCELED", "run was cancelled by user")
    assert build_run_summary("retraining", tasks)["state"] == "SUCCEEDED"


def test_status_json_of_an_interrupted_stage(tmp_path):
    status = StatusWriter(tmp_path / "train", "train")
    status.interrupted("SIGTERM received")
    task = task_status_from_status_json(tmp_path / "train" / "status.json")
    assert (task.name, task.state, task.error) == ("train", "CANCELED", "SIGTERM received")
    assert task.seconds is not None and task.seconds >= 0
    done = StatusWriter(tmp_path / "convert", "convert")
    done.done(message="wrote 2 shard(s)")
    task = task_status_from_status_json(tmp_path / "convert" / "status.json")
    assert (task.state, task.error) == ("SUCCEEDED", None)


def test_bad_inputs_are_one_line(tmp_path):
    with pytest.raises(PipelineError, match=r"^task status 0 is \{'state': 'FAILED'\}, expected "
                                            r"an object with a name"):
        parse_task_statuses([{"state": "FAILED"}])
    with pytest.raises(PipelineError, match=r"^task statuses 'not json' is not JSON$"):
        parse_task_statuses("not json")
    with pytest.raises(PipelineError, match=r"task train: duration -4, expected seconds >= 0"):
        TaskStatus.of("train", "failed", -4)
    with pytest.raises(PipelineError, match=r"missing/status.json: cannot read the task status"):
        task_status_from_status_json(tmp_path / "missing" / "status.json")
    long = TaskStatus.of("x", "failed", error="e" * 400)
    assert len(long.error) == 300 and long.error.endswith("...")
