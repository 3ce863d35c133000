"""The end-of-run summary of a pipeline that ends with an engine: named outputs, the engine's AP."""

import json
from pathlib import Path

from tlt.orchestration.local_results import LocalArtifact, LocalRunResult, StepResult
from tlt.orchestration.summary import render_summary


def _engine_run(tmp_path: Path) -> LocalRunResult:
    run = tmp_path / "tlt-detection-1"
    metrics = run / "evaluate-3" / "metrics"
    metrics.mkdir(parents=True)
    (metrics / "evaluation.json").write_text(json.dumps({
        "mode": "voc", "classes": ["car"], "buckets": ["combined"],
        "per_class": {"car": {"combined": {"ap": 81.25}}}, "mean_ap": {"combined": 81.25},
        "num_frames": 48, "validation_cost": None, "runtime": "int8 onnxruntime engine"}))
    engine = run / "evaluate-3" / "scored_model"
    engine.mkdir()
    (engine / "model.engine").write_bytes(b"x")
    (engine / "metadata.json").write_text(json.dumps({"model": "model.engine"}))
    pruned = run / "prune" / "pruned_model"
    pruned.mkdir(parents=True)
    (pruned / "model.tlt").write_bytes(b"x")
    return LocalRunResult(
        pipeline="detection", run_dir=run, log_file=run / "run.log",
        outputs={"engine": LocalArtifact("engine", "Model", engine, {"size_bytes": 2_412_345}),
                 "engine_metrics": LocalArtifact("engine_metrics", "Metrics", metrics, {"mAP": 81.25}),
                 "pruned_model": LocalArtifact("pruned_model", "Model", pruned),
                 "pruning_report": LocalArtifact("pruning_report", "HTML", run / "x",
                                                 page=run / "pruning_report.html")},
        steps=[StepResult("evaluate-3", "succeeded", 30.0)], seconds=30.0)


def test_summary_shows_the_engine_ap_without_a_cost_and_names_each_output(tmp_path):
    result = _engine_run(tmp_path)
    text = render_summary(result)
    run = result.run_dir
    assert "AP in % (voc, 48 validation frames, int8 onnxruntime engine)\n" in text
    assert "\n  mAP    81.25\n" in text
    assert f"\nengine:  {run}/evaluate-3/scored_model/model.engine (2.4 MB)\n" in text
    assert f"\npruned_model: {run}/prune/pruned_model/model.tlt\n" in text
    assert f"\npruning_report: {run}/pruning_report.html\n" in text
