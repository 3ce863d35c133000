"""Checkpoints of model weights, optimizer slots and extra training state in one ``.npz`` file.

Used where the compiled model cannot be serialised whole (DetectNet_v2's loss holds live
autoweighting variables): the graph is rebuilt from the spec on resume and the arrays are put
back. Each file is written under a temporary name and renamed, then ``latest.json`` is updated,
so ``kill -9`` at any moment leaves the previous complete checkpoint.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlt.errors import ModelFileError
from tlt.io.atomic import atomic_path, atomic_write_text
from tlt.training.checkpoints import find_latest, prune_old, zip_has_member

__all__ = ["StateCheckpoint", "save_state", "load_state", "find_latest_state"]

_log = logging.getLogger(__name__)
_NAME = re.compile(r"^epoch_(\d{3,})\.npz$")


def save_state(path: str | Path, model, optimizer, extra: dict[str, Any]) -> None:
    """Write model weights, optimizer variables and ``extra`` (JSON) to ``path`` atomically."""
    arrays = {f"model/{i:05d}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"optimizer/{i:05d}": np.asarray(v.numpy())
                   for i, v in enumerate(optimizer.variables)})
    arrays["extra"] = np.frombuffer(json.dumps(extra).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_state(path: str | Path, model, optimizer) -> dict[str, Any]:
    """Restore a `save_state` file into ``model`` and ``optimizer``; return its ``extra``.

    The optimizer is built on the model's trainable variables first, so its slot variables exist
    and line up with the saved ones.
    """
    try:
        return _restore(path, model, optimizer)
    except ValueError as err:
        # A rerun with another spec (classes, backbone) on an old results folder lands here.
        raise ModelFileError(f"{path}: checkpoint does not fit the model of this spec ({err}); "
                             f"use a fresh results folder for a changed spec") from None


def _restore(path: str | Path, model, optimizer) -> dict[str, Any]:
    with np.load(path) as data:
        model_keys = sorted(k for k in data.files if k.startswith("model/"))
        model.set_weights([data[k] for k in model_keys])
        opt_keys = sorted(k for k in data.files if k.startswith("optimizer/"))
        if opt_keys:
            optimizer.build(model.trainable_variables)
            variables = list(optimizer.variables)
            if len(variables) != len(opt_keys):
                raise ValueError(f"{path}: {len(opt_keys)} optimizer variables saved, the optimizer "
                                 f"has {len(variables)}")
            for var, key in zip(variables, opt_keys):
                var.assign(data[key])
        return json.loads(bytes(data["extra"]).decode("utf-8"))


def find_latest_state(ckpt_dir: str | Path) -> tuple[int, Path] | None:
    """``(epoch, path)`` of the newest complete ``epoch_NNN.npz`` in ``ckpt_dir``, or None."""
    return find_latest(ckpt_dir, _NAME, lambda p: zip_has_member(p, "extra.npy"))


class StateCheckpoint(keras.callbacks.Callback):
    """Save ``epoch_NNN.npz`` every ``interval`` epochs and after the last one.

    Args:
        ckpt_dir: folder of the checkpoints.
        interval: epochs between checkpoints.
        total_epochs: the run's epoch count.
        extra_state: called at save time; returns JSON-serialisable state to store (e.g. the
            autoweighting objective weights). The extra state always holds ``epoch`` and the
            epoch's ``logs`` as well.
        keep: recent checkpoints kept.
        enabled: False on non-chief workers.
    """

    def __init__(self, ckpt_dir: str | Path, interval: int, total_epochs: int, extra_state=None, *,
                 keep: int = 3, enabled: bool = True):
        super().__init__()
        self.ckpt_dir = Path(ckpt_dir)
        self.interval = max(1, int(interval))
        self.total_epochs = int(total_epochs)
        self.extra_state = extra_state or (lambda: {})
        self.keep = max(1, int(keep))
        self.enabled = enabled

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if not self.enabled or (done % self.interval and done != self.total_epochs):
            return
        path = self.ckpt_dir / f"epoch_{done:03d}.npz"
        # The epoch's logs travel with it: a run killed before its CSV row was written can
        # write that row on resume (see tlt.training.detection).
        epoch_logs = {k: float(v) for k, v in (logs or {}).items()}
        save_state(path, self.model, self.model.optimizer,
                   {"epoch": done, "logs": epoch_logs, **self.extra_state()})
        atomic_write_text(self.ckpt_dir / "latest.json",
                          json.dumps({"epoch": done, "file": path.name}) + "\n")
        _log.info("saved checkpoint %s", path)
        prune_old(self.ckpt_dir, _NAME, self.keep)
