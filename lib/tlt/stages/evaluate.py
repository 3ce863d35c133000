"""The ``evaluate`` stage: ``tlt-evaluate <task>`` and the evaluate component call this."""

from __future__ import annotations

__all__ = ["run_classification", "run_detection", "run_detection_files"]


def run_classification(model: str, data_dir: str, *, key: str | None = None, batch_size: int = 32,
                       top_k: int = 5, results_json: str | None = None):
    """Evaluate a classification model on a folder-per-class data set (see
    `tlt.evaluation.classification.evaluate_classification`)."""
    from tlt.evaluation.classification import evaluate_classification

    return evaluate_classification(model, data_dir, key=key, batch_size=batch_size, top_k=top_k,
                                   results_json=results_json)


def run_detection(spec, model: str, *, key: str | None = None, use_training_set: bool = False,
                  mode: str | None = None, ap_mode: str | None = None, batch_size: int | None = None,
                  results_json: str | None = None):
    """Evaluate a DetectNet_v2 .tlt model on the spec's validation data (or its training data).

    Returns:
        A `tlt.evaluation.detection.DetectionEvaluation`; its JSON (every AP, the validation cost)
        is written to ``results_json`` when given.
    """
    import json

    from tlt.evaluation.detection import evaluate_detection_model
    from tlt.io import storage
    from tlt.io.modelfile import load_keras_model
    from tlt.errors import ModelFileError

    keras_model, metadata = load_keras_model(model, key=key, compile=False)
    if metadata.get("task") != "detection":
        raise ModelFileError(f"{model}: is a {metadata.get('task')} model, not a detection model")
    spec_classes = [t.name.lower() for t in spec.cost_function_config.target_classes]
    if list(metadata.get("classes", [])) != spec_classes:
        raise ModelFileError(f"{model}: model classes {metadata.get('classes')} differ from the spec's "
                             f"cost_function_config classes {spec_classes}")
    evaluation = evaluate_detection_model(
        keras_model, spec, batch_size=batch_size or spec.training_config.batch_size_per_gpu,
        use_training_set=use_training_set, mode=mode, ap_mode=ap_mode)
    if results_json:
        data = evaluation.results.to_dict()
        data["validation_cost"] = evaluation.validation_cost
        data["model"] = model
        storage.write_text(results_json, json.dumps(data, indent=2) + "\n")
    return evaluation


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
