"""Which adapter runs which stage: the one table `tlt.orchestration.entrypoints` dispatches on."""

from __future__ import annotations

from tlt.errors import PipelineError
from tlt.orchestration import adapters
from tlt.orchestration.adapters_gates import GATE_ADAPTERS
from tlt.orchestration.adapters_retraining import RETRAINING_ADAPTERS
from tlt.orchestration.stage_types import Adapter

__all__ = ["ADAPTERS", "get_adapter"]

#: Registry key -> adapter. Every `tlt.orchestration.registry.STAGES` key has one (a test checks).
ADAPTERS: dict[str, Adapter] = {
    "convert": adapters.convert,
    "train": adapters.train,
    "evaluate": adapters.evaluate,
    "prune": adapters.prune,
    "retrain": adapters.retrain,
    "export": adapters.export,
    "build_engine": adapters.build_engine,
    **GATE_ADAPTERS,
    **RETRAINING_ADAPTERS,
}


def get_adapter(stage: str) -> Adapter:
    """The adapter of ``stage``.

    Raises:
        PipelineError: when the stage has no adapter.
    """
    try:
        return ADAPTERS[stage]
    except KeyError:
        raise PipelineError(f"stage {stage!r} has no adapter: expected one of {', '.join(ADAPTERS)}") from None
