"""What a person sees from `tlt-pipeline run --local` (the demo): one line on a bad input, the failed
step's one-line error, a quiet terminal and an at-a-glance summary; the stage doors stop on SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cli_processes import subprocess_env
from tlt.cli import pipeline as cli
from tlt.orchestration.local_results import LocalArtifact, LocalRunResult, StepResult, format_seconds
from tlt.orchestration.summary import render_summary

_SAMPLE_HINT = "make sample data with `tlt-sample-data detection DIR`"


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == ""
    assert len(lines) == 1, lines
    return lines[0]


def test_no_data_set_is_one_line_naming_the_parameter(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default spec's data/sample-kitti does not exist here
    assert cli.main(["run", "detection", "--local", "--pipeline-root", str(tmp_path / "runs")]) == 1
    line = _one_error_line(capsys)
    assert line == ("tlt-pipeline: error: pipeline detection needs a data set: pass --param "
                    "dataset_root=DIR (a KITTI folder with images/ and labels/; " + _SAMPLE_HINT + ")")
    assert not (tmp_path / "runs").exists()  # checked before kfp.local started


def test_missing_data_set_folder_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert cli.main(["run", "detection", "--local", "--param", f"dataset_root={missing}",
                     "--pipeline-root", str(tmp_path / "runs")]) == 1
    line = _one_error_line(capsys)
    assert line.startswith(f"tlt-pipeline: error: --param dataset_root={missing}: no such folder")
    assert _SAMPLE_HINT in line
    (tmp_path / "kitti" / "images").mkdir(parents=True)
    assert cli.main(["run", "detection", "--local", "--param", f"dataset_root={tmp_path / 'kitti'}",
                     "--pipeline-root", str(tmp_path / "runs")]) == 1
    assert "no labels folder labels/ in it (the convert spec's kitti_config.label_dir_name)" in \
        _one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


def test_bad_spec_parameter_is_one_line_before_any_task(tmp_path, capsys):
    (tmp_path / "kitti" / "images").mkdir(parents=True)
    (tmp_path / "kitti" / "labels").mkdir()
    assert cli.main(["run", "detection", "--local", "--param", f"dataset_root={tmp_path / 'kitti'}",
                     "--param", "train_spec=training_config { num_epochs: -3 }",
                     "--pipeline-root", str(tmp_path / "runs")]) == 1
    line = _one_error_line(capsys)
    assert line.startswith("tlt-pipeline: error: --param train_spec: ") and "num_epochs" in line
    assert not (tmp_path / "runs").exists()


def test_classification_names_every_missing_parameter(tmp_path, capsys):
    assert cli.main(["run", "classification", "--local", "--pipeline-root", str(tmp_path)]) == 1
    line = _one_error_line(capsys)
    assert line.startswith("tlt-pipeline: error: pipeline classification needs --param train_dataset=... "
                           "--param val_dataset=... --param eval_dataset=... (")
    assert "`tlt-sample-data classification DIR`" in line


def test_failed_step_shows_its_one_line_error_and_the_log(tmp_path):
    """A task that fails inside kfp.local: progress lines, then the stage's own error, no traceback."""
    root = tmp_path / "kitti"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    done = subprocess.run([str(Path(sys.executable).parent / "tlt-pipeline"), "run", "detection", "--local",
                           "--param", f"dataset_root={root}", "--pipeline-root", str(tmp_path / "runs")],
                          capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "[1/13] convert running ..."
    assert lines[1].startswith("[1/13] convert failed in ")
    # The ExitHandler's exit task still writes the run summary.
    assert lines[2] == "[2/13] run-summary running ..." and lines[3].startswith("[2/13] run-summary succeeded")
    (log,) = (tmp_path / "runs").glob("tlt-detection-*/run.log")
    assert lines[4] == (f"tlt-pipeline: error: pipeline detection: step convert failed: image folder "
                        f"{root / 'images'} is empty (log: {log})")
    assert len(lines) == 5
    summary = (log.parent / "run-summary" / "summary").read_text()
    assert summary.startswith("# detection: FAILED\n"), summary
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "executor_input" in text
    assert "\x1b[" not in text  # colour codes are for terminals, not log files


def _detection_result(tmp_path: Path) -> LocalRunResult:
    """A finished run's folders as kfp.local lays them out, with the evaluate stage's JSON."""
    run = tmp_path / "tlt-detection-2026"
    (run / "train" / "model").mkdir(parents=True)
    (run / "train" / "model" / "model.tlt").write_bytes(b"x")
    metrics = run / "evaluate" / "metrics"
    metrics.mkdir(parents=True)
    evaluation = {
        "mode": "voc", "ap_mode": "11", "classes": ["car", "pedestrian"], "buckets": ["combined"],
        "per_class": {"car": {"combined": {"ap": 90.6412}}, "pedestrian": {"combined": {"ap": None}}},
        "mean_ap": {"combined": 90.6412}, "num_frames": 48, "validation_cost": 0.0045631,
    }
    (metrics / "evaluation.json").write_text(json.dumps(evaluation))
    (run / "report.html").write_text("<!DOCTYPE html>")
    return LocalRunResult(
        pipeline="detection", run_dir=run, log_file=run / "run.log",
        outputs={"metrics": LocalArtifact("metrics", "Metrics", metrics, {"mAP": 90.6412}),
                 "model": LocalArtifact("model", "Model", run / "train" / "model"),
                 "report": LocalArtifact("report", "HTML", run / "evaluate" / "report",
                                         page=run / "report.html")},
        steps=[StepResult("convert", "succeeded", 3.2), StepResult("train", "succeeded", 331.0),
               StepResult("evaluate", "succeeded", 27.9)],
        seconds=366.0)


def test_summary_lists_steps_ap_table_and_locations(tmp_path):
    result = _detection_result(tmp_path)
    run = result.run_dir
    assert render_summary(result) == textwrap.dedent(f"""\
        pipeline detection finished in 6 min 06 s

          step      status     time
          convert   succeeded  3 s
          train     succeeded  5 min 31 s
          evaluate  succeeded  28 s

        trained model (metrics):
        AP in % (voc, 48 validation frames, validation cost 0.004563)
          class          AP
          car         90.64
          pedestrian    n/a
          mAP         90.64

        model:   {run}/train/model/model.tlt
        report:  {run}/report.html
        log:     {run}/run.log
        run:     {run}""")


def test_summary_of_a_run_without_detection_metrics_lists_its_scalars(tmp_path):
    result = _detection_result(tmp_path)
    (result.outputs["metrics"].path / "evaluation.json").write_text('{"accuracy": 0.9}')
    result.outputs["metrics"].metadata = {"accuracy": 0.91666, "num_images": 12, "note": "text"}
    text = render_summary(result)
    assert "trained model (metrics):\n  accuracy                 0.9167\n  num_images               12\n" in text
    assert "note" not in text


def test_format_seconds():
    assert [format_seconds(s) for s in (0.4, 59.4, 60, 605.2)] == ["0 s", "59 s", "1 min 00 s", "10 min 05 s"]


_SLOW_ADAPTER = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    from tlt.orchestration import adapter_table

    def slow(params, inputs, outputs):
        Path(sys.argv[1]).write_text("started")
        time.sleep(60)
        return {}

    adapter_table.ADAPTERS["convert"] = slow
    """)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stage did not start"
        time.sleep(0.2)


def test_argo_stage_command_stops_cleanly_on_sigterm(tmp_path):
    """`tlt-pipeline stage` (what an Argo pod runs) exits 143 with one line when Kubernetes evicts it."""
    marker = tmp_path / "started"
    script = _SLOW_ADAPTER + textwrap.dedent(f"""\
        from tlt.cli import pipeline
        sys.exit(pipeline.main(["stage", "convert", "--spec=x", "--output-dataset={tmp_path / 'out'}"]))
        """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(marker)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())
    _wait_for(marker, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == ("tlt-pipeline: error: stopped by SIGTERM; rerun the same "
                                            "command to resume")
    assert "TLT stage failed: convert: stopped by SIGTERM" in err


def test_kfp_component_door_turns_sigterm_into_interrupted(tmp_path):
    """The KFP component body (no CLI around it) also raises Interrupted instead of dying at once."""
    marker = tmp_path / "started"
    script = _SLOW_ADAPTER + textwrap.dedent(f"""\
        from types import SimpleNamespace
        from tlt.errors import Interrupted
        from tlt.orchestration.entrypoints import run_component
        try:
            run_component("convert", {{"spec": "x"}}, {{}},
                          {{"dataset": SimpleNamespace(path="{tmp_path / 'out'}", metadata={{}})}})
        except Interrupted as err:
            print("interrupted:", err)
            sys.exit(143)
        """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(marker)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())
    _wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert out.strip() == "interrupted: stopped by SIGTERM; rerun the same command to resume"


def test_pipeline_help_shows_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        cli.main(["run", "-h"])
    out = capsys.readouterr().out
    assert "(default: .tlt-local-runs)" in out


def test_summary_shows_every_evaluation_and_the_pruning_ratio(tmp_path):
    """The trained model's AP stays on screen next to the engine's, with what pruning kept."""
    result = _detection_result(tmp_path)
    engine = result.run_dir / "evaluate-3" / "engine_metrics"
    engine.mkdir(parents=True)
    evaluation = json.loads((result.outputs["metrics"].path / "evaluation.json").read_text())
    evaluation["mean_ap"]["combined"] = 12.5
    evaluation["runtime"] = "int8 onnxruntime engine"
    (engine / "evaluation.json").write_text(json.dumps(evaluation))
    result.outputs["engine_metrics"] = LocalArtifact("engine_metrics", "Metrics", engine)
    retrained = result.run_dir / "evaluate-2" / "metrics"
    retrained.mkdir(parents=True)
    evaluation["mean_ap"]["combined"] = 40.25
    evaluation.pop("runtime")
    (retrained / "evaluation.json").write_text(json.dumps(evaluation))
    result.outputs["retrained_metrics"] = LocalArtifact("retrained_metrics", "Metrics", retrained)
    result.outputs["pruned_model"] = LocalArtifact(
        "pruned_model", "Model", result.run_dir / "prune",
        {"params_before": 4923978, "params_after": 1284826, "pruning_ratio": 0.2609})
    text = render_summary(result)
    # Trained, then pruned and retrained, then the engine: whatever order the outputs come in.
    trained = text.index("trained model (metrics):\nAP in % (voc")
    pruned = text.index("pruned and retrained model (retrained_metrics):\nAP in % (voc")
    deployed = text.index("engine (engine_metrics):\nAP in % (voc, 48 validation frames, int8 onnxruntime engine")
    assert trained < pruned < deployed
    assert "  mAP         90.64" in text and "  mAP         40.25" in text and "  mAP         12.50" in text
    assert "pruning: 1,284,826 of 4,923,978 parameters kept (pruning ratio 0.2609)" in text
