"""Champion/challenger: promote a retrained model only when it is better by a margin.

Both models are evaluated on the same held-out set; the challenger is promoted when its metric
(higher is better) exceeds the champion's by at least ``margin`` (absolute, e.g. 0.01 = one
point of mAP). A tie never promotes, whatever the margin. With no champion (the first run) the
challenger is promoted and the reason says so. The decision renders to JSON and Markdown/HTML for
the run's report; moving the registry's ``production`` alias is the pipeline's job.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from tlt.errors import PipelineError, SpecError
from tlt.gates.metrics import read_metric
from tlt.gates.report import format_value

__all__ = ["PromotionDecision", "decide_promotion", "promotion_report_html"]

# Metrics are floats computed on the same set: differences below this are ties.
_TIE = 1e-9

Metrics = Mapping[str, Any] | str | float | None


@dataclass(frozen=True)
class PromotionDecision:
    """What to do with the challenger, and why.

    Attributes:
        promote: move ``production`` to the challenger.
        reason: one line with both values, the difference and the margin.
        metric: the metric compared.
        challenger: the challenger's value.
        champion: the champion's value (None on the first run).
        margin: the improvement required.
        first_run: there was no champion.
    """

    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    margin: float
    first_run: bool

    @property
    def action(self) -> str:
        """``promote`` or ``keep``."""
        return "promote" if self.promote else "keep"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with ``action``."""
        return {**asdict(self), "action": self.action}

    def to_json(self) -> str:
        """`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_markdown(self) -> str:
        """A short Markdown fragment: the decision in bold and the reason."""
        return f"**Promotion: {self.action}.** {self.reason}\n"

    def to_html(self) -> str:
        """A short HTML fragment with the decision and the reason."""
        return (f"<section class=\"promotion\"><p><strong>Promotion: {self.action}.</strong> "
                f"{html.escape(self.reason)}</p></section>\n")


def _check_margin(margin: Any) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) \
            or not math.isfinite(margin) or margin < 0:
        raise SpecError(f"promotion margin must be a number >= 0, got {margin!r}", field="margin")
    return float(margin)


def _check_same_set(challenger_set: str | None, champion_set: str | None) -> None:
    if challenger_set and champion_set and challenger_set != champion_set:
        raise PipelineError(f"challenger was evaluated on {challenger_set} but the champion on "
                            f"{champion_set}: compare both on the same held-out set")


def decide_promotion(challenger: Metrics, champion: Metrics = None, *, metric: str = "mAP",
                     margin: float = 0.01, challenger_set: str | None = None,
                     champion_set: str | None = None) -> PromotionDecision:
    """Decide whether the challenger replaces the champion.

    Args:
        challenger: the challenger's metrics (dict or its JSON) or its metric value.
        champion: the champion's, likewise; None when there is no production model yet.
        metric: the metric compared (higher is better): ``mAP`` or ``accuracy``.
        margin: the least improvement that promotes (absolute; 0 = any improvement).
        challenger_set: the held-out set the challenger was evaluated on (URI or digest).
        champion_set: the champion's; when both are given they must be equal.

    Returns:
        A `PromotionDecision`.

    Raises:
        SpecError: a margin that is negative or not a number.
        PipelineError: a missing or non-numeric metric (naming whose), or different held-out sets.
    """
    margin = _check_margin(margin)
    new = read_metric(challenger, metric, "challenger")
    if champion is None:
        return PromotionDecision(True, f"no production model yet (first run): challenger "
                                 f"promoted with {metric} {format_value(new)}", metric, new,
                                 None, margin, True)
    _check_same_set(challenger_set, champion_set)
    old = read_metric(champion, metric, "champion")
    promote, reason = _compare(new, old, margin, metric)
    return PromotionDecision(promote, reason, metric, new, old, margin, False)


def _compare(new: float, old: float, margin: float, metric: str) -> tuple[bool, str]:
    fmt, delta = format_value, new - old
    if abs(delta) <= _TIE:
        return False, (f"tie: challenger and champion both have {metric} {fmt(old)}; champion "
                       f"kept (promotion needs +{fmt(margin)})")
    if delta > 0 and delta >= margin - _TIE:
        return True, (f"challenger {metric} {fmt(new)} beats champion {fmt(old)} by "
                      f"+{fmt(delta)} >= margin {fmt(margin)}: challenger promoted")
    if delta > 0:
        return False, (f"challenger {metric} {fmt(new)} beats champion {fmt(old)} by only "
                       f"+{fmt(delta)} < margin {fmt(margin)}: champion kept")
    return False, (f"challenger {metric} {fmt(new)} is below champion {fmt(old)} "
                   f"({fmt(delta)}): champion kept")


def promotion_report_html(decision: PromotionDecision, facts: Mapping[str, Any]) -> str:
    """A whole HTML page for the Kubeflow UI: the decision, its reason and a table of ``facts``.

    Args:
        decision: the decision.
        facts: rows shown under it (model, champion and challenger versions, held-out set ...),
            in order; None values show as ``none``.
    """
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th>"
                   f"<td>{html.escape('none' if v is None else format_value(v))}</td></tr>"
                   for k, v in facts.items())
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Champion / challenger"
            "</title></head><body><h1>Champion / challenger</h1>"
            f"{decision.to_html()}<table>{rows}</table></body></html>\n")
