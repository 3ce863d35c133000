"""Argo Workflows manifests from the same registry and pipelines as the KFP components.

One WorkflowTemplate per stage (`build_workflow_template`), whose container runs
``tlt-pipeline stage <name>`` in the project image; the Workflow of each pipeline comes from
`tlt.orchestration.argo_workflow`. Outputs go to the cluster's artifact repository (S3/MinIO keys) named by
`build_artifact_repositories`.
"""

from __future__ import annotations

from typing import Any

from tlt.orchestration.paths import project_image
from tlt.orchestration.registry import Param, SecretEnv, Stage, input_path, output_path

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
]

API_VERSION = "argoproj.io/v1alpha1"
#: ConfigMap (and key in it) describing the S3/MinIO bucket Argo stores artifacts in.
ARTIFACT_REPOSITORY_CONFIGMAP = "artifact-repositories"
ARTIFACT_REPOSITORY_KEY = "tlt-minio"
LABELS = {"app.kubernetes.io/part-of": "tlt-pipelines"}


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


def build_workflow_template(stage: Stage, image: str | None = None) -> dict[str, Any]:
    """The WorkflowTemplate ``tlt-<stage>`` holding one container template named ``<stage>``.

    Args:
        stage: the registry entry.
        image: the container image; default `tlt.orchestration.paths.project_image`.
    """
    r, retry = stage.resources, stage.retry
    requests: dict[str, Any] = {"cpu": r.cpu_request, "memory": r.memory_request}
    limits: dict[str, Any] = {"cpu": r.cpu_limit, "memory": r.memory_limit}
    template: dict[str, Any] = {
        "name": inner_template_name(stage),
        "metadata": {"labels": {**LABELS, "tlt-pipelines/stage": stage.name}},
        "inputs": {"parameters": [_input_parameter(p) for p in stage.params]},
        "container": {
            "image": project_image(image),
            "command": stage.argv()[:1],
            "args": stage.argv()[1:],
            "resources": {"requests": requests, "limits": limits},
        },
        "outputs": {"artifacts": [
            {"name": a.name, "path": output_path(a.name), "archive": {"none": {}},
             # Key only: bucket, endpoint and credentials come from the cluster's artifact repository.
             "s3": {"key": f"tlt/{{{{workflow.name}}}}/{stage.name}/{a.name}"}}
            for a in stage.outputs]},
        "retryStrategy": {
            "limit": str(retry.num_retries),
            # Always: a preempted or evicted pod (an Argo "error") resumes from its checkpoint too.
            "retryPolicy": "Always",
            "backoff": {"duration": f"{retry.backoff_seconds}s", "factor": str(retry.backoff_factor),
                        "maxDuration": f"{retry.backoff_max_seconds}s"},
        },
    }
    if stage.inputs:
        template["inputs"]["artifacts"] = [
            {"name": a.name, "path": input_path(a.name), **({"optional": True} if a.optional else {})}
            for a in stage.inputs]
    env = _env(stage.env_secrets())
    if env:
        template["container"]["env"] = env
    if r.gpus:
        limits["nvidia.com/gpu"] = str(r.gpus)
        template["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowTemplate",
        "metadata": {"name": template_name(stage), "labels": dict(LABELS),
                     "annotations": {"workflows.argoproj.io/description": stage.description}},
        "spec": {"templates": [template]},
    }


def build_artifact_repositories(bucket: str = "tlt-artifacts", endpoint: str = "minio.minio.svc:9000",
                                secret: str = "tlt-storage-credentials") -> tuple[dict[str, Any], dict[str, Any]]:
    """The ConfigMap naming the cluster's S3/MinIO artifact repository, and that repository.

    Returns:
        ``(configmap, repository)``: the Kubernetes ConfigMap (its data holds ``repository`` as YAML)
        and the repository as a dict, so tests can validate it against Argo's ArtifactRepository.
    """
    import yaml

    repository = {"s3": {
        "bucket": bucket,
        "endpoint": endpoint,
        "insecure": True,
        "keyFormat": "tlt/{{workflow.name}}/{{pod.name}}",
        "accessKeySecret": {"name": secret, "key": "AWS_ACCESS_KEY_ID"},
        "secretKeySecret": {"name": secret, "key": "AWS_SECRET_ACCESS_KEY"},
    }}
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ARTIFACT_REPOSITORY_CONFIGMAP, "labels": dict(LABELS),
                     "annotations": {"workflows.argoproj.io/default-artifact-repository": ARTIFACT_REPOSITORY_KEY}},
        "data": {ARTIFACT_REPOSITORY_KEY: yaml.safe_dump(repository, sort_keys=True)},
    }
    return configmap, repository
