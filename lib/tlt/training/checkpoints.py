"""Per-epoch checkpoints that survive ``kill -9`` and let a rerun resume where it stopped.

Each checkpoint is a complete ``.keras`` file (model, weights and optimizer state, so the step
counter and learning-rate schedule continue) written to a temporary name and renamed into place,
then ``latest.json`` is rewritten atomically. A crash at any instant leaves either the previous
or the new checkpoint, never a torn one; a checkpoint that does not open is skipped on resume.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path

import keras

from tlt.io.atomic import atomic_write_text

__all__ = ["EpochCheckpoint", "PeriodicCheckpoint", "find_latest_checkpoint", "checkpoint_path"]

_log = logging.getLogger(__name__)
_NAME = re.compile(r"^epoch_(\d{3,})\.keras$")


def checkpoint_path(ckpt_dir: str | Path, epoch: int) -> Path:
    """Path of the checkpoint taken at the end of ``epoch`` (1-based)."""
    return Path(ckpt_dir) / f"epoch_{epoch:03d}.keras"


def zip_has_member(path: Path, member: str) -> bool:
    """True when ``path`` is an intact zip archive (CRC-checked) holding ``member``."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None and member in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def find_latest(ckpt_dir: str | Path, pattern: re.Pattern, is_complete) -> tuple[int, Path] | None:
    """``(epoch, path)`` of the newest file named like ``pattern`` (epoch in group 1) that passes
    ``is_complete``; torn or garbage files are skipped with a warning."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in ckpt_dir.iterdir()
                    if (m := pattern.match(p.name))), reverse=True)
    for epoch, path in found:
        if is_complete(path):
            return epoch, path
        _log.warning("ignoring incomplete checkpoint %s", path)
    return None


def prune_old(ckpt_dir: Path, pattern: re.Pattern, keep: int) -> None:
    """Delete all but the ``keep`` newest files named like ``pattern``."""
    older = sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := pattern.match(p.name)))
    for _, path in older[:-keep]:
        path.unlink(missing_ok=True)


def find_latest_checkpoint(ckpt_dir: str | Path) -> tuple[int, Path] | None:
    """Return ``(epoch, path)`` of the newest complete checkpoint, or None when there is none."""
    return find_latest(ckpt_dir, _NAME, lambda p: zip_has_member(p, "config.json"))


class PeriodicCheckpoint(keras.callbacks.Callback, ABC):
    """Base of the per-epoch checkpoint callbacks: when to save, ``latest.json`` and pruning.

    A subclass sets ``pattern`` (its file names, epoch in group 1) and implements `_write`, which
    saves the checkpoint of one epoch atomically and returns its path. The checkpoint is taken
    every ``interval`` epochs and after the last one; ``latest.json`` is rewritten after the file
    is in place, then all but the ``keep`` newest files are deleted.

    Args:
        ckpt_dir: folder of the checkpoints.
        interval: epochs between checkpoints.
        total_epochs: the run's epoch count (the last epoch is always saved).
        keep: how many recent checkpoints to keep (older ones are deleted).
        enabled: False on non-chief workers of a multi-worker run, which must still take part in
            any collective op but write nothing.
    """

    pattern: re.Pattern

    def __init__(self, ckpt_dir: str | Path, interval: int, total_epochs: int, *, keep: int = 3,
                 enabled: bool = True):
        super().__init__()
        self.ckpt_dir = Path(ckpt_dir)
        self.interval = max(1, int(interval))
        self.total_epochs = int(total_epochs)
        self.keep = max(1, int(keep))
        self.enabled = enabled

    @abstractmethod
    def _write(self, done: int, logs: dict | None) -> Path:
        """Save the checkpoint of epoch ``done`` (1-based); return its path."""

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if not self.enabled or (done % self.interval and done != self.total_epochs):
            return
        path = self._write(done, logs)
        atomic_write_text(self.ckpt_dir / "latest.json",
                          json.dumps({"epoch": done, "file": path.name}) + "\n")
        # Logged under the subclass's module, as each callback logged before they shared this.
        logging.getLogger(type(self).__module__).info("saved checkpoint %s", path)
        prune_old(self.ckpt_dir, self.pattern, self.keep)


class EpochCheckpoint(PeriodicCheckpoint):
    """Save a complete ``.keras`` checkpoint every ``interval`` epochs and after the last one.

    Args: those of `PeriodicCheckpoint`.
    """

    pattern = _NAME

    def _write(self, done: int, logs: dict | None) -> Path:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        final = checkpoint_path(self.ckpt_dir, done)
        tmp = self.ckpt_dir / f".partial-{os.getpid()}-{final.name}"
        try:
            self.model.save(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final
