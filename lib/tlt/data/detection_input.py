"""tf.data input pipeline of DetectNet_v2: TFRecord shards -> images and target maps.

Records come from ``tlt-dataset-convert`` (`tlt.data.tfrecord` keys, one frame each, the encoded
image inside); `tlt.data.detection_split` finds the shards of a split and checks them,
`tlt.data.detection_records` decodes one record. Evaluation frames with their labels in source
pixels are `tlt.data.detection_frames`.

Per frame: decode, crop / resize / augment in one warp (`tlt.data.detection_augment`), drop
boxes that left the image or are below ``min_bbox_width/height``, rasterize the targets
(`tlt.models.detectnet_v2.rasterizer`), scale pixels with the classification ``PREPROCESSING``.
Training is deterministic per (seed, epoch): shard order, record shuffle and every augmentation
draw derive from them, and batches never cross an epoch boundary, so a resumed run sees the same
stream as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

from tlt.data.classification_input import PREPROCESSING
from tlt.data.detection_augment import build_detection_augment
from tlt.data.detection_records import FrameDecoder, scale_pixels
from tlt.data.detection_split import DetectionSplit, check_split, prepare_split, resolve_split
from tlt.errors import DataError

__all__ = ["PREPROCESSING", "DetectionSplit", "resolve_split", "check_split",
           "build_detection_input"]


def build_detection_input(experiment: Any, *, training: bool, batch_size: int,
                          use_training_set: bool = False, seed: int = 0, epoch: int = 0,
                          drop_remainder: bool = False, base_dir: str | None = None,
                          cache_dir: str | None = None, shuffle_buffer: int = 256):
    """Build the tf.data pipeline of DetectNet_v2 training or evaluation.

    Args:
        experiment: a DetectionExperiment (spec).
        training: training split, shuffled each epoch and augmented, repeating forever; else the
            validation split (with ``use_training_set`` training + validation) once, in a fixed
            order, only cropped/resized.
        batch_size: global batch size.
        use_training_set: evaluation on the training and validation splits (no augmentation).
        seed: base seed of shuffling and augmentation.
        epoch: first epoch served (a resumed run passes its start epoch).
        drop_remainder: drop each epoch's last partial batch.
        base_dir: folder relative tfrecords paths are relative to.
        cache_dir: download folder of remote shards.
        shuffle_buffer: records held by the shuffle buffer (each holds an encoded image).

    Returns:
        A ``tf.data.Dataset`` of ``(images [N, C, H, W] float32 in [-1, 1], {"output_cov":
        [N, 2K, Hg, Wg] (coverage, then its mask), "output_bbox": [N, 5K, Hg, Wg] (L, T, R, B per
        class, then the K bbox weights)})`` for K target classes.

    Raises:
        SpecError: class mapping or split settings are inconsistent.
        DataError: no records, fewer training frames than one batch, a target class without
            examples (training), or frames of another size than the network input without
            enable_auto_resize.
    """
    import tensorflow as tf

    from tlt.models.detectnet_v2.rasterizer import build_rasterizer

    pre, mapping, split = prepare_split(experiment, training=training,
                                       use_training_set=use_training_set,
                                       base_dir=base_dir, cache_dir=cache_dir)
    if training and split.num_frames < (batch_size if drop_remainder else 1):
        # An epoch without a batch would make the endless training stream spin forever.
        raise DataError(f"{split.description} holds {split.num_frames} training frame(s), "
                        f"expected at least {batch_size if drop_remainder else 1} "
                        f"(batch size {batch_size}{', drop_remainder' if drop_remainder else ''})")
    bbox = experiment.model_config.objective_set.bbox
    raster = build_rasterizer(experiment.bbox_rasterizer_config, mapping.target_classes,
                              input_height=pre.output_image_height,
                              input_width=pre.output_image_width,
                              scale=bbox.scale, offset=bbox.offset)
    augment = build_detection_augment(experiment.augmentation_config, training=training)
    decode = FrameDecoder(mapping, pre.output_image_channel)
    files = tf.constant(split.files)

    def load(ep, index, serialized):
        frame = decode(serialized)
        image, boxes, keep, _ = augment(frame["image"], frame["boxes"],
                                        tf.stack([ep * 1_000_003 + seed, index]),
                                        channels_first=True)
        cov, mask, bbox_t, weight = raster.tf_rasterize(
            tf.boolean_mask(boxes, keep), tf.boolean_mask(frame["class_ids"], keep))
        return scale_pixels(image), {"output_cov": tf.concat([cov, mask], 0),
                                   "output_bbox": tf.concat([bbox_t, weight], 0)}

    def records(ep, order):
        ds = tf.data.Dataset.from_tensor_slices(tf.gather(files, order))
        return ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(split.files)),
                             block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True)

    if training:
        n = len(split.files)

        def epoch_dataset(ep):
            key = tf.stack([tf.cast(seed, tf.int64), ep])
            order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)
            ds = records(ep, order).shuffle(shuffle_buffer, seed=ep * 7919 + seed,
                                            reshuffle_each_iteration=False)
            ds = ds.enumerate().map(lambda i, s: load(ep, i, s),
                                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            return ds.batch(batch_size, drop_remainder=drop_remainder)

        ds = tf.data.Dataset.range(epoch, 1 << 30).flat_map(epoch_dataset)
    else:
        ds = records(tf.constant(0, tf.int64), tf.range(len(split.files))).enumerate()
        ds = ds.map(lambda i, s: load(tf.constant(0, tf.int64), i, s),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    # Each input op on one thread: the pipeline never fans out over the trainer's cores.
    options.threading.max_intra_op_parallelism = 1
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)
