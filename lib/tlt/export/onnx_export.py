"""Keras model -> ONNX graph with TLT's tensor names (tf2onnx).

tf2onnx converts the project's models exactly (ONNX Runtime vs Keras within 1e-6): the graphs
come out channels-first throughout. Batch norm is folded into convolutions without a bias; after a
biased one (DetectNet_v2's, the digits model's) it stays a per-channel ``Mul`` and ``Add``, which
ONNX Runtime fuses at load and the int8 builder folds before quantizing
(`tlt.engines.onnx_folding`). Its outputs carry
the Keras output names; TLT's engines (and the DeepStream / Triton configs written for TLT
models) name them after the TensorFlow op that produced them, so they are renamed here, and the
dynamic batch dimension gets the name ``N``. Inner tensors get positional names, so exporting a
model twice gives the same graph (and a calibration cache keeps fitting it).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from typing import Sequence

from tlt.errors import DataError, ModelFileError

__all__ = ["INPUT_NAME", "OPSET", "BATCH_DIM", "TLT_OUTPUT_NAMES", "tlt_output_names",
           "keras_to_onnx"]

INPUT_NAME = "input_1"
OPSET = 17
BATCH_DIM = "N"
# Keras output name -> TLT's blob name, per task (guide chapter 9: -o / --outputs).
TLT_OUTPUT_NAMES = {
    "classification": {"predictions": "predictions/Softmax"},
    "detection": {"output_cov": "output_cov/Sigmoid", "output_bbox": "output_bbox/BiasAdd"},
}


def tlt_output_names(task: str) -> list[str]:
    """TLT's output names of a task, in model output order."""
    try:
        return list(TLT_OUTPUT_NAMES[task].values())
    except KeyError:
        raise ModelFileError(f"cannot export a {task or 'unknown'!r} model: expected a "
                             f"{' or '.join(TLT_OUTPUT_NAMES)} model") from None


def _rename(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for value in list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def _digest(*parts) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _canonical_order(graph) -> list:
    """The nodes in a topological order that depends only on what the graph computes.

    Each tensor gets a Merkle digest (op type, attributes and the digests of its inputs, weights
    by value); among the nodes ready to run, the one with the smallest digest comes first. Two
    conversions of the same model thus list their nodes in the same order, whichever order
    tf2onnx emitted independent branches in.
    """
    from onnx import numpy_helper

    digests = {i.name: _digest("input", i.name) for i in graph.input}
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        digests[init.name] = _digest("init", array.dtype, array.shape, array.tobytes())
    pending = {id(n): n for n in graph.node}
    waiting = {id(n): {i for i in n.input if i and i not in digests} for n in graph.node}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in waiting[id(node)]:
            consumers.setdefault(name, []).append(node)
    ready, order = [], []

    def push(node):
        attrs = [a.SerializeToString() for a in sorted(node.attribute, key=lambda a: a.name)]
        key = _digest(node.domain, node.op_type, *attrs, *(digests[i] if i else "" for i in node.input))
        heapq.heappush(ready, (key, id(node)))

    for node in graph.node:
        if not waiting[id(node)]:
            push(node)
    while ready:
        key, ident = heapq.heappop(ready)
        node = pending.pop(ident)
        order.append(node)
        for k, out in enumerate(node.output):
            digests[out] = _digest(key, k)
            for consumer in consumers.get(out, []):
                waiting[id(consumer)].discard(out)
                if not waiting[id(consumer)]:
                    push(consumer)
    if pending:
        raise ModelFileError("the exported ONNX graph has a cycle or a dangling input")
    return order


def _canonical_names(graph) -> None:
    """Order the nodes canonically (`_canonical_order`) and name them and their inner tensors
    by position: ``n0012_Relu``.

    tf2onnx's names carry per-process counters (``Conv__74``, ``model_1/``), so the same model
    exported twice would get different tensor names, and a calibration cache, which is keyed by
    tensor name, would no longer fit an export of the very model it was made for.
    """
    keep = {i.name for i in graph.input} | {o.name for o in graph.output} | \
        {init.name for init in graph.initializer}
    nodes = _canonical_order(graph)
    renames = {}
    for index, node in enumerate(nodes):
        node.name = f"n{index:04d}_{node.op_type}"
        for k, out in enumerate(node.output):
            if out and out not in keep:
                renames[out] = node.name if k == 0 else f"{node.name}_{k}"
    for node in nodes:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    copies = [type(n)() for n in nodes]
    for copy, node in zip(copies, nodes):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
    for value in graph.value_info:
        if value.name in renames:
            value.name = renames[value.name]


def _name_batch_dim(graph) -> None:
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def _keep_outputs(graph, names: Sequence[str]) -> None:
    """Keep only ``names`` as graph outputs (in that order) and drop the nodes nobody needs."""
    by_name = {o.name: o for o in graph.output}
    kept = [by_name[n] for n in names]
    del graph.output[:]
    graph.output.extend(kept)
    needed, nodes = set(names), []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            nodes.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(nodes))
    used = {i for n in graph.node for i in n.input}
    inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _select(requested: Sequence[str] | None, available: list[str], keras_names: dict) -> list[str]:
    if not requested:
        return available
    aliases = {**{n: n for n in available}, **keras_names}
    unknown = [n for n in requested if n not in aliases]
    if unknown:
        raise DataError(f"--outputs {', '.join(unknown)}: not an output of this model; its "
                        f"outputs are {', '.join(available)}")
    return list(dict.fromkeys(aliases[n] for n in requested))


def keras_to_onnx(model, task: str, input_dims: Sequence[int], outputs: Sequence[str] | None = None):
    """Convert a TLT Keras model to a checked ONNX ``ModelProto``.

    Args:
        model: the Keras model (input ``input_1`` N x C x H x W).
        task: ``classification`` or ``detection`` (chooses TLT's output names).
        input_dims: ``(C, H, W)``.
        outputs: output names to keep, TLT's (``output_cov/Sigmoid``) or Keras' (``output_cov``);
            None or empty keeps all, in model order.

    Returns:
        The ONNX model: input ``input_1`` [N, C, H, W], outputs renamed to TLT's.

    Raises:
        ModelFileError: the model's outputs are not the task's, or the graph fails onnx.checker.
        DataError: an ``outputs`` name the model does not have.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    tlt_output_names(task)
    names = TLT_OUTPUT_NAMES[task]
    keep = _select(outputs, list(names.values()), names)  # before the slow conversion
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    spec = [tf.TensorSpec((None, *[int(d) for d in input_dims]), tf.float32, name=INPUT_NAME)]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    graph = proto.graph
    produced = [o.name for o in graph.output]
    if sorted(produced) != sorted(names):
        raise ModelFileError(f"the {task} model's outputs are {', '.join(produced)}, expected "
                             f"{', '.join(names)}")
    for keras_name in produced:
        _rename(graph, keras_name, names[keras_name])
    _keep_outputs(graph, keep)
    _canonical_names(graph)
    _name_batch_dim(graph)
    proto.producer_name = "tlt-export"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ModelFileError(f"the exported ONNX graph fails onnx.checker: "
                             f"{str(err).splitlines()[0]}") from None
    return proto
