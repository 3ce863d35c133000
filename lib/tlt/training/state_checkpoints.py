"""Checkpoints of model weights, optimizer slots and extra training state in one ``.npz`` file.

Used where the compiled model cannot be serialised whole (DetectNet_v2's loss holds live
autoweighting variables): the graph is rebuilt from the spec on resume and the arrays are put
back. Each file is written under a temporary name and renamed, then ``latest.json`` is updated,
so ``kill -9`` at any moment leaves the previous complete checkpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from tlt.errors import ModelFileError
from tlt.io.atomic import atomic_path
from tlt.training.checkpoints import PeriodicCheckpoint, find_latest, zip_has_member

__all__ = ["StateCheckpoint", "save_state", "load_state", "find_latest_state"]

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


class StateCheckpoint(PeriodicCheckpoint):
    """Save ``epoch_NNN.npz`` every ``interval`` epochs and after the last one.

    Args:
        ckpt_dir, interval, total_epochs, keep, enabled: those of `PeriodicCheckpoint`.
        extra_state: called at save time; returns JSON-serialisable state to store (e.g. the
            autoweighting objective weights). The extra state always holds ``epoch`` and the
            epoch's ``logs`` as well.
    """

    pattern = _NAME

    def __init__(self, ckpt_dir: str | Path, interval: int, total_epochs: int, extra_state=None, *,
                 keep: int = 3, enabled: bool = True):
        super().__init__(ckpt_dir, interval, total_epochs, keep=keep, enabled=enabled)
        self.extra_state = extra_state or (lambda: {})

    def _write(self, done: int, logs: dict | None) -> Path:
        path = self.ckpt_dir / f"epoch_{done:03d}.npz"
        # The epoch's logs travel with it: a run killed before its CSV row was written can
        # write that row on resume (see tlt.training.detection).
        epoch_logs = {k: float(v) for k, v in (logs or {}).items()}
        save_state(path, self.model, self.model.optimizer,
                   {"epoch": done, "logs": epoch_logs, **self.extra_state()})
        return path
