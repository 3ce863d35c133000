"""The run summary an ExitHandler writes, whether the pipeline succeeded or a step failed.

Input: each task's name, state, duration and error line (from kfp's ``PipelineTaskFinalStatus``,
a step's ``status.json`` or a local run), the key metrics and the gate/promotion verdicts.
Output, each file written atomically: ``summary.json`` (for machines), ``summary.md`` and
``summary.html`` (for people and the Kubeflow UI).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from tlt.errors import PipelineError
from tlt.gates.report import json_safe
from tlt.io.atomic import atomic_write_text

__all__ = ["TaskStatus", "parse_task_statuses", "task_status_from_status_json",
           "task_statuses_from_argo_failures", "build_run_summary", "write_run_summary"]

# Every spelling a state arrives in (kfp, Argo, status.json) -> the one the summary shows.
_STATES = {"done": "SUCCEEDED", "success": "SUCCEEDED", "succeeded": "SUCCEEDED",
           "failed": "FAILED", "failure": "FAILED", "error": "FAILED",
           "interrupted": "CANCELED", "cancelled": "CANCELED", "canceled": "CANCELED",
           "skipped": "SKIPPED", "omitted": "SKIPPED", "running": "RUNNING", "cached": "CACHED"}
_BAD = ("FAILED", "CANCELED")
_NO_TASKS = "No step states reported (each step's state and logs are in the run's page)."
_MAX_ERROR = 300


def _state(value: Any) -> str:
    text = str(value or "UNKNOWN").strip()
    return _STATES.get(text.lower(), text.upper())


def _one_line(error: Any) -> str | None:
    """The last non-empty line (a traceback ends with its message), at most 300 characters."""
    if error is None or str(error).strip() == "":
        return None
    line = [ln.strip() for ln in str(error).splitlines() if ln.strip()][-1]
    return line if len(line) <= _MAX_ERROR else line[:_MAX_ERROR - 3] + "..."


@dataclass(frozen=True)
class TaskStatus:
    """How one pipeline task ended.

    Attributes:
        name: the task's name (the stage name in this project's DAGs).
        state: ``SUCCEEDED``, ``FAILED``, ``SKIPPED``, ``CANCELED``, ``CACHED`` ... (upper case).
        seconds: wall time, when known.
        error: its one-line error, when it failed.
    """

    name: str
    state: str
    seconds: float | None = None
    error: str | None = None

    @classmethod
    def of(cls, name: str, state: Any, seconds: Any = None, error: Any = None) -> "TaskStatus":
        """A status with the state normalised, the duration a float and the error one line."""
        secs = None if seconds in (None, "") else float(seconds)
        if secs is not None and not (math.isfinite(secs) and secs >= 0):
            raise PipelineError(f"task {name}: duration {seconds!r}, expected seconds >= 0")
        return cls(str(name), _state(state), secs, _one_line(error))


def parse_task_statuses(raw: Iterable[Any] | str) -> list[TaskStatus]:
    """Task statuses from `TaskStatus` objects, dicts or their JSON texts, or a JSON list.

    Dict keys: ``name``, ``state`` (or ``status``), ``seconds`` (or ``duration``), ``error``
    (or ``message``).

    Raises:
        PipelineError: malformed input, naming the entry.
    """
    items = _json(raw, "task statuses") if isinstance(raw, str) else raw
    out = []
    for i, item in enumerate(items):
        if isinstance(item, TaskStatus):
            out.append(item)
            continue
        item = _json(item, f"task status {i}") if isinstance(item, str) else item
        if not isinstance(item, Mapping) or not item.get("name"):
            raise PipelineError(f"task status {i} is {item!r}, expected an object with a name "
                                "and a state")
        out.append(TaskStatus.of(item["name"], item.get("state", item.get("status")),
                                 item.get("seconds", item.get("duration")),
                                 item.get("error", item.get("message"))))
    return out


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise PipelineError(f"{what} {text[:60]!r} is not JSON") from None


def task_status_from_status_json(path: str | Path, name: str | None = None) -> TaskStatus:
    """A task's status from the ``status.json`` its stage wrote (`tlt.status.StatusWriter`).

    Raises:
        PipelineError: the file is missing or not a status object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: cannot read the task status ({err})") from None
    if not isinstance(data, Mapping):
        raise PipelineError(f"{path}: expected a JSON object with stage and state")
    started, updated = data.get("started"), data.get("updated")
    seconds = updated - started if isinstance(started, (int, float)) and isinstance(
        updated, (int, float)) and updated >= started else None
    state = _state(data.get("state"))
    return TaskStatus.of(name or data.get("stage", Path(path).parent.name), state, seconds,
                         data.get("message") if state in _BAD else None)


def task_statuses_from_argo_failures(text: str) -> list[TaskStatus]:
    """The failed steps of an Argo workflow from the JSON of ``{{workflow.failures}}``.

    Each entry has ``displayName``, ``phase`` (Failed, Error) and ``message``; an empty text
    (a workflow without failures, or Kubeflow, which has no such variable) gives no statuses.

    Raises:
        PipelineError: text that is not a JSON list of such objects.
    """
    if not text or not text.strip() or text.strip() == "null":
        return []
    items = _json(text, "workflow failures")
    if not isinstance(items, list):
        raise PipelineError(f"workflow failures {text[:60]!r}: expected a JSON list")
    return parse_task_statuses(
        [{"name": i.get("displayName") or i.get("templateName"), "state": i.get("phase"),
          "error": i.get("message")} if isinstance(i, Mapping) else i for i in items])


def build_run_summary(pipeline: str, tasks: Iterable[TaskStatus], *,
                      metrics: Mapping[str, Any] | None = None, run_id: str | None = None,
                      final_state: str | None = None, error: str | None = None,
                      notes: Iterable[str] = ()) -> dict[str, Any]:
    """The summary as plain data.

    Args:
        pipeline: the pipeline's name.
        tasks: how each task ended, in DAG order.
        metrics: key numbers (mAP, accuracy, pruning ratio, engine size ...).
        run_id: the run's id or job resource name.
        final_state: the pipeline's state as kfp reports it; derived from the tasks when None
            (FAILED when a task failed, CANCELED when one was stopped, else SUCCEEDED).
        error: the pipeline's error message; else the first failed task's error line.
        notes: verdict lines (gate reasons, promotion decision), shown as they are.
    """
    tasks = list(tasks)
    failed = [t for t in tasks if t.state in _BAD]
    state = _state(final_state) if final_state else (failed[0].state if failed else "SUCCEEDED")
    first_error = _one_line(error) or next((f"{t.name}: {t.error}" for t in failed if t.error),
                                           None)
    return {"pipeline": pipeline, "run_id": run_id, "state": state, "error": first_error,
            "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "tasks": [asdict(t) for t in tasks], "metrics": dict(metrics or {}),
            "notes": [str(n) for n in notes]}


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    minutes, secs = divmod(int(round(value)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{value:.1f}s"


def _markdown(summary: dict[str, Any]) -> str:
    lines = [f"# {summary['pipeline']}: {summary['state']}", ""]
    if summary["error"]:
        lines += [f"**Error:** {summary['error']}", ""]
    lines += [f"- {n}" for n in summary["notes"]] + ([""] if summary["notes"] else [])
    if summary["run_id"]:
        lines += [f"Run: `{summary['run_id']}`", ""]
    if summary["tasks"]:
        lines += ["| task | state | time | error |", "|---|---|---|---|"]
        lines += [f"| {t['name']} | {t['state']} | {_seconds(t['seconds'])} | "
                  f"{(t['error'] or '').replace('|', '/')} |" for t in summary["tasks"]]
    else:  # Kubeflow's exit task sees the run's state, not each step's
        lines.append(_NO_TASKS)
    if summary["metrics"]:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_number(v)} |" for k, v in sorted(summary["metrics"].items())]
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _html(summary: dict[str, Any]) -> str:
    esc = html.escape
    parts = [f"<h1>{esc(summary['pipeline'])}: {esc(summary['state'])}</h1>"]
    if summary["error"]:
        parts.append(f"<p><strong>Error:</strong> {esc(summary['error'])}</p>")
    parts += [f"<p>{esc(n)}</p>" for n in summary["notes"]]
    rows = "".join(f"<tr><td>{esc(t['name'])}</td><td>{esc(t['state'])}</td>"
                   f"<td>{_seconds(t['seconds'])}</td><td>{esc(t['error'] or '')}</td></tr>"
                   for t in summary["tasks"])
    if rows:
        parts.append("<table><tr><th>task</th><th>state</th><th>time</th><th>error</th></tr>"
                     f"{rows}</table>")
    else:
        parts.append(f"<p>{esc(_NO_TASKS)}</p>")
    if summary["metrics"]:
        rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(_number(v))}</td></tr>"
                       for k, v in sorted(summary["metrics"].items()))
        parts.append(f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>"
            f"{esc(summary['pipeline'])} run summary</title></head><body>"
            + "".join(parts) + "</body></html>\n")


def write_run_summary(out_dir: str | Path, pipeline: str, tasks: Iterable[Any] | str,
                      **kwargs: Any) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md`` and ``summary.html`` into ``out_dir`` atomically.

    Args:
        out_dir: a local folder (an output artifact's path in a component).
        pipeline: the pipeline's name.
        tasks: anything `parse_task_statuses` accepts.
        **kwargs: ``metrics``, ``run_id``, ``final_state``, ``error``, ``notes`` as in
            `build_run_summary`.

    Returns:
        The summary written (as in ``summary.json``).
    """
    summary = build_run_summary(pipeline, parse_task_statuses(tasks), **kwargs)
    out = Path(out_dir)
    atomic_write_text(out / "summary.md", _markdown(summary))
    atomic_write_text(out / "summary.html", _html(summary))
    # JSON last: a reader that finds it finds the pages too.
    atomic_write_text(out / "summary.json",
                      json.dumps(json_safe(summary), indent=2, sort_keys=True) + "\n")
    return summary
