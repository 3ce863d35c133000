"""PASCAL VOC average precision, as TLT/TAO report it for DetectNet_v2.

Per class, the detections of all frames are ranked by confidence (ties keep frame order, then
file order). Each in turn is matched to the not yet matched ground truth of its class and frame
with which it has the highest IoU; it is a true positive when that IoU is at least the class's
minimum overlap, otherwise a false positive. AP is then

- ``"11"``: the mean of the interpolated precision at recall 0, 0.1, ..., 1 (VOC 2007);
- ``"40"``: the same at recall 1/40, 2/40, ..., 1;
- ``"all"``: the area under the interpolated precision/recall curve (VOC 2010 and later),

where the interpolated precision at recall r is the highest precision at any recall >= r.
Every ground-truth box of the class counts (one bucket, ``all``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tlt.metrics.detection import (ClassResult, Detection, DetectionResults, EvaluationSettings,
                                   GroundTruth, iou_matrix, mean_ap, resolve_classes)

__all__ = ["BUCKET", "evaluate", "average_precision", "match_class"]

BUCKET = "all"


def evaluate(ground_truth: Sequence[Sequence[GroundTruth]], predictions: Sequence[Sequence[Detection]],
             settings: EvaluationSettings) -> DetectionResults:
    """VOC evaluation of every class (see the module docstring).

    Args:
        ground_truth: per frame, its labelled boxes.
        predictions: per frame, its detections.
        settings: classes, minimum overlaps, class mapping and AP mode.

    Returns:
        Results with the single bucket ``all``.
    """
    classes = resolve_classes(ground_truth, settings)
    per_class = {}
    for name in classes:
        gt_boxes = [_boxes([g for g in frame if settings.map_class(g.class_name) == name])
                    for frame in ground_truth]
        dets = [[d for d in frame if settings.map_class(d.class_name) == name] for frame in predictions]
        tp, num_gt = match_class(gt_boxes, dets, settings.overlap_for(name))
        per_class[name] = {BUCKET: _result(tp, num_gt, settings.ap_mode)}
    return DetectionResults(
        mode="voc", ap_mode=settings.ap_mode, classes=classes, buckets=[BUCKET], per_class=per_class,
        mean_ap=mean_ap(per_class, [BUCKET]),
        min_overlap={c: settings.overlap_for(c) for c in classes}, num_frames=len(ground_truth))


def match_class(gt_boxes: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]],
                min_overlap: float) -> tuple[np.ndarray, int]:
    """Greedy matching of one class's detections, most confident first.

    Args:
        gt_boxes: per frame, ``[G, 4]`` ground-truth boxes of the class.
        detections: per frame, the class's detections.
        min_overlap: IoU a true positive needs (inclusive).

    Returns:
        ``(is_tp, num_gt)``: a bool per detection in ranked order, and the ground-truth count.
    """
    frame_of, row_of, scores, ious = [], [], [], []
    for f, (gt, frame_dets) in enumerate(zip(gt_boxes, detections)):
        if not frame_dets:
            ious.append(None)
            continue
        ious.append(iou_matrix(_boxes(frame_dets), gt))
        for row, d in enumerate(frame_dets):
            frame_of.append(f)
            row_of.append(row)
            scores.append(d.confidence)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    matched = [np.zeros(len(gt), dtype=bool) for gt in gt_boxes]
    is_tp = np.zeros(len(order), dtype=bool)
    for rank, k in enumerate(order):
        f = frame_of[k]
        if not len(matched[f]):
            continue
        candidate = np.where(matched[f], -1.0, ious[f][row_of[k]])
        j = int(np.argmax(candidate))
        if candidate[j] >= min_overlap:
            matched[f][j] = True
            is_tp[rank] = True
    return is_tp, int(sum(len(gt) for gt in gt_boxes))


def average_precision(recall: np.ndarray, precision: np.ndarray, ap_mode: str) -> tuple[float, list, list]:
    """AP (fraction) of a ranked precision/recall curve.

    Args:
        recall: recall after each ranked detection (non-decreasing).
        precision: precision after each ranked detection.
        ap_mode: "11", "40" or "all".

    Returns:
        ``(ap, points_precision, points_recall)``: the AP and the interpolated precision at the
        recall points it averages (for "all", at each recall step of the curve).
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if ap_mode in ("11", "40"):
        points = np.linspace(0.0, 1.0, 11) if ap_mode == "11" else np.arange(1, 41) / 40.0
        values = [float(precision[recall >= t].max()) if np.any(recall >= t) else 0.0 for t in points]
        return math.fsum(values) / len(points), values, [float(t) for t in points]
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, right to left
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    ap = math.fsum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1])
    return ap, [float(p) for p in mpre[steps + 1]], [float(r) for r in mrec[steps + 1]]


def _result(is_tp: np.ndarray, num_gt: int, ap_mode: str) -> ClassResult:
    tp = np.cumsum(is_tp)
    fp = np.cumsum(~is_tp)
    n_tp = int(tp[-1]) if len(tp) else 0
    n_fp = int(fp[-1]) if len(fp) else 0
    if num_gt == 0:
        return ClassResult(None, 0, 0, len(is_tp), n_tp, n_fp)
    recall = tp / num_gt
    precision = tp / np.maximum(tp + fp, 1)
    ap, points_p, points_r = average_precision(recall, precision, ap_mode)
    return ClassResult(100.0 * ap, num_gt, 0, len(is_tp), n_tp, n_fp, points_p, points_r)


def _boxes(items) -> np.ndarray:
    return np.array([[i.xmin, i.ymin, i.xmax, i.ymax] for i in items], dtype=np.float64).reshape(-1, 4)
