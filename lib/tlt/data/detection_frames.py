"""Evaluation frames of DetectNet_v2: network inputs plus every labelled object in source pixels.

`iter_validation_frames` reads the same shards (`tlt.data.detection_split`) and decodes them the
same way (`tlt.data.detection_records`) as the training pipeline (`tlt.data.detection_input`),
applies its crop/resize without augmentation, and keeps what AP needs: each frame's objects with
their KITTI attributes and the transform back to the source image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from tlt.data.detection_augment import build_detection_augment
from tlt.data.detection_records import FrameDecoder, scale_pixels
from tlt.data.detection_split import prepare_split

__all__ = ["ValidationBatch", "iter_validation_frames"]


@dataclass
class ValidationBatch:
    """Evaluation frames: network inputs plus every labelled object in source coordinates.

    Attributes:
        images: [N, C, H, W] float32 network inputs.
        frame_ids: frame ids.
        boxes: per frame, [k, 4] float32 xmin, ymin, xmax, ymax in source-image pixels.
        class_names: per frame, the k lower-cased source class names (DontCare included).
        class_ids: per frame, [k] int32 target class index, -1 for ignore regions.
        truncation: per frame, [k] float32.
        occlusion: per frame, [k] int64.
        to_network: [N, 4] float32 (sx, sy, tx, ty): network x = sx * source x + tx (y alike).
    """

    images: np.ndarray
    frame_ids: list[str]
    boxes: list[np.ndarray]
    class_names: list[list[str]]
    class_ids: list[np.ndarray]
    truncation: list[np.ndarray]
    occlusion: list[np.ndarray]
    to_network: np.ndarray

    def to_source(self, index: int, boxes: np.ndarray) -> np.ndarray:
        """Map [k, 4] boxes in network-input pixels of frame ``index`` back to source pixels."""
        sx, sy, tx, ty = self.to_network[index]
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        return np.stack([(b[:, 0] - tx) / sx, (b[:, 1] - ty) / sy,
                         (b[:, 2] - tx) / sx, (b[:, 3] - ty) / sy], axis=1)


def iter_validation_frames(experiment: Any, *, batch_size: int, use_training_set: bool = False,
                           base_dir: str | None = None,
                           cache_dir: str | None = None) -> Iterator[ValidationBatch]:
    """Yield the validation frames (or training + validation) for AP computation, in file order.

    Args:
        experiment: a DetectionExperiment.
        batch_size: frames per yielded batch.
        use_training_set: the training and the validation split (the guide's
            ``--use_training_set``), instead of the validation split alone.
        base_dir: folder relative tfrecords paths are relative to.
        cache_dir: download folder of remote shards.

    Raises:
        SpecError / DataError: as `tlt.data.detection_split.prepare_split`.
    """
    import tensorflow as tf

    pre, mapping, split = prepare_split(experiment, training=False, use_training_set=use_training_set,
                                        base_dir=base_dir, cache_dir=cache_dir)
    augment = build_detection_augment(experiment.augmentation_config, training=False)
    decode = FrameDecoder(mapping, pre.output_image_channel)

    def load(serialized):
        f = decode(serialized)
        image, _, _, m = augment(f["image"], f["boxes"], tf.zeros([2], tf.int64),
                                 channels_first=True)
        return {"image": scale_pixels(image), "id": f["id"], "boxes": f["boxes"],
                "names": f["names"], "class_ids": f["class_ids"], "truncation": f["truncation"],
                "occlusion": f["occlusion"], "to_network": tf.stack([m[0, 0], m[1, 1], m[0, 2],
                                                                     m[1, 2]])}

    ds = tf.data.TFRecordDataset(split.files).map(load, num_parallel_calls=tf.data.AUTOTUNE,
                                                  deterministic=True)
    ds = ds.ragged_batch(batch_size).prefetch(tf.data.AUTOTUNE)
    for batch in ds.as_numpy_iterator():
        n = len(batch["id"])
        rows = lambda key: [np.asarray(batch[key][i]) for i in range(n)]  # noqa: E731
        yield ValidationBatch(
            images=np.asarray(batch["image"]), frame_ids=[i.decode("utf-8") for i in batch["id"]],
            boxes=[b.reshape(-1, 4).astype(np.float32) for b in rows("boxes")],
            class_names=[[s.decode("utf-8") for s in row] for row in rows("names")],
            class_ids=rows("class_ids"), truncation=rows("truncation"),
            occlusion=rows("occlusion"), to_network=np.asarray(batch["to_network"]))
