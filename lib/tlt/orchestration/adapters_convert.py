"""Adapter of the convert stage: a dataset export spec -> `tlt.stages.convert` -> TFRecord shards."""

from __future__ import annotations

import sys
from typing import Any, Mapping

from tlt.orchestration.adapters_common import jsonable

__all__ = ["convert"]


def convert(params: Mapping[str, Any], inputs: Mapping[str, str],
            outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.convert` on a prototxt spec; describe the TFRecords for the UI.

    Args:
        params: ``spec`` (prototxt text), ``dataset_root`` (URI or "" to keep the spec's) and
            ``validation_fold`` (-1 for none).
        inputs: unused (convert reads the raw data set named by the spec).
        outputs: ``dataset``: the folder to write the shards and ``metadata.json`` to.

    Returns:
        ``{"dataset": {...}}`` with frame, shard and per-fold class counts.
    """
    from tlt import spec as tlt_spec
    from tlt.stages import convert as convert_stage

    spec = tlt_spec.loads(params["spec"], "dataset_export")
    root = params.get("dataset_root")
    if root:
        old_root = spec.kitti_config.root_directory_path
        spec.kitti_config.root_directory_path = root
        # The image root recorded for training moves with the data set unless the spec chose another.
        if spec.image_directory_path in ("", old_root):
            spec.image_directory_path = root
    fold = int(params.get("validation_fold", -1))
    # Progress bars only help a person watching a terminal; pod logs would fill with \r updates.
    result = convert_stage.run(spec, outputs["dataset"], validation_fold=None if fold < 0 else fold,
                               progress=sys.stderr.isatty())
    return {"dataset": {
        "stage": "convert",
        "num_frames": int(result.num_frames),
        "num_shards": len(result.shards),
        "frames_per_fold": jsonable(result.frames_per_fold),
        "validation_fold": -1 if result.validation_fold is None else int(result.validation_fold),
        "class_counts": jsonable(result.class_counts),
        "skipped_frames": len(result.skipped_frames),
        "skipped_objects": int(result.skipped_objects),
        "root_directory_path": spec.kitti_config.root_directory_path,
    }}
