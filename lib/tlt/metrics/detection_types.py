"""What both detection evaluation modes share: boxes, buckets, settings, results (numpy only).

`tlt.metrics.detection_voc` and `tlt.metrics.detection_kitti` import this module and nothing
else of the package, and `tlt.metrics.detection` imports all three, so there is no import circle.

Every evaluation reports the same columns: ``combined`` (every object of the class) followed by
the buckets of ``evaluation_config.evaluation_bucket_config`` (the guide's easy / mdrt / hard,
KITTI's easy / moderate / hard by default), each holding the ground truth whose height,
occlusion and truncation fall inside its limits.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from tlt.errors import SpecError
from tlt.io.atomic import atomic_write_text

__all__ = [
    "MODES", "AP_MODES", "DEFAULT_MIN_OVERLAP", "FALLBACK_MIN_OVERLAP", "COMBINED", "KITTI_BUCKETS",
    "Detection", "GroundTruth", "Bucket", "EvaluationSettings", "ClassResult", "DetectionResults",
    "iou_matrix", "outside_bucket", "resolve_classes", "mean_ap",
]

MODES = ("voc", "kitti")
# "11" / "40": precision sampled at that many recall points; "all": area under the whole curve.
AP_MODES = ("11", "40", "all")
# KITTI's minimum overlaps; any other class needs 0.5.
DEFAULT_MIN_OVERLAP = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
FALLBACK_MIN_OVERLAP = 0.5


@dataclass(frozen=True)
class Detection:
    """One predicted box in input-image pixels.

    Attributes:
        class_name: predicted class.
        xmin, ymin, xmax, ymax: the box.
        confidence: score used to rank detections.
        max_coverage: largest cell coverage of the cluster (DetectNet_v2 post-processing only).
        mean_coverage: mean cell coverage of the cluster (post-processing only).
        num_cells: grid cells merged into the box (post-processing only).
    """

    class_name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    confidence: float
    max_coverage: float | None = None
    mean_coverage: float | None = None
    num_cells: int = 0


@dataclass(frozen=True)
class GroundTruth:
    """One labelled box, with the KITTI attributes the buckets filter on."""

    class_name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    truncation: float = 0.0
    occlusion: int = 0


@dataclass(frozen=True)
class Bucket:
    """Which ground truth one column holds (an ``evaluation_bucket_config`` entry).

    Ground truth is inside when ``minimum_height < height <= maximum_height`` (the KITTI devkit's
    strict minimum) and occlusion and truncation lie in their closed ranges.
    """

    name: str
    minimum_height: float = 0.0
    maximum_height: float = 9999.0
    minimum_occlusion: float = 0
    maximum_occlusion: float = 3
    minimum_truncation: float = 0.0
    maximum_truncation: float = 1.0


#: The ``combined`` column: every object of the class, whatever its size or visibility.
COMBINED = Bucket("combined", -math.inf, math.inf, -math.inf, math.inf, -math.inf, math.inf)

# The official KITTI difficulties (devkit MIN_HEIGHT, MAX_OCCLUSION, MAX_TRUNCATION).
KITTI_BUCKETS = (
    Bucket("easy", 40, 9999, 0, 0, 0.0, 0.15),
    Bucket("moderate", 25, 9999, 0, 1, 0.0, 0.3),
    Bucket("hard", 25, 9999, 0, 2, 0.0, 0.5),
)


def outside_bucket(bucket: Bucket, height: np.ndarray, occlusion: np.ndarray,
                   truncation: np.ndarray) -> np.ndarray:
    """Per ground-truth box, True when the bucket does not hold it (devkit ``cleanData``)."""
    return ((occlusion > bucket.maximum_occlusion) | (occlusion < bucket.minimum_occlusion)
            | (truncation > bucket.maximum_truncation) | (truncation < bucket.minimum_truncation)
            | (height <= bucket.minimum_height) | (height > bucket.maximum_height))


@dataclass(frozen=True)
class EvaluationSettings:
    """Everything an evaluation needs besides the boxes.

    Attributes:
        mode: "voc" or "kitti".
        ap_mode: "11", "40" or "all" ("all" only in voc mode).
        classes: classes to report, lower-case; None means those present in the ground truth.
        min_overlap: class -> IoU a detection needs to match a ground truth.
        buckets: the difficulty columns after ``combined`` (the spec's
            ``evaluation_bucket_config``, else KITTI's easy / moderate / hard).
        class_mapping: ground-truth label -> class (``dataset_config.target_class_mapping``);
            labels not listed keep their name.
    """

    mode: str = "voc"
    ap_mode: str = "11"
    classes: tuple[str, ...] | None = None
    min_overlap: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIN_OVERLAP))
    buckets: tuple[Bucket, ...] = KITTI_BUCKETS
    class_mapping: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in MODES:
            raise SpecError(f"evaluation mode must be one of: {', '.join(MODES)}; got {self.mode!r}")
        if self.ap_mode not in AP_MODES:
            raise SpecError(f"AP mode must be one of: {', '.join(AP_MODES)}; got {self.ap_mode!r}")
        if self.mode == "kitti" and self.ap_mode == "all":
            raise SpecError('AP mode "all" (area under the curve) is not part of the KITTI benchmark; '
                            "use 11 or 40 recall points in kitti mode")
        if any(b.name == COMBINED.name for b in self.buckets):
            raise SpecError('evaluation_config.evaluation_bucket_config key "combined" is reserved '
                            "for the column of every object; name the bucket otherwise",
                            field="evaluation_config.evaluation_bucket_config")

    @property
    def columns(self) -> tuple[Bucket, ...]:
        """``combined`` followed by the buckets: the columns of the AP table."""
        return (COMBINED,) + tuple(self.buckets)

    def overlap_for(self, class_name: str) -> float:
        """Minimum IoU of a match for ``class_name``."""
        return float(self.min_overlap.get(class_name, FALLBACK_MIN_OVERLAP))

    def map_class(self, name: str) -> str:
        """The evaluated class of a ground-truth label (lower-cased, then mapped)."""
        name = name.lower()
        return self.class_mapping.get(name, name)


@dataclass
class ClassResult:
    """AP and counts of one class in one column.

    Attributes:
        ap: average precision in percent, None when the column holds no ground truth of the class.
        num_ground_truth: ground-truth boxes that count (recall denominator).
        num_ignored_ground_truth: boxes matched without counting (other bucket, neighbour class).
        num_detections: detections of the class that were scored (not ignored).
        true_positives: over all detections (no score threshold).
        false_positives: over all detections (kitti: DontCare-covered ones excluded).
        precision: the sampled, interpolated precision values the AP averages (fractions).
        recall: recall at the same points (kitti: at each score threshold, zero after the last).
    """

    ap: float | None
    num_ground_truth: int
    num_ignored_ground_truth: int
    num_detections: int
    true_positives: int
    false_positives: int
    precision: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)


@dataclass
class DetectionResults:
    """Per-class, per-column AP of one evaluation, with mAP per column.

    Attributes:
        mode: "voc" or "kitti".
        ap_mode: "11", "40" or "all".
        classes: evaluated classes, in report order.
        buckets: column names: ``combined``, then the buckets.
        per_class: class -> column -> `ClassResult`.
        mean_ap: column -> mean of the classes' APs that are not None (None if all are).
        min_overlap: class -> IoU threshold used.
        num_frames: frames evaluated.
        frames_without_predictions: frame ids with labels but no prediction file.
        predictions_without_labels: frame ids with a prediction file but no labels (not scored).
    """

    mode: str
    ap_mode: str
    classes: list[str]
    buckets: list[str]
    per_class: dict[str, dict[str, ClassResult]]
    mean_ap: dict[str, float | None]
    min_overlap: dict[str, float]
    num_frames: int
    frames_without_predictions: list[str] = field(default_factory=list)
    predictions_without_labels: list[str] = field(default_factory=list)

    def ap(self, class_name: str, bucket: str | None = None) -> float | None:
        """AP of a class in a column (``combined`` by default)."""
        return self.per_class[class_name][bucket or self.buckets[0]].ap

    def columns(self) -> dict[str, float | None]:
        """The table as flat metrics: ``ap_<class>_<column>`` and ``mAP_<column>`` (None = n/a)."""
        flat: dict[str, float | None] = {}
        for name in self.classes:
            flat.update({f"ap_{name}_{b}": self.per_class[name][b].ap for b in self.buckets})
        flat.update({f"mAP_{b}": self.mean_ap[b] for b in self.buckets})
        return flat

    def to_dict(self) -> dict:
        """Every number of the evaluation as JSON-serialisable data, with `columns` under "columns"."""
        data = asdict(self)
        data["columns"] = self.columns()
        return data

    def to_json(self, indent: int = 2) -> str:
        """`to_dict` as JSON text (None becomes null)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def write_json(self, path: str | os.PathLike) -> None:
        """Write `to_json` to a local file atomically."""
        atomic_write_text(path, self.to_json() + "\n")

    def table(self) -> str:
        """The guide's AP table: a row per class, a column per bucket, and a final ``mAP`` row."""
        headers = ["class mAP"] + list(self.buckets)
        rows = [[name] + [_fmt_ap(self.per_class[name][b].ap) for b in self.buckets]
                for name in self.classes]
        rows.append(["mAP"] + [_fmt_ap(self.mean_ap[b]) for b in self.buckets])
        widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]
        rule = "  ".join("=" * w for w in widths)

        def line(cells):
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        title = f"AP ({self.mode}, {_describe_ap_mode(self.ap_mode)}), in %:"
        body = [line(r) for r in rows[:-1]]
        return "\n".join([title, rule, line(headers), rule, *body, rule, line(rows[-1]), rule])


def _fmt_ap(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _describe_ap_mode(ap_mode: str) -> str:
    return "area under the curve" if ap_mode == "all" else f"{ap_mode} recall points"


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` [N, 4] with every box of ``b`` [M, 4].

    Areas are continuous (``(x2 - x1) * (y2 - y1)``, no +1), as in the KITTI devkit. Pairs whose
    union is empty have IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def resolve_classes(ground_truth, settings: EvaluationSettings) -> list[str]:
    """Classes to report: the settings' list, or the mapped ground-truth classes (no DontCare)."""
    if settings.classes is not None:
        return list(settings.classes)
    found = {settings.map_class(g.class_name) for frame in ground_truth for g in frame}
    found.discard("dontcare")
    return sorted(found)


def mean_ap(per_class: dict[str, dict[str, ClassResult]], buckets: Sequence[str]) -> dict[str, float | None]:
    """Mean over classes of the APs that are not None, per column."""
    out: dict[str, float | None] = {}
    for b in buckets:
        values = [r[b].ap for r in per_class.values() if r[b].ap is not None]
        out[b] = math.fsum(values) / len(values) if values else None
    return out
