"""tlt-converter's logic: check an export against the user's flags, build an engine, write its sidecar.

The guide's converter makes the user repeat what the export already knows (``-d`` input dims,
``-o`` output names); this one checks them against the graph and says which is which when they
disagree, instead of building a broken engine.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from tlt.engines.base import BackendUnavailable
from tlt.engines.calibration_cache import CalibrationCache, check_cache_matches, read_cache
from tlt.engines.onnxruntime_engine import DEFAULT_FLOAT_TAIL, FLOAT_TAILS
from tlt.engines.sidecar import EngineInfo, write_sidecar
from tlt.engines.signature import GraphSignature, format_dims, read_signature, tensor_names
from tlt.errors import DataError
from tlt.io.exportfile import ExportedModel, load_export

__all__ = ["BACKENDS", "PRECISIONS", "INPUT_ORDERS", "BuildOptions", "parse_dims", "parse_names",
           "default_backend", "build_engine"]

_log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
INPUT_ORDERS = ("nchw", "nhwc", "nc")


@dataclass
class BuildOptions:
    """tlt-converter's flags (guide chapter 10), defaults as there.

    Attributes:
        input_dims: ``-d``: ``(C, H, W)``; must match the export.
        outputs: ``-o``: output names; empty means all of the export's outputs.
        engine_path: ``-e``: the engine file to write.
        cache_file: ``-c``: calibration cache (int8).
        batch_size: ``-b``: calibration batch size (TensorRT's profile optimum).
        max_batch_size: ``-m``: largest batch the engine runs at once.
        precision: ``-t``: fp32, fp16 or int8.
        workspace: ``-w``: TensorRT builder workspace in bytes.
        input_order: ``-i``: nchw (TLT exports), nhwc or nc.
        backend: ``auto`` (TensorRT when it and a GPU are present, else ONNX Runtime),
            ``onnxruntime`` or ``tensorrt``.
        int8_float_tail: ONNX Runtime int8 only: how much of the end of the network stays fp32,
            ``auto`` (the default), ``outputs``, ``head`` or ``residual`` (see
            `tlt.engines.onnxruntime_engine.float_tail_nodes`).
    """

    input_dims: tuple[int, ...]
    outputs: list[str] = field(default_factory=list)
    engine_path: str = "./saved.engine"
    cache_file: str = "./cal.bin"
    batch_size: int = 8
    max_batch_size: int = 16
    precision: str = "fp32"
    workspace: int = 1 << 30
    input_order: str = "nchw"
    backend: str = "auto"
    int8_float_tail: str = DEFAULT_FLOAT_TAIL


def parse_dims(text: str, flag: str = "-d") -> tuple[int, ...]:
    """``"3,64,64"`` -> ``(3, 64, 64)``.

    Raises:
        DataError: not a comma-separated list of positive integers.
    """
    try:
        dims = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise DataError(f"{flag} {text!r}: expected comma-separated positive integers such as "
                        "3,544,960 (C,H,W)")
    return dims


def parse_names(text: str | None) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (empty or None -> ``[]``)."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def default_backend() -> str:
    """``tensorrt`` when it is installed and an NVIDIA device is present, else ``onnxruntime``."""
    has_gpu = Path("/dev/nvidia0").exists() and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != ""
    return "tensorrt" if has_gpu and importlib.util.find_spec("tensorrt") else "onnxruntime"


def _check_dims(dims, signature: GraphSignature, source: str) -> tuple[int, ...]:
    model_dims = signature.input_dims
    if tuple(dims) != tuple(model_dims):
        raise DataError(f"-d {format_dims(dims)} does not match the model: {source} takes "
                        f"{signature.input_name} of N x {' x '.join(format_dims(model_dims).split(','))}"
                        f" (C,H,W = {format_dims(model_dims)}); pass -d {format_dims(model_dims)}")
    return tuple(int(d) for d in dims)


def _check_outputs(names: list[str], signature: GraphSignature, source: str) -> list[str]:
    real = signature.output_names
    unknown = [n for n in names if n not in real]
    if unknown:
        raise DataError(f"-o {', '.join(unknown)}: not an output of {source}; its outputs are "
                        f"{', '.join(real)}")
    return list(names) or real


def _check_order(order: str, signature: GraphSignature) -> None:
    if order not in INPUT_ORDERS:
        raise DataError(f"-i {order!r}: expected one of {', '.join(INPUT_ORDERS)}")
    if order != "nchw":
        raise DataError(f"-i {order}: {signature.input_name} of this export is NCHW "
                        f"(N x {' x '.join(format_dims(signature.input_dims).split(','))}); "
                        "TLT exports are channels-first, use -i nchw")


def _load_cache(options: BuildOptions, exported: ExportedModel) -> CalibrationCache | None:
    if options.precision != "int8":
        return None
    if not options.cache_file or not Path(options.cache_file).is_file():
        raise DataError(f"-t int8 needs the calibration cache written by tlt-export --data_type "
                        f"int8: {options.cache_file or '(no -c given)'} does not exist")
    import onnx

    cache = read_cache(options.cache_file)
    check_cache_matches(cache, tensor_names(onnx.load_from_string(exported.onnx_bytes)),
                        str(options.cache_file))
    return cache


def _check_options(options: BuildOptions) -> str:
    if options.precision not in PRECISIONS:
        raise DataError(f"-t {options.precision!r}: expected one of {', '.join(PRECISIONS)}")
    if options.backend not in BACKENDS:
        raise DataError(f"--backend {options.backend!r}: expected one of {', '.join(BACKENDS)}")
    if options.int8_float_tail not in FLOAT_TAILS:
        raise DataError(f"--int8_float_tail {options.int8_float_tail!r}: expected one of "
                        f"{', '.join(FLOAT_TAILS)}")
    for flag, value in (("-b", options.batch_size), ("-m", options.max_batch_size),
                        ("-w", options.workspace)):
        if int(value) < 1:
            raise DataError(f"{flag} must be >= 1, got {value}")
    return default_backend() if options.backend == "auto" else options.backend


def build_engine(source: str, key: str | None, options: BuildOptions) -> EngineInfo:
    """Build an engine from an export and write ``<engine>`` and ``<engine>.json``.

    Args:
        source: the ``.etlt`` or ``.onnx`` written by tlt-export (local, gs://, s3://).
        key: the ``.etlt``'s key.
        options: the converter's flags.

    Returns:
        The sidecar's content.

    Raises:
        ModelKeyError: wrong or missing key for an ``.etlt``.
        ModelFileError: not an export.
        DataError: ``-d``/``-o``/``-i`` disagree with the export, bad numbers, int8 without a
            cache or with another export's cache, fp16 on ONNX Runtime.
        BackendUnavailable: TensorRT asked for but not installed.
    """
    backend = _check_options(options)
    exported = load_export(source, key)
    signature = read_signature(exported.onnx_bytes, source)
    dims = _check_dims(options.input_dims, signature, source)
    outputs = _check_outputs(list(options.outputs), signature, source)
    _check_order(options.input_order, signature)
    cache = _load_cache(options, exported)
    version, kept_float = _build(backend, exported, options, signature, dims, cache, outputs)
    info = EngineInfo(backend=backend, precision=options.precision, float_nodes=kept_float,
                      input_name=signature.input_name, input_dims=list(dims), output_names=outputs,
                      max_batch_size=int(options.max_batch_size), source=str(source),
                      source_digest=exported.digest, runtime_version=version,
                      export=dict(exported.metadata))
    write_sidecar(options.engine_path, info)
    return info


def _build(backend: str, exported: ExportedModel, options: BuildOptions,
           signature: GraphSignature, dims, cache, outputs) -> tuple[str, list[str]]:
    """Run the backend's builder; return the backend's version and the nodes an ONNX Runtime int8
    engine keeps fp32."""
    if backend == "tensorrt":
        from tlt.engines import tensorrt_engine as trt_engine

        trt_engine.import_tensorrt()
        trt_engine.build_tensorrt_engine(
            exported.onnx_bytes, options.engine_path, precision=options.precision,
            input_name=signature.input_name, input_dims=dims,
            max_batch_size=int(options.max_batch_size), batch_size=int(options.batch_size),
            workspace=int(options.workspace), cache=cache, source=exported.path)
        return trt_engine.runtime_version(), []
    from tlt.engines import onnxruntime_engine as ort_engine

    if options.precision == "fp16":
        raise BackendUnavailable("fp16 engines need TensorRT on a GPU (--backend tensorrt); the "
                                 "ONNX Runtime CPU backend builds fp32 or int8 (-t fp32 / -t int8)")
    kept_float = ort_engine.build_onnxruntime_engine(
        exported.onnx_bytes, options.engine_path, precision=options.precision, cache=cache,
        source=str(options.cache_file), float_tail=options.int8_float_tail)
    return ort_engine.runtime_version(), kept_float
