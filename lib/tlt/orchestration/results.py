"""Scalar results of a stage (`Stage.results`): how an adapter returns them and how each door hands
them on.

An adapter returns ``{output name: metadata, ..., RESULTS_KEY: {result name: value}}``; the reserved
key never names an artifact. `split_results` takes the results out and checks them against the
registry; a KFP component returns them as its NamedTuple (output parameters a ``dsl.If`` reads), an
Argo container writes each to its ``--result-<name>`` file (`write_result_files`), which the
template's output parameter reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tlt.errors import PipelineError
from tlt.io.atomic import atomic_write_text
from tlt.orchestration.stage_types import Stage

__all__ = ["RESULTS_KEY", "split_results", "result_text", "write_result_files"]

#: The key of an adapter's return value that holds its scalar results (not an artifact name).
RESULTS_KEY = "__results__"


def split_results(stage: Stage, returned: Mapping[str, Any] | None
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Separate an adapter's artifact metadata from its results.

    Args:
        stage: the registry entry (its ``results`` name and type each value).
        returned: what the adapter returned.

    Returns:
        ``(metadata by output name, results by name)``; results converted to their declared type.

    Raises:
        PipelineError: a declared result missing, an undeclared one, or a value of the wrong type.
    """
    meta = dict(returned or {})
    raw = meta.pop(RESULTS_KEY, {}) or {}
    declared = {r.name: r for r in stage.results}
    missing = sorted(set(declared) - set(raw))
    unknown = sorted(set(raw) - set(declared))
    if missing or unknown:
        raise PipelineError(f"stage {stage.name}: results {sorted(raw)} returned, expected "
                            f"{sorted(declared)}")
    return meta, {name: _typed(stage, declared[name], raw[name]) for name in declared}


def _typed(stage: Stage, param: Any, value: Any) -> Any:
    kind = param.type
    if kind is bool:
        if not isinstance(value, bool):
            raise PipelineError(f"stage {stage.name}: result {param.name} is {value!r}, expected "
                                "true or false")
        return value
    if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise PipelineError(f"stage {stage.name}: result {param.name} is {value!r}, expected a "
                            f"{kind.__name__}")
    return kind(value)


def result_text(value: Any) -> str:
    """A result as its file holds it: booleans ``true``/``false`` (what Argo's ``when`` compares),
    whole floats without a fraction kept as floats (``20.0``), everything else ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_result_files(stage: Stage, results: Mapping[str, Any], paths: Mapping[str, str]) -> None:
    """Write each result to its file (atomically), as an Argo output parameter reads it.

    Args:
        stage: the registry entry.
        results: name -> value, as `split_results` returned them.
        paths: name -> file (the ``--result-<name>`` flags); results without a path are not written.
    """
    for name, value in results.items():
        if paths.get(name):
            path = Path(paths[name])
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, result_text(value))
