"""Transfer learning: load every layer of a pretrained model whose name and shapes match."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tlt.errors import ModelFileError

__all__ = ["TransferReport", "load_pretrained_model", "transfer_weights"]

_log = logging.getLogger(__name__)


@dataclass
class TransferReport:
    """Which target layers got pretrained weights and why others did not."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # layer name -> reason


def load_pretrained_model(uri: str, key: str | None = None):
    """Load a pretrained ``.tlt`` or ``.keras`` model from a path, gs:// or s3:// URI.

    Returns:
        ``(keras.Model, metadata dict)``.
    """
    import keras

    from tlt.io import modelfile, storage

    if uri.endswith(".keras"):
        with storage.staged_input(uri) as local:
            try:
                return keras.models.load_model(local, compile=False), {}
            except (OSError, ValueError) as err:
                raise ModelFileError(f"{uri}: cannot load Keras model ({err})") from None
    return modelfile.load_keras_model(uri, key=key, compile=False)


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
