"""The quality gate: a trained model goes on to export and engine build only when good enough.

Its reason names the metric, the value and the threshold, and what the pipeline does next::

    mAP 0.43 < threshold 0.50: export and engine build skipped
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tlt.errors import PipelineError, SpecError
from tlt.gates.metrics import default_metric, read_metric
from tlt.gates.report import Check, GateReport, format_value

__all__ = ["quality_gate", "gate_model_folder", "gate_markdown"]


def quality_gate(metrics: Mapping[str, Any] | str | float, *, metric: str = "mAP",
                 threshold: float = 0.5, gated: str = "export and engine build") -> GateReport:
    """Check that a model's ``metric`` reaches ``threshold`` (higher is better; equal passes).

    Args:
        metrics: the evaluation's metrics (dict or its JSON), or the metric's value itself.
        metric: ``mAP`` (detection), ``accuracy`` (classification) or any other key.
        threshold: the lowest passing value.
        gated: what runs only when the gate passes, named in the reason.

    Returns:
        A ``quality`` `GateReport` with one check named after the metric; ``details`` holds the
        metric, value, threshold and the verdict for the pipeline's branch.

    Raises:
        SpecError: a threshold that is not a number.
        PipelineError: the metric is missing from ``metrics`` or not a number.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or threshold != threshold:
        raise SpecError(f"quality gate threshold must be a number, got {threshold!r}",
                        field="threshold")
    value = read_metric(metrics, metric)
    passed = value >= threshold
    verdict = f"{gated} {'run' if passed else 'skipped'}"
    reason = (f"{metric} {format_value(value)} {'>=' if passed else '<'} threshold "
              f"{format_value(float(threshold))}: {verdict}")
    details = {"metric": metric, "value": value, "threshold": float(threshold),
               "passed": passed, "gated": gated}
    return GateReport("quality", [Check(metric, value, float(threshold), passed, reason)], details)


def gate_model_folder(folder: str | Path, *, task: str, threshold: float, metric: str = "",
                      gated: str = "export and engine build") -> GateReport:
    """`quality_gate` on an evaluated model's artifact folder (its ``metadata.json``).

    The folder is an evaluate stage's ``scored_model`` or a prune sweep's pick, whose metadata
    holds the metric in % (``accuracy`` or ``mAP``); ``details`` also names the model file.

    Args:
        folder: the artifact folder.
        task: ``classification`` or ``detection`` (the default metric).
        threshold: the lowest passing value, in %.
        metric: the metric's key; empty for the task's.
        gated: what runs only when the gate passes.

    Raises:
        PipelineError: no ``metadata.json`` or no such metric in it.
        SpecError: a threshold that is not a number.
    """
    from tlt.artifacts import read_metadata

    meta = read_metadata(folder)
    if not meta:
        raise PipelineError(f"{folder}: no metadata.json (expected an evaluated model)")
    name = metric or default_metric(task)
    value = read_metric(meta, name, owner=f"model {meta.get('model', Path(folder).name)}")
    report = quality_gate(value, metric=name, threshold=threshold, gated=gated)
    report.details["model"] = meta.get("model")
    return report


def gate_markdown(report: GateReport, title: str = "Quality gate") -> str:
    """The gate's page: a title, the verdict and the checks table."""
    return f"# {title}\n\n{report.to_markdown()}"
