"""Registry entries of the gate stages of the full DAGs: the quality gate, the prune-sweep pick and
the run summary (their logic lives in `tlt.gates`)."""

from __future__ import annotations

from tlt.orchestration.stage_types import Stage

__all__ = ["GATE_STAGES"]

#: Gate stages, in the order the component catalogue lists them.
GATE_STAGES: tuple[Stage, ...] = ()
