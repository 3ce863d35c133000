"""The demo's detector works: `./build.sh demo`'s data and the pipeline's default spec reach >= 50 mAP
with clean boxes (about one confident box per object, not a cloud of overlapping ones), and so do
the pruned and retrained model and its int8 engine. The deployed engines score as the Keras model
they were built from (fp32 within 0.1 pt, int8 within 0.5 pt in every AP column) on 480 frames
the model has not seen.

Slow (the demo itself: a few minutes of 2 cores), so it runs in CI (`./build.sh test --all`).
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

from cli_processes import VENV_BIN, subprocess_env


def _demo_sample_data_args(repo_root) -> list[str]:
    """The `tlt-sample-data detection` flags `./build.sh demo` uses (so this test follows the demo)."""
    text = (repo_root / "build.sh").read_text().replace("\\\n", " ")
    match = re.search(r'tlt-sample-data" detection "[^"]+"([^\n]*)', text)
    assert match, "build.sh demo no longer calls tlt-sample-data detection"
    return match.group(1).split()


@pytest.mark.slow
@pytest.mark.timeout(3000)  # the demo's thirteen steps (12 min on 2 free cores), then 3 scorings of 480 frames
def test_demo_detector_reaches_50_map_with_clean_boxes(repo_root, tmp_path):
    from tlt.orchestration.local_run import run_local

    args = _demo_sample_data_args(repo_root)
    assert "--frames" in args and "--seed" in args
    data = tmp_path / "sample-data"
    subprocess.run([str(VENV_BIN / "tlt-sample-data"), "detection", str(data), *args], check=True,
                   env=subprocess_env(), capture_output=True)
    result = run_local("detection", {"dataset_root": str(data)}, pipeline_root=tmp_path / "runs")
    metrics = result.outputs["metrics"].metadata
    evaluation = json.loads((result.outputs["metrics"].path / "evaluation.json").read_text())
    assert evaluation["mode"] == "voc"
    assert metrics["mAP"] >= 50.0, metrics
    column = evaluation["buckets"][0]
    for name in evaluation["classes"]:
        cell = evaluation["per_class"][name][column]
        assert cell["ap"] >= 30.0, (name, cell["ap"])
        # Clean boxes: the detections the report draws are about one per object, mostly right
        # (with the post-processing of before, ~17 boxes per frame for ~2 objects).
        assert cell["num_detections"] <= 1.5 * cell["num_ground_truth"], (name, cell)
        assert cell["true_positives"] >= 0.4 * cell["num_ground_truth"], (name, cell)
    # Pruning keeps the demo's detector working: -n max 0.8 then 20 retrain epochs (measured:
    # 58 % of the parameters, 85.5 mAP; the int8 engine 85.5, 85.2 before its fp32 tail grew).
    kept = result.outputs["retrained_model"].metadata
    assert kept["params_after"] < 0.8 * kept["params_before"], kept
    assert result.outputs["retrained_metrics"].metadata["mAP"] >= 50.0
    assert result.outputs["engine_metrics"].metadata["mAP"] >= 50.0
    _check_engines_score_as_keras(result, args, tmp_path / "fresh")


def _fresh_frames_spec(args: list[str], folder: Path) -> Path:
    """480 new frames of the demo's generator (another seed), converted; the default spec on them."""
    from tlt.orchestration.pipelines import DEFAULT_CONVERT_SPEC, DEFAULT_DETECTION_SPEC

    flags = {args[i]: args[i + 1] for i in range(len(args) - 1)
             if args[i].startswith("--") and not args[i + 1].startswith("--")}
    flags.update({"--frames": "480", "--seed": "23"})
    frames = folder / "kitti"
    subprocess.run([str(VENV_BIN / "tlt-sample-data"), "detection", str(frames),
                    *[word for pair in flags.items() for word in pair]],
                   check=True, env=subprocess_env(), capture_output=True)
    (folder / "convert.txt").write_text(DEFAULT_CONVERT_SPEC.replace("data/sample-kitti", str(frames)))
    subprocess.run([str(VENV_BIN / "tlt-dataset-convert"), "-d", str(folder / "convert.txt"), "-o",
                    str(folder / "tfrecords" / "tfrecords")], check=True, env=subprocess_env(),
                   capture_output=True)
    spec = DEFAULT_DETECTION_SPEC.replace("data/tfrecords/tfrecords-fold-*",
                                          f"{folder}/tfrecords/tfrecords-fold-*")
    assert spec != DEFAULT_DETECTION_SPEC and "data/sample-kitti" in spec
    (folder / "spec.txt").write_text(spec.replace("data/sample-kitti", str(frames)))
    return folder / "spec.txt"


def _columns(spec, model, out) -> dict:
    """tlt-evaluate detection's AP columns for ``model`` on every frame of ``spec``'s data."""
    subprocess.run([str(VENV_BIN / "tlt-evaluate"), "detection", "-e", str(spec), "-m", str(model),
                    "--use_training_set", "--results_json", str(out)], check=True,
                   env=subprocess_env(), capture_output=True)
    report = json.loads(out.read_text())
    assert report["num_frames"] == 480, report["num_frames"]
    return report["columns"]


def _check_engines_score_as_keras(result, args: list[str], folder: Path) -> None:
    """The fp32 engine (built here from the pipeline's export) within 0.1 pt of the Keras model in
    every column, the pipeline's int8 engine within 0.5 pt (issue 9 part 5). 480 frames: on the
    demo's 48 validation frames one pedestrian moves a column by more than 0.5 pt (measured: noise
    of a third of int8's output error on the fp32 boxes moves a column by up to 1.3 pt there)."""
    folder.mkdir()
    spec = _fresh_frames_spec(args, folder)
    export = result.outputs["export"].path
    fp32 = folder / "fp32.engine"
    subprocess.run([str(VENV_BIN / "tlt-converter"), str(export / "model.onnx"), "-d", "3,128,240",
                    "-o", "output_cov/Sigmoid,output_bbox/BiasAdd", "-e", str(fp32), "-t", "fp32",
                    "--backend", "onnxruntime"], check=True, env=subprocess_env(), capture_output=True)
    int8 = result.outputs["engine"].path / "model.engine"
    assert json.loads((int8.parent / "model.engine.json").read_text())["precision"] == "int8"
    keras = _columns(spec, result.outputs["retrained_model"].path / "model.tlt", folder / "keras.json")
    assert sum(v for v in keras.values() if v) > 0, keras
    for engine, tolerance in ((fp32, 0.1), (int8, 0.5)):
        got = _columns(spec, engine, folder / f"{engine.parent.name}-{engine.stem}.json")
        assert got.keys() == keras.keys()
        gaps = {k: round(abs((got[k] or 0) - (keras[k] or 0)), 2) for k in keras}
        assert max(gaps.values()) <= tolerance, (engine, gaps, got, keras)


def test_demo_data_matches_the_pipeline_default_spec(repo_root):
    """The frames build.sh makes are the size the default spec trains at (no resize, no padding)."""
    from tlt import spec
    from tlt.orchestration.pipelines import DEFAULT_CONVERT_SPEC, DEFAULT_DETECTION_SPEC

    args = _demo_sample_data_args(repo_root)
    flags = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
    experiment = spec.loads(DEFAULT_DETECTION_SPEC, "detection")
    pre = experiment.augmentation_config.preprocessing
    assert (int(flags["--width"]), int(flags["--height"])) == (pre.output_image_width, pre.output_image_height)
    # Validated once, at the end: the evaluate stage scores the final model anyway.
    assert experiment.evaluation_config.first_validation_epoch == experiment.training_config.num_epochs
