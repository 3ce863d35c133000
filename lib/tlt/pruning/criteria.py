"""How important each filter is: kernel norms, their per-layer normalisation, and equalisation.

TLT ranks the filters of a layer by the L2 norm of their kernels, normalised within the layer
(``max``: divided by the layer's largest norm, so the best filter scores 1; ``L2``: divided by the
L2 norm of the vector of all the layer's norms). Layers joined by an element-wise op must keep
the same filters, so their normalised scores are combined into one per filter by the
equalization criterion: ``union`` keeps a filter any layer wants (maximum), ``intersection`` only
those all layers want (minimum), or the arithmetic or geometric mean of the scores.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["NORMALIZERS", "EQUALIZATION_CRITERIA", "filter_norms", "normalize", "equalize"]

NORMALIZERS = ("max", "L2")
EQUALIZATION_CRITERIA = ("union", "intersection", "arithmetic_mean", "geometric_mean")


def filter_norms(kernel: np.ndarray, out_axis: int = -1) -> np.ndarray:
    """L2 norm of every output filter of a kernel.

    Args:
        kernel: the layer's kernel (Conv: kh x kw x in x out; Dense: in x out).
        out_axis: the axis of the output filters (-2 for Conv2DTranspose).

    Returns:
        One norm per filter, float64.
    """
    flat = np.moveaxis(np.asarray(kernel, dtype=np.float64), out_axis, -1)
    return np.linalg.norm(flat.reshape(-1, flat.shape[-1]), axis=0)


def normalize(norms: np.ndarray, normalizer: str = "max") -> np.ndarray:
    """Normalise a layer's filter norms (see the module docstring).

    A layer whose filters are all zero scores 0 everywhere (not NaN), so it prunes to its minimum.

    Raises:
        ValueError: unknown normalizer (callers validate user input first).
    """
    norms = np.asarray(norms, dtype=np.float64)
    if normalizer == "max":
        scale = float(norms.max()) if norms.size else 0.0
    elif normalizer == "L2":
        scale = float(np.linalg.norm(norms))
    else:
        raise ValueError(f"unknown normalizer {normalizer!r}; expected one of {NORMALIZERS}")
    return norms / scale if scale > 0 else np.zeros_like(norms)


def equalize(scores: Sequence[np.ndarray], criterion: str = "union") -> np.ndarray:
    """Combine the normalised scores of layers that must keep the same filters.

    Args:
        scores: one equally long score vector per layer.
        criterion: one of `EQUALIZATION_CRITERIA`.

    Returns:
        One score per filter.

    Raises:
        ValueError: unknown criterion or vectors of different lengths.
    """
    stacked = np.stack([np.asarray(s, dtype=np.float64) for s in scores])
    if criterion == "union":
        return stacked.max(axis=0)
    if criterion == "intersection":
        return stacked.min(axis=0)
    if criterion == "arithmetic_mean":
        return stacked.mean(axis=0)
    if criterion == "geometric_mean":
        # A zero score makes the mean zero (log 0 = -inf, exp(-inf) = 0), as the product would.
        with np.errstate(divide="ignore"):
            return np.exp(np.log(stacked).mean(axis=0))
    raise ValueError(f"unknown equalization criterion {criterion!r}; expected one of "
                     f"{EQUALIZATION_CRITERIA}")
