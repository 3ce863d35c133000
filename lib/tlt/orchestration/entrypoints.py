"""The two doors of a stage container: a KFP component body and an Argo command line.

`run_component` is what a generated KFP component calls with its KFP artifact objects;
`run_stage_argv` is what an Argo template's container runs (``tlt-pipeline stage <name> ...``).
Both check parameters against the registry and call the same adapter, with SIGTERM (what
Kubernetes sends on eviction) raising `tlt.errors.Interrupted` so the stage stops cleanly and its
retry resumes.

The adapter protocol (`tlt.orchestration.stage_types.Adapter`): ``adapter(params, inputs, outputs)``
with ``inputs`` mapping each input artifact to its local folder, or, for an input that collects one
artifact per loop iteration (`tlt.orchestration.registry_gates.CollectedArtifact`), to the list of
their folders; it returns ``{output name: metadata}`` plus, for a stage with scalar results, the
reserved key `tlt.orchestration.results.RESULTS_KEY` holding ``{result name: value}``. A KFP
component returns those results as its NamedTuple; an Argo container writes each to its
``--result-<name>`` file. A failed stage logs one line starting with `STAGE_FAILED_MARK` before the error
propagates: the line a local run shows instead of the executor's traceback.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from tlt.errors import PipelineError, TLTError
from tlt.orchestration.adapter_table import get_adapter
from tlt.orchestration.registry import get_stage
from tlt.orchestration.stage_types import Stage
from tlt.orchestration.registry_gates import SINGLE_OUTPUT_STAGES
from tlt.orchestration.results import RESULTS_KEY, split_results, write_result_files
from tlt.signals import sigterm_raises

__all__ = ["STAGE_FAILED_MARK", "run_component", "run_stage", "build_stage_parser", "run_stage_argv"]

#: Start of the log line naming a failed stage and its one-line error (``<mark> <stage>: <error>``).
STAGE_FAILED_MARK = "TLT stage failed:"

_log = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def run_stage(stage_name: str, params: Mapping[str, Any], inputs: Mapping[str, Any],
              outputs: Mapping[str, str]) -> dict[str, Any]:
    """Run a stage's adapter on local folders after checking names against the registry.

    Args:
        stage_name: registry key.
        params: parameter name -> value; missing optional ones take the registry default.
        inputs: input artifact name -> local folder (a list of folders for a collected input).
        outputs: output artifact name -> local folder to create.

    Returns:
        Output artifact name -> metadata for the UI; a stage with results also has
        `RESULTS_KEY` -> ``{result name: value}``, checked and typed against the registry.

    Raises:
        PipelineError: unknown or missing parameters or artifacts.
        Interrupted: SIGTERM arrived while the stage ran.
        TLTError: whatever the stage raises; logged first as one `STAGE_FAILED_MARK` line.
    """
    stage = get_stage(stage_name)
    try:
        full = _complete_params(stage, params)
        _check_names(stage, "input artifact", inputs, [a.name for a in stage.inputs],
                     optional=[a.name for a in stage.inputs if a.optional])
        _check_names(stage, "output artifact", outputs, [a.name for a in stage.outputs])
        _log.info("stage %s: inputs %s, outputs %s", stage.name, dict(inputs), dict(outputs))
        with sigterm_raises():
            returned = get_adapter(stage.name)(full, dict(inputs), dict(outputs))
        meta, results = split_results(stage, returned)
        return {**meta, RESULTS_KEY: results} if stage.results else meta
    except TLTError as err:
        _log.error("%s %s: %s", STAGE_FAILED_MARK, stage.name, err)
        raise
    except Exception as err:  # an unexpected error: name it; the traceback follows in the log
        _log.error("%s %s: unexpected %s: %s (traceback below)", STAGE_FAILED_MARK, stage.name,
                   type(err).__name__, err)
        raise


def run_component(stage_name: str, params: Mapping[str, Any], inputs: Mapping[str, Any],
                  outputs: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Body of every generated KFP component.

    Args:
        stage_name: registry key.
        params: the component's parameter values.
        inputs: input name -> ``kfp.dsl.Input[...]`` artifact (its ``.path`` is a local folder), or
            the list of them for a collected input (``Input[List[...]]``).
        outputs: output name -> ``kfp.dsl.Output[...]`` artifact; its ``.metadata`` receives the
            adapter's metadata so the Kubeflow UI shows it.

    Returns:
        The stage's results in registry order (the component's NamedTuple), the one result itself
        for a stage of `tlt.orchestration.registry_gates.SINGLE_OUTPUT_STAGES`, or None when it
        declares none.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    meta = run_stage(stage_name, params, {k: _local_paths(v) for k, v in inputs.items() if v is not None},
                     {k: v.path for k, v in outputs.items()})
    for name, artifact in outputs.items():
        artifact.metadata.update(meta.get(name, {}))
    results = meta.get(RESULTS_KEY)
    stage = get_stage(stage_name)
    if not stage.results:
        return None
    values = tuple(results[r.name] for r in stage.results)
    return values[0] if stage.name in SINGLE_OUTPUT_STAGES else values


def _local_paths(artifact: Any) -> Any:
    """An artifact's folder, or the folders of a collected list of artifacts."""
    if isinstance(artifact, (list, tuple)):
        return [a.path for a in artifact]
    return artifact.path


def build_stage_parser(stage: Stage, prog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser for ``stage`` generated from the registry (what Argo containers run).

    Flags: ``--<param>=value`` per parameter, ``--input-<name>=DIR`` per input artifact,
    ``--output-<name>=DIR`` per output artifact and ``--result-<name>=FILE`` per scalar result
    (optional: without it the result is only returned).
    """
    parser = _RaisingParser(prog=prog, description=stage.description)
    for p in stage.params:
        kwargs: dict[str, Any] = {"dest": p.name, "help": p.help, "required": p.required,
                                  "type": _parse_bool if p.type is bool else p.type}
        if not p.required:
            kwargs["default"] = p.default
        parser.add_argument(f"--{p.name}", **kwargs)
    for a in stage.inputs:
        parser.add_argument(f"--input-{a.name}", dest=f"input__{a.name}", required=not a.optional,
                            default=None, help=a.help)
    for a in stage.outputs:
        parser.add_argument(f"--output-{a.name}", dest=f"output__{a.name}", required=True, help=a.help)
    for r in stage.results:
        parser.add_argument(f"--result-{r.name}", dest=f"result__{r.name}", default=None, help=r.help)
    return parser


def run_stage_argv(stage_name: str, argv: Sequence[str], prog: str | None = None) -> dict[str, Any]:
    """Parse an Argo container's flags for ``stage_name`` and run it.

    A collected input's folder holds one sub-folder per loop iteration (each with its
    ``metadata.json``, found at any depth); the stage receives their list, sorted by path. Each
    result is written to its ``--result-<name>`` file.

    Returns:
        Output artifact name -> metadata (also in each output folder's ``metadata.json``), and
        `RESULTS_KEY` -> results for a stage with results.
    """
    stage = get_stage(stage_name)
    ns = vars(build_stage_parser(stage, prog).parse_args(list(argv)))
    params = {p.name: ns[p.name] for p in stage.params}
    inputs = {a.name: ns[f"input__{a.name}"] for a in stage.inputs}
    outputs = {a.name: ns[f"output__{a.name}"] for a in stage.outputs}
    # An optional input Argo did not connect leaves its folder absent: the stage runs without it.
    optional = {a.name for a in stage.inputs if a.optional}
    inputs = {name: path for name, path in inputs.items()
              if path is not None and not (name in optional and not Path(path).exists())}
    for name, path in inputs.items():
        if not Path(path).exists():
            raise PipelineError(f"stage {stage.name}: input artifact {name} folder {path} does not exist")
    inputs = {name: _collected_folders(stage, name, path) if _is_collected(stage, name) else path
              for name, path in inputs.items()}
    returned = run_stage(stage.name, params, inputs, outputs)
    if stage.results:
        write_result_files(stage, returned[RESULTS_KEY],
                           {r.name: ns[f"result__{r.name}"] for r in stage.results})
    return returned


def _is_collected(stage: Stage, name: str) -> bool:
    return any(a.name == name and a.collected for a in stage.inputs)


def _collected_folders(stage: Stage, name: str, folder: str) -> list[str]:
    """The artifact folders (those holding ``metadata.json``) under a collected input's folder."""
    found: list[str] = []
    # Shallowest first: an artifact's own sub-folders (a Triton repository ...) are part of it.
    for meta in sorted(Path(folder).rglob("metadata.json"), key=lambda p: (len(p.parts), str(p))):
        if not any(meta.parent.is_relative_to(Path(f)) for f in found):
            found.append(str(meta.parent))
    found.sort()
    if not found:
        raise PipelineError(f"stage {stage.name}: collected input {name} folder {folder} holds no "
                            "artifact (no metadata.json below it)")
    return found


class _RaisingParser(argparse.ArgumentParser):
    """Library code raises instead of exiting; the CLI turns the error into one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise PipelineError(f"{self.prog}: {message}")


def _complete_params(stage: Stage, params: Mapping[str, Any]) -> dict[str, Any]:
    known = {p.name: p for p in stage.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise PipelineError(f"stage {stage.name}: unknown parameter(s) {', '.join(unknown)}; "
                            f"expected {', '.join(known)}")
    full: dict[str, Any] = {}
    for name, p in known.items():
        if name in params:
            full[name] = params[name]
        elif p.required:
            raise PipelineError(f"stage {stage.name}: parameter {name} is required ({p.help})")
        else:
            full[name] = p.default
    return full


def _check_names(stage: Stage, what: str, given: Mapping[str, Any], expected: list[str],
                 optional: Sequence[str] = ()) -> None:
    required = sorted(set(expected) - set(optional))
    if set(given) - set(expected) or set(required) - set(given):
        raise PipelineError(f"stage {stage.name}: {what}s {sorted(given)} given, expected {sorted(expected)}")


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
