"""Loading a pipeline's components: what every definition in ``pipelines/`` does before its DAG."""

from __future__ import annotations

from types import SimpleNamespace

from tlt.orchestration.components import load_component

__all__ = ["load_components"]


def load_components(*stage_names: str) -> SimpleNamespace:
    """The generated components of ``stage_names`` as attributes named by registry key.

    They come from the tree `tlt.orchestration.components.using_components` sets while a pipeline
    file is imported (the checkout otherwise).

    Raises:
        PipelineError: a name is not a stage, or its component file is missing.
    """
    return SimpleNamespace(**{name: load_component(name) for name in stage_names})
