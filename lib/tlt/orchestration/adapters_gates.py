"""Adapters of the gate stages (`tlt.orchestration.registry_gates`): stage arguments in, files and
metadata out."""

from __future__ import annotations

from tlt.orchestration.stage_types import Adapter

__all__ = ["GATE_ADAPTERS"]

#: Registry key -> adapter, for every stage of `GATE_STAGES`.
GATE_ADAPTERS: dict[str, Adapter] = {}
