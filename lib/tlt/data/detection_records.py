"""Reading one converted frame record: image, boxes, class names and ids, KITTI attributes.

Shared by the training input (`tlt.data.detection_input`) and the evaluation frames
(`tlt.data.detection_frames`), so both see a frame the same way.
"""

from __future__ import annotations

from tlt.data.class_mapping import ClassMapping
from tlt.data.classification_input import PREPROCESSING
from tlt.data.tfrecord import feature_spec

__all__ = ["FrameDecoder", "scale_pixels"]

_KEYS = ("frame/id", "frame/width", "frame/height", "frame/encoded", "target/object_class",
         "target/truncation", "target/occlusion", "target/coordinates_x1",
         "target/coordinates_y1", "target/coordinates_x2", "target/coordinates_y2")


class FrameDecoder:
    """Parses a record into image, boxes and class names/ids (shared by train and eval)."""

    def __init__(self, mapping: ClassMapping, channels: int):
        import tensorflow as tf

        keys, values = mapping.lookup_keys_values()
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys or [""], tf.string), tf.constant(values or [-1], tf.int32)), -1)
        self.spec = {k: v for k, v in feature_spec().items() if k in _KEYS}
        self.channels = channels

    def __call__(self, serialized):
        import tensorflow as tf

        f = tf.io.parse_single_example(serialized, self.spec)
        dense = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
                 for k, v in f.items()}
        image = tf.io.decode_image(dense["frame/encoded"], channels=self.channels,
                                   expand_animations=False)
        boxes = tf.stack([dense[f"target/coordinates_{k}"] for k in ("x1", "y1", "x2", "y2")], 1)
        names = tf.strings.lower(dense["target/object_class"])
        return {"id": dense["frame/id"], "image": image, "boxes": boxes, "names": names,
                "class_ids": self.table.lookup(names),
                "truncation": dense["target/truncation"], "occlusion": dense["target/occlusion"]}


def scale_pixels(image_chw):
    """Pixels in [0, 255] -> the network's range, as `tlt.data.classification_input.preprocess`."""
    return (image_chw - PREPROCESSING["offset"]) * PREPROCESSING["scale"]
