"""The quality gate (tlt.gates.quality_gate) and metric reading (tlt.gates.metrics)."""

from __future__ import annotations

import json

import pytest

from tlt.errors import PipelineError, SpecError
from tlt.gates.metrics import default_metric, read_metric
from tlt.gates.quality_gate import quality_gate
from tlt.gates.report import GateError, require


def test_below_threshold_names_metric_value_threshold_and_what_is_skipped():
    report = quality_gate({"mAP": 0.43, "mAP_easy": 0.6}, metric="mAP", threshold=0.5)
    assert not report.passed
    assert report.checks[0].reason == "mAP 0.43 < threshold 0.50: export and engine build skipped"
    assert report.details == {"metric": "mAP", "value": 0.43, "threshold": 0.5, "passed": False,
                              "gated": "export and engine build"}
    with pytest.raises(GateError, match=r"^quality gate failed: mAP 0.43 < threshold 0.50: "
                                        r"export and engine build skipped$"):
        require(report)


def test_reaching_the_threshold_passes():
    report = quality_gate('{"accuracy": 0.5, "loss": 1.2}', metric="accuracy", threshold=0.5)
    assert report.passed
    assert report.checks[0].reason == ("accuracy 0.50 >= threshold 0.50: export and engine "
                                       "build run")
    assert quality_gate(0.8125, metric="accuracy", threshold=0.75).checks[0].reason == (
        "accuracy 0.8125 >= threshold 0.75: export and engine build run")
    # Kubeflow passes floats through as strings at times
    assert quality_gate("0.61", threshold=0.6).passed
    assert json.loads(report.to_json())["checks"][0]["value"] == 0.5


def test_missing_or_broken_metric_is_one_clear_line():
    with pytest.raises(PipelineError, match=r"^model metrics have no 'mAP' \(found: accuracy, "
                                            r"loss\)$"):
        quality_gate({"accuracy": 0.9, "loss": 0.1})
    with pytest.raises(PipelineError, match=r"^model mAP is nan, expected a number$"):
        quality_gate({"mAP": float("nan")})
    with pytest.raises(PipelineError, match=r"^challenger mAP is 'n/a', expected a number$"):
        read_metric({"mAP": "n/a"}, "mAP", "challenger")
    with pytest.raises(SpecError, match=r"threshold must be a number, got 'high'"):
        quality_gate({"mAP": 0.5}, threshold="high")


def test_task_default_metric():
    assert default_metric("classification") == "accuracy"
    assert default_metric("detection") == "mAP"
    with pytest.raises(PipelineError, match="unknown task 'segmentation'"):
        default_metric("segmentation")


def test_passed_summary_counts_its_checks_in_words():
    from tlt.gates.report import Check, GateReport

    one = GateReport("quality", [Check("mAP", 85.5, 10.0, True, "mAP 85.5 >= 10")])
    assert one.summary() == "quality gate passed (1 check)"
    two = GateReport("data", [Check("a", 0, 1, True, "ok"), Check("b", 0, 1, True, "ok")])
    assert two.summary() == "data gate passed (2 checks)"
