"""Prune-sweep pick (tlt.gates.sweep): smallest model within a tolerance of the best."""

from __future__ import annotations

import json

import pytest

from tlt.errors import PipelineError, SpecError
from tlt.gates.sweep import SweepCandidate, candidates_from_columns, parse_candidates, pick_smallest

TABLE = [
    {"threshold": 0.1, "params": 11_000_000, "size": 44_000_000, "metric": 0.920},
    {"threshold": 0.3, "params": 6_500_000, "size": 26_000_000, "metric": 0.914},
    {"threshold": 0.5, "params": 3_200_000, "size": 12_800_000, "metric": 0.905},
    {"threshold": 0.7, "params": 1_100_000, "size": 4_400_000, "metric": 0.830},
]


def test_pick_on_a_table():
    pick = pick_smallest(TABLE, tolerance=0.02)
    assert pick.chosen.threshold == 0.5 and pick.best.threshold == 0.1
    assert pick.reason == ("threshold 0.5 kept: 3,200,000 params (71% fewer than the best, "
                           "threshold 0.1), metric 0.9050 within 0.02 of the best 0.92")
    assert pick_smallest(TABLE, tolerance=0.01).chosen.threshold == 0.3
    assert pick_smallest(TABLE, tolerance=0.0).chosen.threshold == 0.1
    assert pick_smallest(TABLE, tolerance=0.1).chosen.threshold == 0.7
    assert pick_smallest(TABLE, tolerance=0.0).reason.startswith(
        "threshold 0.1 kept: the best metric 0.92 with 11,000,000 params")
    md = pick.to_markdown()
    assert "| 0.5 | 3,200,000 | 12,800,000 | 0.9050 | yes |" in md
    assert json.loads(pick.to_json())["chosen"]["params"] == 3_200_000


def test_tolerance_boundary_is_inclusive_despite_float_error():
    rows = [{"threshold": 0.1, "params": 10, "metric": 0.3}, {"threshold": 0.2, "params": 5,
                                                                "metric": 0.2}]
    assert pick_smallest(rows, tolerance=0.1).chosen.threshold == 0.2  # 0.3 - 0.1 = 0.19999...


def test_ties_are_deterministic():
    rows = [{"threshold": 0.4, "params": 100, "size": 900, "metric": 0.8},
            {"threshold": 0.3, "params": 100, "size": 800, "metric": 0.8},
            {"threshold": 0.2, "params": 100, "size": 800, "metric": 0.81}]
    assert pick_smallest(rows, tolerance=0.05).chosen.threshold == 0.2


def test_collected_shapes_json_strings_and_floats():
    # dsl.Collected delivers floats (params 6500000.0) and strings; a list may come as JSON text
    as_text = json.dumps([json.dumps(r) for r in TABLE])
    assert [c.threshold for c in parse_candidates(as_text)] == [0.1, 0.3, 0.5, 0.7]
    columns = candidates_from_columns(
        thresholds="[0.1, 0.3, 0.5]", params=[11000000.0, "6500000", 3200000.0],
        metrics=["0.92", 0.914, "0.905"], models=["gs://b/p1", "gs://b/p3", "gs://b/p5"])
    assert columns[1] == SweepCandidate(0.3, 6_500_000, 0.914, None, "gs://b/p3")
    assert pick_smallest(columns, tolerance=0.01).chosen.model == "gs://b/p3"
    assert parse_candidates([{"threshold": "0.2", "params": 5, "accuracy": "0.5"}],
                            metric_key="accuracy")[0].metric == 0.5


def test_malformed_sweeps_are_one_line():
    with pytest.raises(PipelineError, match=r"^the prune sweep has no candidates to pick from$"):
        pick_smallest([])
    with pytest.raises(PipelineError, match=r"^sweep candidate 1 has no 'params' \(found: "
                                            r"metric, threshold\)$"):
        pick_smallest([TABLE[0], {"threshold": 0.3, "metric": 0.9}])
    with pytest.raises(PipelineError, match=r"sweep candidate 0 params is 12.5, expected a "
                                            r"whole number >= 0"):
        parse_candidates([{"threshold": 0.1, "params": 12.5, "metric": 0.9}])
    with pytest.raises(PipelineError, match=r"sweep candidate 0 metric is 'bad', expected a "
                                            r"number"):
        parse_candidates([{"threshold": 0.1, "params": 12, "metric": "bad"}])
    with pytest.raises(PipelineError, match=r"^sweep columns differ in length: threshold 2, "
                                            r"params 1, metric 2$"):
        candidates_from_columns([0.1, 0.2], [5], [0.5, 0.6])
    with pytest.raises(SpecError, match=r"tolerance must be a number >= 0, got -0.01"):
        pick_smallest(TABLE, tolerance=-0.01)
