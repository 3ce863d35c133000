"""tlt-evaluate / tlt-infer detection on exports and engines of a trained DetectNet_v2.

The export's and the fp32 engine's AP equal the Keras model's within 0.1 pt in every column, the
int8 engine's outputs stay close to fp32's, and the engine's boxes are the Keras model's boxes.
(int8's AP within 0.5 pt is asserted on a well-trained detector in test_demo_quality.py.) The tiny detector is scored on training + validation
frames with loose overlaps (`deployed_fixtures.trained_detector`), where its AP is not zero.
"""

from __future__ import annotations

import numpy as np
import pytest

from deployed_fixtures import detector_artifacts
from det_fixtures import read_json, run_main
from tlt.cli.evaluate import main as evaluate_main
from tlt.cli.infer import main as infer_main

pytestmark = pytest.mark.slow  # trains a detector 20 epochs (minutes on a busy CPU)


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return detector_artifacts(tmp_path_factory.getbasetemp() / "detection_shared")


def _evaluate(art, model, tmp_path) -> dict:
    out = tmp_path / f"{model.name}.json"
    code, stdout, stderr = run_main(evaluate_main, "detection", "-e", art["eval_spec"], "-m",
                                    model, "--use_training_set", "--results_json", out)
    assert code == 0, stderr[-3000:]
    return read_json(out)


def _columns(report: dict) -> dict:
    return {k: (v if v is not None else -1.0) for k, v in report["columns"].items()}


@pytest.fixture(scope="module")
def keras_report(art, tmp_path_factory) -> dict:
    report = _evaluate(art, art["model"], tmp_path_factory.mktemp("keras_eval"))
    assert "runtime" not in report and report["validation_cost"] is not None
    assert report["num_frames"] == 24 and report["mean_ap"][report["buckets"][0]] > 0, report
    return report


# Why int8 misses 0.5 pt here (measured 2026-11-28 on this fixture): the undertrained detector's coverage
# logits span +-787 (median |logit| 16) from head inputs up to 157, while its AP is decided by
# cells with coverage 0.001-0.35, i.e. logits -7..-0.6: a band under 1 % of the range, which
# 8-bit steps cannot resolve; and a bucket moves by whole objects: "easy" has 5 cars among 32
# detections (one car = 20 pt of recall), "combined" 37 cars among 133 detections. The metric
# itself is steady (1-LSB input noise on the fp32 engine moves it by at most 0.25 pt); the int8
# engine's AP moves both ways with each builder change: car AP combined/easy/moderate/hard with
# only the output nodes fp32 56.1/54.1/65.6/56.4, with the last residual sum and heads fp32
# 53.8/52.7/64.0/53.5, with the convolutions feeding that sum fp32 too (the builder's default,
# `float_tail_nodes`) 62.7/80.5/81.8/64.1, against Keras 60.2/73.7/80.1/62.0.
# Issue 9's 0.5 pt is asserted on a trained detector instead: tests/test_demo_quality.py scores the
# demo's pruned and retrained detector, its fp32 engine and its int8 engine on 480 unseen frames
# (measured: every column within 0.22 pt; 0.83 with the sum's input convolutions int8).
_INT8_GAP = (
    "ONNX Runtime int8 of this undertrained detector (Keras car AP combined/easy/moderate/hard "
    "60.2/73.7/80.1/62.0, 24 frames; coverage logits +-787): the default engine gives "
    "62.7/80.5/81.8/64.1 (+2.5/+6.8/+1.7/+2.1 pt), and each builder variant moves it by whole "
    "objects in either direction (only outputs fp32: 56.1/54.1/65.6/56.4). 0.5 pt is asserted on "
    "the demo's trained detector over 480 frames (test_demo_quality.py) instead")


@pytest.mark.parametrize("name, tolerance", [
    ("fp32_export", 0.1), ("fp32_engine", 0.1),
    pytest.param("int8_engine", 0.5, marks=pytest.mark.xfail(strict=True, reason=_INT8_GAP))])
def test_deployed_ap_equals_the_keras_model(art, keras_report, tmp_path, name, tolerance):
    report = _evaluate(art, art[name], tmp_path)
    assert report["num_frames"] == keras_report["num_frames"]
    assert report["validation_cost"] is None
    assert report["runtime"] == f"{name[:4]} onnx{'runtime engine' if 'engine' in name else ' export'}"
    got, want = _columns(report), _columns(keras_report)
    assert got.keys() == want.keys()
    for column, value in want.items():
        assert abs(got[column] - value) <= tolerance, (name, column, got[column], value)


def test_int8_engine_outputs_stay_close_to_fp32(art):
    """The int8 engine's raw outputs on the 24 frames, against the fp32 engine's. Before batch
    norm folding and 7-bit weights: mean coverage-logit error 0.74, largest box error 16.7 (u8 x s8
    int16 saturation on AVX2); after: 0.30 and 1.9; with the last residual Add and the heads in
    fp32 too: 0.26 and 1.8 (mean box error 0.21)."""
    from tlt.engines import load_engine
    from tlt.export.calibration import calibration_batches, list_calibration_images

    images = list_calibration_images(art["data"]["root"] / "images", 24)
    batch = np.concatenate(list(calibration_batches(images, (3, 64, 128), 8)))
    ref = load_engine(art["fp32_engine"], threads=1).run(batch)
    got = load_engine(art["int8_engine"], threads=1).run(batch)
    cov, cov8 = ref["output_cov/Sigmoid"], got["output_cov/Sigmoid"]
    assert (cov > 0.001).sum() > 100, "the detector covers too few cells to compare"
    logit = lambda p: np.log(np.clip(p, 1e-7, 1 - 1e-7) / (1 - np.clip(p, 1e-7, 1 - 1e-7)))
    near = cov > 0.0005  # the cells the coverage threshold (0.001) decides on
    assert np.abs(logit(cov8) - logit(cov))[near].mean() < 0.45
    bbox_error = np.abs(got["output_bbox/BiasAdd"] - ref["output_bbox/BiasAdd"])
    assert bbox_error.max() < 4.0 and bbox_error.mean() < 0.35


def _labels(folder) -> dict[str, list[list[float]]]:
    out = {}
    for path in sorted(folder.iterdir()):
        rows = [line.split() for line in path.read_text().splitlines()]
        out[path.name] = sorted([row[0]] + [float(v) for v in row[4:8]] + [float(row[15])]
                                for row in rows)
    return out


def test_infer_with_the_fp32_engine_finds_the_keras_boxes(art, tmp_path):
    images = art["data"]["root"] / "images"
    found = {}
    for name in ("model", "fp32_engine"):
        code, stdout, stderr = run_main(infer_main, "detection", "-m", art[name], "-i", images,
                                        "-o", tmp_path / name, "-k", "-bs", "4")
        assert code == 0, stderr[-3000:]
        found[name] = _labels(tmp_path / name / "labels")
    assert found["model"].keys() == found["fp32_engine"].keys() and found["model"]
    assert sum(len(v) for v in found["model"].values()) > 0, "the trained model finds nothing"
    for image, boxes in found["model"].items():
        engine_boxes = found["fp32_engine"][image]
        assert [b[0] for b in engine_boxes] == [b[0] for b in boxes], image
        for a, b in zip(engine_boxes, boxes):
            assert a[1:] == pytest.approx(b[1:], abs=0.02), image
