"""Adapter of the prune stage: tlt-prune options -> `tlt.stages.prune` -> the pruned Model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tlt.orchestration.adapters_common import jsonable
from tlt.orchestration.model_cards import model_file

__all__ = ["prune"]


def prune(params: Mapping[str, Any], inputs: Mapping[str, str],
          outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.prune` on the trained model into the pruned Model artifact folder.

    Args:
        params: the tlt-prune options (``excluded_layers`` as comma-separated names).
        inputs: ``model``: a train (or retrain) output folder.
        outputs: ``pruned_model``: receives model.tlt (encrypted with TLT_KEY) and metadata.json.

    Returns:
        ``{"pruned_model": {...}}`` with both parameter counts, the ratio and the settings.
    """
    from tlt.io.modelfile import resolve_key
    from tlt.stages import prune as prune_stage

    settings = _prune_settings(params)
    Path(outputs["pruned_model"]).mkdir(parents=True, exist_ok=True)
    outcome = prune_stage.run(str(model_file(inputs["model"])), outputs["pruned_model"],
                              key=resolve_key(None), settings=settings)
    result = outcome.result
    return {"pruned_model": jsonable({
        "stage": "prune", "task": outcome.metadata.get("task"), "model_file": prune_stage.MODEL_FILE,
        "classes": list(outcome.metadata.get("classes", [])),
        "params_before": result.params_before, "params_after": result.params_after,
        "pruning_ratio": result.ratio, "settings": settings.to_dict(),
        "size_bytes": Path(outcome.model_path).stat().st_size})}


def _prune_settings(params: Mapping[str, Any]):
    """`tlt.pruning.PruneSettings` from the stage's parameters."""
    from tlt.pruning import PruneSettings

    return PruneSettings(
        normalizer=params["normalizer"], equalization_criterion=params["equalization_criterion"],
        pruning_granularity=int(params["pruning_granularity"]),
        pruning_threshold=float(params["pruning_threshold"]),
        min_num_filters=int(params["min_num_filters"]),
        excluded_layers=tuple(n.strip() for n in params.get("excluded_layers", "").split(",") if n.strip()))
