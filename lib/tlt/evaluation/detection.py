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
           "validation_cost", "class_names_of"]

_log = logging.getLogger(__name__)


@dataclass
class DetectionEvaluation:
    """AP results, the validation cost and how many frames were scored."""

    results: DetectionResults
    validation_cost: float | None
    num_frames: int


def class_names_of(experiment) -> list[str]:
    """The network's classes, in output-channel order (cost_function_config.target_classes)."""
    return [t.name.lower() for t in experiment.cost_function_config.target_classes]


def predict_validation_frames(model, experiment, *, batch_size: int, use_training_set: bool = False,
                              postprocessor=None):
    """Run the model on the validation (or training) frames.

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
    for batch in iter_validation_frames(experiment, batch_size=batch_size,
                                        use_training_set=use_training_set):
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
    the training split with ``use_training_set``."""
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
                             with_cost: bool = True, loss=None) -> DetectionEvaluation:
    """Score ``model`` on the spec's validation frames (or training frames) in voc or kitti mode."""
    settings = build_evaluation_settings(experiment, mode=mode, ap_mode=ap_mode)
    frame_ids, ground_truth, predictions = predict_validation_frames(
        model, experiment, batch_size=batch_size, use_training_set=use_training_set)
    results = evaluate_detections(ground_truth, predictions, settings)
    results.num_frames = len(frame_ids)
    cost = (validation_cost(model, experiment, batch_size=batch_size, loss=loss,
                            use_training_set=use_training_set) if with_cost else None)
    return DetectionEvaluation(results=results, validation_cost=cost, num_frames=len(frame_ids))
