"""Keras callbacks shared by the trainers: status.json and log lines per epoch."""

from __future__ import annotations

import logging

import keras

from tlt.status import StatusWriter

__all__ = ["StatusCallback"]

_log = logging.getLogger(__name__)


class StatusCallback(keras.callbacks.Callback):
    """Keep ``status.json`` current (epoch, metrics) and log one line per epoch."""

    def __init__(self, status: StatusWriter | None, total_epochs: int):
        super().__init__()
        self.status = status
        self.total_epochs = total_epochs

    def on_epoch_end(self, epoch, logs=None):
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        _log.info("epoch %d/%d: %s", epoch + 1, self.total_epochs,
                  ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
        if self.status is not None:
            self.status.update(epoch=epoch + 1, total_epochs=self.total_epochs,
                               progress=(epoch + 1) / self.total_epochs, metrics=metrics)
