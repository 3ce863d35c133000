"""``tlt-evaluate detection``: with the shared tiny model, and model-free on hand-made KITTI files."""

from __future__ import annotations

import re

import pytest

from det_fixtures import read_json, run_main, trained_model, write_kitti
from tlt.cli import evaluate

CLASSES = ["car", "pedestrian"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict:
    return trained_model(tmp_path_factory.getbasetemp() / "detection_shared")


def _table(stdout: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header cells and ``{row name: cells}`` of the AP table printed by tlt-evaluate."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("AP ("))
    block = [line for line in lines[start + 1:] if line.strip()]
    rules = [i for i, line in enumerate(block) if set(line.replace(" ", "")) == {"="}]
    header = block[rules[0] + 1].split()
    rows = {line.split()[0]: line.split()[1:] for line in block[rules[0] + 2:rules[3]]
            if not line.startswith("=")}
    return header, rows


COLUMNS = ["combined", "easy", "moderate", "hard"]


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _assert_table_matches_json(stdout: str, report: dict, buckets: list[str]) -> None:
    """The printed table, the nested JSON and its flat ``columns`` hold the same numbers."""
    header, rows = _table(stdout)
    assert header == ["class", "mAP"] + buckets          # the guide's header: "class mAP combined ..."
    assert report["buckets"] == buckets
    assert sorted(rows) == sorted(report["classes"] + ["mAP"])
    for name in report["classes"]:
        assert rows[name] == [_fmt(report["per_class"][name][b]["ap"]) for b in buckets]
        assert rows[name] == [_fmt(report["columns"][f"ap_{name}_{b}"]) for b in buckets]
    assert rows["mAP"] == [_fmt(report["mean_ap"][b]) for b in buckets]
    assert rows["mAP"] == [_fmt(report["columns"][f"mAP_{b}"]) for b in buckets]
    assert len(report["columns"]) == (len(report["classes"]) + 1) * len(buckets)


def test_evaluate_model_prints_cost_and_table_equal_to_json(trained, tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, stderr = run_main(evaluate.main, "detection", "-e", trained["spec"],
                                    "-m", trained["model"], "--results_json", out)
    assert code == 0, stderr[-3000:]
    report = read_json(out)
    cost = re.search(r"^Validation cost: (\S+)$", stdout, re.MULTILINE)
    assert cost and float(cost.group(1)) == pytest.approx(report["validation_cost"], abs=5e-7)
    assert report["validation_cost"] > 0
    assert report["mode"] == "voc" and report["classes"] == CLASSES
    assert report["num_frames"] == 6                      # the 25 % validation fold of 24 frames
    assert "Found 6 samples in validation set" in stdout.splitlines()
    for name in CLASSES:
        assert report["per_class"][name]["combined"]["num_ground_truth"] > 0
    _assert_table_matches_json(stdout, report, COLUMNS)
    assert f"Results written to {out}" in stdout


def test_use_training_set_evaluates_training_and_validation_frames(trained, tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, stderr = run_main(evaluate.main, "detection", "-e", trained["spec"],
                                    "-m", trained["model"], "--use_training_set",
                                    "--results_json", out)
    assert code == 0, stderr[-3000:]
    report = read_json(out)
    assert report["num_frames"] == 24 and report["use_training_set"] is True  # all 24 frames
    assert "Found 24 samples in training and validation sets" in stdout.splitlines()
    _assert_table_matches_json(stdout, report, COLUMNS)


def test_evaluate_model_kitti_mode_has_difficulty_columns(trained, tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, stderr = run_main(evaluate.main, "detection", "-e", trained["spec"],
                                    "-m", trained["model"], "--mode", "kitti", "--results_json", out)
    assert code == 0, stderr[-3000:]
    report = read_json(out)
    assert report["mode"] == "kitti"
    assert "Found 6 samples in validation set" in stdout.splitlines()
    _assert_table_matches_json(stdout, report, COLUMNS)


GROUND_TRUTH = {
    "000000": [("Car", 10, 10, 60, 40), ("Car", 100, 10, 160, 50), ("Pedestrian", 200, 20, 220, 70)],
    "000001": [("Pedestrian", 30, 30, 50, 80), ("DontCare", 300, 10, 340, 30)],
}


def _label_folder(tmp_path):
    labels = tmp_path / "labels"
    for frame, rows in GROUND_TRUTH.items():
        write_kitti(labels / f"{frame}.txt", rows)
    return labels


def test_prediction_files_equal_to_ground_truth_score_100(tmp_path):
    labels = _label_folder(tmp_path)
    predictions = tmp_path / "predictions"
    for frame, rows in GROUND_TRUTH.items():
        write_kitti(predictions / f"{frame}.txt",
                    [(*row, 0.9 - 0.1 * i) for i, row in enumerate(rows) if row[0] != "DontCare"],
                    score=True)
    out = tmp_path / "files.json"
    code, stdout, stderr = run_main(evaluate.main, "detection", "--labels_dir", labels,
                                    "--predictions_dir", predictions, "--results_json", out)
    assert code == 0, stderr
    report = read_json(out)
    assert report["classes"] == CLASSES
    assert report["per_class"]["car"]["combined"]["ap"] == pytest.approx(100.0)
    assert report["per_class"]["pedestrian"]["combined"]["ap"] == pytest.approx(100.0)
    assert f"Found 2 samples in {labels}" in stdout.splitlines()
    _assert_table_matches_json(stdout, report, COLUMNS)
    assert "mAP           100.00" in stdout


def test_prediction_files_with_a_miss_and_a_false_positive(tmp_path):
    labels = _label_folder(tmp_path)
    predictions = tmp_path / "predictions"
    # Car: a hit (0.9) then a false positive (0.8), the second car missed: precision 1 up to
    # recall 0.5, so 6 of the 11 VOC recall points -> 54.55. Pedestrian: both found -> 100.
    write_kitti(predictions / "000000.txt", [("Car", 10, 10, 60, 40, 0.9),
                                             ("Car", 300, 100, 350, 140, 0.8),
                                             ("Pedestrian", 200, 20, 220, 70, 0.7)], score=True)
    write_kitti(predictions / "000001.txt", [("Pedestrian", 30, 30, 50, 80, 0.6)], score=True)
    code, stdout, stderr = run_main(evaluate.main, "detection", "--labels_dir", labels,
                                    "--predictions_dir", predictions)
    assert code == 0, stderr
    # Without a spec the buckets are KITTI's. Easy (taller than 40 px) holds neither car (30 and
    # 40 px): n/a; moderate and hard hold both, and the 40 px false positive counts there too.
    header, rows = _table(stdout)
    assert rows == {"car": ["54.55", "n/a", "54.55", "54.55"], "pedestrian": ["100.00"] * 4,
                    "mAP": ["77.27", "100.00", "77.27", "77.27"]}


def test_prediction_file_with_wrong_field_count_is_one_error_line(tmp_path):
    labels = _label_folder(tmp_path)
    predictions = tmp_path / "predictions"
    bad = write_kitti(predictions / "000000.txt", [("Car", 10, 10, 60, 40, 0.9)], score=True)
    bad.write_text(bad.read_text() + "Car 0.00 0 0.00 1 2 3 4 0.00 0.00 0.00 0.00 0.00 0.00 0.00\n")
    code, stdout, stderr = run_main(evaluate.main, "detection", "--labels_dir", labels,
                                    "--predictions_dir", predictions)
    assert code == 1
    assert stderr.strip().splitlines()[-1] == (
        f"tlt-evaluate: error: {bad}:2: 15 fields, expected 16 (a KITTI label line with the score "
        "as 16th field)")
    assert "AP (" not in stdout


def test_help_shows_defaults():
    _, stdout, _ = _help("classification")
    assert "k of the top-k accuracy (default: 5)" in " ".join(stdout.split())
    assert "images per batch (default: 32)" in " ".join(stdout.split())
    _, stdout, _ = _help("detection")
    assert "-e EXPERIMENT_SPEC_FILE" in stdout and "-m MODEL_FILE" in stdout
    assert "default: the spec's batch_size_per_gpu" in " ".join(stdout.split())


def _help(task: str):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        evaluate.build_parser().parse_args([task, "-h"])
    return stop.value.code, out.getvalue(), ""


@pytest.mark.parametrize("args,message", [
    (["classification", "-d", "data", "-pm", "m.tlt", "--top_k", "0"], "--top_k must be >= 1, got 0"),
    (["classification", "-d", "data", "-pm", "m.tlt", "-b", "-3"], "--batch_size must be >= 1, got -3"),
    (["classification", "-d", "data", "-pm", "m.tlt", "-w", "0"], "--workers must be >= 1, got 0"),
    (["detection", "--labels_dir", "l", "--predictions_dir", "p", "-b", "0"],
     "--batch_size must be >= 1, got 0"),
])
def test_count_flags_below_one_are_one_error_line(args, message):
    code, stdout, stderr = run_main(evaluate.main, *args)
    assert code != 0 and stdout == ""
    assert stderr.strip().splitlines() == [f"tlt-evaluate: error: {message}"]
