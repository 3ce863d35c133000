"""Inline SVG charts of the HTML reports: precision-recall curves and confusion matrices.

Plain SVG text, no plotting library: the Kubeflow UI shows an HTML artifact as it is, and an
inline ``<svg>`` needs neither a server nor image files. Every mark carries a ``class`` and
``data-*`` attributes naming what it shows, so tests (and people reading the source) can find
the curve of a class or the cell of a (true, predicted) pair.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Curve", "pr_curve_points", "pr_chart_svg", "confusion_matrix_svg"]

_FONT = "font-family='sans-serif' font-size='12'"
# Plot area of a precision-recall chart, in SVG pixels.
_PR_SIZE, _PR_LEFT, _PR_TOP = 240, 48, 28


@dataclass(frozen=True)
class Curve:
    """One class's precision-recall points (fractions), its colour and legend label."""

    name: str
    color: tuple[int, int, int]
    recall: Sequence[float]
    precision: Sequence[float]
    label: str = ""


def pr_curve_points(recall: Sequence[float], precision: Sequence[float]) -> list[tuple[float, float]]:
    """``(recall, precision)`` points of a curve, by rising recall, without unused (0, 0) samples.

    The kitti mode pads its 41 samples with zeros after the last score threshold; those points
    are not part of the curve.
    """
    points = [(float(r), float(p)) for r, p in zip(recall, precision) if r > 0 or p > 0]
    return sorted(points, key=lambda rp: (rp[0], -rp[1]))


def _rgb(color: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*(int(c) for c in color))


def _pr_axes() -> list[str]:
    """Frame, grid, ticks and axis titles of a precision-recall chart."""
    x0, y0, s = _PR_LEFT, _PR_TOP, _PR_SIZE
    parts = [f"<rect x='{x0}' y='{y0}' width='{s}' height='{s}' fill='white' stroke='#444'/>"]
    for i in range(6):
        v = i / 5
        x, y = x0 + v * s, y0 + s - v * s
        if 0 < i < 5:
            parts.append(f"<line x1='{x:.1f}' y1='{y0}' x2='{x:.1f}' y2='{y0 + s}' stroke='#e4e4e4'/>")
            parts.append(f"<line x1='{x0}' y1='{y:.1f}' x2='{x0 + s}' y2='{y:.1f}' stroke='#e4e4e4'/>")
        parts.append(f"<text x='{x:.1f}' y='{y0 + s + 15}' text-anchor='middle' {_FONT}>{v:.1f}</text>")
        parts.append(f"<text x='{x0 - 6}' y='{y + 4:.1f}' text-anchor='end' {_FONT}>{v:.1f}</text>")
    parts.append(f"<text class='axis-label' x='{x0 + s / 2}' y='{y0 + s + 32}' text-anchor='middle' "
                 f"{_FONT}>recall</text>")
    parts.append(f"<text class='axis-label' x='14' y='{y0 + s / 2}' text-anchor='middle' "
                 f"transform='rotate(-90 14 {y0 + s / 2})' {_FONT}>precision</text>")
    return parts


def _curve_path(curve: Curve) -> str:
    points = pr_curve_points(curve.recall, curve.precision)
    if not points:
        return ""
    xy = [(_PR_LEFT + r * _PR_SIZE, _PR_TOP + _PR_SIZE - p * _PR_SIZE) for r, p in points]
    d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    name = html.escape(curve.name, quote=True)
    return (f"<path class='pr-curve' data-class='{name}' d='{d}' fill='none' "
            f"stroke='{_rgb(curve.color)}' stroke-width='2'/>")


def pr_chart_svg(title: str, curves: Sequence[Curve]) -> str:
    """A precision-recall chart with one curve per class and a legend.

    Args:
        title: shown above the plot (e.g. the column name).
        curves: the classes; a class without points gets a legend entry and no curve.

    Returns:
        An ``<svg>`` element.
    """
    width = _PR_LEFT + _PR_SIZE + 150
    height = _PR_TOP + _PR_SIZE + 44
    parts = [f"<svg class='pr-chart' xmlns='http://www.w3.org/2000/svg' width='{width}' "
             f"height='{height}' viewBox='0 0 {width} {height}'>",
             f"<text x='{_PR_LEFT + _PR_SIZE / 2}' y='16' text-anchor='middle' font-weight='bold' "
             f"{_FONT}>{html.escape(title)}</text>"]
    parts += _pr_axes()
    parts += [p for p in (_curve_path(c) for c in curves) if p]
    legend_x = _PR_LEFT + _PR_SIZE + 14
    for i, curve in enumerate(curves):
        y = _PR_TOP + 8 + 18 * i
        parts.append(f"<line x1='{legend_x}' y1='{y}' x2='{legend_x + 18}' y2='{y}' "
                     f"stroke='{_rgb(curve.color)}' stroke-width='3'/>")
        parts.append(f"<text x='{legend_x + 24}' y='{y + 4}' {_FONT}>"
                     f"{html.escape(curve.label or curve.name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _cell_fill(fraction: float) -> str:
    """White to dark blue by the share of the row's images."""
    lo, hi = (255, 255, 255), (8, 69, 148)
    return _rgb(tuple(round(a + (b - a) * fraction) for a, b in zip(lo, hi)))


def confusion_matrix_svg(names: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    """A confusion matrix: rows true classes, columns predicted classes, counts in the cells.

    Cells are shaded by their share of the row (the class's recall on the diagonal).

    Returns:
        An ``<svg>`` element.
    """
    n = len(names)
    cell = 44 if n <= 10 else 28
    label_w = max(60, 7 * max((len(x) for x in names), default=1) + 12)
    left, top = label_w + 22, label_w + 22
    width, height = left + n * cell + 10, top + n * cell + 10
    parts = [f"<svg class='confusion-matrix' xmlns='http://www.w3.org/2000/svg' width='{width}' "
             f"height='{height}' viewBox='0 0 {width} {height}'>",
             f"<text class='axis-label' x='{left + n * cell / 2}' y='14' text-anchor='middle' "
             f"{_FONT}>predicted class</text>",
             f"<text class='axis-label' x='12' y='{top + n * cell / 2}' text-anchor='middle' "
             f"transform='rotate(-90 12 {top + n * cell / 2})' {_FONT}>true class</text>"]
    for i, name in enumerate(names):
        label = html.escape(name)
        cy, cx = top + i * cell + cell / 2, left + i * cell + cell / 2
        parts.append(f"<text x='{left - 6}' y='{cy + 4}' text-anchor='end' {_FONT}>{label}</text>")
        parts.append(f"<text x='{cx + 4}' y='{top - 6}' transform='rotate(-90 {cx + 4} {top - 6})' "
                     f"{_FONT}>{label}</text>")
    for i, row in enumerate(matrix):
        total = sum(int(v) for v in row)
        for j, value in enumerate(row):
            parts.append(_matrix_cell(names, i, j, int(value), total, left, top, cell))
    parts.append("</svg>")
    return "".join(parts)


def _matrix_cell(names, i: int, j: int, value: int, total: int, left: float, top: float,
                 cell: int) -> str:
    fraction = value / total if total else 0.0
    x, y = left + j * cell, top + i * cell
    ink = "white" if fraction > 0.5 else "black"
    true_name, pred_name = (html.escape(names[k], quote=True) for k in (i, j))
    return (f"<g class='cell' data-true='{true_name}' data-predicted='{pred_name}' "
            f"data-count='{value}'><rect x='{x}' y='{y}' width='{cell}' height='{cell}' "
            f"fill='{_cell_fill(fraction)}' stroke='#999'/><text x='{x + cell / 2}' "
            f"y='{y + cell / 2 + 4}' text-anchor='middle' fill='{ink}' {_FONT}>{value}</text></g>")
