"""A local run checks the prune, retrain and engine parameters before any task starts."""

import pytest

from tlt.errors import PipelineError
from tlt.orchestration.local_run import run_local


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from tlt.data.synthetic import make_classification_dataset

    root = tmp_path_factory.mktemp("cls") / "data"
    make_classification_dataset(root, images_per_class=(2, 1, 1), size=32, seed=1)
    return root


@pytest.mark.parametrize("param, message", [
    ("pruning_thresholds=[0.1, 1.5]", "--param pruning_thresholds: 1.5 must be in (0, 1]"),
    ("pruning_thresholds=[0]", "--param pruning_thresholds: 0 must be in (0, 1]"),
    ("pruning_thresholds=[]", "--param pruning_thresholds=[]: give at least one threshold"),
    ("sweep_tolerance=-1", "--param sweep_tolerance=-1.0: must be >= 0"),
    ("pruning_normalizer=L1", "--param pruning_normalizer=L1: expected one of max, L2"),
    ("retrain_epochs=-2", "--param retrain_epochs=-2: must be >= 0 (0 keeps the spec's epoch count)"),
    ("engine_precision=int4", "--param engine_precision=int4: expected fp32, fp16 or int8"),
    ("calibration_batches=0", "--param calibration_batches=0: must be >= 1"),
])
def test_bad_deployment_parameters_are_one_line(images, tmp_path, param, message):
    with pytest.raises(PipelineError) as info:
        run_local("classification", [f"train_dataset={images / 'train'}", f"val_dataset={images / 'val'}",
                                     f"eval_dataset={images / 'test'}", param],
                  pipeline_root=tmp_path / "runs")
    assert str(info.value) == message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
