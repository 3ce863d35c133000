"""Which adapter runs which stage: the one table `tlt.orchestration.entrypoints` dispatches on."""

from __future__ import annotations

from tlt.orchestration.adapters_convert import convert
from tlt.orchestration.adapters_engine import build_engine
from tlt.orchestration.adapters_evaluate import evaluate
from tlt.orchestration.adapters_export import export
from tlt.orchestration.adapters_gates import GATE_ADAPTERS
from tlt.orchestration.adapters_prune import prune
from tlt.orchestration.adapters_retraining import RETRAINING_ADAPTERS
from tlt.orchestration.adapters_training import retrain, train
from tlt.orchestration.catalogue import lookup
from tlt.orchestration.stage_types import Adapter

__all__ = ["ADAPTERS", "get_adapter"]

#: Registry key -> adapter. Every `tlt.orchestration.registry.STAGES` key has one (a test checks).
ADAPTERS: dict[str, Adapter] = {
    "convert": convert,
    "train": train,
    "evaluate": evaluate,
    "prune": prune,
    "retrain": retrain,
    "export": export,
    "build_engine": build_engine,
    **GATE_ADAPTERS,
    **RETRAINING_ADAPTERS,
}


def get_adapter(stage: str) -> Adapter:
    """The adapter of ``stage``.

    Raises:
        PipelineError: when the stage has no adapter.
    """
    return lookup(ADAPTERS, stage, f"stage {stage!r} has no adapter")
