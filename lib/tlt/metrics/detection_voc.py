"""PASCAL VOC average precision, as TLT/TAO report it for DetectNet_v2.

Per class, the detections of all frames are ranked by confidence (ties keep frame order, then
file order). Each in turn is matched to the not yet matched ground truth of its class and frame
with which it has the highest IoU; it is a true positive when that IoU is at least the class's
minimum overlap, otherwise a false positive. AP is then

- ``"11"``: the mean of the interpolated precision at recall 0, 0.1, ..., 1 (VOC 2007);
- ``"40"``: the same at recall 1/40, 2/40, ..., 1;
- ``"all"``: the area under the interpolated precision/recall curve (VOC 2010 and later),

where the interpolated precision at recall r is the highest precision at any recall >= r.

Columns: ``combined`` counts every ground-truth box of the class. A bucket column counts the
boxes inside the bucket and treats the others as PASCAL VOC treats "difficult" objects: a
detection whose only match (IoU >= the minimum overlap) is such a box is ignored, neither a true
nor a false positive, and so is an unmatched detection whose height is outside the bucket's
height range (the guide: buckets "filter detections based on object height, truncation, and
occlusion").
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tlt.metrics.detection_types import (Bucket, ClassResult, Detection, DetectionResults,
                                         EvaluationSettings, GroundTruth, iou_matrix, mean_ap,
                                         outside_bucket, resolve_classes)

__all__ = ["evaluate", "average_precision", "match_class"]


def evaluate(ground_truth: Sequence[Sequence[GroundTruth]], predictions: Sequence[Sequence[Detection]],
             settings: EvaluationSettings) -> DetectionResults:
    """VOC evaluation of every class in every column (see the module docstring).

    Args:
        ground_truth: per frame, its labelled boxes.
        predictions: per frame, its detections.
        settings: classes, minimum overlaps, buckets, class mapping and AP mode.

    Returns:
        Results with the ``combined`` column, then one per bucket.
    """
    classes = resolve_classes(ground_truth, settings)
    per_class = {}
    for name in classes:
        gt = [[g for g in frame if settings.map_class(g.class_name) == name] for frame in ground_truth]
        dets = [[d for d in frame if settings.map_class(d.class_name) == name] for frame in predictions]
        boxes = [_boxes(f) for f in gt]
        per_class[name] = {}
        for bucket in settings.columns:
            is_tp, num_gt = match_class(boxes, dets, settings.overlap_for(name),
                                        counted=[_inside(f, bucket) for f in gt], bucket=bucket)
            per_class[name][bucket.name] = _result(is_tp, num_gt, settings.ap_mode)
    buckets = [b.name for b in settings.columns]
    return DetectionResults(
        mode="voc", ap_mode=settings.ap_mode, classes=classes, buckets=buckets, per_class=per_class,
        mean_ap=mean_ap(per_class, buckets),
        min_overlap={c: settings.overlap_for(c) for c in classes}, num_frames=len(ground_truth))


def match_class(gt_boxes: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]],
                min_overlap: float, *, counted: Sequence[np.ndarray] | None = None,
                bucket: Bucket | None = None) -> tuple[np.ndarray, int]:
    """Greedy matching of one class's detections, most confident first.

    Args:
        gt_boxes: per frame, ``[G, 4]`` ground-truth boxes of the class.
        detections: per frame, the class's detections.
        min_overlap: IoU a true positive needs (inclusive).
        counted: per frame, a bool per ground-truth box: True when it counts, False when it is
            ignored ("difficult"); None counts every box.
        bucket: detections matching no counted box and outside its height range are ignored;
            None ignores none.

    Returns:
        ``(is_tp, num_gt)``: a bool per scored (not ignored) detection in ranked order, and the
        count of counted ground-truth boxes.
    """
    counted = [np.ones(len(gt), dtype=bool) for gt in gt_boxes] if counted is None else counted
    ranked = _rank(gt_boxes, detections)
    matched = [np.zeros(len(gt), dtype=bool) for gt in gt_boxes]
    is_tp: list[bool] = []
    for f, iou, det in ranked:
        candidate = np.where(matched[f] | ~counted[f], -1.0, iou)
        j = int(np.argmax(candidate)) if len(candidate) else -1
        if j >= 0 and candidate[j] >= min_overlap:
            matched[f][j] = True
            is_tp.append(True)
        elif not (np.any(iou[~counted[f]] >= min_overlap) or _too_small_or_big(det, bucket)):
            is_tp.append(False)
    return np.array(is_tp, dtype=bool), int(sum(int(np.sum(c)) for c in counted))


def _rank(gt_boxes, detections) -> list[tuple[int, np.ndarray, Detection]]:
    """``(frame, IoU with the frame's ground truth, detection)`` by falling confidence (stable)."""
    items = []
    for f, (gt, frame_dets) in enumerate(zip(gt_boxes, detections)):
        if frame_dets:
            ious = iou_matrix(_boxes(frame_dets), gt)
            items.extend((f, ious[row], d) for row, d in enumerate(frame_dets))
    order = np.argsort(-np.asarray([d.confidence for _, _, d in items], dtype=np.float64), kind="stable")
    return [items[k] for k in order]


def _too_small_or_big(det: Detection, bucket: Bucket | None) -> bool:
    if bucket is None:
        return False
    height = det.ymax - det.ymin
    return height < bucket.minimum_height or height > bucket.maximum_height


def _inside(frame: Sequence[GroundTruth], bucket: Bucket) -> np.ndarray:
    """Per ground-truth box of a frame, True when ``bucket`` holds it."""
    if not frame:
        return np.zeros(0, dtype=bool)
    height = np.array([g.ymax - g.ymin for g in frame], dtype=np.float64)
    occlusion = np.array([g.occlusion for g in frame], dtype=np.float64)
    truncation = np.array([g.truncation for g in frame], dtype=np.float64)
    return ~outside_bucket(bucket, height, occlusion, truncation)


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
