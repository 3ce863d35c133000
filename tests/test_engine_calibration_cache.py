"""TensorRT's calibration-cache text format: writer, reader and its error messages."""

from __future__ import annotations

import struct

import pytest

from tlt.engines.calibration_cache import (CalibrationCache, check_cache_matches, format_cache,
                                           parse_cache, read_cache, with_trt_version, write_cache)
from tlt.engines.tensorrt_engine import trt_version_tag
from tlt.errors import DataError


def test_format_is_trt_header_then_big_endian_float_bits(tmp_path):
    cache = CalibrationCache.from_ranges({"input_1": 1.0, "conv1/Relu:0": 12.7})
    text = format_cache(cache)
    lines = text.splitlines()
    assert lines[0] == "TRT-8601-EntropyCalibration2"
    # scale = amax / 127; 1/127 is 0x3c010204 as IEEE-754 float32.
    assert lines[1] == "input_1: 3c010204"
    assert lines[2] == f"conv1/Relu:0: {struct.pack('>f', 0.1).hex()}" == "conv1/Relu:0: 3dcccccd"
    assert text.endswith("\n")
    write_cache(tmp_path / "cal.bin", cache)
    back = read_cache(tmp_path / "cal.bin")
    assert back.trt_version == "8601" and back.algorithm == "EntropyCalibration2"
    assert back.amax() == pytest.approx({"input_1": 1.0, "conv1/Relu:0": 12.7}, rel=1e-6)


def test_reads_caches_written_by_tensorrt_tools():
    # Tools that write hex(...) drop leading zeros; TensorRT accepts both forms.
    cache = parse_cache("TRT-100300-EntropyCalibration2\ndata: 3c008912\nout: 0\nx: 3dcccccd\n")
    assert cache.trt_version == "100300"
    assert cache.scales["data"] == struct.unpack(">f", bytes.fromhex("3c008912"))[0]
    assert cache.scales["out"] == 0.0
    assert cache.scales["x"] == pytest.approx(0.1)


def test_header_is_rewritten_for_the_installed_tensorrt():
    cache = CalibrationCache.from_ranges({"input_1": 1.0})
    assert with_trt_version(cache, "100300").decode().splitlines() == [
        "TRT-100300-EntropyCalibration2", "input_1: 3c010204"]
    assert trt_version_tag("8.6.1") == "8601"
    assert trt_version_tag("10.3.0.26") == "100300"


@pytest.mark.parametrize("text, message", [
    ("", r"not a TensorRT calibration cache \(first line should be TRT-<version>-"
         r"EntropyCalibration2, got 'nothing'\)"),
    ("\x89PNG junk\n", r"not a TensorRT calibration cache"),
    ("TRT-8601-EntropyCalibration2\ninput_1: 3c010204\nconv: 1.5\n",
     r"cal\.bin:3: expected '<tensor name>: <8 hex digits>', got 'conv: 1\.5'"),
    ("TRT-8601-EntropyCalibration2\n", r"holds no tensor scales"),
])
def test_malformed_caches_say_what_is_wrong(text, message):
    with pytest.raises(DataError, match=message):
        parse_cache(text, "cal.bin")


def test_missing_cache_file_is_one_line(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.bin: no such calibration cache file"):
        read_cache(tmp_path / "nothere.bin")


def test_negative_or_nan_range_is_refused():
    with pytest.raises(DataError, match=r"calibration range of tensor 'x' is nan"):
        CalibrationCache.from_ranges({"x": float("nan")})


def test_cache_of_another_model_is_named():
    cache = CalibrationCache.from_ranges({"input_1": 1.0, "other/conv:0": 2.0, "other/relu:0": 2.0})
    with pytest.raises(DataError, match=r"cal\.bin: the calibration cache names tensors this model "
                                        r"does not have \('other/conv:0', 'other/relu:0'\): it was "
                                        r"made for another export"):
        check_cache_matches(cache, {"input_1", "mine:0"}, "cal.bin")
