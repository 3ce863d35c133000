"""Is a fine-tuning spec the same model as the champion it starts from (and as train_spec)?

Fine-tuning loads the champion's weights by layer name and shape, so a spec with another
architecture or input size does not fail there: it silently keeps only the layers that still fit
(or none) and the run ends, much later, in a Keras shape error when the champion is scored. The
checks here compare the three descriptions the retraining pipeline has — train_spec, finetune_spec
and the champion's model file (or the registry's record of it) — and say in one line which two
differ and how.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tlt.errors import SpecError

__all__ = ["ModelShape", "shape_of_spec", "shape_of_metadata", "check_finetune_spec",
           "check_pretrained_matches"]


@dataclass(frozen=True)
class ModelShape:
    """What must agree for weights to carry over: architecture, depth and input (C, H, W)."""

    arch: str
    n_layers: int
    input_dims: tuple[int, int, int]

    def __str__(self) -> str:
        c, h, w = self.input_dims
        return f"{self.arch} {self.n_layers}, {c}x{h}x{w}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in registry metadata (same keys as a model file's metadata)."""
        return {"arch": self.arch, "n_layers": self.n_layers, "input_dims": list(self.input_dims)}


def shape_of_spec(spec, task: str) -> ModelShape:
    """The model a loaded experiment spec trains (classification or detection).

    Raises:
        SpecError: an unknown task or a malformed classification model_config.
    """
    if task == "detection":
        m, pre = spec.model_config, spec.augmentation_config.preprocessing
        return ModelShape(m.template or m.arch, int(m.num_layers),
                          (int(pre.output_image_channel), int(pre.output_image_height),
                           int(pre.output_image_width)))
    if task == "classification":
        from tlt.models.backbones import parse_model_config

        # The same reading training records (arch lower-cased; depth 0 for fixed-depth families).
        b = parse_model_config(spec.model_config)
        return ModelShape(b.arch, b.n_layers, (b.channels, b.height, b.width))
    raise SpecError(f"unknown task {task!r}; expected classification or detection")


def shape_of_metadata(metadata: Mapping[str, Any]) -> ModelShape | None:
    """The shape a model file's metadata (or a registry version's ``model_config`` record) gives, or
    None when it does not record all of arch, n_layers and input_dims (older files)."""
    dims = metadata.get("input_dims")
    if not metadata.get("arch") or metadata.get("n_layers") is None or not dims or len(dims) != 3:
        return None
    return ModelShape(str(metadata["arch"]), int(metadata["n_layers"]),
                      tuple(int(d) for d in dims))  # type: ignore[arg-type]


def check_finetune_spec(finetune: ModelShape, *, champion: ModelShape | None = None,
                        train: ModelShape | None = None) -> None:
    """Refuse a finetune_spec whose model is not the champion's, or not train_spec's.

    Args:
        finetune: the model finetune_spec describes.
        champion: the champion's model (None: no champion yet, or none recorded).
        train: the model train_spec describes (None: not given).

    Raises:
        SpecError: one line naming both models and what to change.
    """
    if champion is not None and finetune != champion:
        raise SpecError(
            f"finetune_spec model_config ({finetune}) differs from the champion's ({champion}): "
            "fine-tuning starts from the champion's weights, so the architecture and input size "
            "must match; change finetune_spec, or train a new model from scratch with train_spec "
            "under another model_name")
    if train is not None and finetune != train:
        raise SpecError(
            f"finetune_spec model_config ({finetune}) differs from train_spec's ({train}): a first "
            "run trains train_spec's model and later runs fine-tune it with finetune_spec, so the "
            "architecture and input size must match; make finetune_spec's model_config and input "
            "size those of train_spec")


def check_pretrained_matches(spec, task: str, metadata: Mapping[str, Any], uri: str) -> None:
    """Refuse to fine-tune ``uri`` with a spec describing another model (the fine-tune stage).

    A model file that does not record its shape is let through (transfer learning by layer name
    and shape is then all there is to go on).

    Raises:
        SpecError: one line naming the spec's model and the file's.
    """
    recorded = shape_of_metadata(metadata)
    wanted = shape_of_spec(spec, task)
    if recorded is not None and recorded != wanted:
        raise SpecError(
            f"spec model_config ({wanted}) differs from the pretrained model {uri} ({recorded}): "
            "fine-tuning starts from its weights, so the architecture and input size must match")
