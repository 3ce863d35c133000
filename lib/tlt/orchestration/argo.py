"""Argo Workflows manifests from the same registry and pipelines as the KFP components.

One WorkflowTemplate per stage (`build_workflow_template`), whose container runs
``tlt-pipeline stage <name>`` in the project image, and one Workflow per pipeline
(`build_workflow`) translated from the pipeline's compiled KFP IR, so the DAG is written once (in
``pipelines/<name>.py``). Outputs go to the cluster's artifact repository (S3/MinIO keys) named by
`build_artifact_repositories`.
"""

from __future__ import annotations

from typing import Any, Mapping

from tlt.errors import PipelineError
from tlt.orchestration.paths import project_image
from tlt.orchestration.registry import Param, SecretEnv, Stage, get_stage, input_path, output_path

__all__ = [
    "API_VERSION",
    "ARTIFACT_REPOSITORY_CONFIGMAP",
    "ARTIFACT_REPOSITORY_KEY",
    "template_name",
    "inner_template_name",
    "build_workflow_template",
    "build_workflow",
    "build_artifact_repositories",
]

API_VERSION = "argoproj.io/v1alpha1"
#: ConfigMap (and key in it) describing the S3/MinIO bucket Argo stores artifacts in.
ARTIFACT_REPOSITORY_CONFIGMAP = "artifact-repositories"
ARTIFACT_REPOSITORY_KEY = "tlt-minio"
_LABELS = {"app.kubernetes.io/part-of": "tlt-pipelines"}


def template_name(stage: Stage) -> str:
    """Name of the stage's WorkflowTemplate (the template inside it is `inner_template_name`)."""
    return f"tlt-{inner_template_name(stage)}"


def inner_template_name(stage: Stage) -> str:
    """Name of the container template inside the stage's WorkflowTemplate: the stage name with
    dashes, as Argo allows only letters, digits and '-' in template names (``build-engine``)."""
    return stage.name.replace("_", "-")


def _argo_value(value: Any) -> str:
    """Argo parameters are strings: booleans lower-case, integral floats without '.0'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _input_parameter(p: Param) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": p.name, "description": p.help}
    if not p.required:
        entry["default"] = _argo_value(p.default)
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
        "metadata": {"labels": {**_LABELS, "tlt-pipelines/stage": stage.name}},
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
        "metadata": {"name": template_name(stage), "labels": dict(_LABELS),
                     "annotations": {"workflows.argoproj.io/description": stage.description}},
        "spec": {"templates": [template]},
    }


def _task_stage(task: Mapping[str, Any], ir: Mapping[str, Any]) -> Stage:
    """The registry stage a KFP IR task runs (the function its executor calls)."""
    comp = ir["components"][task["componentRef"]["name"]]
    container = ir["deploymentSpec"]["executors"][comp["executorLabel"]]["container"]
    args = container.get("args", [])
    if "--function_to_execute" not in args:
        raise PipelineError(f"task {task['taskInfo']['name']} is not a TLT component (no --function_to_execute)")
    return get_stage(args[args.index("--function_to_execute") + 1])


def _parameter_argument(name: str, spec: Mapping[str, Any], task_name: str) -> dict[str, Any]:
    if "componentInputParameter" in spec:
        return {"name": name, "value": f"{{{{workflow.parameters.{spec['componentInputParameter']}}}}}"}
    if "runtimeValue" in spec:
        return {"name": name, "value": _argo_value(spec["runtimeValue"]["constant"])}
    if "taskOutputParameter" in spec:
        out = spec["taskOutputParameter"]
        return {"name": name, "value": f"{{{{tasks.{out['producerTask']}.outputs.parameters.{out['outputParameterKey']}}}}}"}
    raise PipelineError(f"task {task_name}: parameter {name} has an input kind Argo translation does not "
                        f"support: {sorted(spec)}")


def _artifact_argument(name: str, spec: Mapping[str, Any], task_name: str) -> dict[str, Any]:
    if "taskOutputArtifact" in spec:
        out = spec["taskOutputArtifact"]
        return {"name": name, "from": f"{{{{tasks.{out['producerTask']}.outputs.artifacts.{out['outputArtifactKey']}}}}}"}
    raise PipelineError(f"task {task_name}: artifact {name} must come from an upstream task, got {sorted(spec)}")


_IR_DEFAULT_CAST = {"NUMBER_INTEGER": int, "BOOLEAN": bool}


def build_workflow(name: str, ir: Mapping[str, Any]) -> dict[str, Any]:
    """The Argo Workflow of pipeline ``name`` from its compiled KFP IR (the first YAML document).

    Each KFP task becomes a DAG task with a ``templateRef`` to its stage's WorkflowTemplate; pipeline
    parameters become workflow parameters with the same names and defaults.

    Raises:
        PipelineError: when the IR uses something without an Argo translation (control flow,
            importers, constant artifacts).
    """
    root = ir["root"]
    if any(key in root.get("dag", {}) for key in ("condition", "iterator")):
        raise PipelineError(f"pipeline {name}: control flow has no Argo translation")
    params = []
    for pname, pdef in sorted(root.get("inputDefinitions", {}).get("parameters", {}).items()):
        entry: dict[str, Any] = {"name": pname}
        if "defaultValue" in pdef:
            cast = _IR_DEFAULT_CAST.get(pdef.get("parameterType"), lambda v: v)
            entry["value"] = _argo_value(cast(pdef["defaultValue"]))
        if pdef.get("description"):
            entry["description"] = pdef["description"]
        params.append(entry)
    tasks = []
    for tname, task in sorted(root["dag"]["tasks"].items()):
        if "triggerPolicy" in task or "iteratorPolicy" in task or "parameterIterator" in task:
            raise PipelineError(f"pipeline {name}: task {tname} uses control flow, which has no Argo translation")
        stage = _task_stage(task, ir)
        inputs = task.get("inputs", {})
        arguments: dict[str, Any] = {}
        if inputs.get("parameters"):
            arguments["parameters"] = [_parameter_argument(k, v, tname)
                                       for k, v in sorted(inputs["parameters"].items())]
        if inputs.get("artifacts"):
            arguments["artifacts"] = [_artifact_argument(k, v, tname)
                                      for k, v in sorted(inputs["artifacts"].items())]
        dag_task: dict[str, Any] = {"name": tname,
                                    "templateRef": {"name": template_name(stage),
                                                    "template": inner_template_name(stage)}}
        if task.get("dependentTasks"):
            dag_task["dependencies"] = sorted(task["dependentTasks"])
        if arguments:
            dag_task["arguments"] = arguments
        tasks.append(dag_task)
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {"generateName": f"tlt-{name}-", "labels": dict(_LABELS),
                     "annotations": {"workflows.argoproj.io/description": ir["pipelineInfo"].get("description", "")}},
        "spec": {
            "entrypoint": name,
            "arguments": {"parameters": params},
            "artifactRepositoryRef": {"configMap": ARTIFACT_REPOSITORY_CONFIGMAP, "key": ARTIFACT_REPOSITORY_KEY},
            "templates": [{"name": name, "dag": {"tasks": tasks}}],
        },
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
        "metadata": {"name": ARTIFACT_REPOSITORY_CONFIGMAP, "labels": dict(_LABELS),
                     "annotations": {"workflows.argoproj.io/default-artifact-repository": ARTIFACT_REPOSITORY_KEY}},
        "data": {ARTIFACT_REPOSITORY_KEY: yaml.safe_dump(repository, sort_keys=True)},
    }
    return configmap, repository
