"""Reading one metric out of what a pipeline step passes on (dict, JSON text or a bare number).

Values crossing a Kubeflow step boundary arrive in many shapes: a Metrics artifact's metadata
dict, its JSON text, a float output, or a string of one. Every gate reads them through
`read_metric` so a missing or non-numeric metric is one clear line naming whose it is.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from tlt.errors import PipelineError

__all__ = ["TASK_METRICS", "default_metric", "read_metric", "to_number"]

#: The one number each task is judged by (`tlt.orchestration.adapters` reports both).
TASK_METRICS = {"classification": "accuracy", "detection": "mAP"}


def default_metric(task: str) -> str:
    """``accuracy`` for classification, ``mAP`` for detection.

    Raises:
        PipelineError: an unknown task.
    """
    try:
        return TASK_METRICS[task]
    except KeyError:
        raise PipelineError(f"unknown task {task!r}, expected one of "
                            f"{', '.join(TASK_METRICS)}") from None


def to_number(value: Any, what: str) -> float:
    """A finite float from a number or numeric string (``"0.5"``, ``0.5``, ``1``).

    Raises:
        PipelineError: ``what is <value>, expected a number`` (None, text, NaN, infinity, bool).
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PipelineError(f"{what} is {value!r}, expected a number")
    return float(value)


def read_metric(metrics: Mapping[str, Any] | str | float | int | None, metric: str,
                owner: str = "model") -> float:
    """The value of ``metric`` in ``metrics``.

    Args:
        metrics: a dict of metrics, its JSON text, or the bare value itself.
        metric: the metric's name (``mAP``, ``accuracy`` ...).
        owner: whose metrics, for messages (``challenger``, ``champion``).

    Raises:
        PipelineError: no such metric (the names found are listed) or a non-numeric value.
    """
    if isinstance(metrics, str):
        try:
            metrics = json.loads(metrics)
        except ValueError:
            raise PipelineError(f"{owner} metrics {metrics[:60]!r} are neither JSON nor a "
                                "number") from None
    if metrics is None:
        raise PipelineError(f"{owner} has no metrics, expected {metric!r}")
    if not isinstance(metrics, Mapping):
        return to_number(metrics, f"{owner} {metric}")
    if metric not in metrics:
        found = ", ".join(sorted(str(k) for k in metrics)) or "none"
        raise PipelineError(f"{owner} metrics have no {metric!r} (found: {found})")
    return to_number(metrics[metric], f"{owner} {metric}")
