"""Entropy (TensorRT EntropyCalibration2) vs abs-max calibration on activations with outliers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tlt.engines.calibration_cache import CalibrationCache, format_cache, parse_cache
from tlt.errors import DataError
from tlt.export.calibration import activation_ranges
from tlt.export.entropy import NUM_BINS, AbsHistogram, entropy_amax


def _with_outliers(seed: int, size: int = 20000) -> np.ndarray:
    """Mostly N(0, 1) with a handful of +-1000 outliers, like a detector's block outputs."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, size).astype(np.float32)
    values[:4] = np.array([1000.0, -1000.0, 950.0, -600.0], dtype=np.float32)
    return values


def test_entropy_clips_outliers_and_abs_max_keeps_them():
    hist = AbsHistogram()
    for seed in range(3):
        hist.add(_with_outliers(seed))
    assert hist.amax == pytest.approx(1000.0)
    assert int(hist.counts.sum()) == 3 * 20000
    amax = entropy_amax(hist)
    # The smallest threshold TensorRT tries is bin 128 of 2048: amax / 16.
    # Clipped to a small fraction of the abs-max; TensorRT's smallest candidate is bin 128 of
    # 2048 (amax / 16), so entropy calibration never goes below it.
    assert hist.edges()[128] <= amax < 0.1 * hist.amax


def test_entropy_keeps_the_range_of_outlier_free_data():
    hist = AbsHistogram()
    hist.add(np.random.default_rng(0).uniform(-2.0, 2.0, 50000))
    assert entropy_amax(hist) == pytest.approx(hist.amax, rel=0.01)
    gauss = AbsHistogram()
    gauss.add(np.random.default_rng(1).normal(0.0, 1.0, 50000))
    # A Gaussian's far tail is clipped a little, not to a fraction of its range.
    assert 0.7 * gauss.amax < entropy_amax(gauss) < gauss.amax


def test_histogram_grows_by_merging_bins_and_counts_everything():
    hist = AbsHistogram()
    hist.add(np.array([0.5, -1.0]))
    width = hist.width
    hist.add(np.array([3.5]))  # beyond the range: the width doubles twice (4 x the old range)
    assert hist.width == pytest.approx(4 * width)
    assert len(hist.counts) == NUM_BINS and int(hist.counts.sum()) == 3
    # 0.5 and 1.0 sat in bins 1024 and 2047 (the last bin is closed), merged twice; 3.5 is new.
    assert np.flatnonzero(hist.counts).tolist() == [256, 511, 1792]
    assert hist.amax == 3.5


def test_all_zero_tensor_has_zero_range():
    hist = AbsHistogram()
    hist.add(np.zeros(10))
    assert entropy_amax(hist) == 0.0


def _outlier_graph() -> bytes:
    """``y = Relu(x)``, ``z = x * 1``: a signed and a non-negative activation of the input."""
    x = helper.make_tensor_value_info("input_1", TensorProto.FLOAT, [None, 1, 100, 200])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1, 100, 200])
               for n in ("y", "z")]
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [helper.make_node("Relu", ["input_1"], ["y"], name="relu"),
             helper.make_node("Mul", ["input_1", "one"], ["z"], name="mul")]
    graph = helper.make_graph(nodes, "g", [x], outputs, initializer=[one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _batches():
    return [_with_outliers(seed).reshape(1, 1, 100, 200) for seed in range(2)]


def test_activation_ranges_entropy_clips_and_minmax_does_not():
    onnx_bytes = _outlier_graph()
    minmax = activation_ranges(onnx_bytes, _batches(), "input_1", algorithm="minmax")
    entropy = activation_ranges(onnx_bytes, _batches(), "input_1", algorithm="entropy")
    assert list(minmax) == list(entropy) == ["input_1", "y", "z"]
    assert minmax == pytest.approx({"input_1": 1000.0, "y": 1000.0, "z": 1000.0})
    assert all(entropy[name] < 0.1 * 1000.0 for name in entropy)
    assert entropy["y"] > 0 and entropy["input_1"] == pytest.approx(entropy["z"])


def test_entropy_ranges_round_trip_through_the_cache():
    entropy = activation_ranges(_outlier_graph(), _batches(), "input_1", algorithm="entropy")
    text = format_cache(CalibrationCache.from_ranges(entropy))
    assert text.splitlines()[0] == "TRT-8601-EntropyCalibration2"
    back = parse_cache(text, "cal.bin")
    assert back.amax() == pytest.approx(entropy, rel=1e-6)


def test_unknown_algorithm_is_one_line():
    with pytest.raises(DataError, match=r"calibration algorithm 'percentile': expected one of "
                                        r"entropy, minmax"):
        activation_ranges(_outlier_graph(), _batches(), "input_1", algorithm="percentile")
