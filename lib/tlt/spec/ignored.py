"""Spec fields that are accepted but cannot take effect, and why (used by ``tlt.spec``).

TLT v1 spec files carry fields this rebuild accepts for compatibility but cannot honour: 3D data
folders, importance weights of attributes KITTI labels do not have, FLOAT16 without a GPU, and
the classification ``eval_config`` settings that no tool reads. No such field may be dropped
silently: ``ignored_fields`` names each one a spec sets, with the reason, and the loader logs one
warning per field (logger ``tlt.spec``)::

    spec.txt:12: model_config.training_precision.backend_floatx is FLOAT16, which cannot take effect: ...

Only fields the file sets are reported, so it runs on the parsed message before defaults are
applied. When code starts reading a field, remove its entry from ``_UNREAD``.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable, Iterator

from google.protobuf.message import Message

__all__ = ["ignored_fields", "gpu_visible"]

_EVALUATE_CLS = "tlt-evaluate classification"
# message full name -> {field: why it is not read}. Each is reported when the spec sets it.
_UNREAD: dict[str, dict[str, str]] = {
    "tlt.KITTIConfig": {
        "point_clouds_dir": "2D detection reads only the images and the KITTI labels",
        "calibrations_dir": "2D detection reads only the images and the KITTI labels",
    },
    "tlt.ClassificationEvalConfig": {
        "eval_dataset_path": f"{_EVALUATE_CLS} takes the data set as -d, and validation during "
                             "training uses train_config.val_dataset_path",
        "model_path": f"{_EVALUATE_CLS} takes the model as -pm",
        "batch_size": f"{_EVALUATE_CLS} takes -b, and validation during training uses "
                      "train_config.batch_size_per_gpu",
        "n_workers": f"{_EVALUATE_CLS} reads images through tf.data's own parallelism (its -w is "
                     "accepted for compatibility only)",
    },
    "tlt.EvaluationConfig": {
        "importance_weights": "KITTI labels carry no camera, CVIP or in-path attributes, so "
                              "detection AP is unweighted",
    },
}


def gpu_visible() -> bool:
    """Whether this process can see a GPU, cheaply: TensorFlow is asked only if already loaded.

    Importing TensorFlow to load a spec would cost seconds (and its start-up noise), so without
    it the NVIDIA device files decide, after ``CUDA_VISIBLE_DEVICES`` hiding every device.
    """
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "config"):
        return bool(tf.config.list_physical_devices("GPU"))
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def _is_set(message: Message, name: str) -> bool:
    if message.DESCRIPTOR.fields_by_name[name].has_presence:  # sub-messages, `optional` scalars
        return message.HasField(name)
    return bool(getattr(message, name))  # plain strings, repeated fields and maps


def _unread(message: Message, path: str) -> Iterator[tuple[str, str]]:
    for name, why in _UNREAD.get(message.DESCRIPTOR.full_name, {}).items():
        if _is_set(message, name):
            yield f"{path}.{name}" if path else name, f"is not read: {why}"


def _detection(message: Message) -> Iterator[tuple[str, str]]:
    precision = message.model_config.training_precision
    float16 = precision.backend_floatx == precision.FLOAT16
    if float16 and not _gpu_check():
        yield ("model_config.training_precision.backend_floatx",
               "is FLOAT16, which cannot take effect: mixed precision needs a GPU and none is "
               "visible, so training runs in FLOAT32")
    elif not float16 and message.training_config.cost_scaling.enabled:
        yield ("training_config.cost_scaling.enabled",
               "has no effect: loss scaling applies only with "
               "model_config.training_precision.backend_floatx: FLOAT16")


# Indirection so tests can stand in a GPU machine without one.
_gpu_check: Callable[[], bool] = gpu_visible


def ignored_fields(message: Message) -> list[tuple[str, str]]:
    """Every ``(dotted field path, why it cannot take effect)`` of a parsed spec.

    Unread fields come first, in field order, then the detection precision settings.

    Args:
        message: a spec message as parsed, before defaults are applied.
    """
    found = list(_walk(message, ""))
    if message.DESCRIPTOR.full_name == "tlt.DetectionExperiment":
        found += list(_detection(message))
    return found


def _walk(message: Message, path: str) -> Iterator[tuple[str, str]]:
    yield from _unread(message, path)
    for fd in message.DESCRIPTOR.fields:
        if fd.message_type is None or fd.is_repeated or not message.HasField(fd.name):
            continue
        yield from _walk(getattr(message, fd.name), f"{path}.{fd.name}" if path else fd.name)
