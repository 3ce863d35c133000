"""Folding per-channel Mul/Add (inference batch norm) into convolutions before int8 quantization."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tlt.engines.onnx_folding import fold_channel_affine

_C = 4


def _model(*, mul_shape=(1, _C, 1, 1), bias=True, extra_nodes=(), outputs=("r",), add=True):
    """x[1,3,6,6] -> Conv(w[, b]) -> Mul(s) [-> Add(t)] -> Relu -> r."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((_C, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.uniform(0.1, 30, mul_shape).astype(np.float32), "s"),
             numpy_helper.from_array(rng.standard_normal((1, _C, 1, 1)).astype(np.float32), "t")]
    conv_inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(_C).astype(np.float32), "b"))
        conv_inputs.append("b")
    nodes = [helper.make_node("Conv", conv_inputs, ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["c", "s"], ["m"], name="mul")]
    nodes += [helper.make_node("Add", ["m", "t"], ["a"], name="add"),
              helper.make_node("Relu", ["a"], ["r"], name="relu")] if add else \
        [helper.make_node("Relu", ["m"], ["r"], name="relu")]
    nodes += list(extra_nodes)
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, _C, 6, 6]) for name in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model, names):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32)
    return session.run(names, {"x": x})


@pytest.mark.parametrize("bias", [True, False])
def test_conv_mul_add_folds_into_one_conv_with_the_same_output(bias):
    model = _model(bias=bias)
    (expected,) = _run(model, ["r"])
    assert fold_channel_affine(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu"]
    # The folded Conv writes the batch norm's output name, whose calibration range the cache has.
    assert list(model.graph.node[0].output) == ["a"]
    assert {t.name for t in model.graph.initializer} == {"conv_folded_W", "conv_folded_B"}
    onnx.checker.check_model(model)
    (got,) = _run(model, ["r"])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_a_lone_scalar_mul_folds():
    model = _model(mul_shape=(1,), add=False)
    (expected,) = _run(model, ["r"])
    assert fold_channel_affine(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu"]
    np.testing.assert_allclose(_run(model, ["r"])[0], expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("case", ["spatial constant", "two consumers", "graph output"])
def test_what_is_not_per_channel_or_is_seen_elsewhere_stays(case):
    if case == "spatial constant":  # varies over H/W: not a per-channel affine map
        model = _model(mul_shape=(1, 1, 6, 6))
    elif case == "two consumers":  # the Conv output is also read by another node
        model = _model(extra_nodes=[helper.make_node("Sigmoid", ["c"], ["side"], name="side")],
                       outputs=("r", "side"))
    else:  # the Conv output itself is a graph output
        model = _model(outputs=("r", "c"))
    ops = [n.op_type for n in model.graph.node]
    assert fold_channel_affine(model) == 0
    assert [n.op_type for n in model.graph.node] == ops
