"""Image augmentations for classification training, as tf.data-friendly TensorFlow ops.

Each op takes and returns one HWC float32 image in [0, 255]; they are cheap enough to run in the
parallel map of the input pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AugmentConfig", "build_augment_fn"]


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run during training (all off gives plain resizing).

    Attributes:
        random_crop: take a random crop covering ``crop_scale`` of the area, then resize.
        crop_scale: (min, max) fraction of the image area a crop covers.
        crop_ratio: (min, max) aspect ratio of the crop.
        hflip: flip left-right with probability 0.5.
        brightness: max brightness delta as a fraction of 255 (0 = off).
        contrast: max contrast factor deviation from 1 (0 = off).
        saturation: max saturation factor deviation from 1 (0 = off).
        hue: max hue shift as a fraction of the hue circle, at most 0.5 (0 = off).
    """

    random_crop: bool = True
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4.0 / 3.0)
    hflip: bool = True
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0


def build_augment_fn(config: AugmentConfig, height: int, width: int, channels: int):
    """Return ``fn(image, seed) -> image`` applying ``config`` and resizing to ``height x width``.

    ``seed`` is a shape-[2] int tensor (stateless random ops), so a given epoch and element always
    get the same augmentation: training is reproducible and a resumed run sees the same stream.
    """
    import tensorflow as tf

    def augment(image, seed):
        seeds = tf.random.experimental.stateless_split(seed, num=6)
        if config.random_crop:
            shape = tf.shape(image)
            begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
                shape, bounding_boxes=tf.zeros([1, 0, 4]), seed=seeds[0],
                area_range=config.crop_scale, aspect_ratio_range=config.crop_ratio,
                min_object_covered=0.0, use_image_if_no_bounding_boxes=True)
            image = tf.slice(image, begin, size)
        image = tf.image.resize(image, (height, width))
        if config.hflip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[1])
        if channels == 3:
            scaled = image / 255.0
            if config.brightness > 0:
                scaled = tf.image.stateless_random_brightness(scaled, config.brightness, seeds[2])
            if config.contrast > 0:
                scaled = tf.image.stateless_random_contrast(
                    scaled, 1.0 - config.contrast, 1.0 + config.contrast, seeds[3])
            if config.saturation > 0:
                scaled = tf.image.stateless_random_saturation(
                    scaled, 1.0 - config.saturation, 1.0 + config.saturation, seeds[4])
            if config.hue > 0:
                scaled = tf.image.stateless_random_hue(scaled, min(config.hue, 0.5), seeds[5])
            image = tf.clip_by_value(scaled, 0.0, 1.0) * 255.0
        return image

    return augment
