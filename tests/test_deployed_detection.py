"""tlt-evaluate / tlt-infer detection on exports and engines of the shared trained DetectNet_v2.

The engine's AP equals the Keras model's within 0.1 pt (fp32) and 0.5 pt (int8) in every column,
and its boxes are the Keras model's boxes.
"""

from __future__ import annotations

import pytest

from deployed_fixtures import detector_artifacts
from det_fixtures import read_json, run_main
from tlt.cli.evaluate import main as evaluate_main
from tlt.cli.infer import main as infer_main

pytestmark = pytest.mark.slow  # needs the shared trained detector (minutes on a busy CPU)


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return detector_artifacts(tmp_path_factory.getbasetemp() / "detection_shared")


def _evaluate(art, model, tmp_path) -> dict:
    out = tmp_path / f"{model.name}.json"
    code, stdout, stderr = run_main(evaluate_main, "detection", "-e", art["spec"], "-m", model,
                                    "--results_json", out)
    assert code == 0, stderr[-3000:]
    return read_json(out)


def _columns(report: dict) -> dict:
    return {k: (v if v is not None else -1.0) for k, v in report["columns"].items()}


def test_engine_ap_equals_the_keras_model(art, tmp_path):
    keras = _evaluate(art, art["model"], tmp_path)
    assert "runtime" not in keras and keras["validation_cost"] is not None
    assert keras["num_frames"] > 0
    for name, tolerance in (("fp32_export", 0.1), ("fp32_engine", 0.1), ("int8_engine", 0.5)):
        report = _evaluate(art, art[name], tmp_path)
        assert report["num_frames"] == keras["num_frames"]
        assert report["validation_cost"] is None
        got, want = _columns(report), _columns(keras)
        assert got.keys() == want.keys()
        for column, value in want.items():
            assert abs(got[column] - value) <= tolerance, (name, column, got[column], value)


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
