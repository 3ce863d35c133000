"""Argo Workflows manifests from the same registry and pipelines as the KFP components.

One WorkflowTemplate per stage (`build_workflow_template`), whose container runs
``tlt-pipeline stage <name>`` in the project image; the Workflow of each pipeline comes from
`tlt.orchestration.argo_workflow`. Outputs go to the cluster's artifact repository (S3/MinIO keys) named by
`build_artifact_repositories`.

The registry's Kubernetes settings appear as in the KFP tasks (`tlt.orchestration.task_settings`):
resources, retries with backoff, secrets as environment, the memory-backed /dev/shm and, with
``gpu=True`` (the kustomize ``gpu`` overlay, `gpu_settings`), the GPU request, its toleration and the
node selector read from the workflow parameter ``gpu_node_selector`` (a JSON object, through
``podSpecPatch`` because Argo substitutes parameters only into strings).
"""

from __future__ import annotations

from typing import Any


from tlt.errors import PipelineError
from tlt.orchestration.paths import project_image, stage_image
from tlt.orchestration.stage_types import (Param, SecretEnv, Stage, input_path, output_path,
                                            result_path)
from tlt.orchestration.stage_types import (GPU_NODE_SELECTOR_PARAM, GPU_RESOURCE, GPU_TOLERATION, SHM_MOUNT_PATH,
                                           SHM_VOLUME)

__all__ = [
    "API_VERSION",
    "LABELS",
    "argo_value",
    "ARTIFACT_REPOSITORY_CONFIGMAP",
    "ARTIFACT_REPOSITORY_KEY",
    "template_name",
    "inner_template_name",
    "build_workflow_template",
    "build_artifact_repositories",
    "ARTIFACT_REPOSITORY_KINDS",
    "WORKFLOW_SERVICE_ACCOUNT",
    "gpu_settings",
    "NODE_SELECTOR_PATCH",
]

API_VERSION = "argoproj.io/v1alpha1"
#: ConfigMap (and key in it) describing the S3/MinIO bucket Argo stores artifacts in.
ARTIFACT_REPOSITORY_CONFIGMAP = "artifact-repositories"
# One key for every overlay (minio, s3, gcs), so the Workflows' artifactRepositoryRef fits them all.
ARTIFACT_REPOSITORY_KEY = "tlt-artifact-repository"
#: The service account every stage's pod runs as (its Role lets Argo's executor report results).
WORKFLOW_SERVICE_ACCOUNT = "tlt-workflow"
LABELS = {"app.kubernetes.io/part-of": "tlt-pipelines"}
#: The pod spec patch of a GPU template: its node selector is the workflow parameter, a JSON object.
NODE_SELECTOR_PATCH = f'{{"nodeSelector": {{{{workflow.parameters.{GPU_NODE_SELECTOR_PARAM}}}}}}}'


def template_name(stage: Stage) -> str:
    """Name of the stage's WorkflowTemplate (the template inside it is `inner_template_name`)."""
    return f"tlt-{inner_template_name(stage)}"


def inner_template_name(stage: Stage) -> str:
    """Name of the container template inside the stage's WorkflowTemplate: the stage name with
    dashes, as Argo allows only letters, digits and '-' in template names (``build-engine``)."""
    return stage.name.replace("_", "-")


def argo_value(value: Any) -> str:
    """Argo parameters are strings: booleans lower-case, integral floats without '.0'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _input_parameter(p: Param) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": p.name, "description": p.help}
    if not p.required:
        entry["default"] = argo_value(p.default)
    return entry


def _env(secrets: tuple[SecretEnv, ...]) -> list[dict[str, Any]]:
    return [{"name": env, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": key, "optional": s.optional}}}
            for s in secrets for key, env in s.keys]


def build_workflow_template(stage: Stage, image: str | None = None, *, gpu: bool = True) -> dict[str, Any]:
    """The WorkflowTemplate ``tlt-<stage>`` holding one container template named ``<stage>``.

    Args:
        stage: the registry entry.
        image: the container image; default `tlt.orchestration.paths.project_image`.
        gpu: include `gpu_settings` for a GPU stage, the GPU image among them (the kustomize
            base leaves them to the ``gpu`` overlay, so the base runs on clusters without GPUs).
    """
    r = stage.resources
    template: dict[str, Any] = {
        "name": inner_template_name(stage),
        "metadata": {"labels": {**LABELS, "tlt-pipelines/stage": stage.name}},
        "inputs": {"parameters": [_input_parameter(p) for p in stage.params]},
        "container": {
            "image": project_image(image),
            "command": stage.argv()[:1],
            "args": stage.argv()[1:],
            "resources": {"requests": {"cpu": r.cpu_request, "memory": r.memory_request},
                          "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit}},
        },
        "outputs": _outputs(stage),
        "retryStrategy": _retry_strategy(stage),
        "serviceAccountName": WORKFLOW_SERVICE_ACCOUNT,
    }
    if stage.inputs:
        template["inputs"]["artifacts"] = [
            {"name": a.name, "path": input_path(a.name), **({"optional": True} if a.optional else {})}
            for a in stage.inputs]
    env = _env(stage.env_secrets())
    if env:
        template["container"]["env"] = env
    if r.shm_size:
        template["volumes"] = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": r.shm_size}}]
        template["container"]["volumeMounts"] = [{"name": SHM_VOLUME, "mountPath": SHM_MOUNT_PATH}]
    if gpu and r.gpus:
        settings = gpu_settings(stage)
        template["container"]["image"] = settings["image"]
        template["container"]["resources"]["limits"].update(settings["limits"])
        template["tolerations"] = settings["tolerations"]
        template["podSpecPatch"] = settings["podSpecPatch"]
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowTemplate",
        "metadata": {"name": template_name(stage), "labels": dict(LABELS),
                     "annotations": {"workflows.argoproj.io/description": stage.description}},
        "spec": {"templates": [template]},
    }


def gpu_settings(stage: Stage) -> dict[str, Any]:
    """What a GPU stage's template changes on a GPU cluster: ``image`` (the GPU image,
    `tlt.orchestration.paths.stage_image`), ``limits`` (the GPU request), ``tolerations`` and
    ``podSpecPatch`` (the node selector from the workflow parameter ``gpu_node_selector``); empty
    parts for a CPU stage."""
    if not stage.resources.gpus:
        return {"image": "", "limits": {}, "tolerations": [], "podSpecPatch": ""}
    return {"image": stage_image(stage),
            "limits": {GPU_RESOURCE: str(stage.resources.gpus)},
            "tolerations": [dict(GPU_TOLERATION)],
            "podSpecPatch": NODE_SELECTOR_PATCH}


def _outputs(stage: Stage) -> dict[str, Any]:
    # No location: the cluster's artifact repository (its keyFormat) places every output, on S3,
    # MinIO or GCS alike. Folders stay unpacked (archive none) so a reader sees the files.
    outputs: dict[str, Any] = {"artifacts": [
        {"name": a.name, "path": output_path(a.name), "archive": {"none": {}}} for a in stage.outputs]}
    if stage.results:
        # Scalar results (a gate's verdict) the DAG's `when` conditions read.
        outputs["parameters"] = [{"name": res.name, "valueFrom": {"path": result_path(res.name)}}
                                 for res in stage.results]
    return outputs


def _retry_strategy(stage: Stage) -> dict[str, Any]:
    retry = stage.retry
    return {
        "limit": str(retry.num_retries),
        # Always: a preempted or evicted pod (an Argo "error") resumes from its checkpoint too.
        "retryPolicy": "Always",
        "backoff": {"duration": f"{retry.backoff_seconds}s", "factor": str(retry.backoff_factor),
                    "maxDuration": f"{retry.backoff_max_seconds}s"},
    }


#: Where each kind of artifact repository keeps the artifacts (the kustomize overlays' defaults).
_REPOSITORIES: dict[str, dict[str, Any]] = {
    # MinIO in the cluster (the default overlay): path-style, plain HTTP inside the cluster.
    "minio": {"s3": {"bucket": "tlt-artifacts", "endpoint": "minio.minio.svc:9000", "insecure": True}},
    # AWS S3: credentials from the same secret as the stages' storage access.
    "s3": {"s3": {"bucket": "tlt-artifacts", "endpoint": "s3.amazonaws.com", "region": "us-east-1",
                  "insecure": False}},
    # GCS with Workload Identity: the workflow service account is bound to a Google service account.
    "gcs": {"gcs": {"bucket": "tlt-artifacts"}},
}
#: The artifact repository kinds the overlays use, default first.
ARTIFACT_REPOSITORY_KINDS = tuple(_REPOSITORIES)


def build_artifact_repositories(kind: str = "minio",
                                secret: str = "tlt-storage-credentials") -> tuple[dict[str, Any], dict[str, Any]]:
    """The ConfigMap naming the cluster's artifact repository, and that repository.

    Args:
        kind: one of `ARTIFACT_REPOSITORY_KINDS` (minio, s3, gcs).
        secret: the S3/MinIO credentials secret (unused for gcs).

    Returns:
        ``(configmap, repository)``: the Kubernetes ConfigMap (its data holds ``repository`` as YAML
        under `ARTIFACT_REPOSITORY_KEY`, the key every Workflow names) and the repository as a dict,
        so tests can validate it against Argo's ArtifactRepository.

    Raises:
        PipelineError: an unknown kind.
    """
    import copy

    import yaml

    if kind not in _REPOSITORIES:
        raise PipelineError(f"unknown artifact repository {kind!r}: expected one of "
                            f"{', '.join(ARTIFACT_REPOSITORY_KINDS)}")
    repository = copy.deepcopy(_REPOSITORIES[kind])
    store = next(iter(repository.values()))
    # Unique per task and retry: two tasks of one stage (evaluate, evaluate-2) never share a key.
    store["keyFormat"] = "tlt/{{workflow.name}}/{{pod.name}}"
    if "s3" in repository:
        store["accessKeySecret"] = {"name": secret, "key": "AWS_ACCESS_KEY_ID"}
        store["secretKeySecret"] = {"name": secret, "key": "AWS_SECRET_ACCESS_KEY"}
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ARTIFACT_REPOSITORY_CONFIGMAP, "labels": dict(LABELS),
                     "annotations": {"workflows.argoproj.io/default-artifact-repository": ARTIFACT_REPOSITORY_KEY}},
        "data": {ARTIFACT_REPOSITORY_KEY: yaml.safe_dump(repository, sort_keys=True)},
    }
    return configmap, repository
