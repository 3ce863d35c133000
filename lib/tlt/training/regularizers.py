"""Weight regularisation by layer class (reg_config: type NONE/L1/L2, scope "Conv2D,Dense").

Keras attaches a regulariser when a weight is created, so it cannot be switched on for an existing
layer. We rebuild the functional model from its config with the regulariser in the scoped layers'
configs and copy the weights over: layer names, graph and values are unchanged.
"""

from __future__ import annotations

import keras

from tlt.errors import SpecError

__all__ = ["build_regularizer", "apply_regularization"]


def build_regularizer(reg_type: str, weight: float):
    """Keras regulariser for ``reg_type`` ("NONE", "L1", "L2"), or None for no regularisation."""
    kind = (reg_type or "NONE").upper()
    if kind in ("NONE", "NO_REG") or weight == 0:
        return None
    if kind == "L1":
        return keras.regularizers.L1(weight)
    if kind == "L2":
        return keras.regularizers.L2(weight)
    raise SpecError(f"reg_config.type must be NONE, L1 or L2; got {reg_type!r}", field="reg_config.type")


def apply_regularization(model: keras.Model, reg_type: str, weight: float, scope: str) -> keras.Model:
    """Return ``model`` with the spec's kernel regulariser on the layers whose class is in
    ``scope`` and none on the others.

    A model loaded from a file (a pruned model, a pretrained graph) carries the regularisers of
    the run that saved it in its layer configs; retraining must use this spec's instead, or a
    retrain meant to run without L1 keeps shrinking every kernel.

    Args:
        model: a functional Keras model.
        reg_type: "NONE", "L1" or "L2".
        weight: regularisation weight.
        scope: comma-separated layer class names, e.g. "Conv2D,Dense".
    """
    regularizer = build_regularizer(reg_type, weight)
    wanted = None if regularizer is None else keras.regularizers.serialize(regularizer)
    classes = {s.strip() for s in (scope or "").split(",") if s.strip()}
    config = model.get_config()
    touched = 0
    for layer_cfg in config["layers"]:
        layer = layer_cfg["config"]
        if "kernel_regularizer" not in layer:
            continue
        target = wanted if layer_cfg["class_name"] in classes else None
        if layer["kernel_regularizer"] != target:
            layer["kernel_regularizer"] = target
            touched += 1
    if touched == 0:
        return model
    rebuilt = keras.Model.from_config(config)
    for source, target in zip(model.layers, rebuilt.layers):
        target.set_weights(source.get_weights())
        target.trainable = source.trainable
    return rebuilt
