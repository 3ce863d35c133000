"""TLT's image classifier: a backbone plus TLT's dense head.

The head is what TLT's classification builder puts on every backbone: `avg_pool`, an average pool
over the whole last feature map; `flatten`; an optional `dropout`; and `predictions`, a softmax
Dense layer with one unit per class. For ResNet-18 at 3x224x224 with 20 classes that gives TLT's
logged 11,558,548 parameters (11,548,288 backbone + 512*20+20 head), 11,648 non-trainable.
"""

from __future__ import annotations

import keras

from tlt.errors import SpecError
from tlt.models.backbones import DATA_FORMAT, build_backbone

__all__ = ["build_classifier"]


def build_classifier(model_config, num_classes: int, *, kernel_regularizer=None,
                     bias_regularizer=None) -> keras.Model:
    """Build a classification model.

    Args:
        model_config: the experiment's model_config (see `tlt.models.backbones.build_backbone`);
            its `dropout` sets the rate of the dropout before `predictions`.
        num_classes: number of classes, >= 2.
        kernel_regularizer: Keras regularizer for convolution and dense kernels, or None.
        bias_regularizer: Keras regularizer for biases, or None.

    Returns:
        A Keras model from `input_1` (None, C, H, W) to `predictions` (None, num_classes),
        named after its backbone.

    Raises:
        SpecError: invalid model config or fewer than two classes.
    """
    if int(num_classes) < 2:
        raise SpecError(f"a classifier needs at least 2 classes, got {num_classes}")
    backbone = build_backbone(model_config, kernel_regularizer=kernel_regularizer,
                              bias_regularizer=bias_regularizer)
    x = backbone.features
    # TLT pools the whole map with a fixed window (not GlobalAveragePooling2D), then flattens.
    x = keras.layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]), padding="valid",
                                      data_format=DATA_FORMAT, name="avg_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if backbone.spec.dropout > 0:
        x = keras.layers.Dropout(backbone.spec.dropout, name="dropout")(x)
    x = keras.layers.Dense(int(num_classes), activation="softmax", name="predictions",
                           kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer)(x)
    return keras.Model(backbone.inputs, x, name=backbone.name)
