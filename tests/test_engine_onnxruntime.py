"""ONNX Runtime engines: fp32 equals Keras, int8 is a QDQ graph built from the cache, sidecars."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from export_fixtures import (CLS_DIMS, DET_DIMS, KEY, classifier_tlt, detector_tlt, exported,
                             random_batch)
from tlt.engines import BuildOptions, build_engine, load_engine, sidecar_path
from tlt.engines.calibration_cache import read_cache
from tlt.engines.onnxruntime_engine import float_tail_nodes, nonnegative_tensors
from tlt.errors import DataError, ModelFileError


def _build(tmp_path, precision="fp32", *, kind="cls-int8", **options):
    export = exported(kind)
    dims = CLS_DIMS if kind == "cls-int8" else DET_DIMS
    engine = tmp_path / f"{precision}.engine"
    fields = dict(input_dims=dims, engine_path=str(engine), precision=precision,
                  cache_file=str(export["dir"] / "cal.bin"), max_batch_size=4,
                  backend="onnxruntime")
    info = build_engine(str(export["output"]), KEY, BuildOptions(**{**fields, **options}))
    return engine, info


def test_fp32_classifier_engine_equals_keras_and_has_a_sidecar(tmp_path):
    engine_path, info = _build(tmp_path)
    _, model = classifier_tlt()
    engine = load_engine(engine_path, threads=1)
    batch = random_batch(10, CLS_DIMS)  # > max batch 4: run in chunks of 4, 4, 2
    out = engine.run(batch)
    assert list(out) == ["predictions/Softmax"]
    np.testing.assert_allclose(out["predictions/Softmax"], model.predict(batch, verbose=0),
                               atol=1e-4, rtol=0)
    side = json.loads(sidecar_path(engine_path).read_text())
    assert side["backend"] == "onnxruntime" and side["precision"] == "fp32"
    assert side["input_dims"] == list(CLS_DIMS) and side["input_name"] == "input_1"
    assert side["output_names"] == ["predictions/Softmax"] and side["max_batch_size"] == 4
    export_file = exported("cls-int8")["output"]
    import hashlib

    assert side["source_digest"] == "sha256:" + hashlib.sha256(export_file.read_bytes()).hexdigest()
    assert side["export"]["classes"] == ["circle", "square", "triangle"]
    assert side["export"]["preprocessing"]["scale"] == pytest.approx(1 / 127.5)
    assert engine.info.task == "classification"


def test_fp32_detector_engine_equals_keras(tmp_path):
    engine_path, info = _build(tmp_path, kind="det", cache_file="")
    _, model = detector_tlt()
    batch = random_batch(3, DET_DIMS, seed=2)
    out = load_engine(engine_path, threads=1).run(batch)
    cov, bbox = model.predict(batch, verbose=0)
    np.testing.assert_allclose(out["output_cov/Sigmoid"], cov, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["output_bbox/BiasAdd"], bbox, atol=1e-4, rtol=0)
    assert info.export["spec"]  # post-processing settings travel with the engine


def _initializer(model, name):
    init = next(i for i in model.graph.initializer if i.name == name)
    return onnx.numpy_helper.to_array(init)


def test_int8_engine_is_quantized_with_the_cache_ranges(tmp_path):
    engine_path, info = _build(tmp_path, "int8")
    graph_model = onnx.load(engine_path)
    ops = [n.op_type for n in graph_model.graph.node]
    assert ops.count("QuantizeLinear") > 5 and "DequantizeLinear" in ops
    cache = read_cache(exported("cls-int8")["dir"] / "cal.bin").amax()
    quants = {n.input[0]: n for n in graph_model.graph.node if n.op_type == "QuantizeLinear"}
    # The input's range is symmetric [-amax, amax]: uint8 zero point in the middle.
    q_in = quants["input_1"]
    scale, zero = _initializer(graph_model, q_in.input[1]), _initializer(graph_model, q_in.input[2])
    assert zero.dtype == np.uint8 and int(zero) == 128
    assert float(scale) == pytest.approx(2 * cache["input_1"] / 255, rel=1e-5)
    # A Relu output cannot be negative: [0, amax], all 256 levels used, zero point 0.
    relu = next(name for name in quants if name.endswith("_Relu"))
    scale, zero = _initializer(graph_model, quants[relu].input[1]), \
        _initializer(graph_model, quants[relu].input[2])
    assert int(zero) == 0 and float(scale) == pytest.approx(cache[relu] / 255, rel=1e-5)
    assert info.precision == "int8"


def test_int8_engine_stays_close_to_fp32(tmp_path):
    fp32, _ = _build(tmp_path, "fp32")
    int8, _ = _build(tmp_path, "int8")
    from export_fixtures import calibration_images
    from tlt.export.calibration import calibration_batches, list_calibration_images

    batch = next(calibration_batches(list_calibration_images(calibration_images(), 8), CLS_DIMS, 8))
    ref = load_engine(fp32, threads=1).run(batch)["predictions/Softmax"]
    got = load_engine(int8, threads=1).run(batch)["predictions/Softmax"]
    assert np.abs(got - ref).max() < 0.05
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_nonnegative_tensors_follow_relu_through_pooling():
    helper = onnx.helper
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2]),
             helper.make_node("Add", ["p", "c"], ["a"]),
             helper.make_node("Concat", ["p", "r"], ["cat"], axis=1),
             helper.make_node("Concat", ["p", "a"], ["mixed"], axis=1)]
    graph = helper.make_graph(nodes, "g", [], [])
    assert nonnegative_tensors(helper.make_model(graph)) == {"r", "p", "cat"}


def test_engine_rejects_a_batch_of_another_size(tmp_path):
    engine_path, _ = _build(tmp_path)
    with pytest.raises(DataError, match=r"engine input is N x 3 x 32 x 32 \(C x H x W\), got a "
                                        r"batch of shape \(2, 3, 64, 64\)"):
        load_engine(engine_path, threads=1).run(random_batch(2, (3, 64, 64)))


def test_engine_without_sidecar_says_to_copy_both(tmp_path):
    engine_path, _ = _build(tmp_path)
    sidecar_path(engine_path).unlink()
    with pytest.raises(ModelFileError, match=r"no engine sidecar fp32\.engine\.json next to it"):
        load_engine(engine_path)


def test_fp16_on_the_cpu_backend_is_one_line(tmp_path):
    from tlt.engines import BackendUnavailable

    with pytest.raises(BackendUnavailable, match=r"fp16 engines need TensorRT on a GPU"):
        _build(tmp_path, "fp16")


_NO_TENSORFLOW = """
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, _Block())
import numpy as np
from tlt.engines import load_engine

engine = load_engine(sys.argv[1], threads=1)
print(engine.run(np.zeros((2, 3, 32, 32), np.float32))["predictions/Softmax"].shape)
"""


def test_engines_load_and_run_without_tensorflow(tmp_path):
    import subprocess
    import sys

    from cli_processes import subprocess_env

    engine_path, _ = _build(tmp_path, "int8")
    result = subprocess.run([sys.executable, "-c", _NO_TENSORFLOW, str(engine_path)],
                            capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 3)"


def test_sigmoid_inputs_get_a_saturated_range_others_keep_the_cache():
    """Coverage logits of +-800 would make every 8-bit step ~6: the range stops at sigmoid's
    saturation (+-16), where the output is already within 1.2e-7 of 0 or 1."""
    from tlt.engines.calibration_cache import CalibrationCache
    from tlt.engines.onnxruntime_engine import _tensor_ranges

    helper = onnx.helper
    nodes = [helper.make_node("Conv", ["x", "w"], ["logits"]),
             helper.make_node("Sigmoid", ["logits"], ["cov"]),
             helper.make_node("Conv", ["x", "w2"], ["bbox"])]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])
    graph = helper.make_graph(nodes, "g", [x], [])
    model = helper.make_model(graph)
    amax = {"x": 2.0, "logits": 800.0, "cov": 1.0, "bbox": 300.0}
    ranges = _tensor_ranges(model, CalibrationCache.from_ranges(amax), "test")
    assert _range(ranges, "logits") == pytest.approx((-16.0, 16.0))
    assert _range(ranges, "bbox") == pytest.approx((-300.0, 300.0), rel=1e-5)
    assert _range(ranges, "x") == pytest.approx((-2.0, 2.0), rel=1e-5)


def _range(tensors_data, name):
    value = tensors_data[name]
    low, high = getattr(value, "range_value", value)
    return float(low), float(high)


def test_int8_weights_use_seven_bits(tmp_path):
    """``reduce_range``: u8 x s8 products added in pairs fit int16 on CPUs without VNNI (with
    full-range weights they saturated: a 16 px box-offset error on the deployed test detector)."""
    engine_path, _ = _build(tmp_path, "int8")
    model = onnx.load(engine_path)
    weights = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer
               if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert weights, "no quantized convolution weights"
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64


def test_int8_build_folds_batch_norm_into_the_convolution(tmp_path):
    """A biased Conv -> Mul -> Add (as tf2onnx writes Conv2D + BatchNormalization) is quantized
    as one Conv whose output is the Add's tensor, with the cache's range for that tensor."""
    from onnx import TensorProto, helper, numpy_helper

    from tlt.engines.calibration_cache import CalibrationCache
    from tlt.engines.onnxruntime_engine import build_onnxruntime_engine

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
             numpy_helper.from_array(rng.uniform(0.05, 20, (1, 8, 1, 1)).astype(np.float32), "s"),
             numpy_helper.from_array(rng.standard_normal((1, 8, 1, 1)).astype(np.float32), "t")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["c", "s"], ["m"], name="mul"),
             helper.make_node("Add", ["m", "t"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["y"], name="pool")]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 1, 1])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    import onnxruntime as ort

    values = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    inner = dict(zip(["c", "m", "a", "r"], ort.InferenceSession(_with_outputs(
        model, ["c", "m", "a", "r"]).SerializeToString()).run(["c", "m", "a", "r"], {"x": x})))
    amax = {"x": float(np.abs(x).max()), **{k: float(np.abs(v).max()) for k, v in inner.items()},
            "y": float(np.abs(values).max())}
    path = tmp_path / "int8.engine"
    build_onnxruntime_engine(model.SerializeToString(), path, precision="int8",
                             cache=CalibrationCache.from_ranges(amax))
    built = onnx.load(path)
    plain = [n.op_type for n in built.graph.node if n.op_type not in ("QuantizeLinear",
                                                                        "DequantizeLinear")]
    # No Mul / Add left; the quantizer then drops the Relu too (its [0, amax] range clips alike).
    assert plain == ["Conv", "GlobalAveragePool"], plain
    conv = next(n for n in built.graph.node if n.op_type == "Conv")
    quantized_output = next(n for n in built.graph.node
                            if n.op_type == "QuantizeLinear" and n.input[0] == conv.output[0])
    assert conv.output[0] == "r"  # the batch-normed, rectified tensor, with its cache range
    scale = _initializer(built, quantized_output.input[1])
    assert float(scale) == pytest.approx(amax["r"] / 255, rel=1e-5)
    got = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert np.abs(got - values).max() < 0.02 * amax["r"]


def _with_outputs(model, names):
    from onnx import TensorProto, helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    return copy


@pytest.mark.parametrize("spin, expected", [(False, "0"), (True, "1")])
def test_engine_sessions_do_not_spin_unless_asked(tmp_path, spin, expected):
    from tlt.engines.onnxruntime_engine import OnnxRuntimeEngine
    from tlt.engines.sidecar import read_sidecar

    engine_path, _ = _build(tmp_path)
    engine = OnnxRuntimeEngine(str(engine_path), read_sidecar(engine_path), threads=1, spin=spin)
    options = engine._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected
    assert load_engine(engine_path, threads=1)._session.get_session_options() \
        .get_session_config_entry("session.intra_op.allow_spinning") == "0"


def _residual_detector(head_kernel: int):
    """x -> Conv -> Relu -> Conv -> Add(residual) -> Relu -> (bbox Conv, cov Conv -> Sigmoid)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"w1": (4, 3, 3, 3), "w2": (4, 4, 3, 3), "wb": (4, 4, head_kernel, head_kernel),
               "wc": (1, 4, 1, 1)}
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in weights.items()]
    pads = [head_kernel // 2] * 4
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["s"], name="residual"),
             helper.make_node("Relu", ["s"], ["h"], name="relu2"),
             helper.make_node("Conv", ["h", "wb"], ["bbox"], name="bbox_head", pads=pads),
             helper.make_node("Conv", ["h", "wc"], ["logits"], name="cov_head"),
             helper.make_node("Sigmoid", ["logits"], ["cov"], name="sigmoid")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("cov", "bbox")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 8, 8])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_int8_keeps_the_last_residual_sum_and_a_cheap_head_in_float():
    """The last residual Add, the convolutions it sums, its Relu and the coverage logits were the
    largest sources of the detector's int8 output error (`float_tail_nodes`); 1x1 heads after
    them cost nothing, and each policy keeps less."""

    head = ["residual", "relu2", "bbox_head", "cov_head", "sigmoid"]
    # The Add sums conv2 and relu1's output (an identity shortcut): only the convolution is added.
    # auto: a detector's heads predict per cell, nothing averages the sum's 8-bit steps away.
    assert float_tail_nodes(_residual_detector(1)) == ["conv2"] + head
    assert float_tail_nodes(_residual_detector(1), "auto") == ["conv2"] + head
    assert float_tail_nodes(_residual_detector(1), "residual") == ["conv2"] + head
    assert float_tail_nodes(_residual_detector(1), "head") == head
    assert float_tail_nodes(_residual_detector(1), "outputs") == ["bbox_head", "sigmoid"]
    # A 3x3 convolution after the last residual Add is real work: only the output nodes stay fp32.
    assert float_tail_nodes(_residual_detector(3)) == ["bbox_head", "sigmoid"]
    with pytest.raises(DataError, match="int8 fp32 tail 'all': expected one of auto, outputs, "
                                        "head, residual"):
        float_tail_nodes(_residual_detector(1), "all")


def test_int8_auto_tail_of_a_classifier_leaves_the_sums_inputs_int8():
    """A head that pools first averages the 8-bit steps of the residual sum's inputs away, so
    ``auto`` keeps only the sum and the head fp32 there (the convolutions feeding it are costly)."""
    from onnx import helper

    model = _residual_detector(1)
    pool = helper.make_node("GlobalAveragePool", ["h"], ["pooled"], name="pool")
    model.graph.node.insert(5, pool)  # after relu2: h -> pool, the heads read the pooled tensor
    for node in model.graph.node[6:8]:
        node.input[0] = "pooled"
    assert float_tail_nodes(model) == ["residual", "relu2", "pool", "bbox_head", "cov_head",
                                       "sigmoid"]
    assert float_tail_nodes(model, "residual")[0] == "conv2"
    # Averaging inside the backbone (before the last sum) does not make a detector a classifier.
    detector = _residual_detector(1)
    detector.graph.node.insert(2, helper.make_node("AveragePool", ["r1"], ["r1p"], name="avg",
                                                   kernel_shape=[1, 1]))
    detector.graph.node[3].input[0] = "r1p"  # conv2 reads the pooled tensor
    assert float_tail_nodes(detector)[0] == "conv2"


# The tensors quantized (given to a QuantizeLinear) under each policy. With "outputs" the Relu
# after the residual Add is fused into it, so the sum `s` itself is not quantized, `h` is.
@pytest.mark.parametrize("policy, quantized_tensors", [
    ("residual", {"x", "r1"}), ("head", {"x", "r1", "c2"}),
    ("outputs", {"x", "r1", "c2", "h", "logits"})])
def test_int8_engine_leaves_the_tail_inputs_unquantized(tmp_path, policy, quantized_tensors):
    from tlt.engines.calibration_cache import CalibrationCache
    from tlt.engines.onnxruntime_engine import build_onnxruntime_engine

    model = _residual_detector(1)
    amax = {"x": 1.0, "c1": 4.0, "r1": 4.0, "c2": 6.0, "s": 8.0, "h": 8.0, "bbox": 9.0,
            "logits": 5.0, "cov": 1.0}
    path = tmp_path / "int8.engine"
    kept = build_onnxruntime_engine(model.SerializeToString(), path, precision="int8",
                                    cache=CalibrationCache.from_ranges(amax), float_tail=policy)
    assert kept == float_tail_nodes(model, policy)
    built = onnx.load(path)
    quantized = {n.input[0] for n in built.graph.node if n.op_type == "QuantizeLinear"}
    assert quantized & {"x", "r1", "c2", "s", "h", "logits"} == quantized_tensors