"""DetectNet_v2 pre-processing and augmentation: one spatial warp and one colour matrix per frame.

As in TLT, every geometric step (crop, resize to the network input, flip, zoom, translate) is a
3x3 matrix; their product maps source pixels to network-input pixels, so the image is resampled
once (`warp_image`) and the boxes are moved by the same matrix (`transform_boxes`). Colour
augmentation is TLT's 4x4 colour matrix (hue rotation and saturation about the grey axis, contrast
about ``contrast_center``, per-channel shift), applied as one matrix product per pixel.

Conventions: coordinates are continuous pixels (pixel ``i`` covers ``[i, i+1)``, so a left-right
flip maps ``x`` to ``W - x``); matrices act on column vectors ``[x, y, 1]``; images are HWC float32
in ``[0, 255]``. Every random draw is a stateless op keyed by a shape-[2] seed, so a frame's
augmentation depends only on (seed, epoch, index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SpatialConfig",
    "ColorConfig",
    "DetectionAugment",
    "preprocessing_matrix",
    "random_spatial_matrix",
    "random_color_matrix",
    "warp_image",
    "transform_boxes",
    "apply_color_matrix",
    "build_detection_augment",
]

# TLT's linear hue/saturation matrices (row-vector convention, [0, 1] colour units): grey axis,
# and the two chroma axes rotated by the hue angle and scaled by the saturation.
_GREY = ((0.299, 0.299, 0.299), (0.587, 0.587, 0.587), (0.114, 0.114, 0.114))
_CHROMA_COS = ((0.701, -0.299, -0.299), (-0.587, 0.413, -0.587), (-0.114, -0.114, 0.886))
_CHROMA_SIN = ((0.168, -0.328, 1.25), (0.330, 0.035, -1.05), (-0.497, 0.292, -0.203))


@dataclass(frozen=True)
class SpatialConfig:
    """Random geometric augmentation (``augmentation_config.spatial_augmentation``).

    Attributes:
        hflip_probability: probability of a left-right flip.
        vflip_probability: probability of an up-down flip.
        zoom_min: smallest zoom factor; > 1 magnifies the content, < 1 shrinks it.
        zoom_max: largest zoom factor (drawn uniformly between the two).
        translate_max_x: largest horizontal shift in network-input pixels (whole pixels).
        translate_max_y: largest vertical shift in network-input pixels.
    """

    hflip_probability: float = 0.0
    vflip_probability: float = 0.0
    zoom_min: float = 1.0
    zoom_max: float = 1.0
    translate_max_x: float = 0.0
    translate_max_y: float = 0.0

    @classmethod
    def from_proto(cls, message: Any) -> "SpatialConfig":
        """Read a ``SpatialAugmentation`` message."""
        return cls(message.hflip_probability, message.vflip_probability, message.zoom_min,
                   message.zoom_max, message.translate_max_x, message.translate_max_y)


@dataclass(frozen=True)
class ColorConfig:
    """Random colour augmentation (``augmentation_config.color_augmentation``).

    Attributes:
        color_shift_stddev: standard deviation of a per-channel additive shift, as a fraction of
            the full range (truncated at two standard deviations).
        hue_rotation_max: largest hue rotation in degrees (truncated normal, sigma = max / 2).
        saturation_shift_max: saturation is multiplied by ``1 + U(-max, max)``.
        contrast_scale_max: contrast slope change (truncated normal, sigma = max / 2).
        contrast_center: pivot of the contrast change as a fraction of the range (0.5: mid-grey).
    """

    color_shift_stddev: float = 0.0
    hue_rotation_max: float = 0.0
    saturation_shift_max: float = 0.0
    contrast_scale_max: float = 0.0
    contrast_center: float = 0.5

    @classmethod
    def from_proto(cls, message: Any) -> "ColorConfig":
        """Read a ``ColorAugmentation`` message."""
        return cls(message.color_shift_stddev, message.hue_rotation_max,
                   message.saturation_shift_max, message.contrast_scale_max,
                   message.contrast_center)

    @property
    def enabled(self) -> bool:
        """Whether any colour change can happen."""
        return any((self.color_shift_stddev, self.hue_rotation_max, self.saturation_shift_max,
                    self.contrast_scale_max))


def _affine(sx, sy, tx, ty):
    """``[[sx, 0, tx], [0, sy, ty], [0, 0, 1]]`` from scalar tensors."""
    import tensorflow as tf

    sx, sy, tx, ty = (tf.cast(v, tf.float32) for v in (sx, sy, tx, ty))
    zero, one = tf.zeros([]), tf.ones([])
    return tf.reshape(tf.stack([sx, zero, tx, zero, sy, ty, zero, zero, one]), [3, 3])


def preprocessing_matrix(src_height, src_width, out_height: int, out_width: int,
                         crop: tuple[int, int, int, int] = (0, 0, 0, 0)):
    """Matrix of the deterministic part: crop ``(left, top, right, bottom)``, then resize.

    With no crop (all zeros) the whole source is used. The (cropped) source is scaled to
    ``out_width x out_height``; when it already has that size the matrix is a pure translation.
    """
    import tensorflow as tf

    left, top, right, bottom = crop
    if right > left and bottom > top:
        width, height = float(right - left), float(bottom - top)
    else:
        left = top = 0
        width, height = tf.cast(src_width, tf.float32), tf.cast(src_height, tf.float32)
    sx, sy = out_width / width, out_height / height
    return _affine(sx, sy, -left * sx, -top * sy)


def random_spatial_matrix(config: SpatialConfig, height: int, width: int, seed):
    """A random flip / zoom / translate of the ``width x height`` network-input canvas.

    Order: flip, zoom, translate. A zoom factor z scales the content by z; the zoomed content is
    placed uniformly at random so that it still covers the canvas (z >= 1) or stays inside it
    (z < 1). Translations are whole pixels in ``[-max, max]``, as in TLT.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=7)

    def uniform(i, lo=0.0, hi=1.0):
        return tf.random.stateless_uniform([], seeds[i], minval=lo, maxval=hi)

    hflip = tf.cast(uniform(0) < config.hflip_probability, tf.float32)
    vflip = tf.cast(uniform(1) < config.vflip_probability, tf.float32)
    flip = _affine(1.0 - 2.0 * hflip, 1.0 - 2.0 * vflip, hflip * width, vflip * height)
    if config.zoom_max > config.zoom_min:
        zoom = uniform(2, config.zoom_min, config.zoom_max)
    else:
        zoom = tf.constant(float(config.zoom_min))
    # Free room of the zoomed content: negative when magnified (shift it left/up), positive when
    # shrunk (shift it right/down); either way a uniform draw over [min(0, room), max(0, room)].
    room_x, room_y = width * (1.0 - zoom), height * (1.0 - zoom)
    offset_x = tf.minimum(0.0, room_x) + uniform(3) * tf.abs(room_x)
    offset_y = tf.minimum(0.0, room_y) + uniform(4) * tf.abs(room_y)
    zoom_m = _affine(zoom, zoom, offset_x, offset_y)
    shift = []
    for i, limit in ((5, int(config.translate_max_x)), (6, int(config.translate_max_y))):
        if limit > 0:
            shift.append(tf.random.stateless_uniform([], seeds[i], minval=-limit,
                                                     maxval=limit + 1, dtype=tf.int32))
        else:
            shift.append(tf.constant(0))
    translate = _affine(1.0, 1.0, shift[0], shift[1])
    return translate @ zoom_m @ flip


def random_color_matrix(config: ColorConfig, seed):
    """TLT's random 4x4 colour matrix (row vectors ``[r, g, b, 1]``, colours in [0, 1]).

    Hue rotation and saturation first, then contrast about ``contrast_center``, then the
    per-channel shift.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    hue = tf.random.stateless_truncated_normal([], seeds[0]) * (config.hue_rotation_max / 2.0)
    saturation = 1.0 + tf.random.stateless_uniform(
        [], seeds[1], minval=-config.saturation_shift_max, maxval=config.saturation_shift_max)
    angle = hue * (math.pi / 180.0)
    hue_sat = (tf.constant(_GREY) + saturation * tf.cos(angle) * tf.constant(_CHROMA_COS)
               + saturation * tf.sin(angle) * tf.constant(_CHROMA_SIN))
    hue_sat = tf.pad(hue_sat, [[0, 1], [0, 1]]) + tf.constant(
        [[0.0] * 4] * 3 + [[0.0, 0.0, 0.0, 1.0]])
    contrast = tf.random.stateless_truncated_normal([], seeds[2]) * (
        config.contrast_scale_max / 2.0)
    scale, bias = 1.0 + contrast, -contrast * config.contrast_center
    contrast_m = tf.linalg.diag(tf.stack([scale, scale, scale, 1.0])) + tf.pad(
        tf.reshape(tf.stack([bias, bias, bias]), [1, 3]), [[3, 0], [0, 1]])
    shift = tf.random.stateless_truncated_normal([3], seeds[3]) * config.color_shift_stddev
    shift_m = tf.eye(4) + tf.pad(tf.reshape(shift, [1, 3]), [[3, 0], [0, 1]])
    return hue_sat @ contrast_m @ shift_m


def _shift_image(image, matrix, out_height: int, out_width: int):
    """`warp_image` of a CHW image for whole-pixel moves (flips, integer shifts): pad and slice."""
    import tensorflow as tf

    shape = tf.shape(image)
    src_h, src_w = shape[1], shape[2]
    flip_x, flip_y = matrix[0, 0] < 0, matrix[1, 1] < 0
    image = tf.cond(flip_x, lambda: tf.reverse(image, [2]), lambda: image)
    image = tf.cond(flip_y, lambda: tf.reverse(image, [1]), lambda: image)
    # After the flip, x' = x + tx - W_src (flipped) or x + tx.
    dx = tf.cast(tf.round(matrix[0, 2]), tf.int32) - tf.where(flip_x, src_w, 0)
    dy = tf.cast(tf.round(matrix[1, 2]), tf.int32) - tf.where(flip_y, src_h, 0)
    top, left = tf.maximum(dy, 0), tf.maximum(dx, 0)
    bottom = tf.maximum(out_height - dy - src_h, 0)
    right = tf.maximum(out_width - dx - src_w, 0)
    padded = tf.pad(image, [[0, 0], [top, bottom], [left, right]])
    return padded[:, top - dy:top - dy + out_height, left - dx:left - dx + out_width]


def warp_image(image, matrix, out_height: int, out_width: int, *, fill: str = "constant",
               channels_first: bool = False):
    """Resample an HWC ``image`` so that source point p lands at ``matrix @ p``.

    Whole-pixel moves (any flips and integer shifts, scale 1: TLT's default augmentation on
    images of the network size) copy pixels; anything else is resampled bilinearly.

    Args:
        image: HWC image, any real dtype.
        matrix: 3x3 source -> output matrix (affine, axis-aligned).
        out_height: output height.
        out_width: output width.
        fill: "constant" (black outside the source, as TLT) or "nearest" (edge pixels repeated:
            plain resizing then matches ``tf.image.resize`` at the borders).
        channels_first: return CHW (the network's layout). Copies transpose the 8-bit source,
            the cheapest place to do it.

    Returns:
        The warped image, float32.
    """
    import tensorflow as tf

    matrix = tf.cast(matrix, tf.float32)

    def resample():
        inverse = tf.linalg.inv(matrix)
        # The op samples input index coordinates (pixel centres at integers) for output
        # indices; continuous coordinates are index + 0.5 on both sides.
        a, b = inverse[0], inverse[1]
        transform = tf.stack([a[0], a[1], 0.5 * (a[0] + a[1]) + a[2] - 0.5,
                              b[0], b[1], 0.5 * (b[0] + b[1]) + b[2] - 0.5, 0.0, 0.0])
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.cast(image, tf.float32)[tf.newaxis], transforms=transform[tf.newaxis],
            output_shape=tf.constant([out_height, out_width], tf.int32),
            fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode=fill.upper())[0]
        return tf.transpose(out, [2, 0, 1]) if channels_first else out

    def shift():
        chw = _shift_image(tf.transpose(image, [2, 0, 1]), matrix, out_height, out_width)
        return tf.cast(chw if channels_first else tf.transpose(chw, [1, 2, 0]), tf.float32)

    whole = (tf.abs(tf.abs(matrix[0, 0]) - 1.0) < 1e-6) & (
        tf.abs(tf.abs(matrix[1, 1]) - 1.0) < 1e-6) & (
        tf.abs(matrix[0, 2] - tf.round(matrix[0, 2])) < 1e-4) & (
        tf.abs(matrix[1, 2] - tf.round(matrix[1, 2])) < 1e-4)
    return tf.cond(whole, shift, resample)


def transform_boxes(boxes, matrix, height: int, width: int, min_width: float = 0.0,
                    min_height: float = 0.0):
    """Move ``[N, 4]`` boxes (xmin, ymin, xmax, ymax) by ``matrix`` and clip them to the canvas.

    Returns:
        ``(boxes [N, 4] float32, keep [N] bool)``: ``keep`` is false for boxes left with no area
        inside the canvas or narrower / lower than ``min_width`` / ``min_height`` once clipped.
    """
    import tensorflow as tf

    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    sx, tx = matrix[0, 0], matrix[0, 2]
    sy, ty = matrix[1, 1], matrix[1, 2]
    xa, xb = boxes[:, 0] * sx + tx, boxes[:, 2] * sx + tx
    ya, yb = boxes[:, 1] * sy + ty, boxes[:, 3] * sy + ty
    # A flip swaps the edges; clipping keeps only the part inside the canvas.
    x1 = tf.clip_by_value(tf.minimum(xa, xb), 0.0, float(width))
    x2 = tf.clip_by_value(tf.maximum(xa, xb), 0.0, float(width))
    y1 = tf.clip_by_value(tf.minimum(ya, yb), 0.0, float(height))
    y2 = tf.clip_by_value(tf.maximum(ya, yb), 0.0, float(height))
    w, h = x2 - x1, y2 - y1
    keep = (w > 0) & (h > 0) & (w >= min_width) & (h >= min_height)
    return tf.stack([x1, y1, x2, y2], axis=1), keep


def apply_color_matrix(image, matrix, *, channels_first: bool = False):
    """Apply a 4x4 colour matrix (colours in [0, 1] units) to an RGB image in [0, 255].

    Args:
        image: HWC (or CHW with ``channels_first``) image.
        matrix: TLT colour matrix, row-vector convention.
        channels_first: the image is CHW (one [3, 3] x [3, H*W] product).

    Returns:
        The image in the same layout, float32 clipped to [0, 255].
    """
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    if channels_first:
        shape = tf.shape(image)
        planes = tf.matmul(matrix[:3, :3], tf.reshape(image, [3, -1]), transpose_a=True)
        out = planes + 255.0 * tf.reshape(matrix[3, :3], [3, 1])
        return tf.reshape(tf.clip_by_value(out, 0.0, 255.0), shape)
    shape = tf.shape(image)
    flat = tf.reshape(image, [-1, 3])
    out = flat @ matrix[:3, :3] + 255.0 * matrix[3, :3]
    return tf.reshape(tf.clip_by_value(out, 0.0, 255.0), shape)


class DetectionAugment:
    """Per-frame pre-processing (+ augmentation when training) of an image and its boxes.

    Call with ``(image HWC, boxes [N, 4] in source pixels, seed [2], channels_first=False)``;
    returns ``(image [H, W, C] (or [C, H, W]) float32 in [0, 255], boxes [N, 4] in network
    pixels, keep [N] bool, matrix 3x3 source -> network)``.
    """

    def __init__(self, out_height: int, out_width: int, channels: int,
                 crop: tuple[int, int, int, int], min_bbox: tuple[float, float],
                 spatial: SpatialConfig | None, color: ColorConfig | None):
        self.out_height, self.out_width, self.channels = out_height, out_width, channels
        self.crop = crop
        self.min_bbox = min_bbox
        self.spatial = spatial
        self.color = color if color is not None and color.enabled and channels == 3 else None

    def matrix(self, src_height, src_width, seed):
        """The source -> network-input matrix of one frame."""
        m = preprocessing_matrix(src_height, src_width, self.out_height, self.out_width,
                                 self.crop)
        if self.spatial is not None:
            m = random_spatial_matrix(self.spatial, self.out_height, self.out_width, seed) @ m
        return m

    def __call__(self, image, boxes, seed, *, channels_first: bool = False):
        import tensorflow as tf

        shape = tf.shape(image)
        m = self.matrix(shape[0], shape[1], seed)
        # Without augmentation only crop/resize remains: repeat edge pixels like tf.image.resize.
        out = warp_image(image, m, self.out_height, self.out_width, channels_first=True,
                         fill="constant" if self.spatial is not None else "nearest")
        if self.color is not None:
            seed2 = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)[1]
            out = apply_color_matrix(out, random_color_matrix(self.color, seed2),
                                     channels_first=True)
        out = tf.ensure_shape(out, [self.channels, self.out_height, self.out_width])
        if not channels_first:
            out = tf.transpose(out, [1, 2, 0])
        boxes, keep = transform_boxes(boxes, m, self.out_height, self.out_width, *self.min_bbox)
        return out, boxes, keep, m


def build_detection_augment(augmentation_config: Any, *, training: bool) -> DetectionAugment:
    """Build the per-frame transform of an ``AugmentationConfig``.

    Args:
        augmentation_config: the spec's ``augmentation_config``.
        training: apply the random spatial and colour augmentation (evaluation only crops and
            resizes).

    Returns:
        A DetectionAugment.
    """
    pre = augmentation_config.preprocessing
    crop = (pre.crop_left, pre.crop_top, pre.crop_right, pre.crop_bottom)
    spatial = SpatialConfig.from_proto(augmentation_config.spatial_augmentation) if training \
        else None
    color = ColorConfig.from_proto(augmentation_config.color_augmentation) if training else None
    return DetectionAugment(pre.output_image_height, pre.output_image_width,
                            pre.output_image_channel, crop,
                            (pre.min_bbox_width, pre.min_bbox_height), spatial, color)
