"""``tlt-pipeline schedule``: a Kubeflow recurring run of a catalogue pipeline.

The pipeline is compiled from ``pipelines/<name>.py`` (with the registry's retry policies) and
submitted with ``kfp.Client(host).create_recurring_run``: six-field cron (seconds first, what the
KFP API takes; a five-field expression gets second 0), at most one run at a time
(``max_concurrency=1``: a retraining that overruns its period is not doubled) and no catch-up
(``no_catchup=True``: after a pause the scheduler starts one run, not one per missed period).
The same schedule for Argo is the CronWorkflow ``tlt-pipeline compile`` writes into manifests/.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from tlt.errors import PipelineError
from tlt.scheduling import CronSchedule, parse_cron

__all__ = ["DEFAULT_EXPERIMENT", "ScheduledRun", "connect", "schedule_pipeline"]

#: The experiment recurring runs go into unless told otherwise.
DEFAULT_EXPERIMENT = "tlt-scheduled"


@dataclass(frozen=True)
class ScheduledRun:
    """A created recurring run.

    Attributes:
        pipeline: catalogue name.
        job_name: the recurring run's display name.
        experiment: experiment name.
        experiment_id: its id on the server.
        recurring_run_id: the new recurring run's id.
        schedule: the checked cron expression (both forms, and which one was given).
        params: the pipeline arguments the runs get.
    """

    pipeline: str
    job_name: str
    experiment: str
    experiment_id: str
    recurring_run_id: str
    schedule: CronSchedule
    params: dict[str, Any]


def connect(host: str) -> Any:
    """A ``kfp.Client`` for ``host`` (its constructor checks the API's health endpoint).

    Raises:
        PipelineError: no Kubeflow Pipelines API answers at ``host`` (one line).
    """
    import kfp

    try:
        # urllib3 logs each of its connection retries and kfp warns about server versions: the
        # user gets the one line below instead.
        with _quiet("urllib3.connectionpool"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return kfp.Client(host=host)
    except Exception as err:  # urllib3 / kfp_server_api errors: the host is what matters
        raise PipelineError(f"no Kubeflow Pipelines API reachable at {host}: "
                            f"{_reason(err)}") from None


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Within the block, ``logger_name`` logs errors only."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _reason(err: Exception) -> str:
    """The innermost cause of a connection error, one line (urllib3 nests its reasons)."""
    reason = getattr(err, "reason", None) or err
    text = str(getattr(reason, "reason", None) or reason)
    for marker in ("Failed to establish a new connection: ", "] "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return " ".join(text.rstrip("')\"").split()) or type(err).__name__


def _compile(name: str, func: Any, folder: Path) -> Path:
    """The pipeline package KFP uploads: the IR and its Kubernetes platform spec as YAML.

    Written from the compiled messages rather than by ``Compiler.compile``, whose comment header
    breaks the YAML when a parameter default (a spec) spans lines.
    """
    import yaml
    from google.protobuf import json_format

    docs = [json_format.MessageToDict(func.pipeline_spec)]
    if func.platform_spec.platforms:
        docs.append(json_format.MessageToDict(func.platform_spec))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=True), encoding="utf-8")
    return path


def schedule_pipeline(name: str, cron: str, host: str, *,
                      experiment: str = DEFAULT_EXPERIMENT,
                      params: Mapping[str, Any] | Iterable[str] = (), job_name: str | None = None,
                      client_factory: Callable[[str], Any] | None = None) -> ScheduledRun:
    """Compile pipeline ``name`` and create a recurring run of it on the KFP server at ``host``.

    Args:
        name: catalogue name (``retraining``).
        cron: five- or six-field cron expression, or a macro (``@daily``).
        host: the KFP API endpoint (``http://localhost:8080``).
        experiment: experiment name; created when the server has none of that name.
        params: pipeline arguments (a mapping, or ``"k=v"`` strings checked against the
            pipeline's inputs).
        job_name: the recurring run's name; default ``<name> (<cron>)``.
        client_factory: ``host -> kfp.Client``; default `connect` (tests inject a fake).

    Returns:
        The created `ScheduledRun`.

    Raises:
        SpecError: an invalid cron expression (one line naming the field), before anything
            else happens.
        PipelineError: unknown pipeline or parameters, no KFP API at ``host``, or the server
            refusing the request.
    """
    from tlt.orchestration.local_run import parse_params
    from tlt.orchestration.pipelines import get_pipeline, load_pipeline

    schedule = parse_cron(cron)
    info = get_pipeline(name)
    func = load_pipeline(info.name)
    args = dict(params) if isinstance(params, Mapping) else parse_params(params, func)
    client = (client_factory or connect)(host)
    job = job_name or f"{info.name} ({schedule.given})"
    with tempfile.TemporaryDirectory(prefix="tlt-schedule-") as tmp:
        package = _compile(info.name, func, Path(tmp))
        try:
            exp = client.create_experiment(name=experiment)
            run = client.create_recurring_run(
                experiment_id=exp.experiment_id, job_name=job,
                description=f"{info.description} Schedule: {schedule.note}.",
                cron_expression=schedule.kfp_cron, max_concurrency=1, no_catchup=True,
                params=args, pipeline_package_path=str(package), enabled=True)
        except Exception as err:  # the server's ApiException or a dropped connection
            raise PipelineError(f"KFP at {host} refused the recurring run of {info.name}: "
                                f"{_reason(err)}") from None
    return ScheduledRun(info.name, job, experiment, exp.experiment_id,
                        getattr(run, "recurring_run_id", "") or "", schedule, args)
