"""The model DAG that the classification and detection pipelines share, in the parts that are the
same for both: its stages, the outputs a local run reports, and the tail after the prune sweep
(pick the smallest good candidate, gate it, deploy it). The pipeline files build the rest, whose
arguments differ per task.

The DAG: train -> evaluate -> prune sweep (prune, retrain, evaluate per threshold, in a
``dsl.ParallelFor``) -> pick_pruned (``dsl.Collected``) -> quality_gate -> (``dsl.If`` it passed)
export -> fp32 and final engines (build_engine) -> evaluate, inside a ``dsl.ExitHandler`` whose
exit task is run_summary.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from tlt.orchestration.task_settings import configure_task

__all__ = ["MODEL_DAG_STAGES", "deploy", "gate_passed", "model_dag_local_outputs", "pick_and_gate"]

#: The stages of the model DAG (registry keys); detection adds convert in front.
MODEL_DAG_STAGES = ("train", "evaluate", "prune", "retrain", "pick_pruned", "quality_gate", "export",
                    "build_engine", "run_summary")

# The model DAG's outputs a local run reports: name -> (task, output). Loop tasks name their first
# iteration; KFP numbers a repeated component's tasks (evaluate, evaluate-2 ...).
_LOCAL_OUTPUTS = {
    "model": ("train", "model"), "metrics": ("evaluate", "metrics"), "report": ("evaluate", "report"),
    "pruned_model": ("prune", "pruned_model"), "pruning_report": ("evaluate-2", "report"),
    "retrained_metrics": ("evaluate-2", "metrics"),
    "retrained_model": ("pick-pruned", "model"), "sweep_report": ("pick-pruned", "report"),
    "quality_report": ("quality-gate", "report"), "export": ("export", "export"),
    "engine": ("evaluate-3", "scored_model"), "engine_metrics": ("evaluate-3", "metrics"),
    "engine_report": ("evaluate-3", "report"), "run_summary": ("run-summary", "summary"),
}


def model_dag_local_outputs(**extra: tuple[str, str]) -> dict[str, tuple[str, str]]:
    """A pipeline module's ``LOCAL_OUTPUTS``: the model DAG's outputs plus the pipeline's own.

    The DAG runs inside an ExitHandler, and KFP returns no pipeline outputs from inside one, so a
    local run (`tlt.orchestration.local_run`) reads these tasks' artifacts instead; a test checks
    each exists in the compiled DAG.

    Args:
        extra: further outputs, name -> (task, output), e.g. ``dataset=("convert", "dataset")``.
    """
    return {**_LOCAL_OUTPUTS, **extra}


def pick_and_gate(ops: Any, task: str, pruning_eval: Any, prune_task: Any, *, tolerance: Any,
                  threshold: Any) -> tuple[Any, Any]:
    """After the prune sweep: pick the smallest retrained model within ``tolerance`` of the best
    (from every iteration's evaluation and prune output), then gate it on ``threshold``.

    Args:
        ops: the pipeline's components (`tlt.orchestration.pipeline_parts.load_components`).
        task: classification or detection.
        pruning_eval: the sweep's evaluate task (its ``scored_model`` is collected).
        prune_task: the sweep's prune task (its ``pruned_model`` is collected).
        tolerance: pipeline parameter: allowed drop from the best candidate, in points of %.
        threshold: pipeline parameter: the lowest passing accuracy / mAP in %.

    Returns:
        (the pick_pruned task, the quality_gate task).
    """
    from kfp import dsl

    pick = configure_task(ops.pick_pruned(
        task=task, tolerance=tolerance,
        candidates=dsl.Collected(pruning_eval.outputs["scored_model"]),
        pruned_models=dsl.Collected(prune_task.outputs["pruned_model"])))
    gate = configure_task(ops.quality_gate(task=task, threshold=threshold, model=pick.outputs["model"]))
    return pick, gate


@contextlib.contextmanager
def gate_passed(gate: Any) -> Iterator[None]:
    """The ``dsl.If`` block whose tasks run only when the quality gate passed."""
    from kfp import dsl

    # The gate's one result is its plain output ("Output"): kfp.local evaluates a dsl.If on a
    # task's output only under that name (see registry_gates.SINGLE_OUTPUT_STAGES).
    with dsl.If(gate.outputs["Output"] == True, name="quality-gate-passed"):  # noqa: E712
        yield


def deploy(ops: Any, model: Any, *, export_data: Mapping[str, Any], evaluate_args: Mapping[str, Any],
           engine_precision: Any, calibration_batches: Any, calibration_batch_size: Any) -> None:
    """Export the gated model (int8 calibration), build the fp32 and final engines and evaluate the
    final one against the Keras model and the fp32 engine.

    Args:
        ops: the pipeline's components.
        model: the gated model artifact (pick_pruned's ``model``).
        export_data: where the export's calibration images come from (``cal_data_dir`` or the
            ``dataset`` TFRecords).
        evaluate_args: the evaluate task's task and data arguments.
        engine_precision: pipeline parameter: the final engine's precision.
        calibration_batches: pipeline parameter: int8 calibration batches of the export.
        calibration_batch_size: pipeline parameter: images per calibration batch.
    """
    export_task = configure_task(ops.export(data_type="int8", batches=calibration_batches,
                                            cal_batch_size=calibration_batch_size, model=model,
                                            **export_data))
    exported = export_task.outputs["export"]
    fp32_engine = configure_task(ops.build_engine(precision="fp32", export=exported))
    engine_task = configure_task(ops.build_engine(precision=engine_precision, export=exported))
    configure_task(ops.evaluate(**evaluate_args, framework="engine",
                                model=engine_task.outputs["engine"], compare_a=model,
                                compare_b=fp32_engine.outputs["engine"]))
