"""What the classification and detection trainers share about one run.

Both trainers plan a run once (`RunBase`: results folder, chief, strategy, batching), claim the
results folder the same way before writing anything (`claim_results_dir`), log the model summary
(`log_model_summary`) and run the remaining epochs with Keras' ``fit`` or, under
MultiWorkerMirroredStrategy, with `tlt.training.distributed_loop` (`fit_epochs`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlt.status import StatusWriter

__all__ = ["RunBase", "claim_results_dir", "log_model_summary", "fit_epochs"]

_log = logging.getLogger(__name__)


@dataclass
class RunBase(ABC):
    """What the steps of one training run share (decided once, up front).

    A trainer's own run adds its task's fields and an ``epochs`` property.
    """

    spec: Any
    results: Path
    chief: bool
    status: StatusWriter | None
    strategy: Any
    multi_worker: bool
    global_batch: int
    steps: int
    drop_remainder: bool

    @property
    def ckpt_dir(self) -> Path:
        return self.results / "checkpoints"

    @property
    @abstractmethod
    def epochs(self) -> int:
        """The run's epoch count (each task's spec names it differently)."""


def claim_results_dir(run: RunBase, identity: dict[str, Any], *, resuming: bool) -> None:
    """Refuse checkpoints of another spec before writing anything; then (chief only) sweep a
    killed run's temporary files and record this run's identity.

    Raises:
        SpecError: ``resuming`` and the folder's recorded identity is not ``identity``.
    """
    from tlt.training.results_dir import remove_leftovers
    from tlt.training.run_identity import check_identity, record_identity

    if resuming:
        check_identity(run.ckpt_dir, identity)
    if run.chief:
        remove_leftovers(run.results)
        if not resuming:
            # A resumed run's identity is on file already (or, for a folder written before
            # identities were recorded, unknown: better none than a guess).
            record_identity(run.ckpt_dir, identity)


def log_model_summary(model) -> None:
    """Log Keras' model summary as one INFO record."""
    summary: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: summary.append(line), line_length=110)
    _log.info("model summary:\n%s", "\n".join(summary))


def fit_epochs(run: RunBase, model, train_ds, *, initial_epoch: int, callbacks, progress: bool,
               validation_data=None, local_callbacks=()) -> dict[str, list[float]]:
    """Train epochs ``initial_epoch + 1 .. run.epochs``; return the per-epoch logs as floats.

    Args:
        run: the run (strategy, epochs, steps per epoch, multi-worker or not).
        model: the compiled model, built under ``run.strategy``.
        train_ds: the endless training data set of global batches.
        initial_epoch: epochs already done (a resumed run).
        callbacks: Keras callbacks, in the order they must run.
        progress: per-step progress bar (else one line per epoch).
        validation_data: data set evaluated after every epoch, or None.
        local_callbacks: those of ``callbacks`` that predict on the chief alone (multi-worker
            runs give them a model outside the strategy; see `fit_distributed`).
    """
    verbose = 1 if progress else 2
    if run.multi_worker:
        from tlt.training.distributed_loop import fit_distributed

        # Keras' fit cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585).
        fit = fit_distributed(model, train_ds, epochs=run.epochs, initial_epoch=initial_epoch,
                              steps_per_epoch=run.steps, validation_data=validation_data,
                              callbacks=callbacks, strategy=run.strategy,
                              local_callbacks=local_callbacks, verbose=verbose)
    else:
        fit = model.fit(train_ds, epochs=run.epochs, initial_epoch=initial_epoch,
                        steps_per_epoch=run.steps, validation_data=validation_data,
                        callbacks=callbacks, shuffle=False, verbose=verbose)
    return {k: [float(x) for x in v] for k, v in fit.history.items()}
