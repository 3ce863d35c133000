"""Following a local run as it goes: kfp.local's output to the run's log, one progress line per
task, each task's wall time and its one-line error."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import TextIO

from tlt.orchestration.entrypoints import STAGE_FAILED_MARK
from tlt.orchestration.local_resume import CACHE_HIT
from tlt.orchestration.local_results import StepResult, format_seconds

__all__ = ["RunWatcher", "base_name", "failure_line"]


# kfp.local's own lines about a task (after colour codes are removed), and the line
# `run_component` logs when a stage fails: the one line a user needs, not the executor's traceback.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_STARTED = re.compile(r"Executing task '([^']+)'")
_TASK_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_STAGE_FAILED = re.compile(re.escape(STAGE_FAILED_MARK) + r" (\S+): (.*)$")
# Last resort for a failure before `run_component` runs (e.g. an import error): the final line of
# a Python traceback, "package.module.SomeError: message".
_EXCEPTION_LINE = re.compile(r"^\s*((?:\w+\.)*\w*(?:Error|Exception|Interrupted)\b.*)$")


class RunWatcher(io.TextIOBase):
    """Receives kfp.local's output: keeps all of it in the log, times each task, finds its error.

    Args:
        log: the run's log file (receives everything, without colour codes).
        echo: a stream that also receives everything (``tlt-pipeline run -v``), or None.
        progress: a stream that receives a line when a task starts and when it ends, or None.
        total: number of tasks in the pipeline (for the ``[i/n]`` counter).
    """

    def __init__(self, log: TextIO, echo: TextIO | None, progress: TextIO | None, total: int):
        self._log, self._echo, self._progress, self._total = log, echo, progress, total
        self._pending = ""
        self._current: str | None = None
        self._started = 0.0
        # Task -> the stage's own error line; task -> the last traceback line (a fallback).
        self._stage_errors: dict[str, str] = {}
        self._traceback_errors: dict[str, str] = {}
        self.steps: list[StepResult] = []

    def write(self, text: str) -> int:
        clean = _ANSI.sub("", text)
        self._log.write(clean)
        self._log.flush()
        if self._echo is not None:
            self._echo.write(text)
        *lines, self._pending = (self._pending + clean).split("\n")
        for line in lines:
            self._observe(line)
        return len(text)

    def flush(self) -> None:
        self._log.flush()
        if self._echo is not None:
            self._echo.flush()

    def _observe(self, line: str) -> None:
        if match := _TASK_STARTED.search(line):
            self._current, self._started = match.group(1), time.monotonic()
            self._say(f"[{len(self.steps) + 1}/{self._total}] {self._current} running ...")
        elif match := CACHE_HIT.search(line):  # kfp.local reused an earlier run's outputs
            self.steps.append(StepResult(match.group(1), "cached", 0.0))
            self._say(f"[{len(self.steps)}/{self._total}] {match.group(1)} reused from an earlier run")
        elif match := _TASK_FINISHED.search(line):
            self._finish(match.group(1), "succeeded" if match.group(2) == "SUCCESS" else "failed")
        elif self._current is not None and (match := _STAGE_FAILED.search(line)):
            self._stage_errors[self._current] = match.group(2).strip()
        elif self._current is not None and (match := _EXCEPTION_LINE.match(line)):
            self._traceback_errors[self._current] = match.group(1).strip()

    def _finish(self, name: str, status: str) -> None:
        seconds = time.monotonic() - self._started
        error = None
        if status == "failed":  # the stage's own line wins over the traceback printed after it
            error = self._stage_errors.get(name) or self._traceback_errors.get(name)
        # A loop's task runs once per item: the later iterations are named "<task> #2", "#3" ...
        runs = sum(1 for s in self.steps if base_name(s.name) == name)
        shown = f"{name} #{runs + 1}" if runs else name
        self.steps.append(StepResult(shown, status, seconds, error))
        self._current = None
        self._say(f"[{len(self.steps)}/{self._total}] {shown} {status} in {format_seconds(seconds)}")

    def _say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.write(text + "\n")
            self._progress.flush()


def base_name(step: str) -> str:
    """The task name of a step (``prune #2`` -> ``prune``)."""
    return step.split(" #")[0]


def failure_line(pipeline: str, steps: list[StepResult], log_file: Path) -> str:
    """The one line a failed run ends with: the first failed step and its error, and the log."""
    step = next((s for s in steps if s.status == "failed"), None)
    if step is None:
        return f"local run of pipeline {pipeline} failed (log: {log_file})"
    reason = step.error or "see the log for the traceback"
    return f"pipeline {pipeline}: step {step.name} failed: {reason} (log: {log_file})"
