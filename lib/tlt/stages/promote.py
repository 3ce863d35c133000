"""The ``promote`` stage: champion/challenger decision, publish the challenger, move the alias.

Given both models' metric on the same held-out set, `tlt.gates.promotion.decide_promotion`
decides; the challenger is always published as the next version (with its metrics, the held-out
set, the class counts of its training data and the decision), so every version and its metrics
stay in the registry. Only when the decision is to promote does the ``production`` alias move to
it, by a compare-and-swap from the champion this run started from
(`tlt.io.registry_aliases.promote`): a reader sees the old or the new champion, never neither,
and a run that lost a race to another promoter fails instead of overwriting its promotion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from tlt.gates.promotion import PromotionDecision, decide_promotion
from tlt.io.champion import publish_challenger
from tlt.io.registry import Registry
from tlt.io.registry_aliases import DEFAULT_ALIAS, PromotionRecord, promote

__all__ = ["PromotionOutcome", "run"]


@dataclass(frozen=True)
class PromotionOutcome:
    """What the stage did.

    Attributes:
        decision: the decision and its reason.
        version: the version the challenger was published as.
        production: the version the alias names afterwards (the challenger's or the champion's).
        record: the promotion record when the alias moved, else None.
    """

    decision: PromotionDecision
    version: str
    production: str
    record: PromotionRecord | None

    def summary(self) -> str:
        """One line: what happened to the alias and why."""
        if self.record is not None:
            return (f"version {self.version} promoted to {self.record.alias}: "
                    f"{self.decision.reason}")
        return (f"version {self.version} published, production stays version "
                f"{self.production}: {self.decision.reason}")


def run(challenger_files: str | os.PathLike | list, *, registry_uri: str, model_name: str,
        challenger_metric: float, champion_metric: float | None, champion_version: str | None,
        metric: str, margin: float, held_out_set: str, task: str | None = None,
        alias: str = DEFAULT_ALIAS, metadata: Mapping[str, Any] | None = None) -> PromotionOutcome:
    """Decide, publish the challenger, and promote it when it beats the champion by ``margin``.

    Args:
        challenger_files: the challenger's files (a folder or a list of files) to publish.
        registry_uri: registry root.
        model_name: model name.
        challenger_metric: the challenger's metric on the held-out set.
        champion_metric: the champion's on the same set; None when there is no champion.
        champion_version: the version the run fine-tuned from (None: first run); the alias
            moves only if it still names this one.
        metric: the metric's name (higher is better).
        margin: least improvement that promotes.
        held_out_set: what both were evaluated on (recorded with the version and decision).
        task: ``classification`` or ``detection`` (the registry's Application column).
        alias: the alias to move.
        metadata: more lineage for the version (class counts, parents ...).

    Raises:
        SpecError: a bad margin.
        RegistryError: publishing failed, or the alias was moved by another run meanwhile.
    """
    champion = None if champion_metric is None else {metric: champion_metric}
    decision = decide_promotion({metric: challenger_metric}, champion, metric=metric,
                                margin=margin)
    meta = {**dict(metadata or {}), "task": task, "metrics": {metric: challenger_metric},
            "held_out_set": held_out_set, "fine_tuned_from": champion_version,
            "decision": decision.to_dict()}
    info = publish_challenger(registry_uri, model_name, challenger_files, metadata=meta,
                              task=task)
    if not decision.promote:
        return PromotionOutcome(decision, info.version, str(champion_version), None)
    record = promote(Registry(registry_uri), model_name, info.version, alias=alias,
                     decision=decision, expected=champion_version)
    return PromotionOutcome(decision, info.version, record.to_version, record)
