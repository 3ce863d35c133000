"""The ``manifests/`` tree for ``kubectl apply -k``: a kustomize base and overlays, from the registry.

Layout (every file written by ``tlt-pipeline compile``)::

    manifests/templates/      one WorkflowTemplate per stage (+ kustomization.yaml)
    manifests/base/           namespace, RBAC of the workflow service account, the templates
    manifests/overlays/minio  base + artifact repository in the cluster's MinIO (the default)
    manifests/overlays/s3     base + artifact repository on AWS S3
    manifests/overlays/gcs    base + artifact repository on GCS (Workload Identity)
    manifests/overlays/gpu    minio + components/gpu (GPU request, toleration, node selector)
    manifests/components/gpu  the GPU settings as a kustomize Component (combine with s3 or gcs)
    manifests/secrets/        secret templates: ``*.env.example`` -> ``*.env``, ``kubectl apply -k``
    manifests/workflows/      one Workflow per pipeline (generateName: ``argo submit``, not applied)
    manifests/cron/           the CronWorkflow of the retraining pipeline (``argo cron create``)

Secrets are never part of an overlay: applying an overlay again must not overwrite the real
credentials with the templates' placeholders.
"""

from __future__ import annotations

from typing import Any, Mapping

from tlt.orchestration.argo import (ARTIFACT_REPOSITORY_KINDS, LABELS, WORKFLOW_SERVICE_ACCOUNT, API_VERSION,
                                    build_artifact_repositories, gpu_settings, template_name)
from tlt.orchestration.stage_types import MODEL_KEY_SECRET, STORAGE_SECRET, Stage

__all__ = [
    "NAMESPACE",
    "CRON_SCHEDULE",
    "SECRET_PLACEHOLDER",
    "build_rbac",
    "build_cron_workflow",
    "build_gpu_component",
    "build_secret_templates",
    "build_manifest_tree",
]

#: The namespace the base installs into (one line to change in manifests/base/kustomization.yaml).
NAMESPACE = "tlt-pipelines"
#: Default schedule of the retraining CronWorkflow: daily at 03:00 (Argo takes five cron fields).
CRON_SCHEDULE = "0 3 * * *"
#: Every value of the secret templates starts with this, so nothing real is ever committed.
SECRET_PLACEHOLDER = "REPLACE_ME"
_KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}


def build_rbac(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding of the stages' pods.

    Argo's executor (v3.4+, emissary) reports a pod's outputs as WorkflowTaskResults and, for the
    older pod-patch path and ``argo logs``, reads and annotates its own pod; nothing else.
    """
    meta = {"name": WORKFLOW_SERVICE_ACCOUNT, "labels": dict(LABELS)}
    rules = [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "watch"]},
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": dict(meta), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(meta),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": WORKFLOW_SERVICE_ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": WORKFLOW_SERVICE_ACCOUNT, "namespace": namespace}]},
    ]


def build_cron_workflow(workflow: Mapping[str, Any], schedule: str = CRON_SCHEDULE) -> dict[str, Any]:
    """The CronWorkflow that submits ``workflow`` (a Workflow of `tlt.orchestration.argo_workflow`)
    on ``schedule``: one run at a time (Forbid), a missed start is skipped after 10 minutes."""
    name = workflow["metadata"]["generateName"].rstrip("-")
    return {
        "apiVersion": API_VERSION,
        "kind": "CronWorkflow",
        "metadata": {"name": name, "labels": dict(LABELS),
                     "annotations": dict(workflow["metadata"].get("annotations", {}))},
        "spec": {
            "schedules": [schedule],
            "timezone": "UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 5,
            "failedJobsHistoryLimit": 5,
            "workflowMetadata": {"labels": dict(LABELS)},
            "workflowSpec": {**workflow["spec"], "serviceAccountName": WORKFLOW_SERVICE_ACCOUNT},
        },
    }


def build_gpu_component(stages: Mapping[str, Stage]) -> dict[str, Any]:
    """The kustomize Component adding `tlt.orchestration.argo.gpu_settings` to every GPU stage's
    WorkflowTemplate (JSON patches on its one container template)."""
    patches = []
    for stage in stages.values():
        settings = gpu_settings(stage)
        if not settings["limits"]:
            continue
        ops = [{"op": "replace", "path": "/spec/templates/0/container/image", "value": settings["image"]}]
        ops += [{"op": "add", "path": f"/spec/templates/0/container/resources/limits/{_pointer(k)}", "value": v}
                for k, v in settings["limits"].items()]
        ops += [{"op": "add", "path": "/spec/templates/0/tolerations", "value": settings["tolerations"]},
                {"op": "add", "path": "/spec/templates/0/podSpecPatch", "value": settings["podSpecPatch"]}]
        patches.append({"target": {"group": "argoproj.io", "version": "v1alpha1", "kind": "WorkflowTemplate",
                                   "name": template_name(stage)},
                        "patch": _dump(ops)})
    return {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component", "patches": patches}


def _pointer(key: str) -> str:
    """``key`` as a JSON-pointer segment (``nvidia.com/gpu`` -> ``nvidia.com~1gpu``)."""
    return key.replace("~", "~0").replace("/", "~1")


def _dump(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False)


def build_secret_templates() -> dict[str, str]:
    """``manifests/secrets/``: env-file templates of the two secrets and the kustomization that
    turns the filled-in copies (``*.env``, ignored by git) into Secrets."""
    storage = [
        "# Storage credentials of the stages (s3:// URIs) and of Argo's S3/MinIO artifact repository.",
        "# Copy to storage.env, replace every value, then: kubectl apply -k manifests/secrets",
        "# AWS_ENDPOINT_URL: http://minio.minio.svc:9000 for the cluster's MinIO, your S3 endpoint otherwise",
        "# (https://s3.us-east-1.amazonaws.com). GCS needs none of these (Workload Identity).",
        *[f"{env}={SECRET_PLACEHOLDER}" for _, env in STORAGE_SECRET.keys],
    ]
    model_key = [
        "# The key that encrypts every .tlt/.etlt model of the pipelines (TLT's -k); stages read it as TLT_KEY.",
        "# Copy to model-key.env, replace the value, then: kubectl apply -k manifests/secrets",
        *[f"{key}={SECRET_PLACEHOLDER}" for key, _ in MODEL_KEY_SECRET.keys],
    ]
    kustomization = {
        **_KUSTOMIZATION,
        "namespace": NAMESPACE,
        # Fixed names: the templates reference the secrets by name.
        "generatorOptions": {"disableNameSuffixHash": True, "labels": dict(LABELS)},
        "secretGenerator": [{"name": STORAGE_SECRET.secret, "envs": ["storage.env"]},
                            {"name": MODEL_KEY_SECRET.secret, "envs": ["model-key.env"]}],
    }
    return {"storage.env.example": "\n".join(storage) + "\n",
            "model-key.env.example": "\n".join(model_key) + "\n",
            ".gitignore": "# The filled-in copies of the templates hold real secrets.\n*.env\n",
            "kustomization.yaml": kustomization}


def _overlay(kind: str) -> dict[str, Any]:
    configmap, _ = build_artifact_repositories(kind)
    overlay: dict[str, Any] = {
        "kustomization.yaml": {**_KUSTOMIZATION, "namespace": NAMESPACE,
                               "resources": ["../../base", "artifact-repositories.yaml"]},
        "artifact-repositories.yaml": configmap,
    }
    if kind == "gcs":
        # Workload Identity: the Kubernetes service account acts as a Google service account.
        overlay["kustomization.yaml"]["patches"] = [{
            "target": {"version": "v1", "kind": "ServiceAccount", "name": WORKFLOW_SERVICE_ACCOUNT},
            "patch": _dump([{"op": "add", "path": "/metadata/annotations",
                             "value": {"iam.gke.io/gcp-service-account":
                                       "tlt-workflow@PROJECT_ID.iam.gserviceaccount.com"}}])}]
    return overlay


def build_manifest_tree(stages: Mapping[str, Stage], templates: Mapping[str, dict[str, Any]],
                        workflows: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Every file under ``manifests/``, relative path -> a YAML document, a list of documents or text.

    Args:
        stages: the registry.
        templates: stage name -> its WorkflowTemplate (base form, without GPU settings).
        workflows: pipeline name -> its Workflow; ``retraining`` also gets its CronWorkflow.
    """
    tree: dict[str, Any] = {f"templates/{name}.yaml": doc for name, doc in templates.items()}
    tree["templates/kustomization.yaml"] = {**_KUSTOMIZATION, "resources": [f"{n}.yaml" for n in templates]}
    tree["base/namespace.yaml"] = {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": NAMESPACE, "labels": dict(LABELS)}}
    tree["base/rbac.yaml"] = build_rbac()
    tree["base/kustomization.yaml"] = {**_KUSTOMIZATION, "namespace": NAMESPACE,
                                       "resources": ["namespace.yaml", "rbac.yaml", "../templates"]}
    for kind in ARTIFACT_REPOSITORY_KINDS:
        for rel, doc in _overlay(kind).items():
            tree[f"overlays/{kind}/{rel}"] = doc
    tree["components/gpu/kustomization.yaml"] = build_gpu_component(stages)
    tree["overlays/gpu/kustomization.yaml"] = {**_KUSTOMIZATION, "resources": ["../minio"],
                                               "components": ["../../components/gpu"]}
    for rel, doc in build_secret_templates().items():
        tree[f"secrets/{rel}"] = doc
    for name, wf in workflows.items():
        tree[f"workflows/{name}.yaml"] = wf
    if "retraining" in workflows:
        tree["cron/retraining.yaml"] = build_cron_workflow(workflows["retraining"])
    return tree
