"""The detection pipeline run end to end through kfp.local, and the Argo container command run here."""

import json

import pytest
import tensorflow as tf

from tlt.cli import pipeline as cli
from tlt.errors import PipelineError
from tlt.orchestration.local_run import parse_params, run_local
from tlt.orchestration.pipelines import load_pipeline
from tlt.orchestration.registry import get_stage, output_path


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    from tlt.data.synthetic import make_detection_dataset

    root = tmp_path_factory.mktemp("kitti") / "sample"
    info = make_detection_dataset(root, num_frames=12, width=128, height=64, seed=3)
    return root, info


def _count_records(paths):
    return sum(1 for p in paths for _ in tf.data.TFRecordDataset(str(p)))


def _one_epoch_spec() -> str:
    """The pipeline's default DetectNet_v2 spec cut to one epoch at 128x64 (validation at the end)."""
    from tlt.orchestration.pipelines import DEFAULT_DETECTION_SPEC

    return (DEFAULT_DETECTION_SPEC.replace("num_epochs: 20", "num_epochs: 1")
            .replace("output_image_width: 256", "output_image_width: 128")
            .replace("output_image_height: 144", "output_image_height: 64")
            .replace("validation_period_during_training: 10", "validation_period_during_training: 1")
            .replace("first_validation_epoch: 10", "first_validation_epoch: 1"))


def test_local_run_converts_trains_and_evaluates(kitti, tmp_path, capsys):
    root, _ = kitti
    spec = _one_epoch_spec()
    assert "num_epochs: 1" in spec and "output_image_width: 128" in spec
    result = run_local("detection", [f"dataset_root={root}", f"train_spec={spec}"],
                       pipeline_root=tmp_path / "runs")
    assert result.run_dir.parent == tmp_path / "runs"
    assert result.run_dir.name.startswith("tlt-detection-")
    assert sorted(result.outputs) == ["dataset", "metrics", "model", "report"]
    model = result.outputs["model"]
    assert (model.path / "model.tlt").is_file()
    assert model.metadata["task"] == "detection" and model.metadata["epochs"] == 1
    assert model.metadata["classes"] == ["car", "pedestrian", "cyclist"]
    metrics = result.outputs["metrics"].metadata
    assert {"mAP", "validation_cost", "num_frames"} <= set(metrics)
    assert 0.0 <= metrics["mAP"] <= 100.0
    assert metrics["num_frames"] == result.outputs["dataset"].metadata["frames_per_fold"][0]
    report = result.outputs["report"].path.read_text()
    assert report.startswith("<!DOCTYPE html>") and "data:image/png;base64," in report
    art = result.outputs["dataset"]
    assert (art.name, art.kind) == ("dataset", "Dataset")
    assert art.path == result.run_dir / "convert" / "dataset"
    shards = sorted(art.path.glob("tfrecords-fold-*"))
    assert len(shards) == 4  # 2 folds x num_shards 2 from the default spec
    assert _count_records(shards) == 12
    meta = art.metadata
    assert meta["num_frames"] == 12 and meta["num_shards"] == 4
    assert meta["root_directory_path"] == str(root)
    on_disk = json.loads((art.path / "metadata.json").read_text())
    assert meta["class_counts"] == on_disk["class_counts"]
    assert sorted(meta["class_counts"]) == ["fold-000", "fold-001", "total"]
    totals = meta["class_counts"]["total"]
    assert sum(totals.values()) == sum(meta["class_counts"]["fold-000"].values()) + \
        sum(meta["class_counts"]["fold-001"].values())
    assert meta["frames_per_fold"] == on_disk["frames_per_fold"] and sum(meta["frames_per_fold"]) == 12
    log = result.log_file.read_text()
    assert result.log_file == result.run_dir / "run.log"
    assert "Wrote the following numbers of objects" in log


@pytest.mark.slow
def test_cli_run_prints_artifact_and_metadata(kitti, tmp_path, capsys):
    root, _ = kitti
    code = cli.main(["run", "detection", "--local", "--param", f"dataset_root={root}",
                     "--param", "validation_fold=0", "--pipeline-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "pipeline detection finished" in out
    assert f"  output dataset (Dataset): {tmp_path}/tlt-detection-" in out
    assert '"num_frames": 12' in out and '"total": {' in out
    assert "  log:        " in out


def test_failed_task_is_one_error_naming_the_log(tmp_path, capsys):
    code = cli.main(["run", "detection", "--local", "--param", f"dataset_root={tmp_path / 'missing'}",
                     "--pipeline-root", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("tlt-pipeline: error: local run of pipeline detection failed: ")
    assert "(log: " in err[-1] and err[-1].endswith("run.log)")
    log = next((tmp_path / "runs").glob("tlt-detection-*/run.log")).read_text()
    assert f"dataset root {tmp_path / 'missing'} does not exist" in log


def test_argo_container_command_runs_here(kitti, tmp_path, capsys):
    """The template's argv, with Argo's placeholders filled in, converts the data set."""
    root, _ = kitti
    from tlt.orchestration.pipelines import DEFAULT_CONVERT_SPEC

    values = {"spec": DEFAULT_CONVERT_SPEC, "dataset_root": str(root), "validation_fold": "-1"}
    out_dir = tmp_path / "dataset"
    argv = []
    for arg in get_stage("convert").argv()[1:]:
        for name, value in values.items():
            arg = arg.replace(f"{{{{inputs.parameters.{name}}}}}", value)
        argv.append(arg.replace(output_path("dataset"), str(out_dir)))
    assert argv[:2] == ["stage", "convert"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dataset"]["num_frames"] == 12
    assert _count_records(sorted(out_dir.glob("tfrecords-fold-*"))) == 12
    assert json.loads((out_dir / "metadata.json").read_text())["stage"] == "convert"


def test_bad_pipeline_and_params_are_one_line(capsys):
    assert cli.main(["run", "segmentation", "--local"]) == 1
    assert capsys.readouterr().err == "tlt-pipeline: error: unknown pipeline 'segmentation': expected one of detection, classification\n"
    assert cli.main(["run", "detection", "--local", "--param", "fold=1"]) == 1
    assert capsys.readouterr().err == ("tlt-pipeline: error: --param fold: unknown parameter; expected one of "
                                       "convert_spec, dataset_root, evaluation_mode, gpus, train_spec, validation_fold\n")
    assert cli.main(["run", "detection", "--local", "--param", "validation_fold=two"]) == 1
    assert capsys.readouterr().err == "tlt-pipeline: error: --param validation_fold='two': expected an integer value\n"
    assert cli.main(["run", "detection"]) == 1
    assert "only local runs are built in: add --local" in capsys.readouterr().err


def test_parse_params_types():
    func = load_pipeline("detection")
    assert parse_params(["validation_fold=3", "dataset_root=a=b"], func) == {"validation_fold": 3, "dataset_root": "a=b"}
    with pytest.raises(PipelineError, match=r"--param 'novalue': expected NAME=VALUE"):
        parse_params(["novalue"], func)


def test_list_shows_pipelines_and_stages(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  detection " in out
    assert "  convert        tlt-dataset-convert" in out
