"""End-to-end ``tlt-train detection``: outputs, resume after SIGKILL, autoweighting, replicas, bad specs.

The shared tiny model (`det_fixtures.trained_model`) is itself a resumed run: a subprocess is
killed with SIGKILL once its second epoch starts, and ``tlt.cli.train.main`` finishes the job.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from det_fixtures import (HEIGHT, WIDTH, load_state_extra, read_csv, read_json, run_cli, run_main,
                          tiny_data, trained_model, write_spec)
from tlt.cli import train

CLASSES = ["car", "pedestrian"]
# detection_tiny.txt: cov 1, bbox 10 for both classes, normalised per class to sum 1.
INITIAL = {"cov": 1 / 11, "bbox": 10 / 11}


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict:
    return trained_model(tmp_path_factory.getbasetemp() / "detection_shared")


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> dict:
    return tiny_data(tmp_path_factory.getbasetemp() / "detection_shared")


def _used_weights(log: str, epoch: int) -> dict[str, dict[str, float]]:
    """The objective weights the autoweighting log line reports as used in ``epoch``."""
    match = re.search(rf"epoch {epoch} objective weights (?:used: (.*?) \||"
                      rf"\(autoweighting off\): (.*)$)", log, re.MULTILINE)
    assert match, f"no weights logged for epoch {epoch}"
    weights = {}
    for part in (match.group(1) or match.group(2)).split("; "):
        name, values = part.split(": ", 1)
        weights[name] = {k: float(v) for k, v in (kv.split("=") for kv in values.split())}
    return weights


def test_training_writes_checkpoints_logs_validation_status_and_model(trained):
    results = trained["results"]
    assert trained["code"] == 0, trained["stderr"][-3000:]
    assert trained["stdout"].strip().endswith(
        f"Model written to {results / 'model.tlt'} after 2 epochs (resumed from epoch 1)")
    assert read_json(results / "checkpoints" / "latest.json") == {"epoch": 2, "file": "epoch_002.npz"}
    assert (results / "checkpoints" / "epoch_002.npz").is_file()

    rows = read_csv(results / "training_log.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    # One header for both runs: no row has more cells than it (DictReader's None key).
    assert all(None not in row for row in rows)
    assert rows[0]["val_mAP"] == "NA" and rows[0]["val_cost"] == "NA"
    for cls in CLASSES:
        for objective in ("cov", "bbox"):
            assert f"objective_weight_{cls}_{objective}" in rows[0]
            assert float(rows[1][f"output_{objective}_mean_cost_{cls}"]) > 0
    assert float(rows[0]["objective_weight_car_cov"]) == pytest.approx(INITIAL["cov"], rel=1e-6)
    assert float(rows[0]["objective_weight_car_bbox"]) == pytest.approx(INITIAL["bbox"], rel=1e-6)

    # The shared spec validates from epoch 2 on (first_validation_epoch: 2).
    assert sorted(p.name for p in (results / "validation").iterdir()) == ["epoch_002.json",
                                                                         "final.json"]
    report = read_json(results / "validation" / "epoch_002.json")
    assert report["mode"] == "voc" and report["classes"] == CLASSES and report["num_frames"] == 6
    # val_mAP is the first bucket's: "combined", every object of the class.
    first = report["buckets"][0]
    assert first == "combined"
    for cls in CLASSES:
        assert 0.0 <= report["per_class"][cls][first]["ap"] <= 100.0
        assert report["per_class"][cls][first]["num_ground_truth"] > 0
    assert report["mean_ap"][first] == pytest.approx(
        sum(report["per_class"][c][first]["ap"] for c in CLASSES) / 2)
    assert float(rows[1]["val_mAP"]) == pytest.approx(report["mean_ap"][first])
    status = read_json(results / "status.json")
    assert status["state"] == "done" and status["epoch"] == 2
    assert status["last_validation"]["epoch"] == 2
    assert read_json(results / "metadata.json")["resumed_from_epoch"] == 1


def test_model_file_has_spec_classes_and_named_outputs(trained):
    from tlt.io.modelfile import load_keras_model

    model, metadata = load_keras_model(trained["model"])
    assert metadata["task"] == "detection"
    assert metadata["classes"] == CLASSES
    assert metadata["input_dims"] == [3, HEIGHT, WIDTH]
    assert metadata["spec"] == Path(trained["spec"]).read_text(encoding="utf-8")
    assert [t._keras_history.operation.name for t in model.outputs] == ["output_cov", "output_bbox"]
    assert [tuple(t.shape) for t in model.outputs] == [(None, 2, HEIGHT // 16, WIDTH // 16),
                                                       (None, 8, HEIGHT // 16, WIDTH // 16)]
    assert model.get_layer("output_cov_conv").get_weights()[0].shape[-1] == 2
    assert model.get_layer("output_bbox_conv").get_weights()[0].shape[-1] == 8


def test_resume_after_kill_restores_epoch_and_objective_weights(trained):
    assert trained["returncode_killed"] == -9
    assert "Epoch 2/2" in trained["first_log"]
    assert "resuming from" in trained["stderr"] and "(epoch 1 of 2)" in trained["stderr"]
    saved = trained["ckpt1_extra"]
    assert saved["epoch"] == 1
    # Epoch 1 ran with the initial weights; autoweighting then moved them away from those.
    first = _used_weights(trained["first_log"], 1)
    assert first["car"] == pytest.approx(INITIAL, rel=1e-5)
    assert saved["objective_weights"]["car"]["cov"] != pytest.approx(INITIAL["cov"], rel=1e-2)
    # The resumed epoch 2 used exactly the weights stored in the checkpoint's extra state ...
    resumed = _used_weights(trained["stderr"], 2)
    for cls in CLASSES:
        assert resumed[cls] == pytest.approx(saved["objective_weights"][cls], rel=1e-5)
    # ... and logged them in its CSV row.
    row = read_csv(trained["results"] / "training_log.csv")[1]
    for cls in CLASSES:
        for objective in ("cov", "bbox"):
            assert float(row[f"objective_weight_{cls}_{objective}"]) == pytest.approx(
                saved["objective_weights"][cls][objective], rel=1e-6)


@pytest.mark.slow  # ~35 s; tests/test_detectnet_loss.py covers the switch itself in the fast run
def test_autoweighting_off_keeps_initial_normalised_weights(data, tmp_path):
    spec = write_spec(tmp_path / "spec.txt", data, epochs=2, batch_size=24, autoweighting=False,
                      extra_replacements=[("first_validation_epoch: 1", "first_validation_epoch: 5")])
    results = tmp_path / "results"
    code, _, stderr = run_main(train.main, "detection", "-e", spec, "-r", results)
    assert code == 0, stderr[-3000:]
    rows = read_csv(results / "training_log.csv")
    assert len(rows) == 2
    for row in rows:
        for cls in CLASSES:
            for objective in ("cov", "bbox"):
                assert float(row[f"objective_weight_{cls}_{objective}"]) == pytest.approx(
                    INITIAL[objective], rel=1e-6)
    for epoch in (1, 2):
        assert _used_weights(stderr, epoch)["pedestrian"] == pytest.approx(INITIAL, rel=1e-5)
    extra = load_state_extra(results / "checkpoints" / "epoch_002.npz")
    assert extra["objective_weights"]["car"] == pytest.approx(INITIAL, rel=1e-6)
    # Epoch 1 comes before first_validation_epoch; the last epoch is always validated.
    assert sorted(p.name for p in (results / "validation").glob("epoch_*.json")) == ["epoch_002.json"]


@pytest.mark.slow
def test_two_replicas_on_cpu(data, tmp_path):
    spec = write_spec(tmp_path / "spec.txt", data, epochs=1, batch_size=2)
    proc = run_cli("tlt-train", "detection", "-e", spec, "-r", tmp_path / "r", "--gpus", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "with MirroredStrategy on 2 replica(s); 5 steps per epoch of 4 images" in proc.stderr
    assert (tmp_path / "r" / "model.tlt").is_file()
    assert read_json(tmp_path / "r" / "status.json")["state"] == "done"


# ------------------------------------------------------------------------------------------
# Bad input: one clear line and a non-zero exit code, before any training.


def _one_error(code: int, stderr: str) -> str:
    assert code != 0
    errors = [line for line in stderr.splitlines() if line.startswith("tlt-train: error: ")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def test_class_sets_that_disagree_between_sections(data, tmp_path):
    spec = write_spec(tmp_path / "spec.txt", data, extra_replacements=[
        ('bbox_rasterizer_config {\n  target_class_config {\n    key: "car"',
         'bbox_rasterizer_config {\n  target_class_config {\n    key: "cyclist"')])
    code, _, stderr = run_main(train.main, "detection", "-e", spec, "-r", tmp_path / "r")
    assert code == 2
    line = _one_error(code, stderr)
    assert re.fullmatch(rf"tlt-train: error: {re.escape(str(spec))}:\d+: bbox_rasterizer_config"
                        r"\.target_class_config has classes cyclist, pedestrian but "
                        r"cost_function_config\.target_classes has car, pedestrian", line), line
    assert not (tmp_path / "r" / "model.tlt").exists()


def test_target_class_without_examples(data, tmp_path):
    spec = write_spec(tmp_path / "spec.txt", data, extra_replacements=[
        ('target_class_mapping { key: "pedestrian" value: "pedestrian" }',
         'target_class_mapping { key: "tram" value: "pedestrian" }')])
    code, _, stderr = run_main(train.main, "detection", "-e", spec, "-r", tmp_path / "r")
    line = _one_error(code, stderr)
    assert line.startswith(f"tlt-train: error: target class 'pedestrian' has no examples in "
                           f"{data['tfrecords']}")
    assert "source classes mapped to it: tram" in line
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_input_size_not_a_multiple_of_16(data, tmp_path):
    spec = write_spec(tmp_path / "spec.txt", data, width=120)
    code, _, stderr = run_main(train.main, "detection", "-e", spec, "-r", tmp_path / "r")
    line = _one_error(code, stderr)
    assert re.fullmatch(rf"tlt-train: error: {re.escape(str(spec))}:\d+: augmentation_config\."
                        r"preprocessing\.output_image_width must be a multiple of 16 \(the "
                        r"output stride\) in \[16, 16384\], got 120", line), line


def test_a_missing_validation_source_fails_before_any_training(data, tmp_path):
    spec = write_spec(tmp_path / "spec.txt", data, extra_replacements=[
        ("validation_fold: 0",
         f'validation_data_source {{ tfrecords_path: "{tmp_path}/nowhere/val*" }}')])
    code, _, stderr = run_main(train.main, "detection", "-e", spec, "-r", tmp_path / "r")
    line = _one_error(code, stderr)
    assert line == (f"tlt-train: error: dataset_config.validation_data_source.tfrecords_path "
                    f"'{tmp_path}/nowhere/val*' matches no file")
    assert not (tmp_path / "r" / "checkpoints").exists()
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert status["state"] == "failed" and "matches no file" in status["message"]


def test_resume_with_a_changed_spec_fails_in_one_line_and_leaves_the_folder(trained, tmp_path):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(trained["results"], results)
    files = {p: p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}
    spec = write_spec(tmp_path / "spec.txt", trained["data"], width=WIDTH + 16,
                      extra_replacements=[("num_layers: 10", "num_layers: 18")])
    code, _, stderr = run_main(train.main, "detection", "-e", spec, "-r", results)
    assert code == 2
    assert _one_error(code, stderr) == (
        f"tlt-train: error: the checkpoints in {results / 'checkpoints'} were trained with "
        f"another spec: num_layers 10 -> 18; input_dims [3, {HEIGHT}, {WIDTH}] -> "
        f"[3, {HEIGHT}, {WIDTH + 16}]. Use a new results folder (-r), or the spec the run was "
        f"started with")
    changed = [p.name for p, data in files.items() if p.read_bytes() != data]
    assert changed == ["status.json"]
    assert read_json(results / "status.json")["state"] == "failed"
