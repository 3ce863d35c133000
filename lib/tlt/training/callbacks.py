"""Keras callbacks shared by the trainers: status.json and log lines per epoch."""

from __future__ import annotations

import logging
from pathlib import Path

import keras

from tlt.artifacts import read_metadata
from tlt.io.atomic import atomic_write_text

from tlt.status import StatusWriter

__all__ = ["StatusCallback", "trim_training_log", "final_metrics"]

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


def trim_training_log(path: Path, first_epoch: int) -> None:
    """Keep only the rows of epochs before ``first_epoch`` (0-based ``epoch`` column).

    A run killed after its last checkpoint has logged epochs that the resumed run trains
    again; without this they would appear twice.
    """
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:]
                        if line.split(",", 1)[0].strip().isdigit()
                        and int(line.split(",", 1)[0]) < first_epoch]
    if first_epoch == 0 or len(kept) <= 1:
        path.unlink()
    elif len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))


def final_metrics(history: dict[str, list[float]], results_dir: Path) -> dict[str, float]:
    """Last-epoch metrics of this run, or those recorded by the run that finished the folder.

    A rerun on a finished results folder (a retried pod, say) trains no epoch; it must not wipe
    the metrics the finishing run recorded in ``metadata.json``.
    """
    last = {k: v[-1] for k, v in history.items() if v}
    return last or dict(read_metadata(results_dir).get("final_metrics", {}))
