"""The ``champion`` stage: fetch the registry's production model for a retraining run.

The champion's files go into an artifact folder whose ``metadata.json`` says whether there is one
(``has_champion``), which version it is, its metrics and the class counts of the data it was
trained on (from its lineage, for the data gate). With no champion yet (the first run) the folder
holds only that metadata, unless the champion is required.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlt.artifacts import write_metadata
from tlt.gates.data_gate import class_counts_from_lineage
from tlt.io.champion import fetch_champion
from tlt.io.registry_aliases import DEFAULT_ALIAS

__all__ = ["ChampionOutcome", "run"]

_MODEL_SUFFIXES = (".tlt", ".etlt", ".onnx", ".keras")


@dataclass(frozen=True)
class ChampionOutcome:
    """What the stage wrote.

    Attributes:
        has_champion: the alias named a version.
        version: that version ("" without a champion).
        metadata: the artifact folder's metadata.json content.
    """

    has_champion: bool
    version: str
    metadata: dict[str, Any]


def run(registry_uri: str, model_name: str, out_dir: str | os.PathLike, *,
        alias: str = DEFAULT_ALIAS, required: bool = False) -> ChampionOutcome:
    """Pull the champion of ``model_name`` into ``out_dir`` and describe it in metadata.json.

    Raises:
        RegistryError: ``required`` and the registry has no ``alias`` model, or a broken alias.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    champion = fetch_champion(registry_uri, model_name, out, alias=alias, required=required)
    fields: dict[str, Any] = {"registry": str(registry_uri), "model_name": model_name,
                              "alias": alias, "has_champion": champion is not None}
    if champion is None:
        meta = write_metadata(out, "champion", version="", **fields)
        return ChampionOutcome(False, "", meta)
    model = next((p.name for p in champion.files if p.suffix in _MODEL_SUFFIXES), "")
    counts = class_counts_from_lineage(champion.metadata)
    meta = write_metadata(
        out, "champion", parents=[{"uri": f"{registry_uri}#{model_name}:{champion.version}"}],
        version=champion.version, model=model, metrics=champion.metadata.get("metrics") or {},
        class_counts=counts, task=champion.metadata.get("task"), **fields)
    return ChampionOutcome(True, champion.version, meta)
