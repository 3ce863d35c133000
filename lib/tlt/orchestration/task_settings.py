"""Kubernetes settings of a pipeline task, applied from the stage registry (the one place they are
declared): resources, GPU with its toleration and node selector, the memory-backed /dev/shm, retries
with backoff, secrets as environment and caching. `tlt.orchestration.argo` writes the same settings
into the Argo templates."""

from __future__ import annotations

from typing import Any

from tlt.errors import PipelineError
from tlt.orchestration.components import retries_enabled
from tlt.orchestration.registry import get_stage
from tlt.orchestration.stage_types import (GPU_NODE_SELECTOR_PARAM, GPU_RESOURCE, GPU_TOLERATION, SHM_MOUNT_PATH,
                                           SHM_VOLUME, Stage)

__all__ = ["configure_task"]


def configure_task(task: Any, stage_name: str | None = None, *, node_selector: Any = None) -> Any:
    """Apply the registry's Kubernetes settings to a pipeline task.

    Args:
        task: a `kfp.dsl.PipelineTask` made by calling a generated component.
        stage_name: registry key; default the task's component name (KFP writes ``build-engine``
            for the function ``build_engine``).
        node_selector: for a GPU stage, the pipeline's ``gpu_node_selector`` parameter (a ``dict``
            pipeline parameter holding a JSON object such as
            ``{"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}``) or a fixed dict; None
            leaves the node choice to the GPU request and toleration.

    Returns:
        ``task``, so a pipeline can write ``t = configure_task(convert(...))``.

    Raises:
        PipelineError: ``node_selector`` given for a stage that runs on CPU nodes.
    """
    from kfp import kubernetes

    stage = get_stage(stage_name or task.component_spec.name.replace("-", "_"))
    r, retry = stage.resources, stage.retry
    task.set_cpu_request(r.cpu_request).set_cpu_limit(r.cpu_limit)
    task.set_memory_request(r.memory_request).set_memory_limit(r.memory_limit)
    _configure_gpu(task, stage, node_selector)
    if r.shm_size:
        kubernetes.empty_dir_mount(task, volume_name=SHM_VOLUME, mount_path=SHM_MOUNT_PATH, medium="Memory",
                                   size_limit=r.shm_size)
    if retries_enabled():
        task.set_retry(num_retries=retry.num_retries, backoff_duration=f"{retry.backoff_seconds}s",
                       backoff_factor=retry.backoff_factor, backoff_max_duration=f"{retry.backoff_max_seconds}s")
    for secret in stage.env_secrets():
        kubernetes.use_secret_as_env(task, secret_name=secret.secret, secret_key_to_env=dict(secret.keys),
                                     optional=secret.optional)
    task.set_caching_options(enable_caching=stage.caching)
    return task


def _configure_gpu(task: Any, stage: Stage, node_selector: Any) -> None:
    """GPU request, toleration of the GPU taint and the node selector of a GPU stage."""
    from kfp import kubernetes

    if not stage.resources.gpus:
        if node_selector is not None:
            raise PipelineError(f"stage {stage.name} runs on CPU nodes: pass node_selector "
                                f"({GPU_NODE_SELECTOR_PARAM}) only to GPU stages")
        return
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(stage.resources.gpus)
    kubernetes.add_toleration(task, **GPU_TOLERATION)
    if isinstance(node_selector, dict):
        for key, value in sorted(node_selector.items()):
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
    elif node_selector is not None:
        # A pipeline parameter: the KFP driver reads the JSON object when the task starts.
        kubernetes.add_node_selector_json(task, node_selector)
