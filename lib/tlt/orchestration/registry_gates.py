"""Registry entries of the gate stages of the full DAGs: the quality gate, the prune-sweep pick and
the run summary (their logic lives in `tlt.gates`)."""

from __future__ import annotations

from tlt.orchestration.stage_types import QUICK_RETRY, Artifact, Param, Resources, Stage

__all__ = ["FINAL_STATUS_PARAMS", "GATE_STAGES", "SINGLE_OUTPUT_STAGES"]


#: Exit-task stages -> {parameter: field of ``dsl.PipelineTaskFinalStatus``}: in KFP these
#: parameters come from the pipeline's final status, in Argo from ``{{workflow.status}}``.
FINAL_STATUS_PARAMS: dict[str, dict[str, str]] = {
    "run_summary": {"state": "state", "error": "error_message", "run_id": "pipeline_job_resource_name"},
}

#: Stages whose one result is the KFP component's plain return value (the IR names it ``Output``):
#: kfp.local resolves a ``dsl.If`` on a task's output parameter only when it is named ``Output``
#: (kfp 2.17 `ConditionEvaluator`; any other name is looked up as a pipeline input and the
#: condition is false). The Argo translation maps ``Output`` back to the result's name.
SINGLE_OUTPUT_STAGES = frozenset({"quality_gate"})

# Gates read metadata files and write reports: small containers, quick retries (`QUICK_RETRY`).
_SMALL = Resources(cpu_request="250m", cpu_limit="1", memory_request="512Mi", memory_limit="1Gi")
_TASK = Param("task", str, "classification or detection (names the metric: accuracy or mAP).",
              "detection")

#: Gate stages, in the order the component catalogue lists them.
GATE_STAGES: tuple[Stage, ...] = (
    Stage(
        name="quality_gate",
        cli="tlt-pipeline stage quality_gate",
        description="Hold an evaluated model's accuracy / mAP (in %) against a threshold: export "
                    "and engine build run only when it passes; the report says why.",
        params=(
            _TASK,
            Param("threshold", float, "Lowest passing accuracy / mAP in % (equal passes).", 0.0),
            Param("metric", str, "Metric to hold against the threshold; empty: accuracy for "
                  "classification, mAP for detection.", ""),
        ),
        inputs=(Artifact("model", "Model", "An evaluated model: evaluate's scored_model or "
                         "pick_pruned's model (its metadata.json holds the metric in %)."),),
        outputs=(Artifact("report", "Markdown", "The verdict: metric, value, threshold and what "
                          "the pipeline does next."),),
        # The value and the reason are in the report's metadata.
        results=(Param("passed", bool, "True when the metric reaches the threshold."),),
        resources=_SMALL,
        retry=QUICK_RETRY,
    ),
    Stage(
        name="pick_pruned",
        cli="tlt-pipeline stage pick_pruned",
        description="Keep the prune-sweep candidate with the fewest parameters whose accuracy / mAP "
                    "is within a tolerance of the best; the report shows every candidate.",
        params=(
            _TASK,
            Param("tolerance", float, "Allowed drop from the best candidate's accuracy / mAP, in "
                  "points of %.", 1.0),
        ),
        inputs=(
            Artifact("candidates", "Model", "Every iteration's evaluated retrained model "
                     "(evaluate's scored_model: model file, params, size, metric).", collected=True),
            Artifact("pruned_models", "Model", "Every iteration's prune output, in the same order "
                     "(threshold and parameters before and after pruning).", collected=True),
        ),
        outputs=(
            Artifact("model", "Model", "The chosen retrained model: its model file and "
                     "metadata.json (metric, params, pruning record, the sweep table)."),
            Artifact("report", "Markdown", "Why it was chosen, with every candidate's threshold, "
                     "parameters, size and metric."),
        ),
        results=(
            Param("threshold", float, "The pruning threshold of the chosen model."),
            Param("metric", float, "The chosen model's accuracy / mAP in %."),
        ),
        resources=_SMALL,
        retry=QUICK_RETRY,
        model_key=True,
    ),
    Stage(
        name="run_summary",
        cli="tlt-pipeline stage run_summary",
        description="Write the run's summary (state, failed steps and their errors) as Markdown, "
                    "HTML and JSON; the exit task, so it runs even when a step failed.",
        params=(
            Param("pipeline", str, "The pipeline's name."),
            Param("state", str, "The run's final state (SUCCEEDED, FAILED, CANCELLED ...).", ""),
            Param("error", str, "The run's error message, when it failed.", ""),
            Param("run_id", str, "The run's id or job resource name.", ""),
            Param("failures", str, "Argo: the workflow's failed nodes as JSON "
                  "(the value of workflow.failures); empty in Kubeflow.", ""),
            Param("notes", str, "Lines to show under the verdict, one per line (the settings that "
                  "matter to a reader, e.g. the gate threshold).", ""),
        ),
        outputs=(
            Artifact("summary", "Markdown", "The run summary for the Kubeflow UI."),
            Artifact("details", "Artifact", "summary.json, summary.md and summary.html."),
        ),
        resources=_SMALL,
        retry=QUICK_RETRY,
        # Every run writes its own summary: a cached one would report an earlier run's state.
        caching=False,
    ),
)
