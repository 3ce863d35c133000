"""DetectNet_v2 ground truth: boxes -> coverage, mask, bbox and bbox-weight target maps.

Everything happens on the output grid (stride 16, Hg = ceil(H/16) rows, Wg = ceil(W/16) columns),
in grid units (input pixels / stride). Per box, as TLT's bbox rasterizer draws it:

- Coverage ellipse: centre at (xmin + cov_center_x * width, ymin + cov_center_y * height),
  semi-axes cov_radius_x/y times the box's half width/height, floored at 0.1 cells, then grown
  (keeping its aspect ratio) until both semi-axes are at least bbox_min_radius cells.
- Deadzone ellipse: same centre, semi-axes interpolated between the coverage semi-axes and the
  half extents by deadzone_radius (never smaller than the coverage ellipse).
- A cell's coverage is the fraction of its 4x4 sub-samples inside the coverage ellipse, so
  ellipse edges are soft (multiples of 1/16).
- Per class, every cell takes the box with the largest coverage there; boxes are drawn in
  ascending ymax order and a later (nearer) box wins ties, so where objects overlap the nearer
  one's bbox targets are kept.
- Cells touched by some box's deadzone ring but covered by no box are neither foreground nor
  background: their cov_mask is 0 (the coverage loss skips them).
- bbox_weight ("cov_norm" in TLT) is coverage / max(4 * rx * ry, 1), the area in cells of the
  rectangle around the coverage ellipse, so each object weighs about the same in the bbox loss
  whatever its size.
- bbox targets at a won cell, with g = cell_index * stride + offset in input pixels:
  L = (g_x - xmin) / scale, T = (g_y - ymin) / scale, R = (xmax - g_x) / scale,
  B = (ymax - g_y) / scale; channel 4 * class + k for k in L, T, R, B (TLT's output_bbox layout).
- Ignore regions (class id -1: DontCare, unmapped classes) zero cov_mask and bbox_weight of every
  class in the cells whose centre lies inside them (at least the cell holding their centre).

The work per image is a handful of numpy operations over all boxes' windows at once, fast enough
to run per image inside tf.data through `tf.numpy_function` (see `BboxRasterizer.tf_rasterize`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tlt.errors import DataError, SpecError

__all__ = ["ClassEllipse", "RasterTargets", "BboxRasterizer", "build_rasterizer",
           "grid_shape", "IGNORE_CLASS"]

# Class id marking an ignore region (DontCare, classes mapped to no target class).
IGNORE_CLASS = -1
# Sub-samples per cell side used to measure coverage (TLT's rasterizer samples 4x4 per pixel).
_SUB = 4
_SUB_POINTS = (np.arange(_SUB) + 0.5) / _SUB
# Smallest coverage semi-axis in cells, a guard against zero-sized boxes (TLT uses 0.1 too).
_MIN_SEMI_AXIS = 0.1

# Proto defaults, used when a TargetClassConfig field is unset (messages built in code).
_CLASS_DEFAULTS = {"cov_center_x": 0.5, "cov_center_y": 0.5, "cov_radius_x": 0.4,
                   "cov_radius_y": 0.4, "bbox_min_radius": 1.0}
_DEADZONE_DEFAULT = 0.67


@dataclass(frozen=True)
class ClassEllipse:
    """Coverage ellipse parameters of one class (see `BboxRasterizerConfig.TargetClassConfig`).

    Attributes:
        cov_center_x: ellipse centre as a fraction of the box width from its left edge.
        cov_center_y: ellipse centre as a fraction of the box height from its top edge.
        cov_radius_x: horizontal semi-axis as a fraction of the box's half width.
        cov_radius_y: vertical semi-axis as a fraction of the box's half height.
        bbox_min_radius: smallest semi-axis in grid cells.
    """

    cov_center_x: float = 0.5
    cov_center_y: float = 0.5
    cov_radius_x: float = 0.4
    cov_radius_y: float = 0.4
    bbox_min_radius: float = 1.0


class RasterTargets(NamedTuple):
    """Targets of one image, float32, channels-first on the output grid.

    Attributes:
        cov: coverage target [C, Hg, Wg] in [0, 1].
        cov_mask: [C, Hg, Wg], 1 where the cell counts in the coverage loss, 0 in deadzones and
            ignore regions.
        bbox: L, T, R, B edge distances per class [4C, Hg, Wg] (0 where no box covers a cell).
        bbox_weight: [C, Hg, Wg] coverage / coverage-ellipse area, the bbox loss weight.
    """

    cov: np.ndarray
    cov_mask: np.ndarray
    bbox: np.ndarray
    bbox_weight: np.ndarray


def grid_shape(input_height: int, input_width: int, stride: int = 16) -> tuple[int, int]:
    """The output grid (Hg, Wg) = (ceil(H / stride), ceil(W / stride))."""
    return math.ceil(input_height / stride), math.ceil(input_width / stride)


class BboxRasterizer:
    """Draws one image's boxes into DetectNet_v2 target maps (see the module docstring).

    Args:
        ellipses: one `ClassEllipse` per class, in network channel order.
        deadzone_radius: deadzone ring width as a fraction between coverage and box extent.
        input_height: network input height in pixels.
        input_width: network input width in pixels.
        stride: output stride of the network.
        scale: divisor of the bbox edge distances.
        offset: position in pixels of a cell's reference point from its top-left corner.
    """

    def __init__(self, ellipses, deadzone_radius: float, *, input_height: int, input_width: int,
                 stride: int = 16, scale: float = 35.0, offset: float = 0.5):
        if not ellipses:
            raise SpecError("the rasterizer needs at least one class")
        self.ellipses = tuple(ellipses)
        self.deadzone_radius = float(deadzone_radius)
        self.input_height = int(input_height)
        self.input_width = int(input_width)
        self.stride = int(stride)
        self.scale = float(scale)
        self.offset = float(offset)
        self.grid_height, self.grid_width = grid_shape(self.input_height, self.input_width,
                                                       self.stride)
        # Per-class parameter columns, indexed by class id.
        params = np.array([[e.cov_center_x, e.cov_center_y, e.cov_radius_x, e.cov_radius_y,
                            e.bbox_min_radius] for e in self.ellipses], dtype=np.float64)
        self._params = params

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return len(self.ellipses)

    def output_shapes(self) -> dict[str, tuple[int, int, int]]:
        """Shapes of the four target maps."""
        c, h, w = self.num_classes, self.grid_height, self.grid_width
        return {"cov": (c, h, w), "cov_mask": (c, h, w), "bbox": (4 * c, h, w),
                "bbox_weight": (c, h, w)}

    def geometry(self, boxes, class_ids) -> dict[str, np.ndarray]:
        """Coverage and deadzone ellipses of object boxes, in grid units.

        Args:
            boxes: [N, 4] xmin, ymin, xmax, ymax in input pixels.
            class_ids: [N] class ids in [0, C).

        Returns:
            Arrays of length N: cx, cy (centre), rx, ry (coverage semi-axes), dx, dy (deadzone
            semi-axes) and inv_area (1 / max(4 rx ry, 1)).
        """
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / self.stride
        p = self._params[np.asarray(class_ids, dtype=np.int64)]
        width, height = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        cx = b[:, 0] + p[:, 0] * width
        cy = b[:, 1] + p[:, 1] * height
        sx, sy = 0.5 * width, 0.5 * height
        rx = np.maximum(p[:, 2] * sx, _MIN_SEMI_AXIS)
        ry = np.maximum(p[:, 3] * sy, _MIN_SEMI_AXIS)
        min_r = p[:, 4]
        # Grow to the minimum radius keeping the aspect ratio: x first, then y (TLT's order).
        small = rx < min_r
        ry = np.where(small, ry * min_r / rx, ry)
        rx = np.where(small, min_r, rx)
        small = ry < min_r
        rx = np.where(small, rx * min_r / ry, rx)
        ry = np.where(small, min_r, ry)
        d = self.deadzone_radius
        dx = np.maximum((1.0 - d) * rx + d * sx, rx)
        dy = np.maximum((1.0 - d) * ry + d * sy, ry)
        inv_area = 1.0 / np.maximum(4.0 * rx * ry, 1.0)
        return {"cx": cx, "cy": cy, "rx": rx, "ry": ry, "dx": dx, "dy": dy, "inv_area": inv_area}

    def rasterize(self, boxes, class_ids) -> RasterTargets:
        """Rasterize one image's boxes.

        Args:
            boxes: [N, 4] float xmin, ymin, xmax, ymax in input pixels.
            class_ids: [N] int class ids in [0, C), or -1 for an ignore region. Boxes with no
                width or height carry no object and are skipped.

        Returns:
            The four target maps (`RasterTargets`), float32.

        Raises:
            DataError: shapes disagree or a class id is out of range.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        class_ids = np.asarray(class_ids).astype(np.int64).reshape(-1)
        if len(boxes) != len(class_ids):
            raise DataError(f"rasterizer: {len(boxes)} boxes but {len(class_ids)} class ids")
        c, h, w = self.num_classes, self.grid_height, self.grid_width
        bad = (class_ids < IGNORE_CLASS) | (class_ids >= c)
        if bad.any():
            raise DataError(f"rasterizer: class id {int(class_ids[bad][0])} is out of range "
                            f"(expected -1 for an ignore region or 0..{c - 1})")
        real = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])

        cov = np.zeros(c * h * w, np.float32)
        weight = np.zeros(c * h * w, np.float32)
        bbox = np.zeros((c, 4, h * w), np.float32)
        mask = np.ones(c * h * w, np.float32)
        objects = real & (class_ids >= 0)
        if objects.any():
            self._draw_objects(boxes[objects], class_ids[objects], cov, weight, bbox, mask)
        cov, weight, mask = (a.reshape(c, h, w) for a in (cov, weight, mask))
        for box in boxes[real & (class_ids == IGNORE_CLASS)]:
            rows, cols = self._ignore_window(box)
            mask[:, rows, cols] = 0.0
            weight[:, rows, cols] = 0.0
        return RasterTargets(cov, mask, bbox.reshape(4 * c, h, w), weight)

    def _draw_objects(self, boxes, class_ids, cov, weight, bbox, mask) -> None:
        h, w = self.grid_height, self.grid_width
        # Ascending ymax (stable): nearer boxes come later and win ties.
        order = np.argsort(boxes[:, 3], kind="stable")
        boxes, class_ids = boxes[order], class_ids[order]
        n = len(boxes)
        g = self.geometry(boxes, class_ids)
        cx, cy, dx, dy = g["cx"], g["cy"], g["dx"], g["dy"]
        # Each box's window: the cells its deadzone ellipse (which holds the coverage) can touch.
        # (ufuncs rather than np.clip: this runs per image and np.clip's Python wrapper shows.)
        x0 = np.minimum(np.maximum(np.floor(cx - dx), 0), w).astype(np.int64)
        x1 = np.minimum(np.maximum(np.ceil(cx + dx), 0), w).astype(np.int64)
        y0 = np.minimum(np.maximum(np.floor(cy - dy), 0), h).astype(np.int64)
        y1 = np.minimum(np.maximum(np.ceil(cy + dy), 0), h).astype(np.int64)
        kx, ky = int((x1 - x0).max()), int((y1 - y0).max())
        if kx <= 0 or ky <= 0:
            return
        cols = x0[:, None] + np.arange(kx)                      # [n, kx]
        rows = y0[:, None] + np.arange(ky)                      # [n, ky]
        n_cov = _inside_counts(cx, cy, g["rx"], g["ry"], rows, cols)     # [n, ky, kx]
        n_dz = _inside_counts(cx, cy, dx, dy, rows, cols)
        valid = (cols < x1[:, None])[:, None, :] & (rows < y1[:, None])[:, :, None]

        def flat_cells(selected):
            box, r, col = np.nonzero(selected)
            return box, (class_ids[box] * h + rows[box, r]) * w + cols[box, col]

        # Winner per (class, cell): largest coverage, then latest box. Pack cell, sub-sample
        # count and box rank into one integer, sort, and keep the last entry of each cell.
        hit = valid & (n_cov > 0)
        box, cells = flat_cells(hit)
        span = (_SUB * _SUB + 1) * n
        packed = np.sort(cells * span + n_cov[hit].astype(np.int64) * n + box)
        cells = packed // span
        last = np.concatenate([cells[1:] != cells[:-1], [True]])
        won, packed = cells[last], packed[last] % span
        winner, coverage = packed % n, (packed // n).astype(np.float32) / (_SUB * _SUB)
        # Deadzone rings mask cells that no box covers.
        mask[flat_cells(valid & (n_dz > 0) & (n_cov == 0))[1]] = 0.0
        mask[won] = 1.0
        cov[won] = coverage
        weight[won] = coverage * g["inv_area"][winner].astype(np.float32)

        cls, cell = np.divmod(won, h * w)
        gx = (cell % w) * self.stride + self.offset
        gy = (cell // w) * self.stride + self.offset
        px = boxes[winner]
        bbox[cls, :, cell] = np.stack([gx - px[:, 0], gy - px[:, 1], px[:, 2] - gx,
                                       px[:, 3] - gy], axis=1) / self.scale

    def _ignore_window(self, box) -> tuple[slice, slice]:
        # Cells whose centre lies inside the box; at least the cell holding the box centre.
        s = self.stride
        spans = []
        for lo, hi, size in ((box[1], box[3], self.grid_height), (box[0], box[2], self.grid_width)):
            first = max(math.ceil(lo / s - 0.5), 0)
            last = min(math.floor(hi / s - 0.5), size - 1)
            if first > last:
                centre = min(max(int(0.5 * (lo + hi) // s), 0), size - 1)
                first = last = centre
            spans.append(slice(first, last + 1))
        return spans[0], spans[1]

    def tf_rasterize(self, boxes, class_ids):
        """`rasterize` as a TensorFlow op with static output shapes, for tf.data pipelines.

        Args:
            boxes: float tensor [N, 4] in input pixels.
            class_ids: int tensor [N] (-1 for ignore regions).

        Returns:
            (cov, cov_mask, bbox, bbox_weight) float32 tensors, shapes as `output_shapes()`.
        """
        outputs = tf.numpy_function(
            lambda b, k: tuple(self.rasterize(b, k)),
            [tf.cast(boxes, tf.float32), tf.cast(class_ids, tf.int32)],
            [tf.float32] * 4, stateful=False, name="rasterize_bboxes")
        shapes = self.output_shapes()
        for tensor, name in zip(outputs, RasterTargets._fields):
            tensor.set_shape(shapes[name])
        return tuple(outputs)


def _inside_counts(cx, cy, rx, ry, rows, cols) -> np.ndarray:
    """Sub-samples of each window cell strictly inside each box's ellipse.

    Row by row of sub-samples the ellipse is an interval in x, so the count per cell is a
    difference of clipped sub-sample indices: 4x less work than testing all 16 points.

    Args:
        cx, cy, rx, ry: [n] ellipse centres and semi-axes in grid units.
        rows: [n, ky] window row indices; cols: [n, kx] window column indices.

    Returns:
        [n, ky, kx] integer counts in 0..16 (as float64).
    """
    v = ((rows[:, :, None] + _SUB_POINTS) - cy[:, None, None]) / ry[:, None, None]
    half = rx[:, None, None] * np.sqrt(np.maximum(1.0 - v * v, 0.0))          # [n, ky, S]
    centre = cx[:, None, None]
    # Global sub-sample index m sits at (m + 0.5) / S; keep first <= m < stop.
    first = np.floor((centre - half) * _SUB - 0.5) + 1.0
    stop = np.ceil((centre + half) * _SUB - 0.5)
    base = (cols * _SUB)[:, None, None, :]                                     # [n, 1, 1, kx]
    inside = (np.minimum(np.maximum(stop[..., None] - base, 0.0), _SUB)
              - np.minimum(np.maximum(first[..., None] - base, 0.0), _SUB))   # [n, ky, S, kx]
    return np.maximum(inside, 0.0).sum(axis=2)


def _class_value(config, name: str) -> float:
    # Proto3 `optional` fields: unset means the documented default, not 0.
    if hasattr(config, "HasField") and not config.HasField(name):
        return _CLASS_DEFAULTS[name]
    return float(getattr(config, name, _CLASS_DEFAULTS[name]))


def build_rasterizer(bbox_rasterizer_config, class_names, *, input_height: int,
                     input_width: int, stride: int = 16, scale: float = 35.0,
                     offset: float = 0.5) -> BboxRasterizer:
    """Build the ground-truth rasterizer from a spec's bbox_rasterizer_config.

    Args:
        bbox_rasterizer_config: `BboxRasterizerConfig` message (target_class_config map and
            deadzone_radius).
        class_names: the network's classes in channel order.
        input_height: network input height in pixels.
        input_width: network input width in pixels.
        stride: output stride.
        scale: model_config.objective_set.bbox.scale.
        offset: model_config.objective_set.bbox.offset (in pixels).

    Returns:
        A `BboxRasterizer`.

    Raises:
        SpecError: a class has no target_class_config entry, or a radius is not positive.
    """
    field = "bbox_rasterizer_config.target_class_config"
    configs = bbox_rasterizer_config.target_class_config
    ellipses = []
    for name in class_names:
        if name not in configs:
            have = ", ".join(sorted(configs)) or "none"
            raise SpecError(f'{field} has no entry for class "{name}" (entries: {have})',
                            field=field)
        values = {key: _class_value(configs[name], key) for key in _CLASS_DEFAULTS}
        for key in ("cov_radius_x", "cov_radius_y"):
            if values[key] <= 0:
                raise SpecError(f'{field}["{name}"].{key} must be > 0, got {values[key]:g}',
                                field=f'{field}["{name}"].{key}')
        ellipses.append(ClassEllipse(**values))
    deadzone = _DEADZONE_DEFAULT
    if not hasattr(bbox_rasterizer_config, "HasField") or \
            bbox_rasterizer_config.HasField("deadzone_radius"):
        deadzone = float(bbox_rasterizer_config.deadzone_radius)
    return BboxRasterizer(ellipses, deadzone, input_height=input_height, input_width=input_width,
                          stride=stride, scale=scale, offset=offset)
