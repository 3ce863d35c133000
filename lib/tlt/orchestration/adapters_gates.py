"""Adapters of the gate stages (`tlt.orchestration.registry_gates`): stage arguments in, files and
metadata out.

Same protocol as `tlt.orchestration.adapters`; a stage with scalar results also returns them under
`tlt.orchestration.results.RESULTS_KEY` (what a ``dsl.If`` or an Argo ``when`` reads), and a
collected input (`tlt.orchestration.registry_gates.CollectedArtifact`) arrives as a list of folders.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

from tlt.errors import PipelineError
from tlt.orchestration.results import RESULTS_KEY
from tlt.orchestration.stage_types import Adapter

__all__ = ["GATE_ADAPTERS", "quality_gate", "pick_pruned", "run_summary"]


def quality_gate(params: Mapping[str, Any], inputs: Mapping[str, Any],
                 outputs: Mapping[str, str]) -> dict[str, Any]:
    """Gate the evaluated ``model`` on its accuracy / mAP; the Markdown ``report`` says why.

    Returns:
        ``{"report": {metric, value, threshold, passed, reason}, RESULTS_KEY: {passed}}``.
    """
    from tlt.stages import quality_gate as stage

    report = stage.run(inputs["model"], outputs["report"], task=params["task"],
                       threshold=float(params["threshold"]), metric=params.get("metric", ""))
    reason = report.checks[0].reason
    details = {k: report.details[k] for k in ("metric", "value", "threshold", "passed")}
    return {"report": {**details, "reason": reason},
            RESULTS_KEY: {"passed": report.passed}}


def pick_pruned(params: Mapping[str, Any], inputs: Mapping[str, Any],
                outputs: Mapping[str, str]) -> dict[str, Any]:
    """Keep the sweep's smallest retrained model within ``tolerance`` of the best.

    Returns:
        ``{"model": metadata of the chosen model, "report": {reason, candidates}, RESULTS_KEY:
        {threshold, metric}}``.
    """
    from tlt.stages import pick_pruned as stage

    candidates, pruned = _folders(inputs, "candidates"), _folders(inputs, "pruned_models")
    pick, meta = stage.run(candidates, pruned, outputs["model"], outputs["report"],
                           task=params["task"], tolerance=float(params["tolerance"]))
    return {"model": meta, "report": {"reason": pick.reason, "candidates": len(pick.candidates)},
            RESULTS_KEY: {"threshold": float(pick.chosen.threshold), "metric": float(pick.chosen.metric)}}


def _folders(inputs: Mapping[str, Any], name: str) -> list[str]:
    value = inputs[name]
    folders = [value] if isinstance(value, str) else list(value)
    if not folders:
        raise PipelineError(f"pick_pruned: input {name} is empty (the sweep ran no iteration)")
    return folders


def run_summary(params: Mapping[str, Any], inputs: Mapping[str, Any],
                outputs: Mapping[str, str]) -> dict[str, Any]:
    """Write the run summary into ``details`` and its Markdown page to ``summary``."""
    from tlt.stages import run_summary as stage

    written = stage.run(outputs["details"], params["pipeline"], state=params.get("state", ""),
                        error=params.get("error", ""), run_id=params.get("run_id", ""),
                        failures=params.get("failures", ""), notes=params.get("notes", ""))
    Path(outputs["summary"]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(outputs["details"]) / "summary.md", outputs["summary"])
    brief = {"pipeline": written["pipeline"], "state": written["state"],
             "error": written["error"] or "", "failed_tasks": len(written["tasks"])}
    return {"summary": brief, "details": brief}


#: Registry key -> adapter, for every stage of `GATE_STAGES`.
GATE_ADAPTERS: dict[str, Adapter] = {
    "quality_gate": quality_gate,
    "pick_pruned": pick_pruned,
    "run_summary": run_summary,
}
