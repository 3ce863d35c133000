"""The ``infer`` stage: ``tlt-infer <task>`` and the infer component call this."""

from __future__ import annotations

__all__ = ["run_classification", "run_detection"]


def run_classification(model: str, *, image: str | None = None, image_dir: str | None = None,
                       key: str | None = None, batch_size: int = 1, class_map: str | None = None,
                       framework: str | None = None):
    """Classify one image or a folder with a .tlt model, an export or an engine (see
    `tlt.inference.classification.infer_classification`)."""
    from tlt.inference.classification import infer_classification

    return infer_classification(model, image=image, image_dir=image_dir, key=key,
                                batch_size=batch_size, class_map=class_map, framework=framework)


def run_detection(model: str, inference_input: str, output_dir: str, *, key: str | None = None,
                  batch_size: int = 1, kitti_dump: bool = False, box_overlay: bool = False,
                  cluster_params: str | None = None, line_width: int = 2,
                  output_cov: str = "output_cov", output_bbox: str = "output_bbox",
                  progress: bool = True, framework: str | None = None):
    """Detect objects in an image or a folder, writing KITTI labels and/or annotated images
    (see `tlt.inference.detection.infer_detection`)."""
    from tlt.inference.detection import infer_detection

    return infer_detection(model, inference_input, output_dir, key=key, batch_size=batch_size,
                           kitti_dump=kitti_dump, box_overlay=box_overlay,
                           cluster_params=cluster_params, line_width=line_width,
                           output_cov=output_cov, output_bbox=output_bbox, progress=progress,
                           framework=framework)
