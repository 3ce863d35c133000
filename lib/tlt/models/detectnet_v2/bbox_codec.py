"""Encoding and decoding of DetectNet_v2 bounding-box targets (pure numpy).

Every output grid cell regresses the distances from its reference point to the four edges of the
object it covers, divided by ``scale``. The reference point of cell (row i, column j) is at input
pixel ``g = (j * stride + offset, i * stride + offset)``::

    L = (g_x - xmin) / scale    T = (g_y - ymin) / scale
    R = (xmax - g_x) / scale    B = (ymax - g_y) / scale

Decoding inverts this and clips the boxes to the image. Defaults are TLT's: stride 16, scale 35,
offset 0.5 (``model_config.objective_set.bbox``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OUTPUT_STRIDE", "BboxCodec", "build_bbox_codec"]

OUTPUT_STRIDE = 16


@dataclass(frozen=True)
class BboxCodec:
    """Converts between per-cell boxes and per-cell edge distances.

    Attributes:
        stride: input pixels per output cell.
        scale: divisor of the edge distances.
        offset: position of a cell's reference point, in pixels from the cell's top-left corner.
    """

    stride: int = OUTPUT_STRIDE
    scale: float = 35.0
    offset: float = 0.5

    def grid_centers(self, grid_height: int, grid_width: int) -> tuple[np.ndarray, np.ndarray]:
        """Reference points of the grid: ``(g_x [W], g_y [H])`` in input pixels (float32)."""
        gx = np.arange(grid_width, dtype=np.float32) * self.stride + np.float32(self.offset)
        gy = np.arange(grid_height, dtype=np.float32) * self.stride + np.float32(self.offset)
        return gx, gy

    def encode(self, boxes: np.ndarray) -> np.ndarray:
        """Edge distances of per-cell boxes.

        Args:
            boxes: ``[..., H, W, 4]`` boxes (xmin, ymin, xmax, ymax) in input pixels, one per cell.

        Returns:
            ``[..., H, W, 4]`` float32 targets (L, T, R, B).
        """
        boxes = np.asarray(boxes, dtype=np.float32)
        _check_last_dim(boxes, "boxes")
        gx, gy = self.grid_centers(boxes.shape[-3], boxes.shape[-2])
        gx = gx[None, :]  # broadcast over rows
        gy = gy[:, None]  # broadcast over columns
        inv = np.float32(1.0 / self.scale)
        out = np.empty_like(boxes)
        out[..., 0] = (gx - boxes[..., 0]) * inv
        out[..., 1] = (gy - boxes[..., 1]) * inv
        out[..., 2] = (boxes[..., 2] - gx) * inv
        out[..., 3] = (boxes[..., 3] - gy) * inv
        return out

    def decode_cells(self, targets: np.ndarray, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """Boxes from channel-last edge distances.

        Args:
            targets: ``[..., H, W, 4]`` (L, T, R, B).
            image_size: ``(width, height)`` to clip to; None leaves the boxes unclipped.

        Returns:
            ``[..., H, W, 4]`` float32 boxes (xmin, ymin, xmax, ymax).
        """
        targets = np.asarray(targets, dtype=np.float32)
        _check_last_dim(targets, "targets")
        gx, gy = self.grid_centers(targets.shape[-3], targets.shape[-2])
        gx = gx[None, :]
        gy = gy[:, None]
        s = np.float32(self.scale)
        out = np.empty_like(targets)
        out[..., 0] = gx - targets[..., 0] * s
        out[..., 1] = gy - targets[..., 1] * s
        out[..., 2] = gx + targets[..., 2] * s
        out[..., 3] = gy + targets[..., 3] * s
        if image_size is not None:
            _clip(out, image_size)
        return out

    def decode_at(self, targets: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  image_size: tuple[int, int] | None = None) -> np.ndarray:
        """Boxes of selected cells only (post-processing decodes just the cells above threshold).

        Args:
            targets: ``[N, 4]`` (L, T, R, B) of the cells.
            rows: ``[N]`` grid rows of the cells.
            cols: ``[N]`` grid columns of the cells.
            image_size: ``(width, height)`` to clip to; None leaves the boxes unclipped.

        Returns:
            ``[N, 4]`` float32 boxes (xmin, ymin, xmax, ymax).
        """
        targets = np.asarray(targets, dtype=np.float32).reshape(-1, 4)
        gx = np.asarray(cols, dtype=np.float32) * self.stride + np.float32(self.offset)
        gy = np.asarray(rows, dtype=np.float32) * self.stride + np.float32(self.offset)
        s = np.float32(self.scale)
        out = np.stack([gx - targets[:, 0] * s, gy - targets[:, 1] * s,
                        gx + targets[:, 2] * s, gy + targets[:, 3] * s], axis=1)
        if image_size is not None:
            _clip(out, image_size)
        return out

    def decode(self, raw: np.ndarray, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """Boxes from the raw ``output_bbox`` tensor (channel-first, 4 channels per class).

        Args:
            raw: ``[..., C*4, H, W]``; channels ``4c .. 4c+3`` are class c's L, T, R, B.
            image_size: ``(width, height)`` to clip to; None leaves the boxes unclipped.

        Returns:
            ``[..., C, H, W, 4]`` float32 boxes (xmin, ymin, xmax, ymax).

        Raises:
            ValueError: the channel count is not a multiple of 4.
        """
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim < 3 or raw.shape[-3] % 4:
            raise ValueError(f"output_bbox must be [..., C*4, H, W], got shape {raw.shape}")
        lead = raw.shape[:-3]
        n_cls = raw.shape[-3] // 4
        h, w = raw.shape[-2:]
        cells = np.moveaxis(raw.reshape(*lead, n_cls, 4, h, w), -3, -1)
        return self.decode_cells(cells, image_size)


def build_bbox_codec(config=None, *, stride: int = OUTPUT_STRIDE) -> BboxCodec:
    """Codec from a spec section.

    Args:
        config: a ``DetectionExperiment``, its ``model_config``, its ``objective_set``, or the
            ``BboxObjective`` itself; None gives TLT's defaults.
        stride: output stride of the network.

    Returns:
        The codec with the spec's scale and offset.
    """
    if config is None:
        return BboxCodec(stride=stride)
    for attr in ("model_config", "objective_set", "bbox"):
        if hasattr(config, attr) and not hasattr(config, "scale"):
            config = getattr(config, attr)
    return BboxCodec(stride=stride, scale=float(config.scale), offset=float(config.offset))


def _check_last_dim(array: np.ndarray, name: str) -> None:
    if array.ndim < 3 or array.shape[-1] != 4:
        raise ValueError(f"{name} must be [..., H, W, 4], got shape {array.shape}")


def _clip(boxes: np.ndarray, image_size: tuple[int, int]) -> None:
    width, height = image_size
    np.clip(boxes[..., 0], 0, width, out=boxes[..., 0])
    np.clip(boxes[..., 2], 0, width, out=boxes[..., 2])
    np.clip(boxes[..., 1], 0, height, out=boxes[..., 1])
    np.clip(boxes[..., 3], 0, height, out=boxes[..., 3])
