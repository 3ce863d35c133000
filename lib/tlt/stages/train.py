"""The ``train`` stage: ``tlt-train <task>``, the train component and the Argo template call this."""

from __future__ import annotations

from pathlib import Path

from tlt.errors import SpecError

__all__ = ["TASKS", "run"]

TASKS = ("classification", "detection")


def _load_spec(spec, task: str):
    """Return ``(message, text)`` for a spec path or an already loaded message."""
    from tlt import spec as spec_loader

    if isinstance(spec, (str, Path)):
        if not Path(spec).is_file():
            raise SpecError(f"{spec}: spec file does not exist")
        # Loaded first: the loader turns a file that is not UTF-8 (or not a spec) into one line.
        message = spec_loader.load(str(spec), task)
        return message, Path(spec).read_text(encoding="utf-8")
    return spec, spec_loader.to_text(spec)


def run(spec, results_dir: str | Path, *, task: str = "classification", key: str | None = None,
        gpus: int = 1, progress: bool = True):
    """Train a model of ``task`` as ``spec`` says, writing everything into ``results_dir``.

    Args:
        spec: spec file path or loaded experiment message.
        results_dir: results folder; rerunning on it resumes from the last checkpoint.
        task: "classification" or "detection".
        key: encryption key of the output model (None: plain file).
        gpus: number of replicas (MirroredStrategy).
        progress: per-step progress bar.

    Returns:
        The task's TrainResult.
    """
    if task not in TASKS:
        raise SpecError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    message, text = _load_spec(spec, task)
    if task == "detection":
        from tlt.training.detection import train_detection

        return train_detection(message, results_dir, key=key, gpus=gpus, spec_text=text,
                               progress=progress)
    from tlt.training.classification import train_classification

    return train_classification(message, results_dir, key=key, gpus=gpus, spec_text=text,
                                progress=progress)
