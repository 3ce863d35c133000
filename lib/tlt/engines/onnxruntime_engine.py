"""ONNX Runtime engines: the CPU backend of tlt-converter, and their runner.

An ONNX Runtime "engine" is an ONNX graph prepared for this runtime:

- fp32: the export after ONNX Runtime's extended graph optimizations (fusions that stay portable
  across CPUs; the hardware-specific layout passes run again when a session loads it);
- int8: the export statically quantized to QDQ form (per-channel int8 weights, uint8
  activations: on x86 CPUs without VNNI signed activations run slower than fp32) with the
  activation ranges of the calibration cache, so no calibration image is needed here. The last
  residual ``Add`` and the cheap head after it stay fp32 (`_float_tail`). Before quantizing,
  the per-channel ``Mul``/``Add`` that tf2onnx leaves after a biased convolution (inference
  batch norm) are folded into it (`tlt.engines.onnx_folding`), and weights use 7 of their 8 bits (``reduce_range``): ONNX
  Runtime's uint8 x int8 kernels on AVX2 CPUs without VNNI add pairs of products in int16
  (``vpmaddubsw``), which saturates with full-range weights.

The cache holds symmetric ranges (TensorRT's format: one absolute maximum per tensor). A tensor
that cannot be negative (the output of Relu, Sigmoid, Softmax, and of pooling/reshaping such a
tensor) is given the range [0, amax] instead of [-amax, amax], which keeps the full 8 bits for it.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from tlt.engines.base import Engine
from tlt.engines.calibration_cache import CalibrationCache, check_cache_matches
from tlt.engines.onnx_folding import fold_channel_affine
from tlt.engines.sidecar import EngineInfo
from tlt.engines.signature import tensor_names
from tlt.errors import DataError, ModelFileError
from tlt.io.atomic import atomic_path

__all__ = ["PRECISIONS", "runtime_version", "build_onnxruntime_engine", "nonnegative_tensors",
           "OnnxRuntimeEngine"]

_log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
_NONNEGATIVE_OPS = {"Relu", "Sigmoid", "Softmax"}
# Ops whose output is a selection / rearrangement / average of their data input: non-negative in,
# non-negative out.
_PRESERVING_OPS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Reshape",
                   "Flatten", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Slice"}


_SIGMOID_SATURATION = 16.0


def runtime_version() -> str:
    """The installed onnxruntime version."""
    import onnxruntime

    return onnxruntime.__version__


def nonnegative_tensors(model) -> set[str]:
    """Names of the tensors of an ONNX model that are provably >= 0 (see the module docstring)."""
    found: set[str] = set()
    for node in model.graph.node:  # ONNX nodes are stored in topological order
        data = [i for i in node.input[:1] if i]
        if node.op_type in _NONNEGATIVE_OPS:
            found.update(node.output)
        elif node.op_type == "Concat" and all(i in found for i in node.input if i):
            found.update(node.output)
        elif node.op_type in _PRESERVING_OPS and data and data[0] in found:
            found.update(node.output)
    return found


def _tensor_ranges(model, cache: CalibrationCache, source: str):
    """ONNX Runtime's TensorsData from the cache's absolute maxima."""
    from onnxruntime.quantization import CalibrationMethod, TensorsData

    check_cache_matches(cache, tensor_names(model), source)
    positive = nonnegative_tensors(model)
    # A Sigmoid's input beyond +-16 changes its output by < 1.2e-7, while an untrained or confident
    # detector's coverage logits reach +-800: clamping their range keeps 8-bit steps small where
    # the coverage is decided instead of collapsing every cell towards 0.5.
    feeds_sigmoid = {n.input[0] for n in model.graph.node if n.op_type == "Sigmoid"}
    ranges = {}
    for name, amax in cache.amax().items():
        if name in feeds_sigmoid:
            amax = min(amax, _SIGMOID_SATURATION)
        low = 0.0 if name in positive else -amax
        ranges[name] = (np.array(low, dtype=np.float32), np.array(amax, dtype=np.float32))
    return TensorsData(CalibrationMethod.MinMax, ranges)


def _float_tail(model) -> list[str]:
    """Nodes that stay fp32: the last residual ``Add`` and every node after it (for DetectNet_v2
    the final Relu and the 1x1 coverage / box heads with the Sigmoid; for a classifier the pooling,
    the Dense layer and the Softmax), or only the output-producing nodes of a graph without one.

    Why (measured on the demo's pruned DetectNet_v2, 48 validation frames, by fake-quantizing one
    activation at a time in the fp32 graph): the largest single sources of output error are the
    last residual sum (box-offset error 0.018, coverage-logit error 0.040), the coverage logits
    (logit 0.031) and the Relu feeding the heads (box 0.009); the next ones are under half that.
    Nothing after them averages their 8-bit steps away. Keeping them float costs no measurable
    speed (the heads are 1x1 convolutions with a handful of output channels; the Add is
    elementwise): on that detector the engine's coverage-logit error vs fp32 fell from 0.063 to
    0.042, and on bench/engine.py's from 0.108 to 0.068 (box error 0.055 -> 0.045).
    """
    producer = {out: node for node in model.graph.node for out in node.output
                if node.op_type != "Constant"}
    nodes = list(model.graph.node)
    residual = [i for i, node in enumerate(nodes) if node.op_type == "Add" and len(node.input) == 2
                and all(name in producer for name in node.input)]
    if residual and _is_cheap_head(model, nodes[residual[-1]:]):
        return [node.name for node in nodes[residual[-1]:]]
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in nodes if outputs.intersection(n.output)]


_MATMUL_OPS = {"Conv", "Gemm", "MatMul"}


def _is_cheap_head(model, tail) -> bool:
    """At most three matrix products, convolutions all 1x1: keeping ``tail`` fp32 costs little
    (a MobileNet's last residual Add, say, is followed by 3x3 convolutions and stays int8)."""
    weights = {init.name: init.dims for init in model.graph.initializer}
    products = [node for node in tail if node.op_type in _MATMUL_OPS]
    one_by_one = all(list(weights.get(node.input[1], [0, 0, 1, 1]))[2:] in ([1, 1], [])
                     for node in products if node.op_type == "Conv")
    return len(products) <= 3 and one_by_one


def _quantize(onnx_bytes: bytes, cache: CalibrationCache, dest: Path, source: str) -> None:
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static, save_tensors_data)

    model = onnx.load_from_string(onnx_bytes)
    ranges = _tensor_ranges(model, cache, source)
    # After the ranges (checked against the export's own tensor names): a folded Conv takes the
    # name of the batch norm's output, whose range the cache has; the ranges of the tensors
    # folded away are simply not used. Measured on the deployed-detection test's DetectNet_v2:
    # folding cut the int8 engine's mean coverage-logit error vs fp32 from 0.74 to 0.28
    # (0.30 together with the 7-bit weights below).
    fold_channel_affine(model)
    with tempfile.TemporaryDirectory(prefix="tlt-quant-") as tmp, _quiet_root_advice():
        # quantize_static takes precomputed ranges through its calibration-cache file.
        ranges_file = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, ranges_file)
        quantize_static(model, str(dest), calibration_data_reader=None,
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        # 7-bit weights: u8 x s8 pairs then fit int16 on CPUs without VNNI,
                        # where full-range weights saturated (a box-offset error of 16 px on
                        # that detector fell to 1.9); on VNNI CPUs it costs one weight bit.
                        reduce_range=True,
                        nodes_to_exclude=_float_tail(model),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        calibration_cache_path=str(ranges_file))


class _DropPreprocessingAdvice(logging.Filter):
    """quantize_static advises ONNX Runtime's shape pre-processing on the root logger; the export
    already has static shapes and folded batch norm, and running it would rename the tensors the
    cache refers to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_root_advice():
    root = logging.getLogger()
    advice = _DropPreprocessingAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _optimize(onnx_bytes: bytes, dest: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(dest)
    options.intra_op_num_threads = 1
    ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def build_onnxruntime_engine(onnx_bytes: bytes, engine_path: str | Path, *, precision: str,
                             cache: CalibrationCache | None = None, source: str = "<export>") -> None:
    """Write an ONNX Runtime engine file (atomically).

    Args:
        onnx_bytes: the exported graph.
        engine_path: the engine file to write.
        precision: ``fp32`` or ``int8``.
        cache: the calibration cache (int8 only).
        source: the calibration cache's name, for messages.

    Raises:
        DataError: fp16 (no CPU kernels for it), int8 without a cache, or a cache made for
            another export.
    """
    if precision not in PRECISIONS:
        raise DataError(f"the ONNX Runtime backend builds {' or '.join(PRECISIONS)} engines, not "
                        f"{precision} (fp16 engines need --backend tensorrt on a GPU)")
    if precision == "int8" and cache is None:
        raise DataError("an int8 engine needs the calibration cache (-c) written by tlt-export "
                        "--data_type int8")
    with atomic_path(engine_path) as tmp:
        if precision == "int8":
            _quantize(onnx_bytes, cache, tmp, source)
        else:
            _optimize(onnx_bytes, tmp)
    _log.info("wrote the %s ONNX Runtime engine %s", precision, engine_path)


class OnnxRuntimeEngine(Engine):
    """Runs an ONNX Runtime engine file.

    Args:
        path: the engine file.
        info: its sidecar.
        threads: intra-op threads (0: ONNX Runtime's default, one per core).
        providers: execution providers (default: CPU).
        spin: let idle intra-op threads busy-wait for the next node (ONNX Runtime's default).
            Off here: engines run in pipeline pods whose CPU limit a spinning thread spends,
            and on a CPU shared with other work the spinning threads take the cores from the
            thread that has work (bench/engine.py's two models on 2 cores at load 7-10: fp32
            1.1-1.75x, int8 1.0-1.25x the images/s with spinning off).
    """

    def __init__(self, path: str, info: EngineInfo, *, threads: int = 0,
                 providers: list[str] | None = None, spin: bool = False):
        super().__init__(path, info)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=providers or ["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise ModelFileError(f"{path}: ONNX Runtime cannot load this engine: "
                                 f"{str(err).splitlines()[0]}") from None

    def _run_chunk(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(self.output_names, {self.info.input_name: batch})
        return dict(zip(self.output_names, values))
