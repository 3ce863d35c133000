"""The few lines a person reads after a local run: steps, the headline metrics, where things are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tlt.orchestration.local_results import LocalArtifact, LocalRunResult, format_seconds

__all__ = ["render_summary"]


def render_summary(result: LocalRunResult) -> str:
    """The end-of-run summary of a local run.

    Sections: each step with its status and wall time; the AP table of a detection evaluation (or
    the scalar metrics of another one); where the model, the HTML report and the full log are.

    Args:
        result: what `tlt.orchestration.local_run.run_local` returned.

    Returns:
        Text without a trailing newline.
    """
    lines = [f"pipeline {result.pipeline} finished in {format_seconds(result.seconds)}", ""]
    lines += _steps(result)
    # Every evaluation the pipeline returns (the trained model, the pruned and retrained one, the
    # deployed engine), so a reader sees what pruning and quantization cost next to training.
    for metrics in _in_pipeline_order(a for a in result.outputs.values() if a.kind == "Metrics"):
        lines += ["", *_metrics(metrics)]
    lines += _pruning(result)
    lines += _verdicts(result)
    lines += ["", *_locations(result)]
    return "\n".join(lines)


#: Headline of each evaluation output of the pipelines, in the order a model goes through them.
_EVALUATIONS = {"metrics": "trained model", "retrained_metrics": "pruned and retrained model",
                "engine_metrics": "engine"}


def _in_pipeline_order(metrics) -> list[LocalArtifact]:
    order = list(_EVALUATIONS)
    return sorted(metrics, key=lambda a: (order.index(a.name) if a.name in order else len(order), a.name))


def _steps(result: LocalRunResult) -> list[str]:
    width = max([len("step")] + [len(s.name) for s in result.steps])
    lines = [f"  {'step':<{width}}  {'status':<9}  time"]
    for step in result.steps:
        took = "" if step.seconds is None else format_seconds(step.seconds)
        lines.append(f"  {step.name:<{width}}  {step.status:<9}  {took}".rstrip())
    return lines


def _verdicts(result: LocalRunResult) -> list[str]:
    """The prune sweep's pick (when it compared several thresholds) and the quality gate's verdict:
    whether export and the engines ran, and why not."""
    lines = []
    sweep = result.outputs.get("sweep_report")
    if sweep is not None and int(sweep.metadata.get("candidates", 0) or 0) > 1:
        lines.append(f"prune sweep: {sweep.metadata.get('reason')}")
    gate = result.outputs.get("quality_report")
    if gate is not None and gate.metadata.get("reason"):
        verdict = "passed" if gate.metadata.get("passed") else "stopped the pipeline"
        lines.append(f"quality gate {verdict}: {gate.metadata['reason']}")
    return [""] + lines if lines else []


def _pruning(result: LocalRunResult) -> list[str]:
    # The kept model (a sweep's pick carries its pruning record) before the first prune output.
    info = {}
    for name in ("retrained_model", "pruned_model"):
        art = result.outputs.get(name)
        if art is not None and isinstance(art.metadata.get("params_before"), (int, float)):
            info = art.metadata
            break
    if not isinstance(info.get("params_before"), (int, float)):
        return []
    return ["", f"pruning: {int(info['params_after']):,} of {int(info['params_before']):,} "
                f"parameters kept (pruning ratio {_number(info.get('pruning_ratio'))})"]


def _metrics(metrics: LocalArtifact) -> list[str]:
    evaluation = _read_json(metrics.path / "evaluation.json")
    try:
        return [_headline(metrics), *_ap_table(evaluation)]
    except (KeyError, TypeError, ValueError):  # not a detection evaluation: its scalars
        return [_headline(metrics), *[f"  {key:<24} {_number(value)}" for key, value in sorted(metrics.metadata.items())
                              if isinstance(value, (int, float))]]


def _headline(metrics: LocalArtifact) -> str:
    what = _EVALUATIONS.get(metrics.name)
    return f"{what} ({metrics.name}):" if what else f"{metrics.name}:"


def _ap_table(evaluation: dict[str, Any]) -> list[str]:
    """AP per class and bucket from the evaluation JSON (`DetectionResults.to_dict` plus extras)."""
    classes, buckets = list(evaluation["classes"]), list(evaluation["buckets"])
    headers = ["class"] + (["AP"] if len(buckets) == 1 else buckets)
    rows = [[name] + [_ap(evaluation["per_class"][name][b]["ap"]) for b in buckets] for name in classes]
    rows.append(["mAP"] + [_ap(evaluation["mean_ap"][b]) for b in buckets])
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths)))

    cost = evaluation.get("validation_cost")  # None for an engine: it has no training loss
    title = (f"AP in % ({evaluation['mode']}, {evaluation['num_frames']} validation frames"
             + (f", {evaluation['runtime']}" if evaluation.get("runtime") else "")
             + (f", validation cost {cost:.6f})" if cost is not None else ")"))
    return [title, line(headers), *[line(r) for r in rows[:-1]], line(rows[-1])]


def _locations(result: LocalRunResult) -> list[str]:
    """Where each Model (its model file) and HTML output is, then the log and the run folder.

    Outputs are named as the pipeline names them (``model``, ``pruned_model``, ``engine`` ...).
    """
    lines = []
    for art in result.outputs.values():
        if art.kind == "Model":
            lines.append(f"{art.name + ':':<8} {_model_file(art.path)}{_size(art)}")
        elif art.kind in ("HTML", "Markdown"):
            lines.append(f"{art.name + ':':<8} {art.page or art.path}")
    lines.append(f"log:     {result.log_file}")
    lines.append(f"run:     {result.run_dir}")
    return lines


def _size(art: LocalArtifact) -> str:
    """`` (2.4 MB)`` for an engine, whose size on disk is what a deployment cares about."""
    size = art.metadata.get("size_bytes") if art.name == "engine" else None
    return f" ({size / 1e6:.1f} MB)" if isinstance(size, (int, float)) else ""


def _model_file(folder: Path) -> Path:
    from tlt.errors import PipelineError
    from tlt.orchestration.model_cards import model_file

    try:
        return model_file(folder)
    except PipelineError:  # a folder without a model file: show the folder
        return folder


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _ap(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f}"


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
