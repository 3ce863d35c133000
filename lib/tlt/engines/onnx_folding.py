"""Fold per-channel ``Mul`` / ``Add`` constants (inference batch norm) into the ``Conv`` before them.

tf2onnx writes a Keras ``Conv2D(use_bias=True)`` followed by ``BatchNormalization`` as
``Conv -> Mul(scale) -> Add(shift)`` with per-channel constants, not as one convolution. For fp32
that costs nothing (ONNX Runtime fuses the three when a session loads the graph), but static
quantization happens before that fusion: the ``Conv`` output then gets one per-tensor int8 range
although batch norm rescales each of its channels differently, so the channels batch norm
amplifies most are quantized with a handful of levels, and the error grows through every block.
Folding first (``W' = W * s``, ``b' = b * s + t``, exact up to float rounding) gives the
quantizer the convolution whose output is the tensor the network actually passes on; it is what
TensorRT does before it calibrates.

The folded ``Conv`` takes over the output name of the last folded node, so calibration ranges
recorded for that tensor (`tlt.engines.calibration_cache`) still apply.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fold_channel_affine"]

_FOLDABLE = ("Mul", "Add")


def fold_channel_affine(model) -> int:
    """Fold each ``Conv -> Mul(const) [-> Add(const)]`` chain (and ``Conv -> Add(const)``) of an
    ONNX model into the ``Conv``, in place.

    Only constants that broadcast per output channel (a scalar, or ``[C, 1, 1]`` / ``[1, C, 1, 1]``)
    fold, and only through tensors with a single consumer that are not graph outputs.

    Args:
        model: an ``onnx.ModelProto`` (changed in place).

    Returns:
        How many convolutions absorbed at least one node.
    """
    from onnx import numpy_helper

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    protected = {o.name for o in graph.output}
    folded, absorbed = 0, []
    for conv in graph.node:
        if conv.op_type != "Conv" or conv.input[1] not in constants:
            continue
        chain = _affine_chain(conv, consumers, constants, protected)
        if not chain:
            continue
        weight, bias = _conv_parameters(conv, constants, numpy_helper)
        for node, values in chain:
            if node.op_type == "Mul":
                weight, bias = weight * values[:, None, None, None], bias * values
            else:
                bias = bias + values
        _rewrite(graph, conv, weight, bias, chain[-1][0].output[0], numpy_helper)
        absorbed.extend(node for node, _ in chain)
        folded += 1
    for node in absorbed:
        graph.node.remove(node)
    _drop_unused_initializers(graph)
    return folded


def _affine_chain(conv, consumers, constants, protected) -> list:
    """``[(node, per-channel values)]``: the Mul then Add (each optional, in that order) after
    ``conv`` that can fold into it."""
    from onnx import numpy_helper

    channels = _output_channels(conv, constants, numpy_helper)
    chain, tensor, allowed = [], conv.output[0], list(_FOLDABLE)
    while allowed:
        users = consumers.get(tensor, [])
        if tensor in protected or len(users) != 1 or users[0].op_type not in allowed:
            break
        node = users[0]
        others = [name for name in node.input if name != tensor]
        if len(others) != 1 or others[0] not in constants:
            break
        values = _per_channel(numpy_helper.to_array(constants[others[0]]), channels)
        if values is None:
            break
        chain.append((node, values))
        allowed = allowed[allowed.index(node.op_type) + 1:]  # Mul may be followed by Add only
        tensor = node.output[0]
    return chain


def _output_channels(conv, constants, numpy_helper) -> int:
    return int(numpy_helper.to_array(constants[conv.input[1]]).shape[0])


def _per_channel(values: np.ndarray, channels: int) -> np.ndarray | None:
    """``values`` as a ``[channels]`` vector when it broadcasts per channel of an NCHW tensor."""
    if values.size == 1:
        return np.full(channels, float(values.ravel()[0]), dtype=np.float64)
    shape = tuple(values.shape)
    if values.size == channels and shape in ((channels, 1, 1), (1, channels, 1, 1)):
        return values.reshape(channels).astype(np.float64)
    return None


def _conv_parameters(conv, constants, numpy_helper) -> tuple[np.ndarray, np.ndarray]:
    weight = numpy_helper.to_array(constants[conv.input[1]]).astype(np.float64)
    has_bias = len(conv.input) > 2 and conv.input[2] in constants
    bias = (numpy_helper.to_array(constants[conv.input[2]]).astype(np.float64) if has_bias
            else np.zeros(weight.shape[0], dtype=np.float64))
    return weight, bias


def _rewrite(graph, conv, weight, bias, output: str, numpy_helper) -> None:
    """Give ``conv`` the folded weight and bias (new initializers: the old ones may be shared)
    and the output name of the last folded node."""
    weight_name, bias_name = f"{conv.name}_folded_W", f"{conv.name}_folded_B"
    graph.initializer.extend([numpy_helper.from_array(weight.astype(np.float32), weight_name),
                              numpy_helper.from_array(bias.astype(np.float32), bias_name)])
    inputs = [conv.input[0], weight_name, bias_name]
    del conv.input[:]
    conv.input.extend(inputs)
    conv.output[0] = output


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
