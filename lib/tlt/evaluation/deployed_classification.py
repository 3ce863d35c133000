"""Classifier predictions of a deployed model (export or engine) with no TensorFlow.

Each image is decoded by PIL, resized bilinearly to the model input and scaled as the export's
metadata records (`tlt.data.image_arrays`: the same pixels as the tf.data evaluation pipeline of
`tlt.data.classification_input`), then run by ONNX Runtime or TensorRT.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

__all__ = ["load_deployed_classifier", "predict_files"]

_log = logging.getLogger(__name__)

OUTPUT = ("predictions", "Softmax")


def load_deployed_classifier(model_uri: str, *, framework: str | None = None,
                             key: str | None = None):
    """Load an export or engine of a classifier.

    Returns:
        The `tlt.inference.deployed.DeployedModel`.

    Raises:
        ModelFileError: not a classification model, or no class list.
        ModelKeyError: an .etlt with a missing or wrong key.
    """
    from tlt.inference.deployed import load_deployed

    model = load_deployed(model_uri, framework=framework, key=key)
    model.check_task("classification")
    model.output_name(*OUTPUT)
    _log.info("running %s (%s) without TensorFlow", model_uri, model.description)
    return model


def _network_input(path: str, dims: Sequence[int], preprocessing: dict) -> np.ndarray:
    from tlt.data.image_arrays import read_image, resize_bilinear, to_network

    channels, height, width = dims
    return to_network(resize_bilinear(read_image(path, channels), height, width), preprocessing)


def predict_files(model, files: Sequence[str], batch_size: int) -> np.ndarray:
    """Class probabilities ``[N, K]`` of the image ``files``, in order.

    Args:
        model: a `tlt.inference.deployed.DeployedModel` of a classifier.
        files: local image files.
        batch_size: images per run.
    """
    name = model.output_name(*OUTPUT)
    preprocessing = model.metadata.get("preprocessing") or {}
    parts = []
    for start in range(0, len(files), batch_size):
        batch = np.stack([_network_input(str(p), model.input_dims, preprocessing)
                          for p in files[start:start + batch_size]])
        parts.append(model.run(batch)[name])
    if not parts:
        return np.zeros((0, len(model.metadata["classes"])), dtype=np.float32)
    return np.concatenate(parts)
