"""DetectNet_v2 evaluation of a deployed model (export or engine) with no TensorFlow.

Frames come from `tlt.data.detection_frames_numpy` (the pixels the tf.data evaluation feeds a
.tlt model), outputs from ONNX Runtime or TensorRT, boxes from the numpy post-processor of the
spec, AP from `tlt.metrics.detection`: the same numbers as `tlt.evaluation.detection` computes
for the Keras model, except the validation cost (it needs the training loss, TensorFlow).
"""

from __future__ import annotations

import logging

from tlt.errors import ModelFileError
from tlt.evaluation.detection import DetectionEvaluation, class_names_of, evaluate_detection_model

__all__ = ["load_deployed_detector", "evaluate_deployed_detection"]

_log = logging.getLogger(__name__)

COV, BBOX = ("output_cov", "Sigmoid"), ("output_bbox", "BiasAdd")


def load_deployed_detector(model_uri: str, experiment, *, framework: str | None = None,
                           key: str | None = None):
    """Load an export or engine and check it against the spec: task, input size, classes.

    Returns:
        The `tlt.inference.deployed.DeployedModel`.

    Raises:
        DataError: the model was built for another input size than the spec's network input
            (both sizes named) or lacks the coverage / bbox output.
        ModelFileError: not a detection model, or its classes differ from the spec's.
    """
    from tlt.inference.deployed import check_input_dims, load_deployed

    model = load_deployed(model_uri, framework=framework, key=key)
    model.check_task("detection")
    pre = experiment.augmentation_config.preprocessing
    check_input_dims(model, (pre.output_image_channel, pre.output_image_height,
                             pre.output_image_width),
                     "the spec's network input (augmentation_config.preprocessing "
                     "output_image_channel x output_image_height x output_image_width)")
    spec_classes = class_names_of(experiment)
    if list(model.metadata["classes"]) != spec_classes:
        raise ModelFileError(f"{model_uri}: model classes {model.metadata['classes']} differ from "
                             f"the spec's cost_function_config classes {spec_classes}")
    return model


def evaluate_deployed_detection(experiment, model_uri: str, *, framework: str | None = None,
                                key: str | None = None, batch_size: int,
                                use_training_set: bool = False, mode: str | None = None,
                                ap_mode: str | None = None) -> DetectionEvaluation:
    """Score an export or engine on the spec's validation (or training + validation) frames.

    Args:
        experiment: the training spec.
        model_uri: the .onnx / .etlt export or the engine file.
        framework: ``onnx`` or ``engine``; default from the name.
        key: the key of an .etlt.
        batch_size: frames per batch.
        use_training_set: training + validation frames.
        mode: "voc" or "kitti"; default the spec's.
        ap_mode: "11", "40" or "all"; default the spec's.

    Returns:
        The `DetectionEvaluation` (``validation_cost`` None, ``runtime`` naming the model kind).
    """
    from tlt.data.detection_frames_numpy import iter_validation_frames_numpy

    model = load_deployed_detector(model_uri, experiment, framework=framework, key=key)
    names = [model.output_name(*COV), model.output_name(*BBOX)]
    _log.info("evaluating %s (%s) without TensorFlow", model_uri, model.description)
    frames = iter_validation_frames_numpy(experiment, batch_size=batch_size,
                                          preprocessing=model.metadata.get("preprocessing") or {},
                                          use_training_set=use_training_set)
    evaluation = evaluate_detection_model(
        model.predictor(names), experiment, batch_size=batch_size,
        use_training_set=use_training_set, mode=mode, ap_mode=ap_mode, with_cost=False,
        frames=frames)
    evaluation.runtime = model.description
    return evaluation
