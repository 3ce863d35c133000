"""What the pipeline definitions in ``pipelines/`` share, so that each file holds only its DAG: its
stages' generated KFP components, loaded by registry key, and the outputs a local run reports for
the model DAG that classification and detection both run.
"""

from __future__ import annotations

from types import SimpleNamespace

from tlt.orchestration.components import load_component

__all__ = ["MODEL_DAG_STAGES", "load_components", "model_dag_local_outputs"]

#: The stages of the model DAG: train -> evaluate -> prune sweep (prune, retrain, evaluate) ->
#: pick_pruned -> quality_gate -> export -> build_engine -> evaluate, inside an ExitHandler whose
#: exit task is run_summary.
MODEL_DAG_STAGES = ("train", "evaluate", "prune", "retrain", "pick_pruned", "quality_gate", "export",
                    "build_engine", "run_summary")

# The model DAG's outputs a local run reports: name -> (task, output). Loop tasks name their
# first iteration; a repeated component's tasks are numbered by KFP (evaluate, evaluate-2 ...).
_MODEL_DAG_OUTPUTS = {
    "model": ("train", "model"), "metrics": ("evaluate", "metrics"), "report": ("evaluate", "report"),
    "pruned_model": ("prune", "pruned_model"), "pruning_report": ("evaluate-2", "report"),
    "retrained_metrics": ("evaluate-2", "metrics"),
    "retrained_model": ("pick-pruned", "model"), "sweep_report": ("pick-pruned", "report"),
    "quality_report": ("quality-gate", "report"), "export": ("export", "export"),
    "engine": ("evaluate-3", "scored_model"), "engine_metrics": ("evaluate-3", "metrics"),
    "engine_report": ("evaluate-3", "report"), "run_summary": ("run-summary", "summary"),
}


def load_components(*stage_names: str) -> SimpleNamespace:
    """The generated components of ``stage_names`` as attributes named by registry key.

    They come from the tree `tlt.orchestration.components.using_components` sets while a pipeline
    file is imported (the checkout otherwise).

    Raises:
        PipelineError: a name is not a stage, or its component file is missing.
    """
    return SimpleNamespace(**{name: load_component(name) for name in stage_names})


def model_dag_local_outputs(**extra: tuple[str, str]) -> dict[str, tuple[str, str]]:
    """A pipeline module's ``LOCAL_OUTPUTS``: the model DAG's outputs plus the pipeline's own.

    The DAG runs inside an ExitHandler, and KFP returns no pipeline outputs from inside one, so a
    local run (`tlt.orchestration.local_run`) reads these tasks' artifacts instead; a test checks
    each exists in the compiled DAG.

    Args:
        extra: further outputs, name -> (task, output), e.g. ``dataset=("convert", "dataset")``.
    """
    return {**_MODEL_DAG_OUTPUTS, **extra}
