"""The classification pipeline run locally from its compiled YAML definition: train -> evaluate ->
prune -> retrain -> evaluate (before vs after pruning) -> export -> fp32 and int8 engines ->
evaluate the engine (Keras vs fp32 engine vs int8 engine)."""

import json

import pytest

from tlt.orchestration.local_run import run_local
from tlt.orchestration.pipelines import DEFAULT_CLASSIFICATION_SPEC

TEST_IMAGES = 24  # 8 per class


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from tlt.data.synthetic import make_classification_dataset

    root = tmp_path_factory.mktemp("cls") / "data"
    make_classification_dataset(root, images_per_class=(16, 8, 8), size=32, seed=11)
    return root


def test_default_spec_is_a_valid_classification_spec():
    from tlt import spec

    msg = spec.loads(DEFAULT_CLASSIFICATION_SPEC, "classification")
    assert msg.model_config.input_image_size == "3,32,32"
    assert msg.train_config.n_epochs == 3


@pytest.mark.slow
@pytest.mark.timeout(1800)  # twelve tasks, most of them a TensorFlow process
def test_compiled_classification_pipeline_trains_prunes_and_deploys(images, tmp_path):
    spec = DEFAULT_CLASSIFICATION_SPEC.replace("n_epochs: 3", "n_epochs: 2")
    result = run_local("classification", [f"train_dataset={images / 'train'}",
                                          f"val_dataset={images / 'val'}",
                                          f"eval_dataset={images / 'test'}", f"spec={spec}",
                                          "retrain_epochs=1", "calibration_batches=2"],
                       pipeline_root=tmp_path / "runs", compiled=True)
    assert [s.name for s in result.steps[:8]] == ["train", "evaluate", "prune", "retrain", "evaluate-2",
                                                  "pick-pruned", "quality-gate", "export"]
    assert sorted(s.name for s in result.steps[8:10]) == ["build-engine", "build-engine-2"]
    assert [s.name for s in result.steps[10:]] == ["evaluate-3", "run-summary"]
    assert all(s.status == "succeeded" for s in result.steps)
    assert sorted(result.outputs) == ["confusion", "engine", "engine_metrics", "engine_report", "export",
                                      "metrics", "model", "pruned_model", "pruning_report",
                                      "quality_report", "report", "retrained_metrics", "retrained_model", "run_summary",
                                      "sweep_report"]
    _check_first_evaluation(result)
    _check_pruning(result)
    _check_engine(result)


def _check_first_evaluation(result):
    report = result.outputs["report"].path.read_text()
    assert report.startswith("<!DOCTYPE html>") and "Confusion matrix" in report
    model = result.outputs["model"].metadata
    assert model["task"] == "classification" and model["epochs"] == 2
    assert model["classes"] == ["circle", "square", "triangle"]
    metrics = result.outputs["metrics"].metadata
    assert metrics["num_images"] == TEST_IMAGES
    evaluation = json.loads((result.outputs["metrics"].path / "evaluation.json").read_text())
    assert metrics["accuracy"] == pytest.approx(evaluation["accuracy"])
    confusion = result.outputs["confusion"].metadata["confusionMatrix"]
    assert [a["displayName"] for a in confusion["annotationSpecs"]] == model["classes"]
    rows = [r["row"] for r in confusion["rows"]]
    assert sum(map(sum, rows)) == TEST_IMAGES
    assert sum(rows[i][i] for i in range(3)) / TEST_IMAGES == pytest.approx(metrics["accuracy"])


def _check_pruning(result):
    pruned = result.outputs["pruned_model"].metadata
    assert pruned["params_after"] < pruned["params_before"]
    assert pruned["settings"]["normalizer"] == "L2" and pruned["settings"]["pruning_threshold"] == 0.05
    retrained = result.outputs["retrained_model"].metadata
    # The kept model is pick_pruned's copy of the one retrained model, with its pruning record.
    assert retrained["stage"] == "pick_pruned" and retrained["pruning_threshold"] == 0.05
    assert retrained["params_after"] == pruned["params_after"]
    page = result.outputs["pruning_report"].path.read_text()
    assert "Before and after pruning" in page
    assert page.index("<td>unpruned</td>") < page.index("<td>pruned + retrained</td>")
    assert f"<td>{pruned['params_before']:,}</td>" in page and f"<td>{pruned['params_after']:,}</td>" in page


def _check_engine(result):
    card = result.outputs["engine"].metadata
    assert card["format"] == "engine" and card["precision"] == "int8"
    assert card["input_dims"] == [3, 32, 32] and card["output_names"] == ["predictions/Softmax"]
    assert card["size_bytes"] == (result.outputs["engine"].path / "model.engine").stat().st_size
    metrics = result.outputs["engine_metrics"].metadata
    keras = metrics["keras_tlt_accuracy"]
    assert card["accuracy"] == pytest.approx(metrics["int8_onnxruntime_engine_accuracy"])
    assert metrics["fp32_onnxruntime_engine_accuracy"] == pytest.approx(keras, abs=0.1)
    # int8 (calibrated on 16 images) may flip up to two of the tiny model's test images.
    assert abs(card["accuracy"] - keras) <= 2 * 100 / TEST_IMAGES + 1e-6
    page = result.outputs["engine_report"].path.read_text()
    assert "Keras model and deployed engines" in page
    assert page.index("Keras (.tlt)") < page.index("fp32 onnxruntime engine") < page.index(
        "int8 onnxruntime engine")
    export = result.outputs["export"].metadata
    assert export["calibration_cache"] == "cal.bin" and export["precision"] == "int8"
