"""Run a pipeline on this machine through ``kfp.local`` (SubprocessRunner in the current environment).

This is the embedded default of the design: the same compiled components as on a cluster, each task a
subprocess of the current Python (which has ``tlt`` installed), artifacts under a local pipeline
root (``<root>/<pipeline>-<timestamp>/<task>/<output>``) and the run's log beside them.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, TextIO

from tlt.errors import PipelineError
from tlt.orchestration.paths import repo_root
from tlt.orchestration.pipelines import get_pipeline, load_pipeline

__all__ = ["DEFAULT_PIPELINE_ROOT", "LocalArtifact", "LocalRunResult", "parse_params", "run_local"]

#: Where local runs keep their artifacts unless told otherwise (relative to the working directory).
DEFAULT_PIPELINE_ROOT = ".tlt-local-runs"
LOG_FILE = "run.log"

# KFP input type name -> Python converter for --param values given as text.
_CONVERTERS = {
    "String": str,
    "Integer": int,
    "Float": float,
    "Boolean": lambda text: {"true": True, "false": False}[text.strip().lower()],
}


@dataclass
class LocalArtifact:
    """One output artifact of a local run: its folder and the metadata KFP recorded for it."""

    name: str
    kind: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalRunResult:
    """What a local run produced.

    Attributes:
        pipeline: catalogue name.
        run_dir: the run's folder under the pipeline root (one subfolder per task).
        log_file: every task's output, as the terminal showed it.
        outputs: the pipeline's output artifacts by name.
    """

    pipeline: str
    run_dir: Path
    log_file: Path
    outputs: dict[str, LocalArtifact]


def parse_params(items: Iterable[str], pipeline_func: Any) -> dict[str, Any]:
    """``["k=v", ...]`` -> typed pipeline arguments, checked against the pipeline's inputs.

    Raises:
        PipelineError: a malformed item, an unknown name or a value of the wrong type.
    """
    inputs = pipeline_func.component_spec.inputs or {}
    known = ", ".join(sorted(inputs))
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise PipelineError(f"--param {item!r}: expected NAME=VALUE with NAME one of {known}")
        if name not in inputs:
            raise PipelineError(f"--param {name}: unknown parameter; expected one of {known}")
        kind = inputs[name].type
        try:
            params[name] = _CONVERTERS.get(kind, str)(text)
        except (ValueError, KeyError):
            article = "an" if kind[0] in "AEIOU" else "a"
            raise PipelineError(f"--param {name}={text!r}: expected {article} {kind.lower()} value") from None
    return params


class _Tee(io.TextIOBase):
    """Writes to a log file and, optionally, to the terminal too."""

    def __init__(self, log: TextIO, echo: TextIO | None):
        self._log, self._echo = log, echo

    def write(self, text: str) -> int:
        self._log.write(text)
        self._log.flush()
        if self._echo is not None:
            self._echo.write(text)
        return len(text)

    def flush(self) -> None:
        self._log.flush()
        if self._echo is not None:
            self._echo.flush()


def _ints(value: Any) -> Any:
    """KFP keeps metadata as a protobuf Struct, where every number is a float; counts read better as ints."""
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _artifact(name: str, value: Any) -> LocalArtifact:
    path = getattr(value, "path", None) or getattr(value, "uri", "")
    return LocalArtifact(name=name, kind=type(value).__name__, path=Path(path),
                         metadata=_ints(dict(getattr(value, "metadata", {}) or {})))


def run_local(name: str, params: Mapping[str, Any] | Iterable[str] = (), *,
              pipeline_root: str | Path = DEFAULT_PIPELINE_ROOT, root: str | Path | None = None,
              echo: TextIO | None = None, retries: bool = False,
              compiled: bool = False) -> LocalRunResult:
    """Run pipeline ``name`` with kfp.local's SubprocessRunner in the current environment.

    Args:
        name: catalogue name (``detection``).
        params: pipeline arguments, as a mapping or as ``"k=v"`` strings.
        pipeline_root: folder that receives the run's artifacts.
        root: the checkout holding ``pipelines/`` and ``components/``; default `repo_root`.
        echo: a stream that also receives the tasks' output (the CLI passes stdout).
        retries: apply the registry's retry policies (kfp.local waits out their backoff, 30 s and
            more, before reporting a failure; off by default).
        compiled: run the checked-in compiled definition ``pipelines/<name>.yaml`` (what Kubeflow
            runs) instead of the Python DSL; its retry policies always apply.

    Returns:
        The run folder, its log and its output artifacts with their metadata.

    Raises:
        PipelineError: unknown pipeline or parameters, or a task that failed (the message names the
            log file).
    """
    from kfp import local

    info = get_pipeline(name)
    if compiled:
        from kfp import components

        yaml_path = Path(root if root is not None else repo_root()) / "pipelines" / f"{info.name}.yaml"
        if not yaml_path.is_file():
            raise PipelineError(f"compiled pipeline {yaml_path} is missing (run `tlt-pipeline compile`)")
        func = components.load_component_from_file(str(yaml_path))
    else:
        func = load_pipeline(info.name, root=root, retries=retries)
    args = dict(params) if isinstance(params, Mapping) else parse_params(params, func)
    proot = Path(pipeline_root).expanduser().resolve()
    proot.mkdir(parents=True, exist_ok=True)
    before = {p for p in proot.iterdir() if p.is_dir()}
    pending_log = proot / f".{info.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(proot), raise_on_error=True)
    failure: str | None = None
    with open(pending_log, "w", encoding="utf-8") as log, warnings.catch_warnings():
        # The project image is not a "python" image; in a SubprocessRunner the image is unused anyway.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        # Requests and limits only matter on a cluster; kfp.local says so for every task.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        tee = _Tee(log, echo)
        with contextlib.redirect_stdout(tee):
            try:
                task = func(**args)
            except RuntimeError as err:  # kfp.local reports a failed task this way
                failure = str(err)
            except TypeError as err:  # arguments the pipeline does not take
                pending_log.unlink(missing_ok=True)
                raise PipelineError(f"pipeline {info.name}: {err}") from None
    new_dirs = sorted(p for p in proot.iterdir() if p.is_dir() and p not in before)
    run_dir = new_dirs[-1] if new_dirs else proot
    log_file = run_dir / LOG_FILE
    pending_log.replace(log_file)
    if failure is not None:
        raise PipelineError(f"local run of pipeline {info.name} failed: {failure} (log: {log_file})")
    outputs = {key: _artifact(key, value) for key, value in sorted((task.outputs or {}).items())}
    return LocalRunResult(pipeline=info.name, run_dir=run_dir, log_file=log_file, outputs=outputs)
