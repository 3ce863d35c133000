"""Adapters of the retraining stages (`tlt.orchestration.registry_retraining`)."""

from __future__ import annotations

from tlt.orchestration.stage_types import Adapter

__all__ = ["RETRAINING_ADAPTERS"]

#: Registry key -> adapter, for every stage of `RETRAINING_STAGES`.
RETRAINING_ADAPTERS: dict[str, Adapter] = {}
