"""The metadata an export carries: everything needed to run it without the .tlt or the spec.

Keys (all JSON)::

    task, classes, arch, n_layers ...     copied from the source model's metadata (with its
                                          training spec, so detection post-processing travels too)
    input_name, input_dims, input_order   "input_1", [C, H, W], "nchw"
    preprocessing                         the source model's pixel scaling plus the channel order
                                          and resize method of the training input pipeline
    output_names                          TLT's names, in graph order
    precision                             fp32 / fp16 / int8 (the engine the export is meant for)
    max_batch_size, max_workspace_size    engine build hints (guide chapter 9 flags)
    calibration_cache                     the cache's file name (int8)
    source_model, source_digest           the .tlt it came from and its file's sha256
    opset, exporter                       ONNX opset, tf2onnx version
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["SOURCE_ONLY_KEYS", "preprocessing_of", "build_export_metadata"]

# Container facts of the source file that do not describe the export.
SOURCE_ONLY_KEYS = ("payload_format", "encrypted", "created", "tlt_version")


def preprocessing_of(source: dict, channels: int) -> dict[str, Any]:
    """The source model's preprocessing, completed with what the input pipeline does implicitly.

    ``(x - offset) * scale`` on pixels in [0, 255], RGB (or grey for one channel), after a bilinear
    resize to the input size (`tlt.data.classification_input`).
    """
    from tlt.data.classification_input import PREPROCESSING

    pre = dict(source.get("preprocessing") or PREPROCESSING)
    pre.setdefault("scale", PREPROCESSING["scale"])
    pre.setdefault("offset", PREPROCESSING["offset"])
    pre.update(color="gray" if channels == 1 else "rgb", resize="bilinear", layout="nchw",
               formula="(pixel - offset) * scale")
    return pre


def build_export_metadata(source: dict, *, input_name: str, input_dims: Sequence[int],
                          output_names: Sequence[str], precision: str, max_batch_size: int,
                          max_workspace_size: int, source_model: str, source_digest: str,
                          opset: int, calibration_cache: str | None = None) -> dict[str, Any]:
    """The export's metadata (see the module docstring for the keys).

    Args:
        source: the .tlt's metadata.
        input_name: the graph input.
        input_dims: ``(C, H, W)``.
        output_names: the graph outputs (TLT names).
        precision: the requested ``--data_type``.
        max_batch_size: ``--max_batch_size``.
        max_workspace_size: ``--max_workspace_size``.
        source_model: the .tlt path or URI.
        source_digest: ``sha256:`` of the .tlt file.
        opset: ONNX opset of the graph.
        calibration_cache: file name of the INT8 cache, if any.
    """
    import tf2onnx

    meta = {k: v for k, v in source.items() if k not in SOURCE_ONLY_KEYS}
    dims = [int(d) for d in input_dims]
    meta.update(
        input_name=input_name, input_dims=dims, input_order="nchw",
        preprocessing=preprocessing_of(source, dims[0]), output_names=list(output_names),
        precision=precision, max_batch_size=int(max_batch_size),
        max_workspace_size=int(max_workspace_size), source_model=str(source_model),
        source_digest=source_digest, opset=int(opset), exporter=f"tf2onnx {tf2onnx.__version__}")
    if calibration_cache:
        meta["calibration_cache"] = calibration_cache
    return meta
