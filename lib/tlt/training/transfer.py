"""Transfer learning: load every layer of a pretrained model whose name and shapes match.

A pruned pretrained model is the exception: retraining keeps its graph (`start_from_pretrained`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tlt.errors import ModelFileError

__all__ = ["TransferReport", "load_pretrained_model", "transfer_weights", "start_from_pretrained",
           "pretrained_pruned_params"]

_log = logging.getLogger(__name__)


@dataclass
class TransferReport:
    """Which target layers got pretrained weights and why others did not."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # layer name -> reason


def load_pretrained_model(uri: str, key: str | None = None):
    """Load a pretrained ``.tlt`` or ``.keras`` model from a path, gs:// or s3:// URI.

    Returns:
        ``(keras.Model, metadata dict)``; a ``.keras`` file has no metadata (``{}``).

    Raises:
        ModelFileError: the file is missing or not a model Keras can load (names ``uri``).
        ModelKeyError: a wrong or missing key for an encrypted ``.tlt``.
        StorageError: the file cannot be read.
    """
    from tlt.io import modelfile

    if uri.endswith(".keras"):
        return modelfile.load_keras_file(uri, compile=False), {}
    return modelfile.load_keras_model(uri, key=key, compile=False)


def start_from_pretrained(model, uri: str, key: str | None, *, classes, input_shape):
    """The model a new run trains: ``model`` with pretrained weights, or a pruned graph.

    A pruned model file (`tlt.pruning.is_pruned`) is trained as it is, never rebuilt from
    model_config, which would restore the unpruned widths (TLT's retraining loads the pruned
    graph). Its layers take the trainable flags of ``model``, the network the spec describes,
    so the spec's freeze_blocks and freeze_bn hold for the retraining too (the pruned file
    keeps whatever flags the first training had). Any other file transfers its weights into
    ``model`` by layer name and shape.

    Args:
        model: the network built from the spec's model_config.
        uri: the pretrained model file.
        key: its key.
        classes: the spec's classes as training stores them in the metadata.
        input_shape: the spec's input (C, H, W).

    Returns:
        The model to train (``model`` itself, or the loaded pruned model).

    Raises:
        ModelFileError: an unreadable file, or a pruned model whose classes or input differ
            from the spec's.
        ModelKeyError: a wrong key.
    """
    from tlt.pruning import check_retrain_compatible, is_pruned

    source, metadata = load_pretrained_model(uri, key=key)
    if not is_pruned(metadata):
        transfer_weights(model, source)
        return model
    check_retrain_compatible(source, metadata, classes=classes, input_shape=input_shape, uri=uri)
    flags = {layer.name: layer.trainable for layer in model.layers}
    for layer in source.layers:
        if layer.name in flags:
            layer.trainable = flags[layer.name]
    pruning = metadata["pruning"]
    _log.info("retraining the pruned model %s as it is: %d parameters (%d before pruning)", uri,
              source.count_params(), pruning.get("params_before", 0))
    return source


def pretrained_pruned_params(uri: str, key: str | None) -> int | None:
    """Parameters of a pruned pretrained model file, or None (no file, or not pruned).

    Run identities record it, so a resume cannot swap in another pruned model.
    """
    from tlt.io import modelfile
    from tlt.pruning import is_pruned

    if not uri or uri.endswith(".keras"):
        return None
    metadata = modelfile.read_model_metadata(uri, key=key)
    if not is_pruned(metadata):
        return None
    return int(metadata["pruning"]["params_after"])


def transfer_weights(target, source) -> TransferReport:
    """Copy weights from ``source`` into ``target`` layer by layer, matching names and shapes.

    Layers without weights are ignored. The input depth must agree, since no first convolution
    could be loaded otherwise; that mismatch is an error rather than a silent skip.

    Raises:
        ModelFileError: the pretrained model's input depth differs from the target's.
    """
    src_in = source.inputs[0].shape
    dst_in = target.inputs[0].shape
    if src_in[1] != dst_in[1]:
        raise ModelFileError(f"pretrained model has input depth {src_in[1]} (input {tuple(src_in[1:])}), "
                             f"the spec asks for {dst_in[1]} (input {tuple(dst_in[1:])})")
    by_name = {layer.name: layer for layer in source.layers}
    report = TransferReport()
    for layer in target.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        src = by_name.get(layer.name)
        if src is None:
            report.skipped[layer.name] = "not in the pretrained model"
            continue
        src_weights = src.get_weights()
        shapes = [w.shape for w in weights]
        src_shapes = [w.shape for w in src_weights]
        if shapes != src_shapes:
            report.skipped[layer.name] = f"shape {src_shapes} in the pretrained model, {shapes} here"
            continue
        layer.set_weights(src_weights)
        report.loaded.append(layer.name)
    _log.info("pretrained weights loaded into %d layers: %s", len(report.loaded),
              ", ".join(report.loaded) or "none")
    for name, reason in report.skipped.items():
        _log.info("pretrained weights skipped for %s: %s", name, reason)
    return report
