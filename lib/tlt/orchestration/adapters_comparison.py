"""The evaluate stage's comparison of models: a card per model (parameters, size on disk, CPU
images/s, accuracy / mAP) scored on the same data, the report's comparison table and its scalars,
and the scored model's copy with its card."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping

from tlt.orchestration.adapters_common import jsonable
from tlt.orchestration.model_cards import model_file

__all__ = ["add_comparison", "comparison_cards", "score", "scored_model"]


def comparison_cards(params: Mapping[str, Any], compared: list[str], path: Path, metric: float,
                     score_file: Callable[[str], float]) -> list:
    """Cards of the ``compared`` artifact folders (scored by ``score_file``), then of the evaluated
    model (``metric`` already measured); ``labels`` names them in that order."""
    from tlt.io.modelfile import resolve_key
    from tlt.orchestration.model_cards import describe_model, images_per_second

    entries = [(model_file(folder), None) for folder in compared]
    entries.append((path, metric))
    chosen = (_labels(params) + [""] * len(entries))[:len(entries)]
    cards = []
    for (file, known), label in zip(entries, chosen):
        framework = params.get("framework") if file == path else None
        card, run = describe_model(file, key=resolve_key(None), label=label, framework=framework)
        card.images_per_second = images_per_second(run, card.input_dims,
                                                   batch_size=min(int(params["batch_size"]), 8))
        card.metric = known if known is not None else score_file(str(file))
        cards.append(card)
    return cards


def add_comparison(report: str, metrics: dict[str, Any], cards: list, metric_name: str) -> str:
    """With more than one card: the report with the comparison table inserted, and each model's
    scalars added to ``metrics``; with one, the report as it is."""
    if len(cards) <= 1:
        return report
    from tlt.orchestration.model_cards import comparison_html, insert_section

    metrics.update(_comparison_scalars(cards, metric_name))
    return insert_section(report, comparison_html(_comparison_title(cards), cards, metric_name))


def score(params: Mapping[str, Any], spec, file: str) -> float:
    """Accuracy (classification) or mAP (detection, on ``spec``'s validation data) in % of
    another model on the same data as the evaluated one."""
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate as evaluate_stage

    if params["task"] == "classification":
        result = evaluate_stage.run_classification(file, params["data_dir"], key=resolve_key(None),
                                                   batch_size=int(params["batch_size"]),
                                                   top_k=int(params["top_k"]))
        return 100.0 * float(result.metrics["accuracy"])
    evaluation = evaluate_stage.run_detection(spec, file, key=resolve_key(None),
                                              mode=params.get("mode") or None,
                                              batch_size=int(params["batch_size"]))
    return float(evaluation.results.mean_ap.get("combined") or 0.0)


def scored_model(card, folder: str, metric_name: str) -> dict[str, Any]:
    """Copy the evaluated model (and an engine's sidecar) into ``folder`` with its card."""
    import shutil

    from tlt.artifacts import write_metadata
    from tlt.engines import sidecar_path

    source = Path(card.file)
    shutil.copyfile(source, Path(folder) / source.name)
    sidecar = sidecar_path(str(source))
    if card.format == "engine" and sidecar.is_file():
        shutil.copyfile(sidecar, Path(folder) / sidecar.name)
    meta = jsonable(card.metadata(metric_name))
    write_metadata(folder, "evaluate", parents=[{"uri": str(source)}], model=source.name, **meta)
    return {"stage": "evaluate", **meta}


def _labels(params: Mapping[str, Any]) -> list[str]:
    """The comparison table's row names from the comma-separated ``labels`` parameter."""
    return [s.strip() for s in params.get("labels", "").split(",")]


def _comparison_title(cards) -> str:
    if any(c.format != "tlt" for c in cards):
        return "Keras model and deployed engines, side by side"
    return "Before and after pruning"


def _comparison_scalars(cards, metric_name: str) -> dict[str, float]:
    """Per-model scalars for the Kubeflow UI: ``<label>_<metric>``, ``_images_per_second`` ..."""
    scalars: dict[str, float] = {}
    for card in cards:
        slug = re.sub(r"[^a-z0-9]+", "_", card.label.lower()).strip("_")
        scalars[f"{slug}_{metric_name}"] = card.metric
        scalars[f"{slug}_images_per_second"] = card.images_per_second
        scalars[f"{slug}_size_bytes"] = card.size_bytes
        if card.params is not None:
            scalars[f"{slug}_params"] = card.params
    return scalars
