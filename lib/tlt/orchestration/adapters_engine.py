"""Adapter of the build_engine stage: an export -> `tlt.stages.build_engine` (tlt-converter) ->
model.engine with its sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tlt.orchestration.adapters_common import jsonable, read_artifact_meta
from tlt.orchestration.model_cards import model_file

__all__ = ["build_engine"]


def build_engine(params: Mapping[str, Any], inputs: Mapping[str, str],
                 outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.build_engine` (tlt-converter) on the export: ``engine`` gets model.engine,
    its sidecar and metadata.json; int8 uses the export's calibration cache."""
    from tlt.artifacts import write_metadata
    from tlt.io.modelfile import resolve_key
    from tlt.stages import build_engine as engine_stage

    out = Path(outputs["engine"])
    out.mkdir(parents=True, exist_ok=True)
    source = model_file(inputs["export"])
    export_meta = read_artifact_meta(inputs["export"])
    info = engine_stage.run(
        str(source), key=resolve_key(None), input_dims=tuple(export_meta.get("input_dims") or ()),
        engine_path=str(out / "model.engine"), cache_file=str(Path(inputs["export"]) / "cal.bin"),
        precision=params["precision"], max_batch_size=int(params["max_batch_size"]),
        batch_size=int(params["batch_size"]), backend=params["backend"])
    fields = jsonable({
        "model": "model.engine", "format": "engine", "backend": info.backend,
        "precision": info.precision, "input_dims": list(info.input_dims),
        "output_names": list(info.output_names), "max_batch_size": info.max_batch_size,
        "task": (info.export or {}).get("task"), "classes": (info.export or {}).get("classes", []),
        "size_bytes": (out / "model.engine").stat().st_size, "runtime_version": info.runtime_version})
    write_metadata(out, "build_engine", parents=[{"uri": str(source)}], **fields)
    return {"engine": {"stage": "build_engine", **fields}}
