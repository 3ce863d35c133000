"""The input and outputs of an ONNX graph, read with ``onnx`` alone (no runtime, no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass

from tlt.errors import ModelFileError

__all__ = ["GraphSignature", "read_signature", "tensor_names", "format_dims"]


@dataclass(frozen=True)
class GraphSignature:
    """What an exported graph takes and returns.

    Attributes:
        input_name: the single graph input (``input_1`` for TLT exports).
        input_shape: its shape; symbolic or unknown dimensions are None (the batch is).
        outputs: output name -> shape (None for unknown dimensions), in graph order.
    """

    input_name: str
    input_shape: tuple
    outputs: dict[str, tuple]

    @property
    def input_dims(self) -> tuple:
        """The input shape without the batch dimension (``(C, H, W)`` for images)."""
        return tuple(self.input_shape[1:])

    @property
    def output_names(self) -> list[str]:
        """The graph's output names, in order."""
        return list(self.outputs)


def _shape(value_info) -> tuple:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def read_signature(onnx_bytes: bytes, source: str = "<onnx>") -> GraphSignature:
    """Read the input and outputs of a serialized ONNX graph.

    Raises:
        ModelFileError: not an ONNX graph, or not exactly one (non-initializer) input.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_from_string(onnx_bytes)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{source}: not an ONNX graph ({err.__class__.__name__})") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelFileError(f"{source}: expected one graph input, found "
                             f"{', '.join(i.name for i in inputs) or 'none'}")
    return GraphSignature(inputs[0].name, _shape(inputs[0]),
                          {o.name: _shape(o) for o in model.graph.output})


def format_dims(dims) -> str:
    """``3,64,64`` for a dims tuple (unknown dimensions as ``?``)."""
    return ",".join("?" if d is None else str(d) for d in dims)


def tensor_names(model) -> set[str]:
    """Every activation tensor of an ONNX ``ModelProto``: graph inputs and node outputs."""
    names = {i.name for i in model.graph.input}
    for node in model.graph.node:
        names.update(o for o in node.output if o)
    return names
