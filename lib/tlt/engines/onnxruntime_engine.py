"""ONNX Runtime engines: the CPU backend of tlt-converter, and their runner.

An ONNX Runtime "engine" is an ONNX graph prepared for this runtime:

- fp32: the export after ONNX Runtime's extended graph optimizations (fusions that stay portable
  across CPUs; the hardware-specific layout passes run again when a session loads it);
- int8: the export statically quantized to QDQ form (per-channel int8 weights, uint8
  activations: on x86 CPUs without VNNI signed activations run slower than fp32) with the
  activation ranges of the calibration cache, so no calibration image is needed here. The end
  of the network stays fp32 (`float_tail_nodes`): the last residual ``Add`` and the cheap head
  after it, for a detector also the convolutions feeding that ``Add``. Before quantizing,
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

__all__ = ["PRECISIONS", "FLOAT_TAILS", "DEFAULT_FLOAT_TAIL", "runtime_version",
           "build_onnxruntime_engine", "float_tail_nodes", "nonnegative_tensors", "OnnxRuntimeEngine"]

_log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
# How much of the end of the network an int8 engine keeps fp32 (`float_tail_nodes`): auto, then
# the explicit choices, fastest first.
FLOAT_TAILS = ("auto", "outputs", "head", "residual")
DEFAULT_FLOAT_TAIL = "auto"
# Ops after which a head averages many cells' values (a classifier's pooling): the 8-bit steps of
# the tensors before them average out, unlike in a detector's per-cell heads.
_AVERAGING_OPS = {"GlobalAveragePool", "AveragePool", "ReduceMean"}
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


def float_tail_nodes(model, policy: str = DEFAULT_FLOAT_TAIL) -> list[str]:
    """Names of the nodes an int8 engine keeps fp32, by ``policy`` (one of `FLOAT_TAILS`):

    - ``outputs``: only the nodes that produce the graph's outputs;
    - ``head``: the last residual ``Add`` and every node after it (for DetectNet_v2 the final
      Relu and the 1x1 coverage / box heads with the Sigmoid; for a classifier the pooling, the
      Dense layer and the Softmax), when that head is cheap (`_is_cheap_head`); else ``outputs``;
    - ``residual``: ``head`` plus the convolutions whose outputs that ``Add`` sums (the last
      block's second convolution and its projection shortcut);
    - ``auto`` (the default): ``residual`` for a head that predicts per cell (DetectNet_v2),
      ``head`` for one that averages over the image first (a classifier's pooling averages the
      8-bit steps away: the digits ResNet-10 loses no accuracy with ``head``, while ``residual``
      runs its last block's 3x3 convolution, a third of its multiply-adds, in fp32).

    Why (measured on the demo's pruned DetectNet_v2 by fake-quantizing one activation at a time
    in the fp32 graph, `tlt.engines.quant_sensitivity`): the largest sources of output error are
    the last residual sum and its two inputs, the coverage logits and the Relu feeding the heads;
    nothing after them averages their 8-bit steps away. Scored on 480 fresh frames of the demo's
    data against the Keras model's 85.56 voc mAP, the worst AP column moved 0.83 pt with
    ``head`` (85.15 mAP), 0.67 and 0.83 with only one of the two convolutions fp32, and 0.22 with
    ``residual`` (85.45): the two quantized inputs of the sum add their errors. The price is the
    multiply-adds of those convolutions (21 % of the demo's pruned detector: 189 vs 212 images/s,
    fp32 120); bench/RESULTS.md has the figures.
    """
    if policy not in FLOAT_TAILS:
        raise DataError(f"int8 fp32 tail {policy!r}: expected one of {', '.join(FLOAT_TAILS)}")
    nodes = list(model.graph.node)
    producer = {out: node for node in nodes for out in node.output if node.op_type != "Constant"}
    residual = [i for i, node in enumerate(nodes) if node.op_type == "Add" and len(node.input) == 2
                and all(name in producer for name in node.input)]
    tail = nodes[residual[-1]:] if residual else []
    if policy == "auto":
        averages = any(node.op_type in _AVERAGING_OPS for node in tail)
        policy = "head" if averages else "residual"
    if policy != "outputs" and tail and _is_cheap_head(model, tail):
        feeding = [producer[name].name for name in tail[0].input
                   if policy == "residual" and producer[name].op_type == "Conv"]
        return feeding + [node.name for node in tail]
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


def _quantize(onnx_bytes: bytes, cache: CalibrationCache, dest: Path, source: str,
              float_tail: str) -> list[str]:
    """Write the int8 QDQ graph to ``dest``; return the names of the nodes left fp32."""
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
    keep_float = float_tail_nodes(model, float_tail)
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
                        nodes_to_exclude=keep_float,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        calibration_cache_path=str(ranges_file))
    return keep_float


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
                             cache: CalibrationCache | None = None, source: str = "<export>",
                             float_tail: str = DEFAULT_FLOAT_TAIL) -> list[str]:
    """Write an ONNX Runtime engine file (atomically).

    Args:
        onnx_bytes: the exported graph.
        engine_path: the engine file to write.
        precision: ``fp32`` or ``int8``.
        cache: the calibration cache (int8 only).
        source: the calibration cache's name, for messages.
        float_tail: int8 only: how much of the end of the network stays fp32 (`FLOAT_TAILS`,
            see `float_tail_nodes`).

    Returns:
        The names of the nodes an int8 engine runs in fp32 (empty for fp32 engines).

    Raises:
        DataError: fp16 (no CPU kernels for it), int8 without a cache, or a cache made for
            another export; an unknown ``float_tail``.
    """
    if precision not in PRECISIONS:
        raise DataError(f"the ONNX Runtime backend builds {' or '.join(PRECISIONS)} engines, not "
                        f"{precision} (fp16 engines need --backend tensorrt on a GPU)")
    if precision == "int8" and cache is None:
        raise DataError("an int8 engine needs the calibration cache (-c) written by tlt-export "
                        "--data_type int8")
    kept_float: list[str] = []
    with atomic_path(engine_path) as tmp:
        if precision == "int8":
            kept_float = _quantize(onnx_bytes, cache, tmp, source, float_tail)
            _log.info("int8 engine: %d nodes stay fp32 (--int8_float_tail %s): %s",
                      len(kept_float), float_tail, ", ".join(kept_float))
        else:
            _optimize(onnx_bytes, tmp)
    _log.info("wrote the %s ONNX Runtime engine %s", precision, engine_path)
    return kept_float


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
