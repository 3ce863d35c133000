"""Detection metrics: settings from a spec and the entry point of both evaluation modes.

Two evaluation modes compute average precision (AP, in percent) per class and column
(``combined``, then each ``evaluation_bucket_config`` bucket):

- ``voc`` (what TLT reports, `tlt.metrics.detection_voc`);
- ``kitti`` (the official KITTI 2D benchmark, `tlt.metrics.detection_kitti`).

Inputs are per-frame lists of `GroundTruth` and `Detection` objects, frame ``i`` of the ground
truth going with frame ``i`` of the predictions. Class names are compared lower-cased. The shared
types live in `tlt.metrics.detection_types` and are re-exported here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tlt.metrics import detection_kitti, detection_voc
from tlt.metrics.detection_types import (AP_MODES, COMBINED, DEFAULT_MIN_OVERLAP, FALLBACK_MIN_OVERLAP,
                                         KITTI_BUCKETS, MODES, Bucket, ClassResult, Detection,
                                         DetectionResults, EvaluationSettings, GroundTruth,
                                         iou_matrix, mean_ap, resolve_classes)

__all__ = [
    "MODES", "AP_MODES", "DEFAULT_MIN_OVERLAP", "FALLBACK_MIN_OVERLAP", "COMBINED", "KITTI_BUCKETS",
    "Detection", "GroundTruth", "Bucket", "EvaluationSettings", "ClassResult", "DetectionResults",
    "build_evaluation_settings", "evaluate_detections", "iou_matrix", "resolve_classes", "mean_ap",
]

_BUCKET_ORDER = ("easy", "moderate", "mdrt", "hard")


def build_evaluation_settings(spec=None, *, mode: str | None = None, ap_mode: str | None = None,
                              classes: Sequence[str] | None = None) -> EvaluationSettings:
    """Evaluation settings from a detection spec, or KITTI's defaults without one.

    Args:
        spec: a ``DetectionExperiment`` (``tlt.spec.load(path, "detection")``) or None. It supplies
            the classes (``cost_function_config.target_classes``, else the targets of
            ``dataset_config.target_class_mapping``), that mapping, the minimum overlaps, the
            buckets, and the default mode and AP mode of ``evaluation_config``.
        mode: "voc" or "kitti"; overrides the spec.
        ap_mode: "11", "40" or "all"; overrides the spec.
        classes: classes to report; overrides the spec.

    Returns:
        The settings. Without a spec: voc mode, 11 points, car 0.7 and other classes 0.5, KITTI's
        buckets, the classes found in the ground truth.

    Raises:
        SpecError: an unknown mode or AP mode, or "all" with kitti.
    """
    kwargs = _settings_from_spec(spec) if spec is not None else {}
    if mode is not None:
        kwargs["mode"] = mode
    if ap_mode is not None:
        kwargs["ap_mode"] = str(ap_mode)
    if classes is not None:
        kwargs["classes"] = tuple(c.lower() for c in classes)
    return EvaluationSettings(**kwargs)


def _settings_from_spec(spec) -> dict:
    """`EvaluationSettings` keyword arguments from a DetectionExperiment."""
    cfg = spec.evaluation_config
    kwargs: dict = {
        "mode": "kitti" if cfg.evaluation_mode == 1 else "voc",
        "ap_mode": "all" if cfg.average_precision_mode == 1 else str(cfg.num_recall_points or 11),
    }
    mapping = {k.lower(): v.lower() for k, v in spec.dataset_config.target_class_mapping.items()}
    kwargs["class_mapping"] = mapping
    names = [t.name.lower() for t in spec.cost_function_config.target_classes]
    if not names:
        names = sorted(set(mapping.values()))
    if names:
        kwargs["classes"] = tuple(names)
    overlaps = dict(DEFAULT_MIN_OVERLAP)
    overlaps.update({k.lower(): _decimal(v)
                     for k, v in cfg.minimum_detection_ground_truth_overlap.items()})
    kwargs["min_overlap"] = overlaps
    if cfg.evaluation_bucket_config:
        kwargs["buckets"] = _buckets_from_spec(cfg.evaluation_bucket_config)
    return kwargs


def _buckets_from_spec(config) -> tuple[Bucket, ...]:
    def rank(name: str):
        return (_BUCKET_ORDER.index(name) if name in _BUCKET_ORDER else len(_BUCKET_ORDER), name)

    buckets = []
    for name in sorted(config, key=rank):
        b = config[name]
        buckets.append(Bucket(name, float(b.minimum_height), float(b.maximum_height),
                              int(b.minimum_occlusion), int(b.maximum_occlusion),
                              _decimal(b.truncation.minimum), _decimal(b.truncation.maximum)))
    return tuple(buckets)


def _decimal(value: float) -> float:
    """A float32 spec value as the decimal the user wrote (0.7, not 0.699999988), as the devkit has it."""
    return float(str(np.float32(value)))


def evaluate_detections(ground_truth: Sequence[Sequence[GroundTruth]],
                        predictions: Sequence[Sequence[Detection]],
                        settings: EvaluationSettings | None = None) -> DetectionResults:
    """Score predictions against ground truth in the settings' mode.

    Args:
        ground_truth: per frame, its labelled boxes (DontCare included: kitti mode uses them).
        predictions: per frame, its detections (same frame order).
        settings: see `build_evaluation_settings`; None means its defaults.

    Returns:
        The results (AP in percent).

    Raises:
        ValueError: the two sequences have different lengths.
    """
    settings = settings or EvaluationSettings()
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(ground_truth)} ground-truth frames but {len(predictions)} prediction frames")
    module = detection_kitti if settings.mode == "kitti" else detection_voc
    return module.evaluate(ground_truth, predictions, settings)
