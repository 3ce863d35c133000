"""Score a folder of KITTI prediction files against a folder of KITTI label files.

Frames are matched by file name (``<frame id>.txt``). A prediction file holds one detection per
line in KITTI's result format, 16 fields with the score last::

    Car -1 -1 -10 587.01 173.33 614.12 200.12 -1 -1 -1 -1000 -1000 -1000 -10 0.93

Only the class (field 1), the box (fields 5-8) and the score (field 16) are read; tlt-infer,
DeepStream and the KITTI devkit all write this format. Label files are read with
`tlt.data.kitti` (15 fields; DontCare regions are kept for the kitti mode).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from tqdm import tqdm

from tlt.data.kitti import read_label_file
from tlt.errors import DataError
from tlt.metrics.detection import (DetectionResults, Detection, GroundTruth, build_evaluation_settings,
                                   evaluate_detections)

__all__ = ["PREDICTION_FIELDS", "read_prediction_file", "read_ground_truth_file", "evaluate_prediction_files"]

PREDICTION_FIELDS = 16
_LOG = logging.getLogger(__name__)
# 0-based field -> name, for the fields a prediction is read from
_READ_FIELDS = {4: "x1", 5: "y1", 6: "x2", 7: "y2", 15: "score"}


def read_prediction_file(path: str | os.PathLike, *, display: str | None = None) -> list[Detection]:
    """Detections of one KITTI prediction file.

    Args:
        path: the local file.
        display: name used in messages instead of ``path``.

    Returns:
        The detections in file order (class names lower-cased). Blank lines are skipped.

    Raises:
        DataError: unreadable file, a line without exactly 16 fields, or a box/score field that is
            not a finite number (``file:line: ...``).
    """
    display = display or str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{display}: not UTF-8 text ({err.reason} at byte {err.start}), "
                        "expected a KITTI prediction file") from None
    except OSError as err:
        raise DataError(f"{display}: cannot read the prediction file ({err.strerror})") from None
    detections = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != PREDICTION_FIELDS:
            raise DataError(f"{display}:{number}: {len(fields)} fields, expected {PREDICTION_FIELDS} "
                            "(a KITTI label line with the score as 16th field)")
        values = {}
        for index, name in _READ_FIELDS.items():
            try:
                values[name] = float(fields[index])
            except ValueError:
                values[name] = math.nan
            if not math.isfinite(values[name]):
                raise DataError(f"{display}:{number}: field {index + 1} ({name}) is {fields[index]!r}, "
                                "expected a number")
        detections.append(Detection(fields[0].lower(), values["x1"], values["y1"], values["x2"],
                                    values["y2"], values["score"]))
    return detections


def read_ground_truth_file(path: str | os.PathLike, *, display: str | None = None) -> list[GroundTruth]:
    """Ground truth of one KITTI label file (DontCare regions included).

    Raises:
        DataError: unreadable file or a malformed line (``file:line: ...``).
    """
    objects = read_label_file(path, display=display, strict=True)
    return [GroundTruth(o.object_class, o.x1, o.y1, o.x2, o.y2, o.truncation, o.occlusion)
            for o in objects]


def evaluate_prediction_files(labels_dir: str | os.PathLike, predictions_dir: str | os.PathLike, *,
                              mode: str | None = None, spec=None, ap_mode: str | None = None,
                              classes: list[str] | None = None, progress: bool = False) -> DetectionResults:
    """Score every frame of ``labels_dir`` with the predictions of the same name.

    Args:
        labels_dir: folder of ``<frame id>.txt`` KITTI label files.
        predictions_dir: folder of ``<frame id>.txt`` prediction files (16 fields).
        mode: "voc" or "kitti"; default the spec's ``evaluation_config.evaluation_mode``, else "voc".
        spec: a ``DetectionExperiment`` supplying ``dataset_config.target_class_mapping``, the
            classes, minimum overlaps and buckets; without it KITTI's defaults apply (Car 0.7, other
            classes 0.5; easy/moderate/hard) and the classes are those in the labels.
        ap_mode: "11", "40" or "all" (voc only); default the spec's, else "11".
        classes: classes to report, overriding the spec's.
        progress: show a progress bar while reading the files.

    Returns:
        The results; ``frames_without_predictions`` lists frames whose ground truth all counts as
        missed, ``predictions_without_labels`` prediction files that were not scored.

    Raises:
        DataError: a folder is missing, ``labels_dir`` has no label files, or a file is malformed.
        SpecError: an unknown mode or AP mode.
    """
    settings = build_evaluation_settings(spec, mode=mode, ap_mode=ap_mode, classes=classes)
    labels = _text_files(labels_dir, "labels")
    if not labels:
        raise DataError(f"{labels_dir}: no label files (*.txt), expected one KITTI label file per frame")
    predictions = _text_files(predictions_dir, "predictions")
    frame_ids = sorted(labels)
    missing = [f for f in frame_ids if f not in predictions]
    unlabelled = sorted(set(predictions) - set(labels))
    if unlabelled:
        shown = ", ".join(unlabelled[:10]) + (" ..." if len(unlabelled) > 10 else "")
        _LOG.warning("%d prediction file(s) in %s have no label file and are not scored: %s",
                     len(unlabelled), predictions_dir, shown)
    if missing:
        _LOG.warning("%d frame(s) have no prediction file; their objects count as missed", len(missing))
    ground_truth, detections = [], []
    for frame_id in tqdm(frame_ids, desc="reading", unit="frame", disable=not progress):
        ground_truth.append(read_ground_truth_file(labels[frame_id]))
        detections.append(read_prediction_file(predictions[frame_id]) if frame_id in predictions else [])
    results = evaluate_detections(ground_truth, detections, settings)
    results.frames_without_predictions = missing
    results.predictions_without_labels = unlabelled
    return results


def _text_files(folder: str | os.PathLike, what: str) -> dict[str, str]:
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: {what} folder does not exist, expected a folder of <frame id>.txt files")
    with os.scandir(folder) as entries:
        return {e.name[:-4]: e.path for e in entries if e.name.endswith(".txt") and e.is_file()}
