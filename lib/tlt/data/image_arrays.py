"""Network input without TensorFlow: decode with PIL, resample and scale with numpy.

Deployed models (exports and engines) are run with no TensorFlow in the process, so the input
pipelines' image steps are redone here, equal to them:

- `resize_bilinear` is ``tf.image.resize(..., method="bilinear")`` (half-pixel centres, no
  antialiasing, edges repeated), the classification evaluation resize
  (`tlt.data.classification_input`);
- `warp_axis_aligned` is `tlt.data.detection_augment.warp_image` for the evaluation transform
  (crop then resize: ``ImageProjectiveTransformV3`` bilinear with nearest fill, or a pixel copy with
  black padding for whole-pixel shifts);
- `to_network` is ``(pixel - offset) * scale`` and HWC -> CHW, with the export's recorded
  ``preprocessing``.

Arithmetic is float32 in the same order as TensorFlow's kernels, so results agree to rounding.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tlt.errors import DataError

__all__ = ["decode_image", "read_image", "resize_bilinear", "warp_axis_aligned", "to_network"]


def decode_image(data: bytes, channels: int, name: str = "<image>") -> np.ndarray:
    """Decode encoded JPEG/PNG bytes into an ``[H, W, channels]`` float32 array in [0, 255].

    Raises:
        DataError: the bytes are not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            pixels = img.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{name}: unreadable image ({err.__class__.__name__}: {err})") from None
    array = np.asarray(pixels, dtype=np.float32)
    return array.reshape(array.shape[0], array.shape[1], channels)


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """`decode_image` of a local file."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"{path}: unreadable image ({err})") from None
    return decode_image(data, channels, str(path))


def _half_pixel_weights(out_size: int, in_size: int):
    """TensorFlow's ``compute_interpolation_weights`` with the half-pixel scaler."""
    scale = np.float32(in_size / out_size)
    centre = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(centre)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(centre).astype(np.int64), in_size - 1)
    return lower, upper, (centre - floor).astype(np.float32)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``tf.image.resize(image, (height, width))`` of an ``[H, W, C]`` float32 image."""
    image = np.asarray(image, dtype=np.float32)
    y0, y1, ly = _half_pixel_weights(height, image.shape[0])
    x0, x1, lx = _half_pixel_weights(width, image.shape[1])
    lx = lx[None, :, None]
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * lx
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * lx
    return (top + (bottom - top) * ly[:, None, None]).astype(np.float32)


def _sample_positions(out_size: int, scale: float, shift: float, in_size: int):
    """Source coordinates of output pixels (the op's transform), clamped as its nearest fill."""
    inverse, offset = np.float32(1.0 / scale), np.float32(-shift / scale)
    origin = np.float32(0.5) * inverse + offset - np.float32(0.5)
    coords = inverse * np.arange(out_size, dtype=np.float32) + origin
    return np.clip(coords, np.float32(0.0), np.float32(in_size - 1))


def _bilinear_at(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``ImageProjectiveTransformV3`` bilinear sampling at clamped coordinates (0 outside)."""
    padded = np.pad(image, ((0, 1), (0, 1), (0, 0)))  # the ceil neighbour of the last pixel
    yf, xf = np.floor(ys), np.floor(xs)
    yi, xi = yf.astype(np.int64), xf.astype(np.int64)
    wx1 = (xs - xf)[None, :, None]
    wx0 = (xf + 1 - xs)[None, :, None]
    rows0, rows1 = padded[yi], padded[yi + 1]
    floor_row = wx0 * rows0[:, xi] + wx1 * rows0[:, xi + 1]
    ceil_row = wx0 * rows1[:, xi] + wx1 * rows1[:, xi + 1]
    return ((yf + 1 - ys)[:, None, None] * floor_row
            + (ys - yf)[:, None, None] * ceil_row).astype(np.float32)


def _shift_copy(image: np.ndarray, out_h: int, out_w: int, tx: int, ty: int) -> np.ndarray:
    """Whole-pixel move: output ``(y, x)`` = source ``(y - ty, x - tx)``, black outside."""
    out = np.zeros((out_h, out_w, image.shape[2]), np.float32)
    src_h, src_w = image.shape[:2]
    y0, x0 = max(ty, 0), max(tx, 0)
    y1, x1 = min(out_h, src_h + ty), min(out_w, src_w + tx)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = image[y0 - ty:y1 - ty, x0 - tx:x1 - tx]
    return out


def warp_axis_aligned(image: np.ndarray, out_h: int, out_w: int,
                      matrix: tuple[float, float, float, float]) -> np.ndarray:
    """Resample ``image`` so that source point ``(x, y)`` lands at ``(sx x + tx, sy y + ty)``.

    Args:
        image: ``[H, W, C]`` float32.
        out_h: output height.
        out_w: output width.
        matrix: ``(sx, sy, tx, ty)``, positive scales (no flips: evaluation never flips).

    Returns:
        ``[out_h, out_w, C]`` float32, as `tlt.data.detection_augment.warp_image` with
        ``fill="nearest"``.
    """
    sx, sy, tx, ty = (float(v) for v in matrix)
    whole = (abs(sx - 1.0) < 1e-6 and abs(sy - 1.0) < 1e-6 and abs(tx - round(tx)) < 1e-4
             and abs(ty - round(ty)) < 1e-4)
    image = np.asarray(image, dtype=np.float32)
    if whole:
        return _shift_copy(image, out_h, out_w, int(round(tx)), int(round(ty)))
    ys = _sample_positions(out_h, sy, ty, image.shape[0])
    xs = _sample_positions(out_w, sx, tx, image.shape[1])
    return _bilinear_at(image, ys, xs)


def to_network(image_hwc: np.ndarray, preprocessing: dict) -> np.ndarray:
    """``(pixel - offset) * scale`` of an ``[H, W, C]`` image, as ``[C, H, W]`` float32."""
    scale = np.float32(preprocessing.get("scale", 1.0 / 127.5))
    offset = np.float32(preprocessing.get("offset", 127.5))
    return np.ascontiguousarray(np.transpose((image_hwc - offset) * scale, (2, 0, 1)),
                                dtype=np.float32)
