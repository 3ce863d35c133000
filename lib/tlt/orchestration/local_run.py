"""Run a pipeline on this machine through ``kfp.local`` (SubprocessRunner in the current environment).

This is the embedded default of the design: the same compiled components as on a cluster, each task a
subprocess of the current Python (which has ``tlt`` installed), artifacts under a local pipeline
root (``<root>/<pipeline>-<timestamp>/<task>/<output>``) and the run's log beside them.

Everything the tasks print (executor input dumps, TensorFlow's start-up lines, tracebacks) goes to
the run's log; a caller that wants a quiet terminal passes a ``progress`` stream, which receives one
line per task (`tlt.orchestration.local_progress`), and shows
`tlt.orchestration.summary.render_summary` of the result (`tlt.orchestration.local_results`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, TextIO

from tlt.errors import Interrupted, PipelineError
from tlt.orchestration.local_progress import RunWatcher, base_name, failure_line
from tlt.orchestration.local_resume import check_resume_dir, run_folder
from tlt.orchestration.local_results import LocalArtifact, LocalRunResult, StepResult
from tlt.orchestration.local_stop import sigterm_stops_tasks
from tlt.orchestration.paths import repo_root
from tlt.orchestration.pipelines import get_pipeline, load_pipeline
from tlt.orchestration.preflight import check_local_run

__all__ = ["DEFAULT_PIPELINE_ROOT", "LOG_FILE", "parse_params", "run_local"]

#: Where local runs keep their artifacts unless told otherwise (relative to the working directory).
DEFAULT_PIPELINE_ROOT = ".tlt-local-runs"
LOG_FILE = "run.log"

# KFP input type name -> Python converter for --param values given as text.
_CONVERTERS = {
    "String": str,
    "Integer": int,
    "Float": float,
    "Boolean": lambda text: {"true": True, "false": False}[text.strip().lower()],
    "List": lambda text: _json_of(text, list),
    "Dict": lambda text: _json_of(text, dict),
}


def _json_of(text: str, kind: type) -> Any:
    """A JSON list or object given as text (``[0.05, 0.1]``); ValueError otherwise."""
    value = json.loads(text)
    if not isinstance(value, kind):
        raise ValueError(text)
    return value


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


def _load(name: str, root: str | Path | None, retries: bool, compiled: bool) -> Any:
    """The pipeline function: the Python DSL, or the checked-in compiled YAML."""
    if not compiled:
        return load_pipeline(name, root=root, retries=retries)
    from kfp import components

    yaml_path = Path(root if root is not None else repo_root()) / "pipelines" / f"{name}.yaml"
    if not yaml_path.is_file():
        raise PipelineError(f"compiled pipeline {yaml_path} is missing (run `tlt-pipeline compile`)")
    return components.load_component_from_file(str(yaml_path))


def _stage_tasks(func: Any) -> dict[str, bool]:
    """Every task that runs a component, in all of the pipeline's DAGs (inside conditions, loops
    and the exit handler too) -> whether it sits inside a condition (``dsl.If``)."""
    return {name: gated for name, (gated, _) in _walk_tasks(func).items()}


def _walk_tasks(func: Any) -> dict[str, tuple[bool, str | None]]:
    """Task -> (inside a condition, the pipeline parameter its enclosing loop iterates or None)."""
    spec = func.pipeline_spec
    found: dict[str, tuple[bool, str | None]] = {}

    def walk(dag: Any, conditional: bool, loop: str | None) -> None:
        for name, task in dag.tasks.items():
            comp = spec.components[task.component_ref.name]
            gated = conditional or bool(task.trigger_policy.condition)
            items = task.parameter_iterator.items.input_parameter if task.HasField("parameter_iterator") else ""
            inner = items.removeprefix("pipelinechannel--") if items else loop
            if comp.WhichOneof("implementation") == "dag":
                walk(comp.dag, gated, inner)
            else:
                found[name] = (gated, loop)

    walk(spec.root.dag, False, None)
    return found


def _planned_steps(func: Any, args: Mapping[str, Any]) -> int:
    """How many steps a run executes at most: a loop's tasks once per item of its list."""
    inputs = func.component_spec.inputs or {}

    def items(param: str) -> int:
        value = args.get(param, getattr(inputs.get(param), "default", None))
        return len(value) if isinstance(value, (list, tuple)) else 1

    return sum(items(loop) if loop else 1 for _, loop in _walk_tasks(func).values())


def _with_unrun_steps(steps: list[StepResult], func: Any, failed: bool) -> list[StepResult]:
    ran = {base_name(s.name) for s in steps}
    tasks = _stage_tasks(func)
    return steps + [StepResult(name, "skipped" if gated and not failed else "not run")
                    for name, gated in sorted(tasks.items()) if name not in ran]


def _output_kinds(func: Any) -> dict[tuple[str, str], str]:
    """(task, output) -> KFP artifact class name (``Model``, ``HTML`` ...) of every stage task."""
    spec = func.pipeline_spec
    kinds: dict[tuple[str, str], str] = {}

    def walk(dag: Any) -> None:
        for name, task in dag.tasks.items():
            comp = spec.components[task.component_ref.name]
            if comp.WhichOneof("implementation") == "dag":
                walk(comp.dag)
                continue
            for output, definition in comp.output_definitions.artifacts.items():
                kinds[(name, output)] = definition.artifact_type.schema_title.split(".")[-1]

    walk(spec.root.dag)
    return kinds


def _html_copies(outputs: dict[str, LocalArtifact], run_dir: Path) -> None:
    """Copy each HTML output to ``<run>/<name>.html``: KFP names the file without an extension,
    which a browser would not open as a page."""
    for art in outputs.values():
        if art.kind == "HTML" and art.path.is_file():
            art.page = run_dir / f"{art.name}.html"
            shutil.copyfile(art.path, art.page)


def run_local(name: str, params: Mapping[str, Any] | Iterable[str] = (), *,
              pipeline_root: str | Path = DEFAULT_PIPELINE_ROOT, root: str | Path | None = None,
              echo: TextIO | None = None, progress: TextIO | None = None, retries: bool = False,
              compiled: bool = False, resume: str | Path | None = None) -> LocalRunResult:
    """Run pipeline ``name`` with kfp.local's SubprocessRunner in the current environment.

    The inputs a local run can check (data set folders, spec texts) are checked first, so a missing
    data set is one line rather than a failed task.

    Args:
        name: catalogue name (``detection``).
        params: pipeline arguments, as a mapping or as ``"k=v"`` strings.
        pipeline_root: folder that receives the run's artifacts.
        root: the checkout holding ``pipelines/`` and ``components/``; default `repo_root`.
        echo: a stream that also receives everything the tasks print (the log's content).
        progress: a stream that receives one line as each task starts and ends.
        retries: apply the registry's retry policies (kfp.local waits out their backoff, 30 s and
            more, before reporting a failure; off by default).
        compiled: run the checked-in compiled definition ``pipelines/<name>.yaml`` (what Kubeflow
            runs) instead of the Python DSL; its retry policies always apply.
        resume: the folder of an earlier run of this pipeline that was killed or failed: the run
            goes on in it (``pipeline_root`` is its parent). Steps that finished are reused from
            kfp.local's cache (on for every run, as on Kubeflow; tasks with caching off run again),
            train and retrain resume from their checkpoints (see `tlt.orchestration.local_resume`).

    Returns:
        The run folder, its log, its output artifacts with their metadata and each step's status.

    Raises:
        PipelineError: unknown pipeline or parameters, a missing data set, or a task that failed
            (the message is the task's one-line error and names the log file).
    """
    info = get_pipeline(name)
    func = _load(info.name, root, retries, compiled)
    args = dict(params) if isinstance(params, Mapping) else parse_params(params, func)
    check_local_run(info.name, args, func)
    resumed = check_resume_dir(resume, func.pipeline_spec.pipeline_info.name) if resume else None
    proot = resumed.parent if resumed else Path(pipeline_root).expanduser().resolve()
    proot.mkdir(parents=True, exist_ok=True)
    before = {p for p in proot.iterdir() if p.is_dir()}
    pending_log = proot / f".{info.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    started = time.monotonic()
    try:
        with run_folder(resumed.name) if resumed else contextlib.nullcontext():
            task, watcher = _execute(func, args, proot, pending_log, echo, progress)
    except TypeError as err:  # arguments the pipeline does not take
        pending_log.unlink(missing_ok=True)
        raise PipelineError(f"pipeline {info.name}: {err}") from None
    except Interrupted:  # SIGTERM: the running task stopped too; say how to go on, keep the log
        run_dir = resumed or _newest_dir(proot, before)
        _keep_log(pending_log, run_dir / LOG_FILE)
        raise Interrupted(f"stopped by SIGTERM; go on with: tlt-pipeline run {info.name} --local "
                          f"--resume {run_dir} (and the same --param values)") from None
    run_dir = resumed or _newest_dir(proot, before)
    log_file = run_dir / LOG_FILE
    _keep_log(pending_log, log_file)
    if task is None:
        raise PipelineError(failure_line(info.name, watcher.steps, log_file))
    outputs = {key: _artifact(key, value) for key, value in sorted((task.outputs or {}).items())}
    if not outputs:  # a DAG inside an ExitHandler returns nothing: read its tasks' outputs
        outputs = _task_outputs(run_dir, _output_map(func, info.name, root), _output_kinds(func))
    _html_copies(outputs, run_dir)
    return LocalRunResult(pipeline=info.name, run_dir=run_dir, log_file=log_file, outputs=outputs,
                          steps=_with_unrun_steps(watcher.steps, func, failed=False),
                          seconds=time.monotonic() - started)


def _output_map(func: Any, name: str, root: str | Path | None) -> dict[str, tuple[str, str]]:
    """The pipeline module's ``LOCAL_OUTPUTS`` (output name -> (task, output)); {} without one."""
    module = sys.modules.get(getattr(getattr(func, "pipeline_func", None), "__module__", ""), None)
    if module is None:  # a compiled definition: the Python DSL beside it names the outputs
        func = load_pipeline(name, root=root)
        module = sys.modules.get(func.pipeline_func.__module__)
    return dict(getattr(module, "LOCAL_OUTPUTS", {}) or {})


def _task_outputs(run_dir: Path, names: Mapping[str, tuple[str, str]],
                  kinds: Mapping[tuple[str, str], str]) -> dict[str, LocalArtifact]:
    """Output artifacts of the run's tasks from their ``executor_output.json`` files.

    kfp.local writes ``<run>/<task>/executor_output.json`` (a loop's under
    ``<run>/for-loop-N-iteration-I/<task>/``; the first iteration is kept). ``names`` maps each
    reported name to its (task, output); without names every output is ``<task>/<output>``.
    """
    found: dict[tuple[str, str], LocalArtifact] = {}
    for path in sorted(run_dir.rglob("executor_output.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for output, entry in (data.get("artifacts") or {}).items():
            arts = entry.get("artifacts") or []
            if arts and (path.parent.name, output) not in found:
                art = arts[0]
                found[(path.parent.name, output)] = LocalArtifact(
                    output, kinds.get((path.parent.name, output), "Artifact"), Path(art.get("uri", "")),
                    _ints(dict(art.get("metadata") or {})))
    if not names:
        return {f"{t}/{o}": a for (t, o), a in sorted(found.items())}
    outputs = {}
    for name, key in names.items():
        if tuple(key) in found:
            art = found[tuple(key)]
            outputs[name] = LocalArtifact(name, art.kind, art.path, art.metadata)
    return dict(sorted(outputs.items()))


def _newest_dir(proot: Path, before: set[Path]) -> Path:
    """The run folder kfp.local made (the newest new folder under the pipeline root)."""
    new_dirs = sorted(p for p in proot.iterdir() if p.is_dir() and p not in before)
    return new_dirs[-1] if new_dirs else proot


def _keep_log(pending: Path, log_file: Path) -> None:
    """Move the run's log into its folder; a resumed run's log goes after the earlier one's."""
    if not log_file.is_file():
        pending.replace(log_file)
        return
    with open(log_file, "a", encoding="utf-8") as out:
        out.write(f"\n--- resumed {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
        out.write(pending.read_text(encoding="utf-8"))
    pending.unlink()


def _execute(func: Any, args: Mapping[str, Any], proot: Path, log_path: Path, echo: TextIO | None,
             progress: TextIO | None) -> tuple[Any, RunWatcher]:
    """Run the pipeline in kfp.local with its output in ``log_path``; the task is None on failure."""
    from kfp import local

    # Caching as on Kubeflow (each task's caching option decides): a resumed run reuses the steps
    # that finished; the cache lives in <pipeline root>/.kfp_cache.
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(proot), raise_on_error=True,
               enable_caching=True)
    with open(log_path, "w", encoding="utf-8") as log, warnings.catch_warnings():
        # The project image is not a "python" image; in a SubprocessRunner the image is unused anyway.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        # Requests and limits only matter on a cluster; kfp.local says so for every task.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        watcher = RunWatcher(log, echo, progress, total=_planned_steps(func, args))
        with contextlib.redirect_stdout(watcher), _root_logging_to(watcher), sigterm_stops_tasks():
            try:
                return func(**args), watcher
            except RuntimeError:  # kfp.local reports a failed task this way; the watcher saw which
                return None, watcher


@contextlib.contextmanager
def _root_logging_to(stream: TextIO) -> Iterator[None]:
    """Within the block, records of the root logger (kfp.local logs there, e.g. its workspace
    clean-up) go to ``stream`` instead of the terminal."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [logging.StreamHandler(stream)]
    try:
        yield
    finally:
        root.handlers[:] = saved
