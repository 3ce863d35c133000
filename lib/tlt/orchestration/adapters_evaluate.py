"""Adapter of the evaluate stage: a model, export or engine -> `tlt.stages.evaluate` -> KFP
Metrics / ClassificationMetrics, an HTML report (with a comparison table when other models are
connected) and the scored model with its card.

The task-specific measuring lives in `tlt.orchestration.adapters_evaluate_classification` and
`tlt.orchestration.adapters_evaluate_detection`, the comparison with other models in
`tlt.orchestration.adapters_comparison`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tlt.errors import PipelineError
from tlt.orchestration.adapters_common import jsonable
from tlt.orchestration.adapters_comparison import add_comparison, comparison_cards, score, scored_model
from tlt.orchestration.adapters_evaluate_classification import evaluate_classification
from tlt.orchestration.adapters_evaluate_detection import evaluate_detection
from tlt.orchestration.model_cards import model_file

__all__ = ["evaluate"]


def evaluate(params: Mapping[str, Any], inputs: Mapping[str, str],
             outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Evaluate a model, export or engine; shape the numbers as KFP Metrics/ClassificationMetrics.

    ``model`` is a train/retrain/prune output (its model.tlt runs in Keras) or an export/build_engine
    output (run by ONNX Runtime or TensorRT; ``framework`` forces the kind). Models connected to
    ``compare_a`` / ``compare_b`` are scored on the same data and the report gets a table of all of
    them (parameters, size on disk, CPU images/s, accuracy / mAP). ``scored_model`` receives a copy
    of the evaluated model whose metadata is its card with the accuracy / mAP. The ``report``
    output is a single HTML file (what the Kubeflow UI renders).

    Raises:
        PipelineError: an unknown task, or a task's missing parameter (see the measuring modules).
    """
    from tlt.io.atomic import atomic_write_text

    task = params["task"]
    if task not in ("classification", "detection"):
        raise PipelineError(f"evaluate: unknown task {task!r}; expected classification or detection")
    path = model_file(inputs["model"])
    for name in ("metrics", "confusion", "scored_model"):
        Path(outputs[name]).mkdir(parents=True, exist_ok=True)
    spec = None
    if task == "classification":
        metrics, confusion, report = evaluate_classification(params, str(path), outputs)
        metric_name, metric = "accuracy", 100.0 * float(metrics["accuracy"])
    else:
        spec, (metrics, confusion, report) = evaluate_detection(params, inputs, str(path), outputs)
        metric_name, metric = "mAP", float(metrics["mAP"])
    compared = [inputs[n] for n in ("compare_a", "compare_b") if n in inputs]
    cards = comparison_cards(params, compared, path, metric, lambda file: score(params, spec, file))
    report = add_comparison(report, metrics, cards, metric_name)
    atomic_write_text(outputs["report"], report)
    card_meta = scored_model(cards[-1], outputs["scored_model"], metric_name)
    return {"metrics": jsonable(metrics), "confusion": confusion,
            "report": {"task": task, "models_compared": len(cards)}, "scored_model": card_meta}
