"""Triton Inference Server model repository for an export (ONNX Runtime backend).

Layout::

    <repository>/<name>/config.pbtxt
    <repository>/<name>/1/model.onnx
    <repository>/<name>/labels.txt        classification: Triton's classification extension

``config.pbtxt`` is Triton's ``ModelConfig`` in protobuf text format: platform
``onnxruntime_onnx``, ``max_batch_size``, the input (``input_1``, FP32, NCHW, dims without the
batch) and every output with its dims, and dynamic batching. Triton cannot decrypt an ``.etlt``,
so the repository holds the plain ONNX graph.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from tlt.io.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["model_name", "triton_config", "write_triton_repository"]

_MAX_QUEUE_DELAY_US = 100


def model_name(stem: str) -> str:
    """A Triton model name from a file stem (letters, digits, ``_``, ``-``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "model"


def _dims(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def triton_config(name: str, *, input_name: str, input_dims: Sequence[int],
                  outputs: dict[str, Sequence[int]], max_batch_size: int,
                  labels_file: str | None = None) -> str:
    """The ``config.pbtxt`` text.

    Args:
        name: the model name (its folder in the repository).
        input_name: the graph input.
        input_dims: ``(C, H, W)``.
        outputs: output name -> dims without the batch.
        max_batch_size: largest batch Triton forms.
        labels_file: labels of a classifier's output (Triton's ``label_filename``).
    """
    blocks = []
    for index, (out, dims) in enumerate(outputs.items()):
        label = f'\n    label_filename: "{labels_file}"' if labels_file and index == 0 else ""
        blocks.append(f'  {{\n    name: "{out}"\n    data_type: TYPE_FP32\n    dims: {_dims(dims)}'
                      f"{label}\n  }}")
    preferred = sorted({b for b in (1, 4, 8, 16) if b <= max_batch_size} | {int(max_batch_size)})
    return (f'# Triton model configuration written by tlt-export\n'
            f'name: "{name}"\n'
            f'platform: "onnxruntime_onnx"\n'
            f'max_batch_size: {int(max_batch_size)}\n'
            f'input [\n  {{\n    name: "{input_name}"\n    data_type: TYPE_FP32\n'
            f'    format: FORMAT_NCHW\n    dims: {_dims(input_dims)}\n  }}\n]\n'
            f'output [\n' + ",\n".join(blocks) + "\n]\n"
            f'dynamic_batching {{\n  preferred_batch_size: {_dims(preferred)}\n'
            f'  max_queue_delay_microseconds: {_MAX_QUEUE_DELAY_US}\n}}\n')


def write_triton_repository(repository: str | Path, name: str, onnx_bytes: bytes, *,
                            metadata: dict, outputs: dict[str, Sequence[int]],
                            max_batch_size: int) -> Path:
    """Write one model into a Triton model repository; return the model's folder.

    Args:
        repository: the repository root.
        name: the model name.
        onnx_bytes: the plain ONNX graph.
        metadata: the export's metadata (task, classes, input_name, input_dims).
        outputs: output name -> dims without the batch.
        max_batch_size: ``max_batch_size``.
    """
    folder = Path(repository) / model_name(name)
    labels = None
    if metadata["task"] == "classification":
        labels = "labels.txt"
        atomic_write_text(folder / labels, "".join(f"{c}\n" for c in metadata["classes"]))
    atomic_write_bytes(folder / "1" / "model.onnx", onnx_bytes)
    atomic_write_text(folder / "config.pbtxt", triton_config(
        model_name(name), input_name=metadata["input_name"], input_dims=metadata["input_dims"],
        outputs=outputs, max_batch_size=max_batch_size, labels_file=labels))
    return folder
