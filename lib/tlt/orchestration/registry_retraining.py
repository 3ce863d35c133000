"""Registry entries of the scheduled retraining pipeline's own stages: the data gate, fetching the
registry's champion and promoting a challenger (their logic lives in `tlt.gates` and `tlt.io`)."""

from __future__ import annotations

from tlt.orchestration.stage_types import Stage

__all__ = ["RETRAINING_STAGES"]

#: Retraining stages, in the order the component catalogue lists them.
RETRAINING_STAGES: tuple[Stage, ...] = ()
