"""Optimizers of the classification spec: ``optimizer: "sgd" | "adam" | "rmsprop"``."""

from __future__ import annotations

import keras

from tlt.errors import SpecError

__all__ = ["build_optimizer"]


def build_optimizer(train_config, learning_rate):
    """Build the Keras optimizer named by ``train_config.optimizer`` with its parameters.

    Args:
        train_config: the spec's train_config (defaults applied).
        learning_rate: a float or a LearningRateSchedule.
    """
    name = (train_config.optimizer or "sgd").lower()
    params = train_config.optimizer_config
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=params.sgd.momentum,
                                    nesterov=params.sgd.nesterov)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=params.adam.beta1,
                                     beta_2=params.adam.beta2, epsilon=params.adam.epsilon)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate, rho=params.rmsprop.rho,
                                        momentum=params.rmsprop.momentum,
                                        epsilon=params.rmsprop.epsilon)
    raise SpecError(f"train_config.optimizer must be one of sgd, adam, rmsprop; got {name!r}",
                    field="train_config.optimizer")
