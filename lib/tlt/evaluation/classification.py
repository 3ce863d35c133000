"""``tlt-evaluate classification``: score a classifier on a folder-per-class data set."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tlt.data.classification import check_same_classes, scan_image_folder
from tlt.data.classification_input import build_classification_input
from tlt.errors import DataError, ModelFileError
from tlt.io.atomic import atomic_write_text
from tlt.metrics.classification import classification_metrics, format_metrics_table

__all__ = ["EvaluationResult", "load_classifier", "predict_split", "load_any_classifier",
           "evaluate_classification"]

_log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """The metrics dict (see `classification_metrics`) and where its JSON was written."""

    metrics: dict
    table: str
    results_json: str | None


def load_classifier(model_uri: str, key: str | None = None):
    """Load a classification .tlt model; returns ``(keras.Model, metadata)``."""
    from tlt.io.modelfile import load_keras_model

    model, metadata = load_keras_model(model_uri, key=key, compile=False)
    if metadata.get("task") not in (None, "classification"):
        raise ModelFileError(f"{model_uri}: is a {metadata.get('task')} model, not a classification model")
    if not metadata.get("classes"):
        raise ModelFileError(f"{model_uri}: model metadata has no class list")
    return model, metadata


def predict_split(model, split, input_dims, batch_size: int):
    """Class probabilities ``[N, K]`` of every image of ``split``, in file order."""
    import numpy as np

    dataset = build_classification_input(split, image_size=tuple(input_dims), batch_size=batch_size,
                                         training=False)
    images_only = dataset.map(lambda images, labels: images)
    if len(split) == 0:
        return np.zeros((0, split.num_classes), dtype=np.float32)
    return model.predict(images_only, verbose=0)


def load_any_classifier(model_uri: str, *, key: str | None = None, framework: str | None = None):
    """``(predict(split, batch_size) -> [N, K] probabilities, metadata, runtime or None)`` of a
    .tlt model (Keras) or of an export / engine (no TensorFlow; runtime names it)."""
    from tlt.inference.deployed import resolve_framework

    if resolve_framework(model_uri, framework) == "tlt":
        model, metadata = load_classifier(model_uri, key)
        return (lambda split, batch_size: predict_split(model, split, metadata["input_dims"],
                                                        batch_size)), metadata, None
    from tlt.evaluation.deployed_classification import load_deployed_classifier, predict_files

    deployed = load_deployed_classifier(model_uri, framework=framework, key=key)
    return ((lambda split, batch_size: predict_files(deployed, split.files, batch_size)),
            deployed.metadata, deployed.description)


def evaluate_classification(model_uri: str, data_dir: str, *, key: str | None = None,
                            batch_size: int = 32, top_k: int = 5, results_json: str | None = None,
                            framework: str | None = None) -> EvaluationResult:
    """Evaluate a model on ``data_dir`` (local, gs:// or s3://; one sub-folder per class).

    The data set's class folders must be the model's classes. Unreadable images are skipped and
    counted (logged), not fatal. ``framework`` (``tlt``, ``onnx``, ``engine``; default from the
    name) says what ``model_uri`` is: exports and engines are scored without TensorFlow.
    """
    from tlt.io import storage

    if top_k < 1 or batch_size < 1:  # the pipeline path reaches here without the CLI's checks
        raise DataError(f"top_k and batch_size must be >= 1, got top_k={top_k}, batch_size={batch_size}")
    predict, metadata, runtime = load_any_classifier(model_uri, key=key, framework=framework)
    classes = list(metadata["classes"])
    with storage.staged_input(data_dir) as local:
        found = sorted(p.name for p in Path(local).iterdir() if p.is_dir() and not p.name.startswith("."))
        check_same_classes(classes, found, f"model's ({model_uri})", data_dir)
        split = scan_image_folder(local, class_names=classes)
        _log.info("Found %d images belonging to %d classes.", len(split), len(classes))
        probabilities = predict(split, batch_size)
    metrics = classification_metrics(split.labels, probabilities, classes, top_k=top_k)
    metrics["skipped_images"] = len(split.skipped)
    metrics["model"] = model_uri
    metrics["data_dir"] = data_dir
    if runtime:
        metrics["runtime"] = runtime
    table = format_metrics_table(metrics)
    if results_json:
        if storage.is_remote(results_json):
            storage.write_text(results_json, json.dumps(metrics, indent=2) + "\n")
        else:
            atomic_write_text(results_json, json.dumps(metrics, indent=2) + "\n")
    return EvaluationResult(metrics=metrics, table=table, results_json=results_json)
