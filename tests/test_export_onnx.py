"""Keras -> ONNX export: the graph computes what the Keras model computes, under TLT's names."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export_fixtures import CLS_DIMS, DET_DIMS, random_batch, tiny_classifier, tiny_detector
from tlt.errors import DataError
from tlt.export.onnx_export import keras_to_onnx

FAMILIES = [("resnet", 10), ("resnet", 18), ("resnet", 34), ("resnet", 50), ("vgg", 16),
            ("vgg", 19), ("alexnet", 0), ("googlenet", 0), ("mobilenet_v1", 0),
            ("mobilenet_v2", 0)]
# The deep variants of a family already covered take longer to convert: CI runs them.
_SLOW = {("resnet", 34), ("resnet", 50), ("vgg", 19)}
# DetectNet_v2 needs a stride-16 trunk; AlexNet's is not.
DET_FAMILIES = [f for f in FAMILIES if f[0] != "alexnet" and f not in _SLOW]


def _params(families):
    return [pytest.param(a, n, id=f"{a}{n or ''}",
                         marks=[pytest.mark.slow] if (a, n) in _SLOW else []) for a, n in families]


def _session(proto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("arch, n_layers", _params(FAMILIES))
def test_classifier_export_matches_keras(arch, n_layers):
    model = tiny_classifier(arch, n_layers or 18)
    proto = keras_to_onnx(model, "classification", CLS_DIMS)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input_1"]
    assert _dims(proto.graph.input[0]) == ["N", *CLS_DIMS]
    assert [o.name for o in proto.graph.output] == ["predictions/Softmax"]
    assert _dims(proto.graph.output[0]) == ["N", 3]
    batch = random_batch(3, CLS_DIMS)
    (onnx_out,) = _session(proto).run(None, {"input_1": batch})
    np.testing.assert_allclose(onnx_out, model.predict(batch, verbose=0), atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch, n_layers", _params(DET_FAMILIES))
def test_detector_export_matches_keras(arch, n_layers):
    model = tiny_detector(arch, n_layers or 18)
    proto = keras_to_onnx(model, "detection", DET_DIMS)
    onnx.checker.check_model(proto, full_check=True)
    names = [o.name for o in proto.graph.output]
    assert names == ["output_cov/Sigmoid", "output_bbox/BiasAdd"]
    assert _dims(proto.graph.output[0]) == ["N", 2, 2, 4]
    assert _dims(proto.graph.output[1]) == ["N", 8, 2, 4]
    # The graph stays channels-first: no layout transposes were left in by the converter.
    assert "Transpose" not in {n.op_type for n in proto.graph.node}
    batch = random_batch(2, DET_DIMS, seed=1)
    onnx_cov, onnx_bbox = _session(proto).run(None, {"input_1": batch})
    cov, bbox = model.predict(batch, verbose=0)
    np.testing.assert_allclose(onnx_cov, cov, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx_bbox, bbox, atol=1e-4, rtol=0)


def test_outputs_subset_keeps_only_the_nodes_it_needs():
    model = tiny_detector()
    full = keras_to_onnx(model, "detection", DET_DIMS)
    cov_only = keras_to_onnx(model, "detection", DET_DIMS, outputs=["output_cov"])
    assert [o.name for o in cov_only.graph.output] == ["output_cov/Sigmoid"]
    assert len(cov_only.graph.node) == len(full.graph.node) - 1  # the bbox head's convolution
    batch = random_batch(1, DET_DIMS)
    (cov,) = _session(cov_only).run(None, {"input_1": batch})
    np.testing.assert_allclose(cov, model.predict(batch, verbose=0)[0], atol=1e-4, rtol=0)


def test_exporting_twice_gives_the_same_graph():
    # tf2onnx's own names carry per-process counters; a calibration cache keyed by tensor names
    # must fit every export of the same model.
    model = tiny_classifier()
    first = keras_to_onnx(model, "classification", CLS_DIMS)
    second = keras_to_onnx(model, "classification", CLS_DIMS)
    assert [list(n.output) for n in first.graph.node] == [list(n.output) for n in second.graph.node]
    assert first.graph.node[0].output[0].startswith("n0000_")


def test_canonical_names_do_not_depend_on_the_order_of_independent_branches():
    from onnx import TensorProto, helper

    from tlt.export.onnx_export import _canonical_names

    def named(order):
        nodes = {"relu": helper.make_node("Relu", ["x"], ["Relu__7:0"], name="Relu__7"),
                 "sig": helper.make_node("Sigmoid", ["x"], ["Sig__3:0"], name="Sig__3"),
                 "add": helper.make_node("Add", ["Relu__7:0", "Sig__3:0"], ["y"], name="Add__9")}
        graph = helper.make_graph(
            [nodes[k] for k in order], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        _canonical_names(graph)
        return [(n.name, list(n.input), list(n.output)) for n in graph.node]

    assert named(["relu", "sig", "add"]) == named(["sig", "relu", "add"])
    assert named(["sig", "relu", "add"])[2] == ("n0002_Add", ["n0000_Relu", "n0001_Sigmoid"], ["y"])


def test_unknown_output_name_lists_the_real_ones():
    with pytest.raises(DataError, match=r"--outputs output_bbox/Sigmoid: not an output of this "
                                        r"model; its outputs are output_cov/Sigmoid, "
                                        r"output_bbox/BiasAdd"):
        keras_to_onnx(tiny_detector(), "detection", DET_DIMS, outputs=["output_bbox/Sigmoid"])


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_pruned_model_export_matches_keras(task):
    from tlt.pruning import PruneSettings, prune_model

    import keras

    model = tiny_classifier() if task == "classification" else tiny_detector()
    dims = CLS_DIMS if task == "classification" else DET_DIMS
    # Weak odd filters in every convolution (aligned across residual groups): pruning removes them.
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and not layer.name.startswith("output_"):
            kernel, *rest = layer.get_weights()
            kernel[..., 1::2] *= 0.05
            layer.set_weights([kernel, *rest])
    pruned = prune_model(model, PruneSettings(pruning_threshold=0.5, pruning_granularity=1,
                                              min_num_filters=4))
    assert pruned.params_after < 0.9 * pruned.params_before  # really narrower
    proto = keras_to_onnx(pruned.model, task, dims)
    onnx.checker.check_model(proto, full_check=True)
    batch = random_batch(2, dims, seed=3)
    got = _session(proto).run(None, {"input_1": batch})
    want = pruned.model.predict(batch, verbose=0)
    for g, w in zip(got, want if isinstance(want, list) else [want]):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
