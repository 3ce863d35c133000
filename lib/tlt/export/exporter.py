"""tlt-export's logic: .tlt -> ONNX (.onnx or encrypted .etlt) [+ INT8 cache, DeepStream, Triton].

Steps: load the Keras model (with its key), check ``--input_dims`` against it, convert with TLT's
tensor names (`tlt.export.onnx_export`), calibrate for int8 (`tlt.export.calibration`) or reuse an
existing cache, write the export with its metadata (`tlt.io.exportfile`), then the optional
DeepStream and Triton configurations beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tlt.engines.calibration_cache import (CalibrationCache, check_cache_matches, read_cache,
                                           write_cache)
from tlt.errors import DataError, ModelFileError
from tlt.io import exportfile, modelfile, storage

__all__ = ["DATA_TYPES", "ExportOptions", "ExportResult", "default_output", "export_model"]

_log = logging.getLogger(__name__)

DATA_TYPES = ("fp32", "fp16", "int8")


@dataclass
class ExportOptions:
    """tlt-export's flags (guide chapter 9), defaults as there.

    Attributes:
        output: ``-o``: ``*.etlt`` (encrypted with the key) or ``*.onnx``; None: ``./<model>.etlt``.
        outputs: ``--outputs``: output names to keep (TLT's or the Keras layers'); empty: all.
        data_type: fp32, fp16 or int8 (int8 writes the calibration cache).
        cal_data_file: folder of calibration images (int8).
        cal_cache_file: where the cache is written, or read when no images are given.
        batches: calibration batches.
        cal_batch_size: images per calibration batch.
        max_batch_size: engine batch limit, recorded and used in the generated configs.
        max_workspace_size: TensorRT builder workspace, recorded for the converter.
        input_dims: ``(C, H, W)`` to check against the model; None: the model's.
        gen_ds_config: write a DeepStream nvinfer config and labels.txt beside the export.
        gen_triton_config: write a Triton model repository beside the export.
    """

    output: str | None = None
    outputs: Sequence[str] = ()
    data_type: str = "fp32"
    cal_data_file: str | None = None
    cal_cache_file: str = "./cal.bin"
    batches: int = 10
    cal_batch_size: int = 8
    max_batch_size: int = 16
    max_workspace_size: int = 1 << 30
    input_dims: Sequence[int] | None = None
    gen_ds_config: bool = False
    gen_triton_config: bool = False


@dataclass
class ExportResult:
    """What `export_model` wrote."""

    output: str
    metadata: dict
    cal_cache_file: str | None = None
    ds_config: str | None = None
    labels_file: str | None = None
    triton_model_dir: str | None = None
    files: list[str] = field(default_factory=list)


def default_output(model: str) -> str:
    """The guide's default ``./<input_file>.etlt``."""
    name = str(model).rstrip("/").rsplit("/", 1)[-1]
    stem = name[: -len(".tlt")] if name.lower().endswith(".tlt") else name
    return f"./{stem}.etlt"


def _check_options(options: ExportOptions, output: str) -> None:
    if options.data_type not in DATA_TYPES:
        raise DataError(f"--data_type {options.data_type!r}: expected one of {', '.join(DATA_TYPES)}")
    for flag, value in (("--max_batch_size", options.max_batch_size),
                        ("--max_workspace_size", options.max_workspace_size),
                        ("--batches", options.batches), ("--cal_batch_size", options.cal_batch_size)):
        if int(value) < 1:
            raise DataError(f"{flag} must be >= 1, got {value}")
    if options.data_type == "int8" and not options.cal_data_file and not (
            options.cal_cache_file and Path(options.cal_cache_file).is_file()):
        raise DataError("--data_type int8 needs calibration images (--cal_data_file IMAGE_DIR) or "
                        f"an existing calibration cache (--cal_cache_file; "
                        f"{options.cal_cache_file or 'none given'} does not exist)")
    if (options.gen_ds_config or options.gen_triton_config) and storage.is_remote(output):
        raise DataError(f"-o {output}: --gen_ds_config / --gen_triton_config write local files; "
                        "export to a local path")


def _load_source(model: str, key: str | None):
    from tlt.io.exportfile import file_digest

    keras_model, meta = modelfile.load_keras_model(model, key=key, compile=False)
    if meta.get("task") not in ("classification", "detection"):
        raise ModelFileError(f"{model}: metadata names no task (classification or detection): "
                             "not a model trained by tlt-train")
    return keras_model, meta, file_digest(storage.read_bytes(model))


def _input_dims(keras_model, meta: dict, requested, model: str) -> list[int]:
    dims = [int(d) for d in (meta.get("input_dims") or keras_model.input.shape[1:])]
    if requested is not None and [int(d) for d in requested] != dims:
        shown = ",".join(str(int(d)) for d in requested)
        raise DataError(f"--input_dims {shown} does not match the model: {model} takes input_1 of "
                        f"N x {' x '.join(map(str, dims))} (C,H,W = {','.join(map(str, dims))})")
    return dims


def _calibration(options: ExportOptions, onnx_bytes: bytes, dims, input_name: str):
    """The int8 cache: computed from images and written, or the existing one, checked."""
    import onnx

    from tlt.engines.signature import tensor_names
    from tlt.export.calibration import calibrate

    if options.data_type != "int8":
        return None
    if options.cal_data_file:
        cache = calibrate(onnx_bytes, options.cal_data_file, dims, input_name=input_name,
                          batches=int(options.batches), batch_size=int(options.cal_batch_size))
        write_cache(options.cal_cache_file, cache)
        _log.info("wrote the calibration cache %s (%d tensors)", options.cal_cache_file,
                  len(cache.scales))
        return cache
    cache: CalibrationCache = read_cache(options.cal_cache_file)
    check_cache_matches(cache, tensor_names(onnx.load_from_string(onnx_bytes)),
                        options.cal_cache_file)
    _log.info("no --cal_data_file: using the existing calibration cache %s", options.cal_cache_file)
    return cache


def export_model(model: str, key: str | None, options: ExportOptions) -> ExportResult:
    """Export a .tlt model (see the module docstring).

    Args:
        model: the .tlt (local, gs:// or s3://).
        key: its key; also encrypts an ``.etlt`` output.
        options: tlt-export's flags.

    Returns:
        The files written and the export's metadata.

    Raises:
        ModelKeyError: wrong or missing key.
        ModelFileError: not a trained TLT model, or a graph that fails onnx.checker.
        DataError: bad flags, ``--input_dims`` / ``--outputs`` that do not match the model, int8
            without images or cache, an empty or too small calibration folder.
    """
    from tlt.export.metadata import build_export_metadata
    from tlt.export.onnx_export import INPUT_NAME, OPSET, keras_to_onnx

    output = options.output or default_output(model)
    _check_options(options, output)
    if exportfile.is_encrypted_name(output) and not key:
        raise ModelFileError(f"-o {output}: an .etlt export is encrypted with the key: give -k or "
                             f"{modelfile.KEY_ENV}, or name the output *.onnx")
    keras_model, source_meta, digest = _load_source(model, key)
    dims = _input_dims(keras_model, source_meta, options.input_dims, model)
    proto = keras_to_onnx(keras_model, source_meta["task"], dims, options.outputs)
    onnx_bytes = proto.SerializeToString()
    cache = _calibration(options, onnx_bytes, dims, INPUT_NAME)
    metadata = build_export_metadata(
        source_meta, input_name=INPUT_NAME, input_dims=dims,
        output_names=[o.name for o in proto.graph.output], precision=options.data_type,
        max_batch_size=options.max_batch_size, max_workspace_size=options.max_workspace_size,
        source_model=model, source_digest=digest, opset=OPSET,
        calibration_cache=Path(options.cal_cache_file).name if cache else None)
    exportfile.save_export(output, onnx_bytes, metadata,
                           key if exportfile.is_encrypted_name(output) else None)
    _log.info("Converted model was saved into %s", output)
    _log.info("Input node: %s", INPUT_NAME)
    _log.info("Output node(s): %s", metadata["output_names"])
    result = ExportResult(output=output, metadata=metadata,
                          cal_cache_file=options.cal_cache_file if cache else None, files=[output])
    _write_configs(result, options, onnx_bytes)
    return result


def _write_configs(result: ExportResult, options: ExportOptions, onnx_bytes: bytes) -> None:
    from tlt.engines.signature import read_signature
    from tlt.export.deepstream import write_deepstream_config
    from tlt.export.triton import write_triton_repository

    out = Path(result.output)
    stem = out.name.rsplit(".", 1)[0]
    if options.gen_ds_config:
        cache_name = None
        if result.cal_cache_file:
            cache = Path(result.cal_cache_file).resolve()
            # nvinfer resolves relative paths against the config's folder.
            cache_name = cache.name if cache.parent == out.parent.resolve() else str(cache)
        config, labels = write_deepstream_config(
            out.parent, stem, result.metadata, model_name=out.name,
            encrypted=exportfile.is_encrypted_name(out.name),
            engine_name=f"{out.name}_b{options.max_batch_size}_gpu0_{options.data_type}.engine",
            precision=options.data_type, max_batch_size=options.max_batch_size,
            cal_cache_name=cache_name)
        result.ds_config, result.labels_file = str(config), str(labels)
        result.files += [str(config), str(labels)]
    if options.gen_triton_config:
        signature = read_signature(onnx_bytes)
        folder = write_triton_repository(
            out.parent / "model_repository", stem, onnx_bytes, metadata=result.metadata,
            outputs={name: shape[1:] for name, shape in signature.outputs.items()},
            max_batch_size=options.max_batch_size)
        if exportfile.is_encrypted_name(out.name):
            _log.warning("%s holds the model unencrypted: Triton cannot decrypt an .etlt",
                         folder / "1" / "model.onnx")
        result.triton_model_dir = str(folder)
        result.files.append(str(folder))
