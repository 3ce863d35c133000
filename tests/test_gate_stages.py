"""The gate stages of the full DAGs through their doors: quality_gate, pick_pruned and run_summary,
run as a KFP component body and as an Argo container (result files), on real artifact folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlt.artifacts import read_metadata, write_metadata
from tlt.errors import PipelineError
from tlt.orchestration.components import render_component_source
from tlt.orchestration.entrypoints import run_stage, run_stage_argv
from tlt.orchestration.registry import get_stage
from tlt.orchestration.results import RESULTS_KEY


def _scored(folder: Path, *, metric: str = "mAP", value: float, params: int, size: int = 1000) -> str:
    """An evaluate stage's scored_model folder: a model file and its card."""
    folder.mkdir(parents=True)
    (folder / "model.tlt").write_bytes(b"x" * size)
    write_metadata(folder, "evaluate", model="model.tlt", format="tlt", params=params,
                   size_bytes=size, **{metric: value})
    return str(folder)


def _pruned(folder: Path, threshold: float, before: int, after: int) -> str:
    folder.mkdir(parents=True)
    write_metadata(folder, "prune", model="model.tlt", params_before=before, params_after=after,
                   pruning_ratio=after / before, settings={"pruning_threshold": threshold, "normalizer": "L2"})
    return str(folder)


def test_quality_gate_fails_below_threshold_with_the_reason_in_report_and_results(tmp_path):
    model = _scored(tmp_path / "scored", value=21.7, params=500_000)
    out = run_stage("quality_gate", {"task": "detection", "threshold": 101.0},
                    {"model": model}, {"report": str(tmp_path / "report.md")})
    reason = "mAP 21.70 < threshold 101.00: export and engine build skipped"
    assert out[RESULTS_KEY] == {"passed": False}
    assert out["report"] == {"metric": "mAP", "value": 21.7, "threshold": 101.0, "passed": False,
                             "reason": reason}
    page = (tmp_path / "report.md").read_text()
    assert page.startswith("# Quality gate\n\n**quality gate failed: " + reason + "**")
    assert "| mAP | 21.70 | 101.00 | FAIL |" in page


def test_quality_gate_passes_classification_accuracy_and_argo_writes_result_files(tmp_path):
    model = _scored(tmp_path / "scored", metric="accuracy", value=87.5, params=1000)
    results = tmp_path / "results"
    run_stage_argv("quality_gate", ["--task=classification", "--threshold=80", f"--input-model={model}",
                                    f"--output-report={tmp_path / 'r.md'}",
                                    f"--result-passed={results / 'passed'}"])
    # What Argo's output parameter reads and its `when` compares.
    assert (results / "passed").read_text() == "true"
    assert (tmp_path / "r.md").read_text().count("| accuracy | 87.50 | 80.00 | pass |") == 1


def test_quality_gate_on_a_model_without_the_metric_is_one_line(tmp_path):
    model = _scored(tmp_path / "scored", metric="accuracy", value=50.0, params=10)
    with pytest.raises(PipelineError, match=r"^model model.tlt metrics have no 'mAP' \(found: "):
        run_stage("quality_gate", {"task": "detection", "threshold": 1.0}, {"model": model},
                  {"report": str(tmp_path / "r.md")})


def _sweep(tmp_path: Path) -> tuple[list[str], list[str]]:
    rows = [(0.05, 900_000, 30.0), (0.1, 600_000, 29.5), (0.3, 200_000, 22.0)]
    scored = [_scored(tmp_path / f"it{i}" / "scored", value=m, params=p, size=p // 100)
              for i, (_, p, m) in enumerate(rows)]
    pruned = [_pruned(tmp_path / f"it{i}" / "pruned", t, 1_000_000, p) for i, (t, p, _) in enumerate(rows)]
    return scored, pruned


def test_pick_pruned_keeps_the_smallest_model_within_tolerance(tmp_path):
    scored, pruned = _sweep(tmp_path)
    out = run_stage("pick_pruned", {"task": "detection", "tolerance": 1.0},
                    {"candidates": scored, "pruned_models": pruned},
                    {"model": str(tmp_path / "pick"), "report": str(tmp_path / "sweep.md")})
    # 0.1 loses 0.5 points of mAP (within 1.0) with a third fewer parameters; 0.3 loses 8.
    assert out[RESULTS_KEY] == {"threshold": 0.1, "metric": 29.5}
    meta = read_metadata(tmp_path / "pick")
    assert meta["model"] == "model.tlt" and (tmp_path / "pick" / "model.tlt").stat().st_size == 6000
    assert meta["mAP"] == 29.5 and meta["params"] == 600_000 and meta["pruning_threshold"] == 0.1
    assert meta["params_before"] == 1_000_000 and meta["params_after"] == 600_000
    assert meta["settings"]["pruning_threshold"] == 0.1
    assert [c["threshold"] for c in meta["sweep"]["candidates"]] == [0.05, 0.1, 0.3]
    page = (tmp_path / "sweep.md").read_text()
    assert "| 0.1 | 600,000 | 6,000 | 29.50 | yes |" in page
    assert out["report"]["reason"].startswith("threshold 0.1 kept: 600,000 params (33% fewer than "
                                              "the best, threshold 0.05)")
    # A tight tolerance keeps the best.
    out = run_stage("pick_pruned", {"task": "detection", "tolerance": 0.1},
                    {"candidates": scored, "pruned_models": pruned},
                    {"model": str(tmp_path / "pick2"), "report": str(tmp_path / "sweep2.md")})
    assert out[RESULTS_KEY]["threshold"] == 0.05


def test_pick_pruned_in_argo_reads_one_folder_per_item(tmp_path):
    # The key-only fan-in: <key>/<item>/ per iteration (see tlt.orchestration.argo_workflow).
    scored, pruned = _sweep(tmp_path / "iterations")
    cand_dir, pruned_dir = tmp_path / "candidates", tmp_path / "pruned_models"
    for i, (s, p) in enumerate(zip(scored, pruned)):
        Path(s).rename(_mk(cand_dir / f"item{i}"))
        Path(p).rename(_mk(pruned_dir / f"item{i}"))
    results = tmp_path / "results"
    run_stage_argv("pick_pruned", ["--task=detection", "--tolerance=1.0", f"--input-candidates={cand_dir}",
                                   f"--input-pruned_models={pruned_dir}", f"--output-model={tmp_path / 'm'}",
                                   f"--output-report={tmp_path / 'r.md'}",
                                   f"--result-threshold={results / 'threshold'}",
                                   f"--result-metric={results / 'metric'}"])
    assert (results / "threshold").read_text() == "0.1"
    assert read_metadata(tmp_path / "m")["params"] == 600_000


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_pick_pruned_with_mismatched_lists_is_one_line(tmp_path):
    scored, pruned = _sweep(tmp_path)
    with pytest.raises(PipelineError, match="prune sweep: 3 evaluated candidates but 2 pruned models"):
        run_stage("pick_pruned", {"task": "detection"}, {"candidates": scored, "pruned_models": pruned[:2]},
                  {"model": str(tmp_path / "m"), "report": str(tmp_path / "r.md")})


def test_run_summary_from_argo_failures_writes_markdown_and_json(tmp_path):
    failures = json.dumps([{"displayName": "train", "message": "SpecError: batch_size must be > 0",
                            "templateName": "train", "phase": "Failed", "podName": "p-1"}])
    run_stage_argv("run_summary", ["--pipeline=detection", "--state=Failed", f"--failures={failures}",
                                   "--run_id=tlt-detection-abcde", "--notes=quality threshold 10",
                                   f"--output-summary={tmp_path / 'summary.md'}",
                                   f"--output-details={tmp_path / 'details'}"])
    page = (tmp_path / "summary.md").read_text()
    assert page.startswith("# detection: FAILED\n\n**Error:** train: SpecError: batch_size must be > 0")
    assert "- quality threshold 10" in page and "| train | FAILED |" in page
    data = json.loads((tmp_path / "details" / "summary.json").read_text())
    assert data["run_id"] == "tlt-detection-abcde" and data["state"] == "FAILED"
    assert (tmp_path / "details" / "summary.html").read_text().startswith("<!DOCTYPE html>")


def test_run_summary_of_a_kfp_success_without_task_list(tmp_path):
    out = run_stage("run_summary", {"pipeline": "classification", "state": "SUCCEEDED"}, {},
                    {"summary": str(tmp_path / "s.md"), "details": str(tmp_path / "d")})
    assert out["summary"] == {"pipeline": "classification", "state": "SUCCEEDED", "error": "",
                              "failed_tasks": 0}
    assert (tmp_path / "s.md").read_text().startswith("# classification: SUCCEEDED")


def test_results_are_checked_against_the_registry(tmp_path, monkeypatch):
    from tlt.orchestration import adapter_table

    monkeypatch.setitem(adapter_table.ADAPTERS, "quality_gate",
                        lambda p, i, o: {"report": {}, RESULTS_KEY: {"passed": "yes"}})
    model = _scored(tmp_path / "scored", value=1.0, params=1)
    with pytest.raises(PipelineError, match="result passed is 'yes', expected true or false"):
        run_stage("quality_gate", {"task": "detection"}, {"model": model}, {"report": str(tmp_path / "r")})
    monkeypatch.setitem(adapter_table.ADAPTERS, "quality_gate", lambda p, i, o: {"report": {}})
    with pytest.raises(PipelineError, match=r"results \[\] returned, expected \['passed'\]"):
        run_stage("quality_gate", {"task": "detection"}, {"model": model}, {"report": str(tmp_path / "r")})


def test_component_sources_return_results_take_collected_lists_and_final_status():
    # The gate's one result is the plain return (KFP's "Output", what kfp.local's dsl.If reads).
    gate = render_component_source(get_stage("quality_gate"))
    assert "\n) -> bool:\n" in gate and "NamedTuple" not in gate
    assert "    return run_component(" in gate
    pick = render_component_source(get_stage("pick_pruned"))
    assert ') -> NamedTuple("Results", [("threshold", float), ("metric", float)]):' in pick
    assert "    candidates: Input[List[Model]]," in pick and "from typing import List, NamedTuple" in pick
    summary = render_component_source(get_stage("run_summary"))
    assert "    final_status: dsl.PipelineTaskFinalStatus," in summary
    assert '"state": final_status.state or ""' in summary
    assert "    state: str" not in summary  # filled from the final status, not by the caller
    compile(gate + pick + summary, "components", "exec")
