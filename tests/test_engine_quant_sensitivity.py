"""tlt.engines.quant_sensitivity: the output error each activation's 8-bit rounding adds alone."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tlt.engines.calibration_cache import CalibrationCache
from tlt.engines.quant_sensitivity import activation_sensitivity


def _model():
    """x -> Conv -> a -> Relu -> r -> Conv -> y (the output)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(3, 4, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [None, 2, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _batches():
    rng = np.random.default_rng(4)
    return [rng.uniform(-1, 1, size=(2, 2, 6, 6)).astype(np.float32) for _ in range(2)]


def _amax(model, batches) -> dict[str, float]:
    import onnxruntime as ort

    model.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                              for n in ("a", "r"))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = [session.run(["a", "r", "y"], {"x": b}) for b in batches]
    return {"x": 1.0, **{name: float(max(np.abs(v[i]).max() for v in values))
                         for i, name in enumerate(("a", "r", "y"))}}


def test_each_activation_gets_the_error_its_rounding_adds():
    batches = _batches()
    amax = _amax(_model(), batches)
    errors = activation_sensitivity(_model().SerializeToString(),
                                    CalibrationCache.from_ranges(amax), batches)
    assert set(errors) == {"a", "r"}  # the graph output is never quantized by the builder
    # Tight ranges: the error is about a quarter of a step, propagated through the 1x1 conv.
    step = amax["r"] / 255
    assert 0 < errors["r"]["y"] < 3 * step
    # 'a' is signed ([-amax, amax]: twice the step) and 'r' is not ([0, amax]).
    assert errors["a"]["y"] > errors["r"]["y"]


def test_a_range_far_too_wide_shows_up_as_the_largest_error():
    batches = _batches()
    amax = _amax(_model(), batches)
    wide = {**amax, "r": 50 * amax["r"]}
    model = _model().SerializeToString()
    errors = activation_sensitivity(model, CalibrationCache.from_ranges(wide), batches)
    tight = activation_sensitivity(model, CalibrationCache.from_ranges(amax), batches)
    assert errors["r"]["y"] > 10 * tight["r"]["y"]
    assert errors["a"]["y"] == pytest.approx(tight["a"]["y"])
