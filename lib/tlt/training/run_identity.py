"""What a resumed run must share with the run that wrote its checkpoints.

A checkpoint holds one network: its architecture, input size and classes. A rerun on the same
results folder with a spec that changes any of these would either load weights into a different
graph (a Keras traceback) or, worse, resume the old network while recording the new spec. The
trainer records these fields in ``checkpoints/run_identity.json`` next to the checkpoints and
compares them on resume, before writing anything, so a changed spec fails with one line.
A run that retrains a pruned model records its parameter count (``pretrained_pruned_params``):
its checkpoints hold that graph, so a resume with another pruned model must fail too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tlt.errors import SpecError
from tlt.io.atomic import atomic_write_text

__all__ = ["IDENTITY_FILE", "check_identity", "record_identity", "classification_identity",
           "detection_identity"]

_log = logging.getLogger(__name__)

IDENTITY_FILE = "run_identity.json"


def classification_identity(backbone, class_names,
                            pruned_params: int | None = None) -> dict[str, Any]:
    """The fields of a classification run that its checkpoints fix.

    Args:
        backbone: the validated `BackboneSpec` of ``model_config``.
        class_names: the training classes, in label order.
        pruned_params: parameters of the pruned model the run retrains, or None.
    """
    return {
        "arch": backbone.arch,
        "n_layers": backbone.n_layers,
        "input_dims": [backbone.channels, backbone.height, backbone.width],
        "use_bias": backbone.use_bias,
        "use_batch_norm": backbone.use_batch_norm,
        "all_projections": backbone.all_projections,
        "use_pooling": backbone.use_pooling,
        "freeze_blocks": sorted(backbone.freeze_blocks),
        "freeze_bn": backbone.freeze_bn,
        "dropout": round(float(backbone.dropout), 6),
        "classes": list(class_names),
        "pretrained_pruned_params": pruned_params,
    }


def detection_identity(experiment, class_names, precision: str,
                       pruned_params: int | None = None) -> dict[str, Any]:
    """The fields of a DetectNet_v2 run that its checkpoints fix.

    Args:
        experiment: the DetectionExperiment (defaults applied).
        class_names: the target classes, in output order.
        precision: the Keras dtype policy the run trains with (its optimizer state differs).
        pruned_params: parameters of the pruned model the run retrains, or None.
    """
    mc = experiment.model_config
    pre = experiment.augmentation_config.preprocessing
    return {
        "arch": mc.template or mc.arch,
        "num_layers": int(mc.num_layers),
        "input_dims": [int(pre.output_image_channel), int(pre.output_image_height),
                       int(pre.output_image_width)],
        "use_batch_norm": bool(mc.use_batch_norm),
        "all_projections": bool(mc.all_projections),
        "use_pooling": bool(mc.use_pooling),
        "classes": list(class_names),
        "precision": precision,
        "pretrained_pruned_params": pruned_params,
    }


def _normalised(identity: dict[str, Any]) -> dict[str, Any]:
    # Through JSON so tuples and lists, ints and floats compare as they were stored.
    return json.loads(json.dumps(identity))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def check_identity(ckpt_dir: str | Path, identity: dict[str, Any]) -> None:
    """Refuse to resume from checkpoints written for other values of ``identity``'s fields.

    Call it only when a checkpoint will be resumed. Folders written before identities were
    recorded (no file) pass; fields the recorded identity lacks are not compared.

    Raises:
        SpecError: one line naming every changed field, old and new value.
    """
    recorded = _read(Path(ckpt_dir) / IDENTITY_FILE)
    if recorded is None:
        return
    current = _normalised(identity)
    changed = [f"{name} {_show(recorded[name])} -> {_show(value)}"
               for name, value in current.items() if name in recorded and recorded[name] != value]
    if changed:
        raise SpecError(f"the checkpoints in {ckpt_dir} were trained with another spec: "
                        f"{'; '.join(changed)}. Use a new results folder (-r), or the spec the "
                        f"run was started with")


def record_identity(ckpt_dir: str | Path, identity: dict[str, Any]) -> None:
    """Write ``identity`` next to the checkpoints (atomically; only when it changed)."""
    path = Path(ckpt_dir) / IDENTITY_FILE
    current = _normalised(identity)
    if _read(path) == current:
        return
    atomic_write_text(path, json.dumps(current, indent=2, sort_keys=True) + "\n")
