"""INT8 calibration at export: training preprocessing, entropy / minmax ranges, the cache, bad
folders."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from export_fixtures import CLS_DIMS, KEY, calibration_images, classifier_tlt, exported
from tlt.data.classification_input import load_image_for_inference
from tlt.engines.calibration_cache import read_cache
from tlt.errors import DataError
from tlt.export import ExportOptions, export_model
from tlt.export.calibration import (activation_ranges, calibration_batches,
                                   list_calibration_images)
from tlt.export.entropy import AbsHistogram, entropy_amax
from tlt.io.exportfile import load_export


def _activation(onnx_bytes: bytes, tensor: str, batch: np.ndarray) -> np.ndarray:
    """The value of an inner tensor, by exposing it as a graph output."""
    import onnxruntime as ort

    model = onnx.load_from_string(onnx_bytes)
    model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run([tensor], {"input_1": batch})[0]


def _entropy_range(values: list[np.ndarray]) -> float:
    """TensorRT's entropy range of a tensor seen in these batches (independent of the export)."""
    hist = AbsHistogram()
    for value in values:
        hist.add(value)
    return entropy_amax(hist)


def test_cache_holds_the_absolute_maxima_of_the_training_preprocessed_images():
    """The export's default: abs-max ranges under an honest MinMaxCalibration header (TensorRT
    replays the cache with its MinMax calibrator); entropy is asked for explicitly."""
    export = exported("cls-int8")
    cache = read_cache(export["dir"] / "cal.bin")
    onnx_bytes = load_export(export["output"], KEY).onnx_bytes
    files = list_calibration_images(calibration_images(), 8)
    # The same 8 images in the export's 2 batches of 4, preprocessed as training's evaluation
    # pipeline does it.
    halves = [np.stack([load_image_for_inference(str(p), CLS_DIMS) for p in files[i:i + 4]])
              for i in (0, 4)]
    amax = cache.amax()
    assert cache.algorithm == "MinMaxCalibration"
    assert list(amax)[0] == "input_1"
    assert amax["input_1"] == pytest.approx(max(np.abs(h).max() for h in halves), rel=1e-5)
    relu = next(name for name in amax if name.endswith("_Relu"))
    relu_values = [_activation(onnx_bytes, relu, half) for half in halves]
    assert amax[relu] == pytest.approx(max(np.abs(v).max() for v in relu_values), rel=1e-5)
    assert amax[relu] > _entropy_range(relu_values)  # entropy would clip; abs-max does not
    softmax = "predictions/Softmax"
    assert 0 < amax[softmax] <= 1.0
    # Every node output of the graph has a range, so TensorRT can run every layer in INT8.
    produced = {o for n in onnx.load_from_string(onnx_bytes).graph.node for o in n.output}
    assert set(amax) == produced | {"input_1"}


def test_minmax_ranges_are_the_absolute_maxima_of_the_training_preprocessed_images():
    onnx_bytes = load_export(exported("cls-int8")["output"], KEY).onnx_bytes
    files = list_calibration_images(calibration_images(), 8)
    batch = np.stack([load_image_for_inference(str(p), CLS_DIMS) for p in files])
    amax = activation_ranges(onnx_bytes, calibration_batches(files, CLS_DIMS, 3), "input_1",
                             algorithm="minmax")
    assert amax["input_1"] == pytest.approx(np.abs(batch).max(), rel=1e-5)
    relu = next(name for name in amax if name.endswith("_Relu"))
    assert amax[relu] == pytest.approx(np.abs(_activation(onnx_bytes, relu, batch)).max(), rel=1e-5)
    produced = {o for n in onnx.load_from_string(onnx_bytes).graph.node for o in n.output}
    assert set(amax) == produced | {"input_1"}


def test_batches_are_nchw_in_the_network_range():
    files = list_calibration_images(calibration_images(), 8)
    batches = list(calibration_batches(files, CLS_DIMS, 3))
    assert [b.shape for b in batches] == [(3, *CLS_DIMS), (3, *CLS_DIMS), (2, *CLS_DIMS)]
    assert all(b.dtype == np.float32 and b.min() >= -1 and b.max() <= 1 for b in batches)


def _export(tmp_path, **options):
    path, _ = classifier_tlt()
    defaults = dict(output=str(tmp_path / "m.etlt"), data_type="int8",
                    cal_cache_file=str(tmp_path / "cal.bin"))
    return export_model(str(path), KEY, ExportOptions(**{**defaults, **options}))


def test_int8_without_images_or_cache_is_one_line(tmp_path):
    with pytest.raises(DataError, match=r"--data_type int8 needs calibration images "
                                        r"\(--cal_data_file IMAGE_DIR\) or an existing calibration "
                                        r"cache \(--cal_cache_file; .*cal\.bin does not exist\)"):
        _export(tmp_path)
    assert not (tmp_path / "m.etlt").exists()


def test_empty_calibration_folder_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(DataError, match=r"empty: no \.jpg/\.jpeg/\.png images in this folder"):
        _export(tmp_path, cal_data_file=str(tmp_path / "empty"))


def test_too_small_calibration_folder_says_how_many_are_needed(tmp_path):
    folder = tmp_path / "few"
    for name in ("a.png", "b.png", "c.jpg"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes((next(calibration_images().rglob("*.png"))).read_bytes()
                                    if name.endswith(".png") else b"not a jpeg")
    with pytest.raises(DataError, match=r"few: 2 readable image\(s\), calibration needs 30 "
                                        r"\(--batches x --cal_batch_size\); add images or lower "
                                        r"them"):
        _export(tmp_path, cal_data_file=str(folder), batches=10, cal_batch_size=3)


def test_existing_cache_is_reused_without_images(tmp_path):
    export = exported("cls-int8")
    (tmp_path / "cal.bin").write_bytes((export["dir"] / "cal.bin").read_bytes())
    result = _export(tmp_path)
    assert result.metadata["precision"] == "int8"
    assert result.metadata["calibration_cache"] == "cal.bin"
    assert (tmp_path / "cal.bin").read_bytes() == (export["dir"] / "cal.bin").read_bytes()
