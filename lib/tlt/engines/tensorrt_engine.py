"""TensorRT engines: the GPU backend of tlt-converter, and their runner.

TensorRT is imported only when asked for: it cannot be installed from PyPI alone (its builder
and ONNX parser come from NVIDIA's index), and a CPU machine never needs it. The build:

1. parse the exported ONNX (explicit batch, input ``input_1`` N x C x H x W);
2. one optimization profile with batch 1 .. max batch (optimum: the calibration batch size);
3. FP16 and/or INT8 builder flags; for INT8 an entropy calibrator whose
   ``read_calibration_cache`` returns the tlt-export cache (header rewritten to this TensorRT's
   version), so TensorRT never asks for calibration images;
4. serialize the plan to the engine file.

The runner uses cuda-python for device memory (also imported lazily).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tlt.engines.base import BackendUnavailable, Engine
from tlt.engines.calibration_cache import CalibrationCache, with_trt_version
from tlt.engines.sidecar import EngineInfo
from tlt.errors import DataError, ModelFileError
from tlt.io.atomic import atomic_write_bytes

__all__ = ["PRECISIONS", "import_tensorrt", "runtime_version", "trt_version_tag",
           "profile_shapes", "build_tensorrt_engine", "TensorRTEngine"]

_log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


def import_tensorrt():
    """Import and return the ``tensorrt`` module.

    Raises:
        BackendUnavailable: TensorRT is not installed (one line saying what to do).
    """
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailable(
            "TensorRT is not installed in this environment (Python package 'tensorrt' from "
            "NVIDIA's index, with a GPU and CUDA); build a CPU engine with --backend onnxruntime"
        ) from None
    return tensorrt


def runtime_version() -> str:
    """The installed TensorRT version (needs TensorRT)."""
    return import_tensorrt().__version__


def trt_version_tag(version: str) -> str:
    """TensorRT's cache header version: ``8.6.1`` -> ``8601``, ``10.3.0`` -> ``100300``."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3] if p.isdigit()]
    major, minor, patch = (parts + [0, 0, 0])[:3]
    return f"{major}{minor:02d}{patch:02d}" if major >= 10 else f"{major}{minor}{patch:02d}"


def profile_shapes(input_dims, max_batch_size: int, opt_batch_size: int):
    """``(min, opt, max)`` input shapes of the optimization profile: batch 1 .. max.

    Raises:
        DataError: batch sizes below 1, or the optimum above the maximum.
    """
    if max_batch_size < 1 or opt_batch_size < 1:
        raise DataError(f"batch sizes must be >= 1, got -b {opt_batch_size} -m {max_batch_size}")
    opt = min(opt_batch_size, max_batch_size)
    dims = tuple(int(d) for d in input_dims)
    return (1, *dims), (opt, *dims), (max_batch_size, *dims)


def _calibrator(trt, cache_bytes: bytes, batch_size: int, algorithm: str = "EntropyCalibration2"):
    """A calibrator of the cache's algorithm that only replays the cache (defined here: its base
    needs trt). TensorRT ignores a cache whose header names another calibrator's algorithm."""
    base = trt.IInt8MinMaxCalibrator if algorithm == "MinMaxCalibration" else trt.IInt8EntropyCalibrator2

    class _CacheCalibrator(base):
        def __init__(self):
            super().__init__()

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):  # no images: TensorRT uses the cache
            return None

        def read_calibration_cache(self):
            return cache_bytes

        def write_calibration_cache(self, cache):
            return None

    return _CacheCalibrator()


def _parse(trt, onnx_bytes: bytes, source: str):
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit before TRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(f"{source}: TensorRT cannot parse the ONNX graph: {errors}")
    return builder, network


def build_tensorrt_engine(onnx_bytes: bytes, engine_path: str | Path, *, precision: str,
                          input_name: str, input_dims, max_batch_size: int, batch_size: int,
                          workspace: int, cache: CalibrationCache | None = None,
                          source: str = "<export>") -> None:
    """Build and serialize a TensorRT engine.

    Args:
        onnx_bytes: the exported graph.
        engine_path: the plan file to write.
        precision: ``fp32``, ``fp16`` or ``int8``.
        input_name: the graph input.
        input_dims: ``(C, H, W)``.
        max_batch_size: top of the optimization profile.
        batch_size: calibration batch size, also the profile's optimum.
        workspace: builder workspace limit in bytes.
        cache: the calibration cache (int8).
        source: the export's name, for messages.

    Raises:
        BackendUnavailable: no TensorRT, or the GPU lacks fast FP16/INT8.
        DataError: int8 without a cache, bad batch sizes.
        ModelFileError: TensorRT cannot parse or build the graph.
    """
    trt = import_tensorrt()
    if precision == "int8" and cache is None:
        raise DataError("an int8 engine needs the calibration cache (-c) written by tlt-export "
                        "--data_type int8")
    shapes = profile_shapes(input_dims, max_batch_size, batch_size)
    builder, network = _parse(trt, onnx_bytes, source)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *shapes)
    config.add_optimization_profile(profile)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            raise BackendUnavailable("this GPU has no fast FP16: build fp32 or int8")
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if not builder.platform_has_fast_int8:
            raise BackendUnavailable("this GPU has no fast INT8: build fp32 or fp16")
        config.set_flag(trt.BuilderFlag.INT8)
        tag = trt_version_tag(trt.__version__)
        config.int8_calibrator = _calibrator(trt, with_trt_version(cache, tag), batch_size,
                                             cache.algorithm)
        config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelFileError(f"{source}: TensorRT failed to build the engine (see its log above)")
    atomic_write_bytes(engine_path, bytes(plan))
    _log.info("wrote the %s TensorRT engine %s", precision, engine_path)


class TensorRTEngine(Engine):
    """Runs a serialized TensorRT plan on the GPU (TensorRT >= 8.5 tensor API, cuda-python)."""

    def __init__(self, path: str, info: EngineInfo):
        super().__init__(path, info)
        trt = import_tensorrt()
        try:
            from cuda import cudart
        except ImportError:
            raise BackendUnavailable("running a TensorRT engine needs cuda-python "
                                     "(pip install cuda-python)") from None
        self._cudart = cudart
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self._engine is None:
            raise ModelFileError(f"{path}: TensorRT cannot load this engine (built by another "
                                 "TensorRT version or for another GPU? rebuild it here)")
        self._context = self._engine.create_execution_context()

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise ModelFileError(f"{self.path}: CUDA error {err}")
        return rest[0] if rest else None

    def _io_outputs(self) -> list[str]:
        """Every output tensor of the plan (all need a device buffer, even unrequested ones)."""
        trt = import_tensorrt()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        return [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def _run_chunk(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        cudart = self._cudart
        self._context.set_input_shape(self.info.input_name, batch.shape)
        hosts = {self.info.input_name: batch}
        outputs = self._io_outputs()
        for name in outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            hosts[name] = np.empty(shape, dtype=np.float32)
        devices = {}
        try:
            for name, host in hosts.items():
                devices[name] = self._check(cudart.cudaMalloc(host.nbytes))
                self._context.set_tensor_address(name, int(devices[name]))
            kind = cudart.cudaMemcpyKind
            self._check(cudart.cudaMemcpy(devices[self.info.input_name], batch.ctypes.data,
                                          batch.nbytes, kind.cudaMemcpyHostToDevice))
            if not self._context.execute_async_v3(0):
                raise ModelFileError(f"{self.path}: TensorRT execution failed")
            self._check(cudart.cudaStreamSynchronize(0))
            for name in self.output_names:
                self._check(cudart.cudaMemcpy(hosts[name].ctypes.data, devices[name],
                                              hosts[name].nbytes, kind.cudaMemcpyDeviceToHost))
        finally:
            for pointer in devices.values():
                cudart.cudaFree(pointer)
        return {name: hosts[name] for name in self.output_names}
