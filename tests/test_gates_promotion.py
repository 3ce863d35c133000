"""Champion/challenger promotion (tlt.gates.promotion)."""

from __future__ import annotations

import json

import pytest

from tlt.errors import PipelineError, SpecError
from tlt.gates.promotion import decide_promotion


def test_first_run_promotes_and_says_so():
    decision = decide_promotion({"mAP": 0.41})
    assert decision.promote and decision.first_run and decision.champion is None
    assert decision.reason == "no production model yet (first run): challenger promoted with mAP 0.41"
    assert decision.to_markdown().startswith("**Promotion: promote.** no production model yet")


@pytest.mark.parametrize("challenger, champion, promote, reason", [
    (0.55, 0.50, True, "challenger mAP 0.55 beats champion 0.50 by +0.05 >= margin 0.01: "
                       "challenger promoted"),
    # exactly the margin promotes, although 0.03 - 0.02 = 0.009999999999999998 in floats
    (0.03, 0.02, True, "challenger mAP 0.03 beats champion 0.02 by +0.01 >= margin 0.01: "
                       "challenger promoted"),
    (0.505, 0.50, False, "challenger mAP 0.5050 beats champion 0.50 by only +0.0050 < margin "
                         "0.01: champion kept"),
    (0.50, 0.50, False, "tie: challenger and champion both have mAP 0.50; champion kept "
                        "(promotion needs +0.01)"),
    (0.45, 0.50, False, "challenger mAP 0.45 is below champion 0.50 (-0.05): champion kept"),
])
def test_margin_decides(challenger, champion, promote, reason):
    decision = decide_promotion({"mAP": challenger}, {"mAP": champion}, margin=0.01)
    assert decision.promote is promote
    assert decision.reason == reason
    assert decision.action == ("promote" if promote else "keep")


def test_tie_never_promotes_even_with_zero_margin():
    assert not decide_promotion(0.7, 0.7, metric="accuracy", margin=0).promote
    assert decide_promotion(0.7001, 0.7, metric="accuracy", margin=0).promote


def test_missing_metrics_and_bad_inputs_are_clear():
    with pytest.raises(PipelineError, match=r"^champion metrics have no 'mAP' \(found: "
                                            r"accuracy\)$"):
        decide_promotion({"mAP": 0.5}, {"accuracy": 0.9})
    with pytest.raises(PipelineError, match=r"^challenger has no metrics, expected 'mAP'$"):
        decide_promotion(None, {"mAP": 0.5})
    with pytest.raises(SpecError, match=r"margin must be a number >= 0, got -0.1"):
        decide_promotion(0.5, 0.4, margin=-0.1)
    with pytest.raises(PipelineError, match=r"evaluated on s3://b/holdout-2 but the champion "
                                            r"on s3://b/holdout-1: compare both on the same"):
        decide_promotion(0.6, 0.5, challenger_set="s3://b/holdout-2",
                         champion_set="s3://b/holdout-1")


def test_decision_renders():
    decision = decide_promotion('{"mAP": 0.62}', '{"mAP": 0.5}', margin=0.05)
    data = json.loads(decision.to_json())
    assert data["action"] == "promote" and data["champion"] == 0.5 and data["margin"] == 0.05
    assert "<strong>Promotion: promote.</strong> challenger mAP 0.62 beats" in decision.to_html()


def test_promotion_report_page_shows_the_decision_and_facts_escaped():
    from tlt.gates.promotion import promotion_report_html

    decision = decide_promotion({"mAP": 61.5}, {"mAP": 61.0}, margin=1.0)
    page = promotion_report_html(decision, {"model": "a<b", "champion mAP": 61.0,
                                            "previous version": None})
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert "<strong>Promotion: keep.</strong> challenger mAP 61.50 beats champion 61.00 by only " \
           "+0.50 &lt; margin 1.00: champion kept" in page
    assert "<th>model</th><td>a&lt;b</td>" in page and "<th>champion mAP</th><td>61.00</td>" in page
    assert "<th>previous version</th><td>none</td>" in page
