"""Epoch-end callbacks of DetectNet_v2 training: validation AP and the training log CSV."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import keras

__all__ = ["ValidationCallback", "TrainingLogCSV", "logged_epochs"]

_log = logging.getLogger(__name__)


class ValidationCallback(keras.callbacks.Callback):
    """Evaluate AP every ``validation_period_during_training`` epochs from ``first_validation_epoch``.

    The last epoch is validated too. Prints the AP table like TLT, writes
    ``validation/epoch_NNN.json`` and adds ``val_mAP`` (first
    bucket) and ``val_cost`` to the epoch logs so the CSV and TensorBoard loggers record them.
    """

    def __init__(self, experiment, results_dir: Path, loss, batch_size: int, status,
                 enabled: bool = True, total_epochs: int | None = None):
        super().__init__()
        cfg = experiment.evaluation_config
        self.experiment = experiment
        self.results_dir = Path(results_dir)
        self.loss = loss
        self.batch_size = batch_size
        self.status = status
        self.period = max(1, int(cfg.validation_period_during_training or 1))
        self.first = max(1, int(cfg.first_validation_epoch or 1))
        self.enabled = enabled
        self.total_epochs = total_epochs
        self.last = None

    def is_scheduled(self, done: int) -> bool:
        """True when the epoch numbered ``done`` (1-based) is validated."""
        periodic = done >= self.first and (done - self.first) % self.period == 0
        # The last epoch is always validated, so every run ends with the AP of its final model.
        return periodic or done == self.total_epochs

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if not self.enabled or not self.is_scheduled(done):
            return
        from tlt.evaluation.detection import evaluate_detection_model

        _log.info("validating after epoch %d", done)
        evaluation = evaluate_detection_model(self.model, self.experiment, batch_size=self.batch_size,
                                              loss=self.loss)
        results = evaluation.results
        self.last = evaluation
        mean_ap = results.mean_ap.get(results.buckets[0])
        _log.info("validation after epoch %d (%d frames), validation cost: %.6f\n%s", done,
                  evaluation.num_frames, evaluation.validation_cost, results.table())
        results.write_json(self.results_dir / "validation" / f"epoch_{done:03d}.json")
        if logs is not None:
            logs["val_mAP"] = float(mean_ap or 0.0)
            logs["val_cost"] = float(evaluation.validation_cost)
        if self.status is not None:
            self.status.update(last_validation={"epoch": done, "mAP": mean_ap,
                                                "cost": evaluation.validation_cost})


class TrainingLogCSV(keras.callbacks.CSVLogger):
    """Keras' CSVLogger with one column set for a run and every resumption of it.

    Keras fixes the columns at the first epoch it logs, so ``val_mAP``/``val_cost`` were dropped
    when that epoch did not validate, and a resumed run appended rows that did not match the
    file's header. Here the columns are the existing file's header, else the first epoch's keys
    plus the validation keys; epochs without validation get "NA" there.
    """

    def __init__(self, filename: str, always: tuple[str, ...] = ("val_cost", "val_mAP")):
        super().__init__(filename, append=True)
        self._always = always

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        path = Path(self.filename)
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
            if header:
                self.keys = [k for k in header if k != "epoch"]

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            self.keys = sorted(set(logs or {}) | set(self._always))
        super().on_epoch_end(epoch, logs)


def logged_epochs(path: Path) -> list[int]:
    """The 0-based ``epoch`` column of a training log CSV (empty when there is none)."""
    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)
                if (row.get("epoch") or "").strip().isdigit()]
