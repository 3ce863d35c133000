"""The detection pipeline run end to end through kfp.local, and the Argo container command run here."""

import json
import re

import pytest
import tensorflow as tf

from tlt.cli import pipeline as cli
from tlt.errors import PipelineError
from tlt.orchestration.local_run import parse_params, run_local
from tlt.orchestration.pipelines import load_pipeline
from tlt.orchestration.registry import get_stage
from tlt.orchestration.stage_types import output_path
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


#: The detection pipeline's tasks in the order a local run executes them (the two engine builds
#: may swap); the exit task (run-summary) runs last, whatever happened.
TASKS = ["convert", "train", "evaluate", "prune", "retrain", "evaluate-2", "pick-pruned", "quality-gate",
         "export", "build-engine", "build-engine-2", "evaluate-3", "run-summary"]
#: What the quality gate holds back when it fails.
GATED = ["build-engine", "build-engine-2", "evaluate-3", "export"]
#: Tiny-run parameters: one retraining epoch, 8 calibration frames of the 12; a one-epoch detector
#: on 12 synthetic frames may score 0 mAP, so the gate lets anything through.
# The pipeline prunes with -n max 0.8 (sized for the demo); a one-epoch model prunes surely with L2.
TINY = ["retrain_epochs=1", "calibration_batches=1", "calibration_batch_size=8", "quality_threshold=0",
        "pruning_thresholds=[0.05]", "pruning_normalizer=L2"]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ten tasks, each a TensorFlow process
def test_local_run_converts_trains_evaluates_prunes_and_deploys(kitti, tmp_path, capsys):
    root, _ = kitti
    spec = _one_epoch_spec()
    assert "num_epochs: 1" in spec and "output_image_width: 128" in spec
    result = run_local("detection", [f"dataset_root={root}", f"train_spec={spec}", *TINY],
                       pipeline_root=tmp_path / "runs")
    assert result.run_dir.parent == tmp_path / "runs"
    assert result.run_dir.name.startswith("tlt-detection-")
    assert sorted(result.outputs) == ["dataset", "engine", "engine_metrics", "engine_report", "export",
                                      "metrics", "model", "pruned_model", "pruning_report",
                                      "quality_report", "report", "retrained_metrics", "retrained_model", "run_summary",
                                      "sweep_report"]
    _check_pruning_and_engine(result)
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
    assert sorted(s.name for s in result.steps) == sorted(TASKS)
    assert [s.name for s in result.steps[:9]] == TASKS[:9] and result.steps[-1].name == "run-summary"
    assert all(s.status == "succeeded" for s in result.steps)
    assert result.outputs["run_summary"].path.read_text().startswith("# detection: SUCCEEDED")
    assert all(0 < s.seconds <= result.seconds for s in result.steps)
    assert result.outputs["report"].page == result.run_dir / "report.html"
    assert result.outputs["report"].page.read_text() == report
    summary = render_summary(result)
    assert f"model:   {model.path / 'model.tlt'}" in summary and f"log:     {result.log_file}" in summary
    # The summary's AP table is the final engine's.
    engine_map = result.outputs["engine_metrics"].metadata["mAP"]
    assert re.search(rf"\n  mAP +{engine_map:.2f}[ \n]", summary), summary
    assert re.search(r"\nquality gate passed: mAP [0-9.]+ >= threshold 0.00: export and engine build run\n",
                     summary), summary


def _check_pruning_and_engine(result):
    pruned = result.outputs["pruned_model"].metadata
    assert pruned["params_after"] < pruned["params_before"]
    assert pruned["classes"] == ["car", "pedestrian"]
    # The kept model (pick_pruned of a one-threshold sweep) carries its pruning record and mAP.
    retrained = result.outputs["retrained_model"].metadata
    assert retrained["stage"] == "pick_pruned" and retrained["pruning_threshold"] == 0.05
    assert retrained["params_after"] == pruned["params_after"] and 0.0 <= retrained["mAP"] <= 100.0
    page = result.outputs["pruning_report"].path.read_text()
    assert "Before and after pruning" in page and "<td>pruned + retrained</td>" in page
    assert "mAP (%)" in page and "CPU images/s" in page
    card = result.outputs["engine"].metadata
    assert card["format"] == "engine" and card["precision"] == "int8"
    assert card["input_dims"] == [3, 64, 128]
    assert sorted(card["output_names"]) == ["output_bbox/BiasAdd", "output_cov/Sigmoid"]
    assert card["size_bytes"] > 0 and 0.0 <= card["mAP"] <= 100.0
    metrics = result.outputs["engine_metrics"].metadata
    assert card["mAP"] == pytest.approx(metrics["mAP"])
    keras = metrics["keras_tlt_mAP"]
    assert metrics["fp32_onnxruntime_engine_mAP"] == pytest.approx(keras, abs=0.1)
    assert metrics["int8_onnxruntime_engine_mAP"] == pytest.approx(keras, abs=5.0)
    assert "validation_cost" not in metrics  # an engine has no training loss
    page = result.outputs["engine_report"].path.read_text()
    assert page.index("Keras (.tlt)") < page.index("fp32 onnxruntime engine") < page.index(
        "int8 onnxruntime engine")
    assert (result.outputs["export"].path / "cal.bin").is_file()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # nine tasks, six of them TensorFlow processes
def test_cli_run_is_quiet_and_the_failed_gate_skips_export_with_its_reason(kitti, tmp_path, capfd):
    root, _ = kitti
    params = [f"dataset_root={root}", f"train_spec={_one_epoch_spec()}", *TINY, "quality_threshold=101"]
    code = cli.main(["run", "detection", "--local", *[a for p in params for a in ("--param", p)],
                     "--pipeline-root", str(tmp_path)])
    out, err = capfd.readouterr()
    assert code == 0, err
    # stderr: one line as each step starts and ends; no executor dumps, TensorFlow lines or tracebacks.
    ran = [t for t in TASKS if t not in GATED]
    lines = [re.sub(r" in .*", "", line) for line in err.splitlines()]
    assert len(lines) == 2 * len(ran)
    assert lines[:4] == ["[1/13] convert running ...", "[1/13] convert succeeded",
                         "[2/13] train running ...", "[2/13] train succeeded"]
    assert lines[-1] == f"[{len(ran)}/13] run-summary succeeded"
    lines = out.splitlines()
    assert lines[0].startswith("pipeline detection finished in ")
    assert [line.split()[:2] for line in lines[3:6]] == [["convert", "succeeded"], ["train", "succeeded"],
                                                         ["evaluate", "succeeded"]]
    # The gate stopped export and the engines, and the summary says why.
    steps = [line.split() for line in lines[3:3 + len(TASKS)]]
    assert [s for s in steps if s[1] == "skipped"] == [[t, "skipped"] for t in GATED]
    assert re.search(r"\nquality gate stopped the pipeline: mAP [0-9.]+ < threshold 101.00: export and "
                     r"engine build skipped\n", out), out
    run = next(tmp_path.glob("tlt-detection-*"))
    assert not (run / "export").exists()
    gate_page = (run / "quality-gate" / "report").read_text()
    assert "| mAP |" in gate_page and "| 101.00 | FAIL |" in gate_page
    assert (run / "run-summary" / "summary").read_text().startswith("# detection: SUCCEEDED")
    assert "AP in % (voc, " in out and "\n  mAP " in out
    assert f"model:   {run}/train/model/model.tlt" in out and f"report:  {run}/report.html" in out
    assert f"quality_report: {run}/quality-gate/report" in out
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
    assert capsys.readouterr().err == "tlt-pipeline: error: unknown pipeline 'segmentation': expected one of detection, classification, retraining\n"
    assert cli.main(["run", "detection", "--local", "--param", "fold=1"]) == 1
    assert capsys.readouterr().err == ("tlt-pipeline: error: --param fold: unknown parameter; expected one of "
                                       "calibration_batch_size, calibration_batches, checkpoint_root, convert_spec, "
                                       "dataset_root, engine_precision, evaluation_mode, gpu_node_selector, gpus, "
                                       "pruning_normalizer, pruning_thresholds, quality_threshold, retrain_epochs, "
                                       "sweep_tolerance, train_spec, validation_fold\n")
    assert cli.main(["run", "detection", "--local", "--param", "pruning_thresholds=0.1"]) == 1
    assert capsys.readouterr().err == ("tlt-pipeline: error: --param pruning_thresholds='0.1': expected a list "
                                       "value\n")
    assert cli.main(["run", "detection", "--local", "--param", "validation_fold=two"]) == 1
    assert capsys.readouterr().err == "tlt-pipeline: error: --param validation_fold='two': expected an integer value\n"
    assert cli.main(["run", "detection"]) == 1
    assert "only local runs are built in: add --local" in capsys.readouterr().err


def test_parse_params_types():
    func = load_pipeline("detection")
    assert parse_params(["validation_fold=3", "dataset_root=a=b"], func) == {"validation_fold": 3, "dataset_root": "a=b"}
    assert parse_params(["pruning_thresholds=[0.05, 0.2]", "quality_threshold=20"], func) == {
        "pruning_thresholds": [0.05, 0.2], "quality_threshold": 20.0}
    with pytest.raises(PipelineError, match=r"--param 'novalue': expected NAME=VALUE"):
        parse_params(["novalue"], func)


def test_list_shows_pipelines_and_stages(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  detection " in out
    assert "  convert        tlt-dataset-convert" in out


@pytest.mark.slow
@pytest.mark.timeout(2400)  # two retrainings in the sweep
def test_classification_prune_sweep_keeps_the_smallest_model_within_tolerance(tmp_path):
    """ParallelFor over two thresholds, fan-in with Collected: the pick is the smaller model when its
    accuracy is within the tolerance (100 points: any), and the summary names both iterations."""
    from tlt.data.synthetic import make_classification_dataset
    from tlt.orchestration.pipelines import DEFAULT_CLASSIFICATION_SPEC

    data = tmp_path / "data"
    make_classification_dataset(data, images_per_class=(16, 8, 8), size=32, seed=11)
    spec = DEFAULT_CLASSIFICATION_SPEC.replace("n_epochs: 3", "n_epochs: 1")
    result = run_local("classification", {
        "train_dataset": str(data / "train"), "val_dataset": str(data / "val"),
        "eval_dataset": str(data / "test"), "spec": spec, "retrain_epochs": 1,
        "pruning_thresholds": [0.05, 0.3], "sweep_tolerance": 100.0, "quality_threshold": 101.0},
        pipeline_root=tmp_path / "runs")
    names = [s.name for s in result.steps]
    assert sorted(n for n in names if n.startswith("prune")) == ["prune", "prune #2"]
    assert sorted(n for n in names if n.startswith("retrain")) == ["retrain", "retrain #2"]
    assert [s.name for s in result.steps if s.status == "skipped"] == GATED
    kept = result.outputs["retrained_model"].metadata
    candidates = kept["sweep"]["candidates"]
    assert sorted(c["threshold"] for c in candidates) == [0.05, 0.3]
    assert kept["params"] == min(c["params"] for c in candidates)
    assert kept["pruning_threshold"] == 0.3 and kept["settings"]["pruning_threshold"] == 0.3
    summary = render_summary(result)
    assert "prune sweep: threshold 0.3 kept: " in summary
    assert re.search(r"quality gate stopped the pipeline: accuracy [0-9.]+ < threshold 101.00", summary)
