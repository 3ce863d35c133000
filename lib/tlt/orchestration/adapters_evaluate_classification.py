"""The evaluate stage's classification measurement: accuracy, per-class F1 and the confusion
matrix of a classifier (Keras model, export or engine) on a folder-per-class image set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tlt.errors import PipelineError

__all__ = ["evaluate_classification"]


def evaluate_classification(params: Mapping[str, Any], model_path: str,
                            outputs: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Evaluate a classifier on ``data_dir``; the full results go to ``metrics``/evaluation.json.

    Returns:
        (scalar metrics, the ClassificationMetrics confusion matrix, the HTML report).

    Raises:
        PipelineError: the ``data_dir`` parameter is empty.
    """
    from tlt.evaluation.report import classification_report_html
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate as evaluate_stage

    if not params.get("data_dir"):
        raise PipelineError("evaluate: classification needs the data_dir parameter")
    result = evaluate_stage.run_classification(
        model_path, params["data_dir"], key=resolve_key(None), batch_size=int(params["batch_size"]),
        top_k=int(params["top_k"]), results_json=str(Path(outputs["metrics"]) / "evaluation.json"),
        framework=params.get("framework") or None)
    m = result.metrics
    scalars = {"accuracy": m["accuracy"], f"top_{m['top_k']}_accuracy": m["top_k_accuracy"],
               "macro_f1": m["macro_f1"], "num_images": m["num_images"]}
    scalars.update({f"f1_{name}": row["f1"] for name, row in m["per_class"].items()})
    # The structure kfp.dsl.ClassificationMetrics.log_confusion_matrix writes, built here so the
    # adapter stays independent of KFP objects.
    confusion = {"confusionMatrix": {
        "annotationSpecs": [{"displayName": name} for name in m["class_names"]],
        "rows": [{"row": [int(v) for v in row]} for row in m["confusion_matrix"]],
    }}
    return scalars, confusion, classification_report_html(m)
