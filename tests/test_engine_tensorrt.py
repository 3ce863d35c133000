"""TensorRT backend: the parts testable on a CPU (profile, version tag, missing-TensorRT message);
the build itself needs a GPU."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from export_fixtures import CLS_DIMS, KEY, classifier_tlt, exported, random_batch
from tlt.engines import BackendUnavailable, BuildOptions, build_engine, load_engine
from tlt.engines.tensorrt_engine import profile_shapes
from tlt.errors import DataError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_profile_spans_batch_one_to_max_with_the_calibration_batch_as_optimum():
    assert profile_shapes((3, 32, 32), 16, 8) == ((1, 3, 32, 32), (8, 3, 32, 32), (16, 3, 32, 32))
    assert profile_shapes((3, 32, 32), 4, 8)[1] == (4, 3, 32, 32)  # optimum capped at the max
    with pytest.raises(DataError, match=r"batch sizes must be >= 1, got -b 8 -m 0"):
        profile_shapes((3, 32, 32), 0, 8)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_tensorrt_backend_without_tensorrt_is_one_line(tmp_path):
    export = exported("cls-int8")
    with pytest.raises(BackendUnavailable, match=r"^TensorRT is not installed in this environment "
                                                 r".*--backend onnxruntime$"):
        build_engine(str(export["output"]), KEY, BuildOptions(
            input_dims=CLS_DIMS, engine_path=str(tmp_path / "trt.engine"), backend="tensorrt"))
    assert not (tmp_path / "trt.engine").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_matches_keras(tmp_path, precision):
    if not HAS_TRT:
        pytest.skip("TensorRT is not installed")
    export = exported("cls-int8")
    engine = tmp_path / f"{precision}.plan"
    info = build_engine(str(export["output"]), KEY, BuildOptions(
        input_dims=CLS_DIMS, engine_path=str(engine), precision=precision,
        cache_file=str(export["dir"] / "cal.bin"), max_batch_size=4, backend="tensorrt"))
    assert info.backend == "tensorrt" and info.precision == precision
    _, model = classifier_tlt()
    batch = random_batch(6, CLS_DIMS)
    out = load_engine(engine).run(batch)["predictions/Softmax"]
    tolerance = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}[precision]
    assert np.abs(out - model.predict(batch, verbose=0)).max() < tolerance
