"""The official KITTI object benchmark for 2D boxes, as the devkit's ``evaluate_object.cpp`` computes it.

Per class and difficulty bucket (devkit ``cleanData``):

- ground truth of the class counts, unless outside the bucket (occlusion, truncation, or height
  ``<=`` the minimum), in which case it is *ignored*: a detection matched to it is neither a true
  nor a false positive. The neighbouring classes (Van for Car, Person_sitting for Pedestrian) are
  ignored the same way; other classes play no part;
- detections lower than the bucket's minimum height (their height truncated to an integer, as
  the devkit does) are ignored, whatever their class; detections of other classes play no part;
- a detection of the class that matches nothing but covers a DontCare region (intersection over
  the detection's area above the minimum overlap) is not a false positive.

A match needs IoU strictly above the class's minimum overlap. Score thresholds are picked from
the true positives' scores so that they approximate 41 evenly spaced recall values
(``getThresholds``); precision at each threshold is replaced by the maximum precision at that or
any lower threshold, and AP is the mean of 11 of these samples (indices 0, 4, ..., 40) or, for
``"40"`` (KITTI since 2019), of samples 1 to 40, in percent.

Like the devkit this places the i-th threshold at recall sample i, so with fewer than 41 counted
ground-truth boxes even perfect detections score below 100 (e.g. 2 boxes: 9.09 with 11 points,
2.5 with 40; see open-mmlab/OpenPCDet#1060). Two extensions keep the defaults' numbers: buckets
may also set a maximum height (taller ground truth is ignored, taller detections too) and minimum
occlusion and truncation; a class without counted ground truth gets AP None, not a failure.
The ``combined`` column is the same computation with a bucket that holds every object (DontCare
regions and neighbouring classes still apply).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tlt.metrics.detection_types import (Bucket, ClassResult, Detection, DetectionResults,
                                         EvaluationSettings, GroundTruth, iou_matrix, mean_ap,
                                         outside_bucket, resolve_classes)

__all__ = ["N_SAMPLE_PTS", "NEIGHBOUR_CLASSES", "evaluate", "get_thresholds", "evaluate_class"]

N_SAMPLE_PTS = 41
# class -> ground-truth class that is ignored rather than counted as a miss when undetected
NEIGHBOUR_CLASSES = {"car": "van", "pedestrian": "person_sitting"}
_DONT_CARE = "dontcare"


@dataclass
class _Frame:
    """One frame's boxes and their overlaps, shared by every class and bucket."""

    gt_class: list[str]
    gt_height: np.ndarray
    gt_occlusion: np.ndarray
    gt_truncation: np.ndarray
    det_class: list[str]
    det_height: np.ndarray
    det_int_height: np.ndarray
    scores: np.ndarray
    iou: np.ndarray          # [D, G]
    dc_overlap: np.ndarray   # [D, DC]: intersection / detection area


def evaluate(ground_truth: Sequence[Sequence[GroundTruth]], predictions: Sequence[Sequence[Detection]],
             settings: EvaluationSettings) -> DetectionResults:
    """KITTI evaluation of every class in every bucket (see the module docstring).

    Args:
        ground_truth: per frame, its labelled boxes including DontCare regions.
        predictions: per frame, its detections.
        settings: classes, minimum overlaps, buckets, class mapping and AP mode ("11" or "40").

    Returns:
        Results with the ``combined`` column, then one per bucket.
    """
    frames = [_prepare(gt, dets, settings) for gt, dets in zip(ground_truth, predictions)]
    classes = resolve_classes(ground_truth, settings)
    per_class = {name: {b.name: evaluate_class(frames, name, b, settings.overlap_for(name), settings.ap_mode)
                        for b in settings.columns}
                 for name in classes}
    buckets = [b.name for b in settings.columns]
    return DetectionResults(
        mode="kitti", ap_mode=settings.ap_mode, classes=classes, buckets=buckets, per_class=per_class,
        mean_ap=mean_ap(per_class, buckets),
        min_overlap={c: settings.overlap_for(c) for c in classes}, num_frames=len(frames))


def get_thresholds(scores: Sequence[float], num_gt: int) -> list[float]:
    """Score thresholds approximating ``N_SAMPLE_PTS`` evenly spaced recalls (devkit ``getThresholds``).

    Args:
        scores: scores of the true positives (best match per counted ground truth).
        num_gt: counted ground-truth boxes.
    """
    v = sorted((float(s) for s in scores), reverse=True)
    thresholds: list[float] = []
    current_recall = 0.0
    last = len(v) - 1
    for i, score in enumerate(v):
        l_recall = (i + 1) / num_gt
        r_recall = (i + 2) / num_gt if i < last else l_recall
        # skip the score when the next one is closer to the current recall sample
        if (r_recall - current_recall) < (current_recall - l_recall) and i < last:
            continue
        thresholds.append(score)
        current_recall += 1.0 / (N_SAMPLE_PTS - 1.0)
    return thresholds


def evaluate_class(frames: Sequence[_Frame], name: str, bucket: Bucket, min_overlap: float,
                   ap_mode: str) -> ClassResult:
    """AP of one class in one bucket (devkit ``eval_class``) over prepared frames."""
    neighbour = NEIGHBOUR_CLASSES.get(name)
    cleaned, num_gt, num_ignored, num_dets = [], 0, 0, 0
    for frame in frames:
        ignored_gt = _ignored_gt(frame, name, neighbour, bucket)
        ignored_det = _ignored_det(frame, name, bucket)
        if not np.any(ignored_gt != -1) and not np.any(ignored_det == 0):
            continue  # contributes no TP, FP or FN in any pass
        num_gt += int(np.sum(ignored_gt == 0))
        num_ignored += int(np.sum(ignored_gt == 1))
        num_dets += int(np.sum(ignored_det == 0))
        cleaned.append((frame, ignored_gt, ignored_det))
    if num_gt == 0:
        return ClassResult(None, 0, num_ignored, num_dets, 0, 0)
    scores: list[float] = []
    for frame, ignored_gt, ignored_det in cleaned:
        scores.extend(_statistics(frame, ignored_gt, ignored_det, min_overlap, None)[3])
    thresholds = get_thresholds(scores, num_gt)
    precision = [0.0] * N_SAMPLE_PTS
    recall = [0.0] * N_SAMPLE_PTS
    for t, thresh in enumerate(thresholds[:N_SAMPLE_PTS]):
        tp = fp = fn = 0
        for frame, ignored_gt, ignored_det in cleaned:
            f_tp, f_fp, f_fn, _ = _statistics(frame, ignored_gt, ignored_det, min_overlap, thresh)
            tp, fp, fn = tp + f_tp, fp + f_fp, fn + f_fn
        recall[t] = tp / (tp + fn) if tp + fn else 0.0
        precision[t] = tp / (tp + fp) if tp + fp else 0.0
    for t in range(len(precision)):
        precision[t] = max(precision[t:])
    if ap_mode == "40":
        total = 0.0
        for t in range(1, N_SAMPLE_PTS):
            total += precision[t]
        ap = total / 40.0 * 100.0
    else:
        total = 0.0
        for t in range(0, N_SAMPLE_PTS, 4):
            total += precision[t]
        ap = total / 11.0 * 100.0
    all_tp = all_fp = 0
    for frame, ignored_gt, ignored_det in cleaned:
        f_tp, f_fp, _, _ = _statistics(frame, ignored_gt, ignored_det, min_overlap, -np.inf)
        all_tp, all_fp = all_tp + f_tp, all_fp + f_fp
    return ClassResult(ap, num_gt, num_ignored, num_dets, all_tp, all_fp, precision, recall)


def _prepare(gt: Sequence[GroundTruth], dets: Sequence[Detection], settings: EvaluationSettings) -> _Frame:
    gt_class = [settings.map_class(g.class_name) for g in gt]
    gt_boxes = np.array([[g.xmin, g.ymin, g.xmax, g.ymax] for g in gt], dtype=np.float64).reshape(-1, 4)
    det_boxes = np.array([[d.xmin, d.ymin, d.xmax, d.ymax] for d in dets], dtype=np.float64).reshape(-1, 4)
    dc_boxes = gt_boxes[[c == _DONT_CARE for c in gt_class]]
    det_height = np.abs(det_boxes[:, 3] - det_boxes[:, 1])
    return _Frame(
        gt_class=gt_class,
        gt_height=gt_boxes[:, 3] - gt_boxes[:, 1],
        gt_occlusion=np.array([g.occlusion for g in gt], dtype=np.int64),
        gt_truncation=np.array([g.truncation for g in gt], dtype=np.float64),
        det_class=[settings.map_class(d.class_name) for d in dets],
        det_height=det_height,
        det_int_height=np.trunc(det_height),  # the devkit stores it in an int32
        scores=np.array([d.confidence for d in dets], dtype=np.float64),
        iou=iou_matrix(det_boxes, gt_boxes),
        dc_overlap=_intersection_over_first(det_boxes, dc_boxes),
    )


def _intersection_over_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    valid = (iw > 0) & (ih > 0)
    area = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid, iw * ih / np.where(valid, area, 1.0), 0.0)


def _ignored_gt(frame: _Frame, name: str, neighbour: str | None, bucket: Bucket) -> np.ndarray:
    """Per ground truth: 0 counted, 1 ignored (other bucket or neighbour class), -1 not involved."""
    valid = np.array([1 if c == name else 0 if c == neighbour else -1 for c in frame.gt_class],
                     dtype=np.int64)
    outside = outside_bucket(bucket, frame.gt_height, frame.gt_occlusion, frame.gt_truncation)
    out = np.full(len(valid), -1, dtype=np.int64)
    out[(valid == 1) & ~outside] = 0
    out[(valid == 0) | ((valid == 1) & outside)] = 1
    return out


def _ignored_det(frame: _Frame, name: str, bucket: Bucket) -> np.ndarray:
    """Per detection: 0 scored, 1 ignored (too small, any class), -1 other class."""
    small = (frame.det_int_height < bucket.minimum_height) | (frame.det_height > bucket.maximum_height)
    same = np.array([c == name for c in frame.det_class], dtype=bool)
    return np.where(small, 1, np.where(same, 0, -1)).astype(np.int64)


def _statistics(frame: _Frame, ignored_gt: np.ndarray, ignored_det: np.ndarray, min_overlap: float,
                thresh: float | None) -> tuple[int, int, int, list[float]]:
    """TP, FP, FN and TP scores of one frame (devkit ``computeStatistics``).

    ``thresh`` None is the first pass (``compute_fp`` false): each ground truth takes its best
    scoring candidate. Otherwise detections scoring below ``thresh`` are left out and each ground
    truth takes its highest-IoU candidate, preferring detections that are not ignored.
    """
    compute_fp = thresh is not None
    n_det = len(ignored_det)
    assigned = np.zeros(n_det, dtype=bool)
    below = frame.scores < thresh if compute_fp else np.zeros(n_det, dtype=bool)
    usable = (ignored_det != -1) & ~below
    tp = fn = 0
    tp_scores: list[float] = []
    for i in np.flatnonzero(ignored_gt != -1):
        overlap = frame.iou[:, i]
        candidates = np.flatnonzero(usable & ~assigned & (overlap > min_overlap))
        det_idx = -1
        if len(candidates):
            if not compute_fp:
                det_idx = int(candidates[np.argmax(frame.scores[candidates])])
            else:
                scored = candidates[ignored_det[candidates] == 0]
                if len(scored):
                    det_idx = int(scored[np.argmax(overlap[scored])])
                else:
                    det_idx = int(candidates[0])
        if det_idx < 0:
            if ignored_gt[i] == 0:
                fn += 1
        elif ignored_gt[i] == 1 or ignored_det[det_idx] == 1:
            assigned[det_idx] = True
        else:
            tp += 1
            tp_scores.append(float(frame.scores[det_idx]))
            assigned[det_idx] = True
    fp = 0
    if compute_fp:
        unmatched = ~assigned & (ignored_det == 0) & ~below
        in_dont_care = np.any(frame.dc_overlap > min_overlap, axis=1)
        fp = int(np.sum(unmatched & ~in_dont_care))
    return tp, fp, fn, tp_scores
