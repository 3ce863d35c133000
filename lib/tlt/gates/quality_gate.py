"""The quality gate: a trained model goes on to export and engine build only when good enough.

Its reason names the metric, the value and the threshold, and what the pipeline does next::

    mAP 0.43 < threshold 0.50: export and engine build skipped
"""

from __future__ import annotations

from typing import Any, Mapping

from tlt.errors import SpecError
from tlt.gates.metrics import read_metric
from tlt.gates.report import Check, GateReport, format_value

__all__ = ["quality_gate"]


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
