"""The ``evaluate`` stage: ``tlt-evaluate <task>`` and the evaluate component call this."""

from __future__ import annotations

__all__ = ["run_classification", "run_detection", "run_detection_files"]


def run_classification(model: str, data_dir: str, *, key: str | None = None, batch_size: int = 32,
                       top_k: int = 5, results_json: str | None = None,
                       framework: str | None = None):
    """Evaluate a classification model, export or engine on a folder-per-class data set (see
    `tlt.evaluation.classification.evaluate_classification`)."""
    from tlt.evaluation.classification import evaluate_classification

    return evaluate_classification(model, data_dir, key=key, batch_size=batch_size, top_k=top_k,
                                   results_json=results_json, framework=framework)


def run_detection(spec, model: str, *, key: str | None = None, use_training_set: bool = False,
                  mode: str | None = None, ap_mode: str | None = None, batch_size: int | None = None,
                  results_json: str | None = None, framework: str | None = None):
    """Evaluate a DetectNet_v2 .tlt model, export or engine on the spec's validation data (or
    training + validation); exports and engines run without TensorFlow (``framework``).

    Returns:
        A `tlt.evaluation.detection.DetectionEvaluation`; its JSON (every AP column, the
        validation cost) is written to ``results_json`` when given (see
        `tlt.evaluation.detection_file.evaluate_detection_file`).
    """
    from tlt.evaluation.detection_file import evaluate_detection_file

    return evaluate_detection_file(spec, model, key=key, use_training_set=use_training_set, mode=mode,
                                   ap_mode=ap_mode, batch_size=batch_size, results_json=results_json,
                                   framework=framework)


def run_detection_files(labels_dir: str, predictions_dir: str, *, spec=None, mode: str | None = None,
                        ap_mode: str | None = None, results_json: str | None = None):
    """Score a folder of KITTI prediction files (score in the 16th field) against ground truth."""
    from tlt.evaluation.detection_files import evaluate_prediction_files
    from tlt.io import storage

    results = evaluate_prediction_files(labels_dir, predictions_dir, mode=mode, spec=spec,
                                        ap_mode=ap_mode)
    if results_json:
        storage.write_text(results_json, results.to_json() + "\n")
    return results
