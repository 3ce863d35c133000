"""The retrain stage's spec: the pruned model becomes the pretrained model, epochs override."""

import pytest

from tlt import spec as tlt_spec
from tlt.errors import SpecError
from tlt.orchestration.pipelines import DEFAULT_CLASSIFICATION_SPEC, DEFAULT_DETECTION_SPEC
from tlt.stages.retrain import retrain_spec


def test_classification_spec_points_at_the_pruned_model():
    spec = tlt_spec.loads(DEFAULT_CLASSIFICATION_SPEC, "classification")
    retrain_spec(spec, "/runs/prune/pruned_model/model.tlt", task="classification", epochs=2)
    assert spec.train_config.pretrained_model_path == "/runs/prune/pruned_model/model.tlt"
    assert spec.train_config.n_epochs == 2


def test_detection_spec_points_at_the_pruned_model_and_zero_keeps_the_epochs():
    spec = tlt_spec.loads(DEFAULT_DETECTION_SPEC, "detection")
    epochs = spec.training_config.num_epochs
    retrain_spec(spec, "s3://bucket/pruned/model.tlt", task="detection", epochs=0)
    assert spec.model_config.pretrained_model_file == "s3://bucket/pruned/model.tlt"
    assert spec.training_config.num_epochs == epochs > 0


def test_bad_epochs_and_task_are_one_line():
    spec = tlt_spec.loads(DEFAULT_CLASSIFICATION_SPEC, "classification")
    with pytest.raises(SpecError, match="retrain epochs must be >= 0"):
        retrain_spec(spec, "m.tlt", task="classification", epochs=-1)
    with pytest.raises(SpecError, match="unknown task 'segmentation'"):
        retrain_spec(spec, "m.tlt", task="segmentation")
