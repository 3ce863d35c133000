"""The ``prune`` stage: ``tlt-prune`` and the prune component call this.

Load a .tlt model of this toolkit, prune its filters (`tlt.pruning`), and write the pruned model
encrypted with the same key. ``output`` is either a ``.tlt`` file, or an artifact folder that
receives ``model.tlt`` and ``metadata.json`` (the pipeline's Model artifact). The model file's
metadata keeps the original's (task, classes, input dims, spec ...) and gains ``pruning``: the
settings, both parameter counts, the ratio and every layer's width before and after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tlt.errors import ModelFileError

__all__ = ["MODEL_FILE", "PruneOutcome", "run"]

_LOG = logging.getLogger(__name__)

MODEL_FILE = "model.tlt"
_TASKS = ("classification", "detection")
# Facts the model file container sets itself on every save.
_CONTAINER_KEYS = ("encrypted", "created", "tlt_version", "payload_format")


@dataclass(frozen=True)
class PruneOutcome:
    """What the stage wrote.

    Attributes:
        model_path: the pruned .tlt file.
        result: the `tlt.pruning.PruneResult` (pruned model, counts, widths).
        metadata: the metadata stored in the pruned model file.
    """

    model_path: str
    result: object
    metadata: dict


def _load(model: str, key: str | None):
    from tlt.io.modelfile import load_keras_model

    keras_model, metadata = load_keras_model(model, key=key, compile=False)
    if metadata.get("task") not in _TASKS:
        raise ModelFileError(f"{model}: not a model of this toolkit (its metadata names no "
                             f"task of {', '.join(_TASKS)})")
    return keras_model, metadata


def _model_path(output: str) -> tuple[str, str | None]:
    """(model file, artifact folder or None) for an output that is a .tlt file or a folder."""
    from tlt.io import storage

    if output.endswith(".tlt"):
        return output, None
    return storage.join(output, MODEL_FILE), output


def _pruned_metadata(metadata: dict, model: str, settings, result) -> dict:
    meta = {k: v for k, v in metadata.items() if k not in _CONTAINER_KEYS}
    meta["pruning"] = {
        "source_model": model,
        "settings": settings.to_dict(),
        "params_before": result.params_before,
        "params_after": result.params_after,
        "pruning_ratio": result.ratio,
        "widths": {name: list(w) for name, w in result.widths.items()},
    }
    return meta


def _write_artifact(folder: str, model: str, meta: dict, encrypted: bool) -> None:
    """Write the artifact's metadata.json (after the model, so its presence means complete)."""
    import tempfile
    from pathlib import Path

    from tlt.artifacts import METADATA_FILE, write_metadata
    from tlt.io import storage

    pruning = meta["pruning"]
    fields = dict(task=meta["task"], model=MODEL_FILE, classes=meta.get("classes", []),
                  encrypted=encrypted, params_before=pruning["params_before"],
                  params_after=pruning["params_after"], pruning_ratio=pruning["pruning_ratio"],
                  settings=pruning["settings"])
    if not storage.is_remote(folder):
        write_metadata(folder, "prune", parents=[{"uri": model}], **fields)
        return
    with tempfile.TemporaryDirectory(prefix="tlt-prune-") as tmp:
        write_metadata(tmp, "prune", parents=[{"uri": model}], **fields)
        storage.upload_file(Path(tmp) / METADATA_FILE, storage.join(folder, METADATA_FILE))


def run(model: str, output: str, *, key: str | None = None, settings=None) -> PruneOutcome:
    """Prune a .tlt model and write the result.

    Args:
        model: the model to prune (local path, gs:// or s3://).
        output: a ``.tlt`` file to write, or an artifact folder (gets ``model.tlt`` and
            ``metadata.json``).
        key: the model's key; the pruned model is encrypted with it (None: plain file).
        settings: `tlt.pruning.PruneSettings` (default: the guide's defaults).

    Returns:
        Where the model went, the pruning result and the stored metadata.

    Raises:
        SpecError: invalid settings or an unknown excluded layer.
        ModelKeyError: wrong or missing key.
        ModelFileError: the file is not a model of this toolkit.
        StorageError: the output cannot be written.
    """
    from tlt.io.modelfile import save_keras_model
    from tlt.pruning import PruneSettings, prune_model

    settings = settings or PruneSettings()
    settings.validate()
    keras_model, metadata = _load(model, key)
    result = prune_model(keras_model, settings)
    _LOG.info("Parameters before pruning: %d", result.params_before)
    _LOG.info("Parameters after pruning: %d", result.params_after)
    _LOG.info("Pruning ratio: %s", result.ratio)
    model_path, folder = _model_path(str(output))
    meta = _pruned_metadata(metadata, str(model), settings, result)
    save_keras_model(result.model, model_path, meta, key=key)
    if folder is not None:
        _write_artifact(folder, str(model), meta, encrypted=bool(key))
    _LOG.info("Pruned model written to %s", model_path)
    return PruneOutcome(model_path=model_path, result=result, metadata=meta)
