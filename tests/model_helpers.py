"""Helpers of the model tests (backbones, classifier): configs read by attribute, parameter counts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

__all__ = ["cfg", "counts"]


def cfg(**fields):
    """A model config read by attribute, like the proto message."""
    return SimpleNamespace(**fields)


def counts(model) -> tuple[int, int, int]:
    """(total, trainable, non-trainable) parameter counts, as Keras' summary reports them."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return trainable + frozen, trainable, frozen
