"""Where int8 error enters a graph: fake-quantize one activation at a time, measure the outputs.

For each activation the int8 builder would quantize, a ``QuantizeLinear -> DequantizeLinear``
pair (uint8, the builder's range for that tensor: [0, amax] when the tensor cannot be negative,
else [-amax, amax]) is inserted into the fp32 graph after batch norm folding, every other tensor
stays float, and the graph outputs are compared with the fp32 graph's on the same batches. The
result ranks the tensors by the error each alone adds, which is what choosing the nodes to keep
in float (`tlt.engines.onnxruntime_engine.float_tail_nodes`) needs; the errors of several tensors add
roughly in quadrature.

    errors = activation_sensitivity(onnx_bytes, cache, batches)
    worst = sorted(errors, key=lambda name: -errors[name]["output_bbox/BiasAdd"])[:5]
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from tlt.engines.calibration_cache import CalibrationCache
from tlt.engines.onnx_folding import fold_channel_affine

__all__ = ["activation_sensitivity"]


def activation_sensitivity(onnx_bytes: bytes, cache: CalibrationCache,
                           batches: Iterable[np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean absolute output error each activation's 8-bit quantization adds on its own.

    Args:
        onnx_bytes: the fp32 export.
        cache: its calibration cache (the ranges the int8 builder uses).
        batches: ``[N, C, H, W]`` float32 inputs (a few calibration batches).

    Returns:
        ``{tensor: {output name: mean |int8-simulated - fp32|}}`` for every activation of the
        folded graph that has a range in the cache and is not a graph output.
    """
    import onnx

    from tlt.engines.onnxruntime_engine import nonnegative_tensors

    model = onnx.load_from_string(onnx_bytes)
    fold_channel_affine(model)
    batches = list(batches)
    reference = _run(model, batches)
    positive = nonnegative_tensors(model)
    outputs = {o.name for o in model.graph.output}
    amax = cache.amax()
    produced = [out for node in model.graph.node for out in node.output]
    errors = {}
    for tensor in (t for t in produced if t in amax and t not in outputs):
        low = 0.0 if tensor in positive else -amax[tensor]
        got = _run(_with_fake_quant(model, tensor, low, amax[tensor]), batches)
        errors[tensor] = {name: float(np.mean([np.abs(g - r).mean() for g, r in
                                               zip(got[name], reference[name])]))
                          for name in reference}
    return errors


def _with_fake_quant(model, tensor: str, low: float, high: float):
    """A copy of ``model`` whose consumers of ``tensor`` read it through uint8 Q/DQ."""
    import onnx
    from onnx import helper, numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    scale = max(high - low, 1e-12) / 255.0
    zero = int(round(-low / scale))
    names = (f"{tensor}__fq_scale", f"{tensor}__fq_zero", f"{tensor}__fq_q", f"{tensor}__fq_dq")
    copy.graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), names[0]),
                                   numpy_helper.from_array(np.array(zero, np.uint8), names[1])])
    nodes = list(copy.graph.node)
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == tensor:
                node.input[i] = names[3]
    at = next(i for i, node in enumerate(nodes) if tensor in node.output) + 1
    nodes[at:at] = [helper.make_node("QuantizeLinear", [tensor, names[0], names[1]], [names[2]]),
                    helper.make_node("DequantizeLinear", [names[2], names[0], names[1]],
                                     [names[3]])]
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def _run(model, batches: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Every graph output per batch, without graph optimizations (which would fuse the Q/DQ
    pair into int8 kernels and measure those instead of the rounding alone)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    found: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for batch in batches:
        for name, value in zip(names, session.run(names, {input_name: batch})):
            found[name].append(value)
    return found
