"""Inference engines: build them from exports (tlt-converter) and run them without TensorFlow.

Two backends consume the same exported ONNX graph:

- ``onnxruntime`` (CPU, the default without a GPU): an optimized fp32 graph or a QDQ int8 graph
  quantized with the calibration cache's ranges;
- ``tensorrt`` (NVIDIA GPUs): a serialized plan, fp32/fp16/int8 (imported only when used).

Every engine file has a JSON sidecar (`tlt.engines.sidecar`) naming backend, precision, input
dims, output names and the export it came from, with the export's metadata (task, classes,
preprocessing), so evaluate and infer need only the engine::

    from tlt.engines import load_engine
    engine = load_engine("saved.engine")
    outputs = engine.run(batch)          # [N, C, H, W] float32 -> {"predictions/Softmax": ...}
    engine.info.export["classes"]

Nothing here imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from tlt.engines.base import BackendUnavailable, Engine
from tlt.engines.builder import BuildOptions, build_engine
from tlt.engines.sidecar import EngineInfo, read_sidecar, sidecar_path
from tlt.errors import ModelFileError

__all__ = ["BackendUnavailable", "Engine", "EngineInfo", "BuildOptions", "build_engine",
           "load_engine", "read_sidecar", "sidecar_path"]


def load_engine(path: str | Path, *, threads: int = 0) -> Engine:
    """Load an engine file written by `build_engine` (its sidecar must sit next to it).

    Args:
        path: the engine file.
        threads: ONNX Runtime intra-op threads (0: one per core); ignored by TensorRT.

    Returns:
        An `Engine`: ``run(batch) -> {output name: array}``, ``info`` = the sidecar.

    Raises:
        ModelFileError: no engine file or sidecar, or an engine the backend cannot load.
        BackendUnavailable: a TensorRT engine on a machine without TensorRT.
    """
    if not Path(path).is_file():
        raise ModelFileError(f"{path}: no such engine file")
    info = read_sidecar(path)
    if info.backend == "onnxruntime":
        from tlt.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(str(path), info, threads=threads)
    if info.backend == "tensorrt":
        from tlt.engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(str(path), info)
    raise ModelFileError(f"{path}: unknown engine backend {info.backend!r} in its sidecar")
