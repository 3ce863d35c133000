"""Evaluation frames of DetectNet_v2 without TensorFlow, for deployed models.

The same frames as `tlt.data.detection_frames.iter_validation_frames`, in the same order and with
the same pixels: the shards of `tlt.data.detection_split.prepare_split` read with the pure-Python
TFRecord reader, images decoded by PIL, cropped and resized by `tlt.data.image_arrays`.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from tlt.data.detection_frames import ValidationBatch
from tlt.data.detection_split import prepare_split
from tlt.data.image_arrays import decode_image, to_network, warp_axis_aligned
from tlt.data.tfrecord import decode_example, read_records

__all__ = ["network_matrix", "iter_validation_frames_numpy"]


def network_matrix(src_w: int, src_h: int, pre: Any) -> tuple[float, float, float, float]:
    """``(sx, sy, tx, ty)`` source -> network pixels: the spec's crop, then the resize
    (`tlt.data.detection_augment.preprocessing_matrix`)."""
    left, top, right, bottom = pre.crop_left, pre.crop_top, pre.crop_right, pre.crop_bottom
    if right > left and bottom > top:
        width, height = float(right - left), float(bottom - top)
    else:
        left = top = 0
        width, height = float(src_w), float(src_h)
    sx = np.float32(pre.output_image_width / width)
    sy = np.float32(pre.output_image_height / height)
    return float(sx), float(sy), float(-left * sx), float(-top * sy)


def _frame(record: bytes, mapping, pre, preprocessing: dict, path: str) -> dict:
    ex = decode_example(record)
    frame_id = ex["frame/id"][0].decode("utf-8")
    image = decode_image(ex["frame/encoded"][0], pre.output_image_channel, f"{path}: {frame_id}")
    matrix = network_matrix(image.shape[1], image.shape[0], pre)
    warped = warp_axis_aligned(image, pre.output_image_height, pre.output_image_width, matrix)
    names = [n.decode("utf-8").lower() for n in ex.get("target/object_class", [])]
    boxes = np.stack([np.asarray(ex.get(f"target/coordinates_{k}", []), np.float32)
                      for k in ("x1", "y1", "x2", "y2")], axis=1).reshape(-1, 4)
    return {"image": to_network(warped, preprocessing), "id": frame_id, "boxes": boxes,
            "names": names, "class_ids": np.array([mapping.index(n) for n in names], np.int32),
            "truncation": np.asarray(ex.get("target/truncation", []), np.float32),
            "occlusion": np.asarray(ex.get("target/occlusion", []), np.int64),
            "to_network": np.array(matrix, np.float32)}


def _batch(frames: list[dict]) -> ValidationBatch:
    return ValidationBatch(
        images=np.stack([f["image"] for f in frames]), frame_ids=[f["id"] for f in frames],
        boxes=[f["boxes"] for f in frames], class_names=[f["names"] for f in frames],
        class_ids=[f["class_ids"] for f in frames], truncation=[f["truncation"] for f in frames],
        occlusion=[f["occlusion"] for f in frames],
        to_network=np.stack([f["to_network"] for f in frames]))


def iter_validation_frames_numpy(experiment: Any, *, batch_size: int, preprocessing: dict,
                                 use_training_set: bool = False, base_dir: str | None = None,
                                 cache_dir: str | None = None) -> Iterator[ValidationBatch]:
    """Yield the validation (or training + validation) frames in file order, without TensorFlow.

    Args:
        experiment: a DetectionExperiment.
        batch_size: frames per batch.
        preprocessing: pixel scaling ``{"scale", "offset"}`` (the export's metadata).
        use_training_set: the training and the validation split.
        base_dir: folder relative tfrecords paths are relative to.
        cache_dir: download folder of remote shards.

    Raises:
        SpecError / DataError: as `tlt.data.detection_split.prepare_split`; DataError for a
            corrupt record or image (naming the shard and frame).
    """
    pre, mapping, split = prepare_split(experiment, training=False,
                                        use_training_set=use_training_set, base_dir=base_dir,
                                        cache_dir=cache_dir)
    pending: list[dict] = []
    for path in split.files:
        for record in read_records(path):
            pending.append(_frame(record, mapping, pre, preprocessing, path))
            if len(pending) == batch_size:
                yield _batch(pending)
                pending = []
    if pending:
        yield _batch(pending)
