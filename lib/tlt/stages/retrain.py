"""The ``retrain`` stage: retrain a pruned model (guide chapter 8, "Re-training the pruned model").

The same training as ``tlt-train``, with the spec's pretrained model pointed at the pruned .tlt
(classification ``train_config.pretrained_model_path``, detection
``model_config.pretrained_model_file``): training keeps a pruned model's graph
(`tlt.pruning.is_pruned`) and loads its weights instead of rebuilding from model_config.
"""

from __future__ import annotations

from pathlib import Path

from tlt.errors import SpecError

__all__ = ["retrain_spec", "run"]


def retrain_spec(spec, pretrained_model: str, *, task: str, epochs: int = 0):
    """Point ``spec`` (a loaded experiment message, changed in place) at the pruned model.

    Args:
        spec: classification or detection experiment.
        pretrained_model: the pruned .tlt (path or URI).
        task: ``classification`` or ``detection``.
        epochs: > 0 replaces the spec's epoch count (retraining needs fewer epochs).

    Returns:
        ``spec``.

    Raises:
        SpecError: an unknown task or a negative epoch count.
    """
    if epochs < 0:
        raise SpecError(f"retrain epochs must be >= 0 (0 keeps the spec's), got {epochs}")
    if task == "classification":
        spec.train_config.pretrained_model_path = str(pretrained_model)
        if epochs:
            spec.train_config.n_epochs = int(epochs)
    elif task == "detection":
        spec.model_config.pretrained_model_file = str(pretrained_model)
        if epochs:
            spec.training_config.num_epochs = int(epochs)
    else:
        raise SpecError(f"unknown task {task!r}; expected classification or detection")
    return spec


def run(spec, results_dir: str | Path, *, pretrained_model: str, task: str = "classification",
        epochs: int = 0, key: str | None = None, gpus: int = 1, progress: bool = True):
    """Retrain the pruned ``pretrained_model`` as ``spec`` says into ``results_dir``.

    Args:
        spec: the loaded experiment message (its data sources already final).
        results_dir: results folder; rerunning on it resumes from the last checkpoint.
        pretrained_model: the pruned .tlt.
        task: ``classification`` or ``detection``.
        epochs: > 0 replaces the spec's epoch count.
        key: the model key (reads the pruned model, encrypts the result).
        gpus: replicas.
        progress: per-step progress bar.

    Returns:
        The task's TrainResult.
    """
    from tlt.stages import train as train_stage

    retrain_spec(spec, pretrained_model, task=task, epochs=epochs)
    return train_stage.run(spec, results_dir, task=task, key=key, gpus=gpus, progress=progress)
