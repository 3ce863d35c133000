"""DetectNet_v2 evaluation with a model: predict the validation frames, post-process, score AP.

Shared by ``tlt-evaluate detection`` and the validation callback of ``tlt-train detection``.
Detections are mapped back to each frame's source pixels before scoring, so frames that were
resized or cropped are judged against their original labels.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from tlt.metrics.detection import (DetectionResults, GroundTruth, build_evaluation_settings,
                                   evaluate_detections)

__all__ = ["DetectionEvaluation", "predict_validation_frames", "evaluate_detection_model",
           "validation_cost", "class_names_of", "load_detection_model"]

_log = logging.getLogger(__name__)


@dataclass
class DetectionEvaluation:
    """AP results, the validation cost and how many frames were scored.

    Attributes:
        results: AP per class and column.
        validation_cost: mean DetectNet_v2 cost over the frames, if computed.
        num_frames: frames evaluated.
        use_training_set: the frames were training + validation, not validation alone.
        runtime: what ran a deployed model (``"int8 onnxruntime engine"``); None for Keras.
    """

    results: DetectionResults
    validation_cost: float | None
    num_frames: int
    use_training_set: bool = False
    runtime: str | None = None

    def to_dict(self) -> dict:
        """The results' JSON data plus the validation cost and the frames evaluated."""
        data = self.results.to_dict()
        data["validation_cost"] = self.validation_cost
        data["use_training_set"] = self.use_training_set
        if self.runtime:
            data["runtime"] = self.runtime
        return data


def class_names_of(experiment) -> list[str]:
    """The network's classes, in output-channel order (cost_function_config.target_classes)."""
    return [t.name.lower() for t in experiment.cost_function_config.target_classes]


def predict_validation_frames(model, experiment, *, batch_size: int, use_training_set: bool = False,
                              postprocessor=None, frames=None):
    """Run the model on the validation (or training + validation) frames.

    Args:
        model: anything with ``predict_on_batch(images) -> (cov, bbox)`` (a Keras model, or a
            deployed model's `tlt.inference.deployed.DeployedModel.predictor`).
        experiment: the spec.
        batch_size: frames per batch.
        use_training_set: training + validation frames.
        postprocessor: default: the spec's.
        frames: the `ValidationBatch` iterable; default: `iter_validation_frames` (tf.data).

    Returns:
        ``(frame_ids, ground_truth, predictions)``: per frame its id, its labelled objects as
        `GroundTruth` (source pixels, DontCare included) and its post-processed `Detection` list
        (source pixels).
    """
    from tlt.data.detection_frames import iter_validation_frames
    from tlt.models.detectnet_v2.postprocess import build_postprocessor

    post = postprocessor or build_postprocessor(experiment)
    pre = experiment.augmentation_config.preprocessing
    size = (int(pre.output_image_width), int(pre.output_image_height))
    frame_ids, ground_truth, predictions = [], [], []
    if frames is None:
        frames = iter_validation_frames(experiment, batch_size=batch_size,
                                        use_training_set=use_training_set)
    for batch in frames:
        cov, bbox = model.predict_on_batch(batch.images)
        cov, bbox = np.asarray(cov), np.asarray(bbox)
        for i, frame_id in enumerate(batch.frame_ids):
            found = post.process(cov[i], bbox[i], size)
            if found:
                coords = batch.to_source(i, np.array([[d.xmin, d.ymin, d.xmax, d.ymax] for d in found]))
                found = [dataclasses.replace(d, xmin=float(c[0]), ymin=float(c[1]), xmax=float(c[2]),
                                             ymax=float(c[3])) for d, c in zip(found, coords)]
            predictions.append(found)
            ground_truth.append([
                GroundTruth(str(name), float(b[0]), float(b[1]), float(b[2]), float(b[3]),
                            float(t), int(o))
                for name, b, t, o in zip(batch.class_names[i], batch.boxes[i], batch.truncation[i],
                                         batch.occlusion[i])])
            frame_ids.append(frame_id)
    return frame_ids, ground_truth, predictions


def validation_cost(model, experiment, *, batch_size: int, loss=None,
                    use_training_set: bool = False) -> float:
    """Mean DetectNet_v2 cost over the validation split (the guide's "Validation cost"), or over
    training + validation with ``use_training_set``."""
    from tlt.data.detection_input import build_detection_input
    from tlt.models.detectnet_v2.loss import build_detectnet_loss

    loss = loss or build_detectnet_loss(experiment.cost_function_config, class_names_of(experiment))
    dataset = build_detection_input(experiment, training=False, batch_size=batch_size,
                                    use_training_set=use_training_set)
    total, count = 0.0, 0
    losses = loss.losses()
    for images, targets in dataset:
        cov, bbox = model(images, training=False)
        n = int(images.shape[0])
        value = (float(losses["output_cov"](targets["output_cov"], cov))
                 + float(losses["output_bbox"](targets["output_bbox"], bbox)))
        total += value * n
        count += n
    return total / count if count else 0.0


def evaluate_detection_model(model, experiment, *, batch_size: int, use_training_set: bool = False,
                             mode: str | None = None, ap_mode: str | None = None,
                             with_cost: bool = True, loss=None, frames=None) -> DetectionEvaluation:
    """Score ``model`` on the spec's validation frames (or training + validation frames) in voc
    or kitti mode (``frames``: see `predict_validation_frames`; the cost needs a Keras model)."""
    settings = build_evaluation_settings(experiment, mode=mode, ap_mode=ap_mode)
    frame_ids, ground_truth, predictions = predict_validation_frames(
        model, experiment, batch_size=batch_size, use_training_set=use_training_set, frames=frames)
    results = evaluate_detections(ground_truth, predictions, settings)
    results.num_frames = len(frame_ids)
    cost = (validation_cost(model, experiment, batch_size=batch_size, loss=loss,
                            use_training_set=use_training_set) if with_cost else None)
    return DetectionEvaluation(results=results, validation_cost=cost, num_frames=len(frame_ids),
                               use_training_set=use_training_set)


def load_detection_model(model_uri: str, experiment, *, key: str | None = None):
    """Load a DetectNet_v2 .tlt model and check it predicts the spec's classes.

    Raises:
        ModelFileError: not a detection model, or its classes differ from the spec's
            ``cost_function_config.target_classes``.
    """
    from tlt.errors import ModelFileError
    from tlt.io.modelfile import load_keras_model

    model, metadata = load_keras_model(model_uri, key=key, compile=False)
    if metadata.get("task") != "detection":
        raise ModelFileError(f"{model_uri}: is a {metadata.get('task')} model, not a detection model")
    spec_classes = class_names_of(experiment)
    if list(metadata.get("classes", [])) != spec_classes:
        raise ModelFileError(f"{model_uri}: model classes {metadata.get('classes')} differ from the "
                             f"spec's cost_function_config classes {spec_classes}")
    return model
