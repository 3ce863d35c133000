"""The classification pipeline (train -> evaluate) run locally from its compiled YAML definition."""

import json

import pytest

from tlt.orchestration.local_run import run_local
from tlt.orchestration.pipelines import DEFAULT_CLASSIFICATION_SPEC


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from tlt.data.synthetic import make_classification_dataset

    root = tmp_path_factory.mktemp("cls") / "data"
    make_classification_dataset(root, images_per_class=(8, 4, 4), size=32, seed=11)
    return root


def test_default_spec_is_a_valid_classification_spec():
    from tlt import spec

    msg = spec.loads(DEFAULT_CLASSIFICATION_SPEC, "classification")
    assert msg.model_config.input_image_size == "3,32,32"
    assert msg.train_config.n_epochs == 3


def test_compiled_classification_pipeline_trains_and_reports_metrics(images, tmp_path):
    spec = DEFAULT_CLASSIFICATION_SPEC.replace("n_epochs: 3", "n_epochs: 1")
    result = run_local("classification", [f"train_dataset={images / 'train'}",
                                          f"val_dataset={images / 'val'}",
                                          f"eval_dataset={images / 'test'}", f"spec={spec}"],
                       pipeline_root=tmp_path / "runs", compiled=True)
    assert sorted(result.outputs) == ["confusion", "metrics", "model", "report"]
    report = result.outputs["report"].path.read_text()
    assert report.startswith("<!DOCTYPE html>") and "Confusion matrix" in report
    model = result.outputs["model"].metadata
    assert model["task"] == "classification" and model["epochs"] == 1
    assert model["classes"] == ["circle", "square", "triangle"]
    metrics = result.outputs["metrics"].metadata
    assert metrics["num_images"] == 12
    evaluation = json.loads((result.outputs["metrics"].path / "evaluation.json").read_text())
    assert metrics["accuracy"] == pytest.approx(evaluation["accuracy"])
    confusion = result.outputs["confusion"].metadata["confusionMatrix"]
    assert [a["displayName"] for a in confusion["annotationSpecs"]] == model["classes"]
    rows = [r["row"] for r in confusion["rows"]]
    assert sum(map(sum, rows)) == 12
    assert sum(rows[i][i] for i in range(3)) / 12 == pytest.approx(metrics["accuracy"])
