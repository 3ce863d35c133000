"""What every trainer hands back: the `TrainResult` and the shipped copy of the model."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FINAL_MODEL_NAME", "TrainResult", "shippable_model"]

FINAL_MODEL_NAME = "model.tlt"


@dataclass
class TrainResult:
    """What a training run produced."""

    model_path: str
    epochs: int
    resumed_from_epoch: int
    class_names: list[str]
    history: dict[str, list[float]] = field(default_factory=dict)
    skipped_images: int = 0


def shippable_model(model):
    """An uncompiled float32 copy of ``model`` (same graph, names and weights).

    The shipped model carries no optimizer slots, which would triple its size for nothing, and
    computes in float32 even when it was trained in mixed precision (its weights are float32
    master copies already); evaluation, pruning and export then see one kind of model.
    """
    import keras

    from tlt.training.precision import float32_config

    copy = keras.Model.from_config(float32_config(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy
