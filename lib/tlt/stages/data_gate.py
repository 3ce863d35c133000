"""The ``data_gate`` stage: check new training data before a retraining run trains on it.

Profiles the new data (a KITTI tree for detection, folder-per-class images for classification),
compares its classes with the champion's training data (`tlt.gates.data_gate`), writes the report
(``data_gate.json``, ``.md``, ``.html``) and then, when a check failed, raises `GateError` with
the failed checks in one line: the run stops with a report instead of training on broken data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from tlt.errors import GateError, SpecError
from tlt.gates.data_gate import DataGateConfig, check_classification_data, check_detection_data
from tlt.gates.report import GateReport, write_gate_report

__all__ = ["TASKS", "run"]

TASKS = ("classification", "detection")


def run(new_data_uri: str, report_dir: str | os.PathLike, *, task: str = "detection",
        reference_counts: Mapping[str, int] | None = None, config: DataGateConfig | None = None,
        image_dir: str = "images", label_dir: str = "labels",
        image_extension: str = ".png") -> GateReport:
    """Check the data at ``new_data_uri``; write the report into ``report_dir``.

    Args:
        new_data_uri: the new data set (local folder, gs:// or s3:// prefix).
        report_dir: local folder receiving data_gate.json/.md/.html.
        task: ``detection`` (KITTI images/ + labels/) or ``classification`` (one folder per class).
        reference_counts: class counts of the champion's training data; None on a first run.
        config: thresholds.
        image_dir, label_dir, image_extension: the KITTI layout (detection).

    Returns:
        The passed report.

    Raises:
        GateError: a check failed (the report is written first).
        DataError: the prefix holds no frames.
        SpecError: an unknown task.
    """
    if task not in TASKS:
        raise SpecError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}", field="task")
    if task == "detection":
        report = check_detection_data(new_data_uri, reference_counts, image_dir=image_dir,
                                      label_dir=label_dir, image_extension=image_extension,
                                      config=config)
    else:
        report = check_classification_data(new_data_uri, reference_counts, config=config)
    path = write_gate_report(report, Path(report_dir))
    if not report.passed:
        raise GateError(f"{report.summary()} (report: {path.with_suffix('.html')})")
    return report
