"""TensorRT's entropy calibration (EntropyCalibration2) of one tensor, in numpy.

TensorRT picks each activation's INT8 range from a histogram of its absolute values: for every
candidate threshold (bin 128 .. 2048 of a 2048-bin histogram) the values beyond it are clipped into
the last kept bin, the kept bins are merged into the 128 levels of INT8, and the threshold whose
8-bit distribution has the smallest KL divergence from the clipped one wins (Migacz, "8-bit
inference with TensorRT", GTC 2017; NVIDIA pytorch-quantization's ``_compute_amax_entropy``). Rare
outliers are clipped, so the 8-bit steps stay fine where most values lie.

`AbsHistogram` accumulates the histogram over calibration batches in bounded memory;
`entropy_amax` picks the threshold.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NUM_BINS", "NUM_QUANTIZED_BINS", "AbsHistogram", "entropy_amax"]

NUM_BINS = 2048
# The positive levels of signed INT8, as in TensorRT's cache scale (amax / 127).
NUM_QUANTIZED_BINS = 128
_EPS = 1e-4  # the count an empty bin is given before the divergence (a smoothed distribution)


class AbsHistogram:
    """A ``NUM_BINS``-bin histogram of ``|x|`` over ``[0, width * NUM_BINS]``, grown by merging.

    The first batch sets the bin width from its maximum; a later batch with a larger maximum
    doubles the width (merging neighbouring bins, exact because the edges line up) until it fits,
    so every value ever seen is counted and memory stays ``NUM_BINS`` counts per tensor.

    Attributes:
        counts: int64 counts, ``NUM_BINS`` long.
        width: the bin width (0 until a non-zero value is seen).
        amax: the largest ``|x|`` seen.
    """

    def __init__(self) -> None:
        self.counts = np.zeros(NUM_BINS, dtype=np.int64)
        self.width = 0.0
        self.amax = 0.0

    def add(self, values: np.ndarray) -> None:
        """Count the absolute values of ``values`` (any shape; NaNs are ignored)."""
        flat = np.abs(np.asarray(values, dtype=np.float64).ravel())
        flat = flat[~np.isnan(flat)]
        if flat.size == 0:
            return
        top = float(flat.max())
        self.amax = max(self.amax, top)
        if self.width == 0.0:
            if top == 0.0:
                self.counts[0] += flat.size
                return
            self.width = top / NUM_BINS
        while top > self.width * NUM_BINS:
            self.counts = np.concatenate([self.counts.reshape(-1, 2).sum(axis=1),
                                          np.zeros(NUM_BINS // 2, dtype=np.int64)])
            self.width *= 2.0
        counts, _ = np.histogram(flat, bins=NUM_BINS, range=(0.0, self.width * NUM_BINS))
        self.counts += counts

    def edges(self) -> np.ndarray:
        """The ``NUM_BINS + 1`` bin edges."""
        return np.arange(NUM_BINS + 1, dtype=np.float64) * self.width


def entropy_amax(hist: AbsHistogram, start_bin: int = NUM_QUANTIZED_BINS) -> float:
    """The threshold with the smallest KL divergence between the clipped and the 8-bit histogram.

    Args:
        hist: the tensor's histogram of absolute values.
        start_bin: the smallest candidate threshold, in bins.

    Returns:
        The range to quantize to, at most ``hist.amax`` (``hist.amax`` when every value is 0).
    """
    if hist.width == 0.0:
        return hist.amax
    bins = hist.counts.astype(np.float64)
    # TensorRT ignores the zero bin's own count (ReLU outputs put most values there).
    bins[0] = bins[1]
    divergences = np.array([_divergence(bins, i) for i in range(start_bin, NUM_BINS + 1)])
    # The last minimum: among equally good thresholds, clip the least.
    best = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return min(float(hist.edges()[best + start_bin]), hist.amax)


def _divergence(bins: np.ndarray, kept: int) -> float:
    """KL(p || q): p = the first ``kept`` bins with the rest clipped into the last; q = p merged
    into ``NUM_QUANTIZED_BINS`` levels and spread back evenly over each level's non-empty bins."""
    p = bins[:kept].copy()
    p[-1] += bins[kept:].sum()
    nonempty = bins[:kept] != 0
    # Bin k of p falls into level floor(k * levels / kept), as np.digitize on linspace(0, kept).
    level = np.arange(kept) * NUM_QUANTIZED_BINS // kept
    level_sum = np.bincount(level, weights=bins[:kept], minlength=NUM_QUANTIZED_BINS)
    level_n = np.bincount(level, weights=nonempty, minlength=NUM_QUANTIZED_BINS)
    q = np.where(nonempty, level_sum[level] / np.maximum(level_n[level], 1), 0.0)
    if not nonempty.any():
        return np.inf
    # Empty bins get a tiny count (as MXNet's and ONNX Runtime's implementations smooth), so a
    # lone outlier clipped into an empty last bin costs little instead of an infinite divergence.
    p, q = p + _EPS * (p == 0), q + _EPS * (q == 0)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))
