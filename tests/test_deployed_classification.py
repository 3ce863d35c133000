"""tlt-evaluate / tlt-infer classification on exports and engines: same numbers as Keras, no TF.

The classifier is trained here, exported (.etlt fp32, .etlt int8 with a calibration cache) and
built into ONNX Runtime fp32 / int8 engines (`deployed_fixtures`).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cls_fixtures import read_json
from deployed_fixtures import KEY, classifier_artifacts
from det_fixtures import run_main
from tlt.cli.evaluate import main as evaluate_main
from tlt.cli.infer import main as infer_main

pytestmark = pytest.mark.slow  # trains a classifier (shared by the module's tests)


@pytest.fixture(scope="module")
def art():
    return classifier_artifacts()


def _evaluate(art, model, tmp_path, *extra) -> dict:
    out = tmp_path / f"{model.name}.json"
    code, stdout, stderr = run_main(evaluate_main, "classification", "-d", art["data"] / "test",
                                    "-pm", model, "-k", KEY, "-b", "4", "--results_json", out,
                                    *extra)
    assert code == 0, stderr
    metrics = read_json(out)
    assert f"Accuracy: {metrics['accuracy']:.4f}" in stdout
    return {"metrics": metrics, "stdout": stdout}


def test_exports_and_engines_score_as_the_keras_model(art, tmp_path):
    keras = _evaluate(art, art["model"], tmp_path)["metrics"]
    assert keras["accuracy"] > 0.5 and "runtime" not in keras
    for name, tolerance in (("fp32_export", 0.001), ("fp32_engine", 0.001),
                            ("int8_export", 0.005), ("int8_engine", 0.005)):
        result = _evaluate(art, art[name], tmp_path)
        metrics = result["metrics"]
        kind = "engine" if name.endswith("engine") else "export"
        precision = name.split("_")[0]
        # An export runs as the fp32 graph it is, whatever engine precision it was made for.
        runtime = f"{precision} onnxruntime engine" if kind == "engine" else "fp32 onnx export"
        assert metrics["runtime"] == runtime
        assert f"Model: {art[name]} ({runtime}, no TensorFlow)" in result["stdout"]
        assert abs(metrics["accuracy"] - keras["accuracy"]) <= tolerance, (name, metrics, keras)
        assert abs(metrics["top_k_accuracy"] - keras["top_k_accuracy"]) <= tolerance
        if precision == "fp32":
            assert metrics["confusion_matrix"] == keras["confusion_matrix"]


def test_engine_probabilities_equal_keras_on_the_same_pixels(art):
    """The numpy input pipeline feeds the engine what tf.data feeds Keras: fp32 equal to 1e-4."""
    from tlt.data.classification import scan_image_folder
    from tlt.evaluation.classification import load_classifier, predict_split
    from tlt.evaluation.deployed_classification import load_deployed_classifier, predict_files

    split = scan_image_folder(art["data"] / "test", class_names=["circle", "square", "triangle"])
    model, meta = load_classifier(str(art["model"]), KEY)
    expected = predict_split(model, split, meta["input_dims"], 4)
    engine = load_deployed_classifier(str(art["fp32_engine"]))
    got = predict_files(engine, split.files, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    int8 = predict_files(load_deployed_classifier(str(art["int8_engine"])), split.files, 5)
    assert np.abs(int8 - expected).max() < 0.1


def test_infer_with_an_engine_writes_the_keras_predictions(art, tmp_path):
    folders = {}
    for name in ("model", "fp32_engine", "int8_export"):
        images = shutil.copytree(art["data"] / "test", tmp_path / name)
        code, stdout, stderr = run_main(infer_main, "classification", "-m", art[name], "-d",
                                        images, "-k", KEY, "-b", "4")
        assert code == 0, stderr
        rows = (images / "result.csv").read_text().splitlines()
        folders[name] = [(r.split(",")[0], r.split(",")[1].replace(str(images), ""))
                         for r in rows]
    assert len(folders["model"]) == 15
    assert folders["fp32_engine"] == folders["model"]
    assert folders["int8_export"] == folders["model"]


def test_framework_flag_overrides_the_name(art, tmp_path):
    """An engine under any name runs with --framework engine; a .tlt asked to run as onnx fails."""
    renamed = tmp_path / "model.bin"
    shutil.copy(art["fp32_engine"], renamed)
    shutil.copy(str(art["fp32_engine"]) + ".json", str(renamed) + ".json")
    metrics = _evaluate(art, renamed, tmp_path, "--framework", "engine")["metrics"]
    assert metrics["runtime"] == "fp32 onnxruntime engine"
    code, _, stderr = run_main(evaluate_main, "classification", "-d", art["data"] / "test",
                               "-pm", art["model"], "-k", KEY, "--framework", "onnx")
    assert code == 1
    assert stderr.strip() == (f"tlt-evaluate: error: {art['model']}: holds a 'keras' payload, "
                              "not an exported ONNX model (export the .tlt with tlt-export first)")
