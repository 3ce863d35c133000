"""The ``infer`` stage: ``tlt-infer <task>`` and the infer component call this."""

from __future__ import annotations

__all__ = ["run_classification"]


def run_classification(model: str, *, image: str | None = None, image_dir: str | None = None,
                       key: str | None = None, batch_size: int = 1, class_map: str | None = None):
    """Classify one image or a folder (see `tlt.inference.classification.infer_classification`)."""
    from tlt.inference.classification import infer_classification

    return infer_classification(model, image=image, image_dir=image_dir, key=key,
                                batch_size=batch_size, class_map=class_map)
