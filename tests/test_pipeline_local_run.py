"""The detection pipeline run end to end through kfp.local, and the Argo container command run here."""

import json
import re

import pytest
import tensorflow as tf

from tlt.cli import pipeline as cli
from tlt.errors import PipelineError
from tlt.orchestration.local_run import parse_params, run_local
from tlt.orchestration.pipelines import load_pipeline
from tlt.orchestration.registry import get_stage, output_path
from tlt.orchestration.summary import render_summary


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

    spec = DEFAULT_DETECTION_SPEC
    for field, value in (("num_epochs", 1), ("output_image_width", 128), ("output_image_height", 64),
                         ("validation_period_during_training", 1), ("first_validation_epoch", 1),
                         ("checkpoint_interval", 1)):
        spec = re.sub(rf"\b{field}: \d+", f"{field}: {value}", spec)
    return spec


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
    assert model.metadata["classes"] == ["car", "pedestrian"]
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
    # Each step timed in the order it ran; the report also as a page a browser opens.
    assert [(s.name, s.status) for s in result.steps] == [("convert", "succeeded"), ("train", "succeeded"),
                                                          ("evaluate", "succeeded")]
    assert all(0 < s.seconds <= result.seconds for s in result.steps)
    assert result.outputs["report"].page == result.run_dir / "report.html"
    assert result.outputs["report"].page.read_text() == report
    summary = render_summary(result)
    assert f"model:   {model.path / 'model.tlt'}" in summary and f"log:     {result.log_file}" in summary
    assert re.search(rf"\n  mAP +{metrics['mAP']:.2f}\n", summary), summary


@pytest.mark.slow
def test_cli_run_is_quiet_and_ends_with_the_summary(kitti, tmp_path, capfd):
    root, _ = kitti
    code = cli.main(["run", "detection", "--local", "--param", f"dataset_root={root}",
                     "--param", f"train_spec={_one_epoch_spec()}", "--pipeline-root", str(tmp_path)])
    out, err = capfd.readouterr()
    assert code == 0, err
    # stderr: one line as each step starts and ends; no executor dumps, TensorFlow lines or tracebacks.
    assert [re.sub(r" in .*", "", line) for line in err.splitlines()] == [
        "[1/3] convert running ...", "[1/3] convert succeeded",
        "[2/3] train running ...", "[2/3] train succeeded",
        "[3/3] evaluate running ...", "[3/3] evaluate succeeded"]
    lines = out.splitlines()
    assert lines[0].startswith("pipeline detection finished in ")
    assert [line.split()[:2] for line in lines[3:6]] == [["convert", "succeeded"], ["train", "succeeded"],
                                                         ["evaluate", "succeeded"]]
    assert "AP in % (voc, " in out and "\n  mAP " in out
    run = next(tmp_path.glob("tlt-detection-*"))
    assert f"model:   {run}/train/model/model.tlt" in out and f"report:  {run}/report.html" in out
    assert "executor_input" not in out + err and "Traceback" not in out + err
    assert "executor_input" in (run / "run.log").read_text()


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
