"""tf.data input pipeline for folder-per-class classification.

Reads files listed by `tlt.data.classification.scan_image_folder`, decodes in parallel, augments
(training only), normalises to the model's range and emits channels-first batches, since TLT
models take ``(N, C, H, W)`` input.
"""

from __future__ import annotations

from tlt.data.augment import AugmentConfig, build_augment_fn
from tlt.data.classification import ImageFolderSplit

__all__ = ["PREPROCESSING", "preprocess", "build_classification_input", "load_image_for_inference"]

# Pixel scaling applied before the network: x / 127.5 - 1. Stored in model metadata so evaluate,
# infer, export and the DeepStream config (net-scale-factor 1/127.5, offsets 127.5) agree.
PREPROCESSING = {"mode": "scale_to_unit_range", "scale": 1.0 / 127.5, "offset": 127.5}


def preprocess(image_hwc):
    """Map a float HWC image in [0, 255] to the network's range and to CHW layout."""
    import tensorflow as tf

    image = tf.cast(image_hwc, tf.float32) * PREPROCESSING["scale"] - 1.0
    return tf.transpose(image, (2, 0, 1))


def _decode(path, channels: int):
    import tensorflow as tf

    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    return tf.cast(image, tf.float32)


def build_classification_input(split: ImageFolderSplit, *, image_size: tuple[int, int, int],
                               batch_size: int, training: bool,
                               augment: AugmentConfig | None = None, seed: int = 0,
                               drop_remainder: bool = False,
                               epoch: int = 0):
    """Build the tf.data pipeline of one split.

    Args:
        split: the files and labels.
        image_size: (channels, height, width), channels-first as in the spec.
        batch_size: global batch size.
        training: shuffle each epoch and augment when True.
        augment: augmentation settings (training only); None means plain resizing.
        seed: base seed; shuffling and augmentation are deterministic given seed and epoch.
        drop_remainder: drop the last partial batch (multi-worker training wants equal batches).
        epoch: first epoch the iterator will serve; a resumed run passes its start epoch so it
            sees the same shuffles and augmentations as an uninterrupted run.

    Returns:
        A ``tf.data.Dataset`` of ``(images [N, C, H, W] float32, one-hot labels [N, K])``.
    """
    import tensorflow as tf

    channels, height, width = image_size
    num_classes = split.num_classes
    files = tf.constant(split.files)
    labels = tf.constant(split.labels, dtype=tf.int32)
    aug = build_augment_fn(augment or AugmentConfig(random_crop=False, hflip=False),
                           height, width, channels)

    def load_train(path, label, ep, index):
        image = aug(_decode(path, channels), tf.stack([ep * 1_000_003 + seed, index]))
        return preprocess(image), tf.one_hot(label, num_classes)

    def load_eval(path, label):
        image = tf.image.resize(_decode(path, channels), (height, width))
        return preprocess(image), tf.one_hot(label, num_classes)

    if training:
        # One shuffle order per epoch, derived from (seed, epoch), and batches that never cross an
        # epoch boundary: an epoch's stream is the same whether or not the run was resumed.
        n = len(split)

        def epoch_dataset(ep):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64), ep]))
            items = tf.data.Dataset.from_tensor_slices(order).map(
                lambda i: (tf.gather(files, i), tf.gather(labels, i), ep, i))
            items = items.map(load_train, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            return items.batch(batch_size, drop_remainder=drop_remainder)

        ds = tf.data.Dataset.range(epoch, 1 << 30).flat_map(epoch_dataset)
    else:
        ds = tf.data.Dataset.from_tensor_slices((files, labels))
        ds = ds.map(load_eval, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def load_image_for_inference(path: str, image_size: tuple[int, int, int]):
    """Decode, resize and preprocess one image file into a ``[C, H, W]`` float32 array."""
    import tensorflow as tf

    channels, height, width = image_size
    image = tf.image.resize(_decode(path, channels), (height, width))
    return preprocess(image).numpy()
