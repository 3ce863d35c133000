"""Kubernetes settings of a pipeline task, applied from the stage registry (the one place they are
declared): resources, GPU and tolerations, retries with backoff and secrets as environment."""

from __future__ import annotations

from typing import Any

from tlt.orchestration.components import retries_enabled
from tlt.orchestration.registry import get_stage

__all__ = ["configure_task"]


def configure_task(task: Any, stage_name: str | None = None) -> Any:
    """Apply the registry's resources, GPU, retry policy and secrets to a pipeline task.

    Args:
        task: a `kfp.dsl.PipelineTask` made by calling a generated component.
        stage_name: registry key; default the task's component name (KFP writes ``build-engine``
            for the function ``build_engine``).

    Returns:
        ``task``, so a pipeline can write ``t = configure_task(convert(...))``.
    """
    from kfp import kubernetes

    stage = get_stage(stage_name or task.component_spec.name.replace("-", "_"))
    r, retry = stage.resources, stage.retry
    task.set_cpu_request(r.cpu_request).set_cpu_limit(r.cpu_limit)
    task.set_memory_request(r.memory_request).set_memory_limit(r.memory_limit)
    if r.gpus:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(r.gpus)
        kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    if retries_enabled():
        task.set_retry(num_retries=retry.num_retries, backoff_duration=f"{retry.backoff_seconds}s",
                       backoff_factor=retry.backoff_factor, backoff_max_duration=f"{retry.backoff_max_seconds}s")
    for secret in stage.env_secrets():
        kubernetes.use_secret_as_env(task, secret_name=secret.secret, secret_key_to_env=dict(secret.keys),
                                     optional=secret.optional)
    return task
