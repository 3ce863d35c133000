"""Evaluate a detection model FILE of any kind: a .tlt in Keras, or an export / engine without
TensorFlow (`tlt.evaluation.deployed_detection`).

Kept apart from `tlt.evaluation.detection` (the Keras scoring both paths share) so that module
never imports the deployed path that imports it.
"""

from __future__ import annotations

import json

from tlt.evaluation.detection import (DetectionEvaluation, evaluate_detection_model,
                                      load_detection_model)

__all__ = ["evaluate_detection_file"]


def evaluate_detection_file(experiment, model_uri: str, *, key: str | None = None,
                            use_training_set: bool = False, mode: str | None = None,
                            ap_mode: str | None = None, batch_size: int | None = None,
                            results_json: str | None = None,
                            framework: str | None = None) -> DetectionEvaluation:
    """Evaluate a model file on the spec's validation (or training + validation) frames.

    A .tlt model runs in Keras; an export or engine (``framework`` onnx / engine, or by name)
    runs without TensorFlow (`tlt.evaluation.deployed_detection`) and has no validation cost.

    Args:
        experiment: the training spec (data, classes, overlaps, buckets, post-processing).
        model_uri: the .tlt, export or engine file (local, gs:// or s3://).
        key: the model's key.
        use_training_set: training + validation frames, as the guide's ``--use_training_set``.
        mode: "voc" or "kitti"; default the spec's.
        ap_mode: "11", "40" or "all"; default the spec's.
        batch_size: frames per batch; default ``training_config.batch_size_per_gpu``.
        results_json: where to write `DetectionEvaluation.to_dict` (plus the model) as JSON.
        framework: ``tlt``, ``onnx`` or ``engine`` (`tlt.inference.deployed.FRAMEWORKS`);
            default from the name.
    """
    from tlt.inference.deployed import resolve_framework
    from tlt.io import storage

    framework = resolve_framework(model_uri, framework)
    batch_size = batch_size or experiment.training_config.batch_size_per_gpu
    if framework == "tlt":
        model = load_detection_model(model_uri, experiment, key=key)
        evaluation = evaluate_detection_model(
            model, experiment, batch_size=batch_size, use_training_set=use_training_set,
            mode=mode, ap_mode=ap_mode)
    else:
        from tlt.evaluation.deployed_detection import evaluate_deployed_detection

        evaluation = evaluate_deployed_detection(
            experiment, model_uri, framework=framework, key=key, batch_size=batch_size,
            use_training_set=use_training_set, mode=mode, ap_mode=ap_mode)
    if results_json:
        data = evaluation.to_dict()
        data["model"] = model_uri
        data["framework"] = framework
        storage.write_text(results_json, json.dumps(data, indent=2) + "\n")
    return evaluation
