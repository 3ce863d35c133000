"""What retraining needs to know about a pruned model file.

A pruned .tlt (written by the ``prune`` stage) holds the narrower functional graph itself; its
metadata has a ``pruning`` record. Retraining loads it with `tlt.io.modelfile.load_keras_model`
and trains that graph as it is (TLT's ``load_graph``): rebuilding it from ``model_config`` would
restore the unpruned widths. Its classes and input are fixed by the graph, so a retrain spec
must agree with them; `check_retrain_compatible` says so in one line when it does not.
"""

from __future__ import annotations

from typing import Sequence

from tlt.errors import ModelFileError

__all__ = ["is_pruned", "check_retrain_compatible"]


def is_pruned(metadata: dict) -> bool:
    """True when a model file's metadata says the ``prune`` stage wrote it."""
    return isinstance(metadata.get("pruning"), dict)


def check_retrain_compatible(model, metadata: dict, *, classes: Sequence[str],
                             input_shape: Sequence[int] | None = None, uri: str = "") -> None:
    """Check that a pruned model can be retrained with a spec's classes and input size.

    Args:
        model: the loaded pruned ``keras.Model``.
        metadata: its model file metadata.
        classes: the retrain spec's classes, in output order and spelled as training stores
            them in the metadata (DetectNet_v2: lower case).
        input_shape: the spec's input (C, H, W), or None to skip that check.
        uri: the model file, for the message.

    Raises:
        ModelFileError: the classes or the input differ (the pruned graph fixes both).
    """
    where = f"{uri}: " if uri else ""
    stored = list(metadata.get("classes", []))
    if stored != list(classes):
        raise ModelFileError(f"{where}the pruned model was trained on classes {stored}, the spec "
                             f"has {list(classes)}; a pruned model retrains on its own classes")
    if input_shape is not None:
        have = tuple(int(d) for d in model.inputs[0].shape[1:])
        if have != tuple(int(d) for d in input_shape):
            raise ModelFileError(f"{where}the pruned model's input is {have} (C, H, W), the spec "
                                 f"asks for {tuple(input_shape)}")
