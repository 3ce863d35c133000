"""DetectNet_v2 post-processing: raw coverage and bbox maps -> boxes per class (numpy + scikit-learn).

Per class, every grid cell whose coverage is above ``coverage_threshold`` proposes the box its
bbox channels decode to (`tlt.models.detectnet_v2.bbox_codec`). The proposals are merged into
detections by one of two algorithms:

- DBSCAN (TLT's): clusters on the distance ``1 - IoU`` with radius ``dbscan_eps``; a proposal is
  a core point when the coverages within that radius sum to at least ``dbscan_min_samples``
  (a float, e.g. 0.05). Each cluster becomes the coverage-weighted mean of its boxes, with
  confidence = the sum of its coverages; proposals in no cluster are dropped;
- NMS: proposals ranked by coverage, each suppressing the later ones it overlaps with IoU above
  ``nms_iou_threshold``; confidence = the cell's coverage.

Detections lower than the minimum height or less confident than the class's threshold are
dropped. Settings come from the spec's ``postprocessing_config`` or from the inference
cluster-params JSON (`build_postprocessor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.cluster import DBSCAN

from tlt.errors import DataError, SpecError
from tlt.metrics.detection import Detection, iou_matrix
from tlt.models.detectnet_v2.bbox_codec import BboxCodec, build_bbox_codec

__all__ = ["ALGORITHMS", "Detection", "ClassSettings", "PostProcessor", "build_postprocessor",
           "cluster_dbscan", "suppress_nms"]

ALGORITHMS = ("dbscan", "nms")


@dataclass(frozen=True)
class ClassSettings:
    """Post-processing of one class (defaults are the spec's ``ClusteringConfig`` defaults).

    Attributes:
        coverage_threshold: cells with coverage above this propose a box.
        algorithm: "dbscan" or "nms".
        dbscan_eps: DBSCAN radius on ``1 - IoU``.
        dbscan_min_samples: summed coverage that makes a core point.
        minimum_height: detections lower than this (pixels) are dropped.
        confidence_threshold: detections less confident than this are dropped (DBSCAN: summed
            coverage of the cluster; NMS: the cell's coverage).
        nms_iou_threshold: NMS suppression IoU.
        output_name: class name written on the detections (``output_map``); None keeps the name.
        enabled: False to compute nothing for the class (``postproc_classes``).
    """

    coverage_threshold: float = 0.005
    algorithm: str = "dbscan"
    dbscan_eps: float = 0.15
    dbscan_min_samples: float = 0.05
    minimum_height: float = 20.0
    confidence_threshold: float = 0.1
    nms_iou_threshold: float = 0.5
    output_name: str | None = None
    enabled: bool = True

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise SpecError(f"clustering algorithm must be one of: {', '.join(ALGORITHMS)}; "
                            f"got {self.algorithm!r}")


class PostProcessor:
    """Turns the raw outputs of one image (or a batch) into detections.

    Args:
        class_names: the network's classes in output-channel order.
        settings: class -> its settings; classes left out use `ClassSettings` defaults.
        codec: grid geometry (stride, scale, offset).
        image_size: ``(width, height)`` boxes are clipped to; None means the grid's extent.
    """

    def __init__(self, class_names: Sequence[str], settings: Mapping[str, ClassSettings] | None = None,
                 codec: BboxCodec | None = None, image_size: tuple[int, int] | None = None):
        self.class_names = list(class_names)
        settings = dict(settings or {})
        self.settings = {name: settings.get(name, ClassSettings()) for name in self.class_names}
        self.codec = codec or BboxCodec()
        self.image_size = image_size

    def __call__(self, cov: np.ndarray, bbox: np.ndarray,
                 image_size: tuple[int, int] | None = None) -> list[Detection]:
        return self.process(cov, bbox, image_size)

    def process(self, cov: np.ndarray, bbox: np.ndarray,
                image_size: tuple[int, int] | None = None) -> list[Detection]:
        """Detections of one image, most confident first within each class.

        Args:
            cov: ``[C, H, W]`` coverage (sigmoid probabilities), C = len(class_names).
            bbox: ``[4C, H, W]`` raw bbox output.
            image_size: ``(width, height)`` to clip to; defaults to the processor's.

        Raises:
            DataError: the shapes do not fit each other or the class list.
        """
        cov = np.asarray(cov, dtype=np.float32)
        bbox = np.asarray(bbox, dtype=np.float32)
        n_cls = len(self.class_names)
        if cov.ndim != 3 or cov.shape[0] != n_cls:
            raise DataError(f"output_cov has shape {cov.shape}, expected [{n_cls}, H, W] for classes "
                            f"{', '.join(self.class_names)}")
        if bbox.shape != (4 * n_cls, *cov.shape[1:]):
            raise DataError(f"output_bbox has shape {bbox.shape}, expected {(4 * n_cls, *cov.shape[1:])} "
                            f"to match output_cov {cov.shape}")
        h, w = cov.shape[1:]
        size = image_size or self.image_size or (w * self.codec.stride, h * self.codec.stride)
        detections: list[Detection] = []
        for c, name in enumerate(self.class_names):
            s = self.settings[name]
            if not s.enabled:
                continue
            mask = cov[c] > s.coverage_threshold
            if not mask.any():
                continue
            rows, cols = np.nonzero(mask)
            targets = np.moveaxis(bbox[4 * c:4 * c + 4, rows, cols], 0, -1)  # [N, 4]
            boxes = self.codec.decode_at(targets, rows, cols, size)
            weights = cov[c][rows, cols].astype(np.float64)
            if s.algorithm == "nms":
                found = suppress_nms(boxes, weights, s.nms_iou_threshold, s.confidence_threshold)
            else:
                found = cluster_dbscan(boxes, weights, s.dbscan_eps, s.dbscan_min_samples)
            label = s.output_name or name
            for box, conf, cmax, cmean, n in found:
                if box[3] - box[1] < s.minimum_height or conf < s.confidence_threshold:
                    continue
                if box[2] <= box[0] or box[3] <= box[1]:
                    continue  # an untrained model's offsets can invert a box: no object there
                detections.append(Detection(label, float(box[0]), float(box[1]), float(box[2]),
                                            float(box[3]), float(conf), float(cmax), float(cmean), int(n)))
        return detections

    def process_batch(self, cov: np.ndarray, bbox: np.ndarray,
                      image_size: tuple[int, int] | None = None) -> list[list[Detection]]:
        """`process` for every image of a batch: cov ``[N, C, H, W]``, bbox ``[N, 4C, H, W]``."""
        cov = np.asarray(cov)
        bbox = np.asarray(bbox)
        if cov.ndim != 4 or bbox.ndim != 4 or len(cov) != len(bbox):
            raise DataError(f"batch outputs must be [N, C, H, W] and [N, 4C, H, W] with the same N, got "
                            f"{cov.shape} and {bbox.shape}")
        return [self.process(c, b, image_size) for c, b in zip(cov, bbox)]


def cluster_dbscan(boxes: np.ndarray, weights: np.ndarray, eps: float, min_samples: float) -> list[tuple]:
    """Coverage-weighted DBSCAN on ``1 - IoU``.

    Args:
        boxes: ``[N, 4]`` proposals.
        weights: ``[N]`` their coverages (> 0).
        eps: neighbourhood radius on ``1 - IoU``.
        min_samples: summed weight within ``eps`` that makes a core point (may be fractional).

    Returns:
        Per cluster ``(box [4], confidence, max coverage, mean coverage, cell count)``, most
        confident first.
    """
    if not len(boxes):
        return []
    distance = 1.0 - iou_matrix(boxes, boxes)
    # Only pairs within eps matter to DBSCAN: handing it that sparse neighbourhood graph (explicit
    # zeros included) gives the same labels as the dense matrix at a fraction of the cost.
    rows, cols = np.nonzero(distance <= eps)
    graph = csr_matrix((distance[rows, cols], (rows, cols)), shape=distance.shape)
    # scikit-learn only takes an integer min_samples, but its core test is "summed sample_weight of
    # the neighbourhood >= min_samples": dividing the weights by TLT's float threshold and asking
    # for 1 is the same test. The weights play no other part in DBSCAN.
    sample_weight = weights / min_samples if min_samples > 0 else None
    labels = DBSCAN(eps=eps, min_samples=1, metric="precomputed").fit_predict(
        graph, sample_weight=sample_weight)
    keep = labels >= 0
    if not keep.any():
        return []
    labels, boxes, weights = labels[keep], boxes[keep].astype(np.float64), weights[keep]
    n = int(labels.max()) + 1
    total = np.bincount(labels, weights=weights, minlength=n)
    count = np.bincount(labels, minlength=n)
    mean_box = np.stack([np.bincount(labels, weights=weights * boxes[:, k], minlength=n)
                         for k in range(4)], axis=1) / total[:, None]
    peak = np.zeros(n)
    np.maximum.at(peak, labels, weights)
    order = np.argsort(-total, kind="stable")
    return [(mean_box[i], total[i], peak[i], total[i] / count[i], count[i]) for i in order if count[i]]


def suppress_nms(boxes: np.ndarray, weights: np.ndarray, iou_threshold: float,
                 min_weight: float = 0.0) -> list[tuple]:
    """Greedy non-maximum suppression by coverage.

    Args:
        boxes: ``[N, 4]`` proposals.
        weights: ``[N]`` their coverages.
        iou_threshold: a kept box suppresses later boxes overlapping it with a larger IoU.
        min_weight: proposals with a lower coverage are dropped first.

    Returns:
        Per kept box ``(box, coverage, coverage, coverage, 1)``, highest coverage first.
    """
    keep_idx = np.flatnonzero(weights >= min_weight)
    if not len(keep_idx):
        return []
    order = keep_idx[np.argsort(-weights[keep_idx], kind="stable")]
    boxes, weights = boxes[order], weights[order]
    iou = iou_matrix(boxes, boxes)
    suppressed = np.zeros(len(order), dtype=bool)
    kept = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept.append(i)
        suppressed |= iou[i] > iou_threshold
    return [(boxes[i].astype(np.float64), weights[i], weights[i], weights[i], 1) for i in kept]


def build_postprocessor(config, class_names: Sequence[str] | None = None, *, codec: BboxCodec | None = None,
                        image_size: tuple[int, int] | None = None) -> PostProcessor:
    """Post-processor from a spec or from the inference cluster-params file.

    Args:
        config: a ``DetectionExperiment`` (classes from ``cost_function_config``, codec from
            ``model_config.objective_set.bbox``, image size from the augmentation's output size),
            its ``PostProcessingConfig``, or a ``ClusterParams`` (``tlt.spec.load_cluster_params``;
            every class's values with the file's "default" fallback).
        class_names: the model's classes in output order. Required for a bare
            ``PostProcessingConfig``; for ``ClusterParams`` it defaults to ``target_classes``.
        codec: grid geometry; default from the spec or TLT's.
        image_size: ``(width, height)`` to clip to; default from the spec or the file.

    Raises:
        SpecError: a class has no settings, or the cluster-params file names a class the model
            does not have.
    """
    if hasattr(config, "postprocessing_config"):
        if class_names is None:
            class_names = [t.name for t in config.cost_function_config.target_classes]
        codec = codec or build_bbox_codec(config)
        pre = config.augmentation_config.preprocessing
        if image_size is None and pre.output_image_width and pre.output_image_height:
            image_size = (pre.output_image_width, pre.output_image_height)
        config = config.postprocessing_config
    if hasattr(config, "target_classes"):
        return _from_cluster_params(config, class_names, codec, image_size)
    if not class_names:
        raise SpecError("postprocessing_config: the model's class names are needed to order its outputs "
                        "(cost_function_config.target_classes is empty)")
    table = config.target_class_config
    settings = {}
    for name in class_names:
        if name in table:
            settings[name] = _from_clustering_config(table[name].clustering_config)
        elif len(table):
            raise SpecError(f"postprocessing_config.target_class_config has no entry for {name!r} "
                            f"(it has: {', '.join(sorted(table))})",
                            field="postprocessing_config.target_class_config")
    return PostProcessor(class_names, settings, codec, image_size)


def _from_clustering_config(cfg) -> ClassSettings:
    nms = cfg.clustering_algorithm == 1
    defaults = ClassSettings()

    def get(field: str, default: float) -> float:
        return _decimal(getattr(cfg, field)) if cfg.HasField(field) else default

    return ClassSettings(
        coverage_threshold=get("coverage_threshold", defaults.coverage_threshold),
        algorithm="nms" if nms else "dbscan",
        dbscan_eps=get("dbscan_eps", defaults.dbscan_eps),
        dbscan_min_samples=get("dbscan_min_samples", defaults.dbscan_min_samples),
        minimum_height=get("minimum_bounding_box_height", defaults.minimum_height),
        confidence_threshold=(_decimal(cfg.nms_confidence_threshold) if nms
                              else get("dbscan_confidence_threshold", defaults.confidence_threshold)),
        nms_iou_threshold=get("nms_iou_threshold", defaults.nms_iou_threshold),
    )


def _from_cluster_params(params, class_names, codec, image_size) -> PostProcessor:
    from tlt.spec import cluster_value  # the spec loader is only needed for this format

    targets = list(params.target_classes)
    if class_names is None:
        class_names = targets
    unknown = [c for c in targets if c not in class_names]
    if unknown:
        raise SpecError(f"target_classes names {', '.join(repr(c) for c in unknown)}, which the model "
                        f"does not have (model classes: {', '.join(class_names)})", field="target_classes")
    shown = set(params.postproc_classes or targets)
    settings = {}
    for name in class_names:
        if name not in targets:
            settings[name] = ClassSettings(enabled=False)
            continue
        settings[name] = ClassSettings(
            coverage_threshold=_decimal(cluster_value(params, "min_cov_to_cluster", name)),
            dbscan_eps=_decimal(cluster_value(params, "dbscan_eps", name)),
            dbscan_min_samples=_decimal(cluster_value(params, "dbscan_min_samples", name)),
            minimum_height=_decimal(cluster_value(params, "min_obj_height", name)),
            confidence_threshold=_decimal(cluster_value(params, "confidence_th", name)),
            output_name=params.output_map.get(name) or None,
            enabled=name in shown)
    if image_size is None and params.image_width and params.image_height:
        image_size = (params.image_width, params.image_height)
    return PostProcessor(class_names, settings, codec, image_size)


def _decimal(value: float) -> float:
    """A float32 spec value as the decimal written in the file (0.15, not 0.150000006)."""
    return float(str(np.float32(value)))
