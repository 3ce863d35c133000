"""manifests/: every overlay renders with `kubectl kustomize`, every Argo document validates against
Argo's schema with unknown keys rejected, every template reference resolves, the gpu overlay adds
the GPU settings, secrets stay templates."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from argo_schema import schema_errors, strict_definitions
from tlt.orchestration import argo
from tlt.orchestration.compile import compile_tree
from tlt.orchestration.kustomize import CRON_SCHEDULE, NAMESPACE, SECRET_PLACEHOLDER
from tlt.orchestration.paths import DEFAULT_IMAGE
from tlt.orchestration.pipelines import PIPELINES
from tlt.orchestration.registry import STAGES
from tlt.orchestration.stage_types import GPU_NODE_SELECTOR_PARAM, GPU_RESOURCE

OVERLAYS = ("minio", "s3", "gcs", "gpu")


@pytest.fixture(scope="module")
def manifests_dir(repo_root, tmp_path_factory):
    """The manifests tree a compile of the current sources writes (not the checked-in copy, whose
    freshness tests/test_pipeline_compile.py checks)."""
    root = tmp_path_factory.mktemp("compiled")
    for rel, text in compile_tree(repo_root, DEFAULT_IMAGE).items():
        if rel.startswith("manifests/"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    return root / "manifests"


def _kustomize(folder: Path) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    done = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def rendered(manifests_dir):
    return {name: _kustomize(manifests_dir / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="module")
def submitted(manifests_dir):
    """The documents submitted with the argo CLI: a Workflow per pipeline and the CronWorkflow."""
    docs = {f"workflows/{p.stem}": yaml.safe_load(p.read_text())
            for p in sorted((manifests_dir / "workflows").glob("*.yaml"))}
    docs.update({f"cron/{p.stem}": yaml.safe_load(p.read_text())
                 for p in sorted((manifests_dir / "cron").glob("*.yaml"))})
    return docs


@pytest.fixture(scope="module")
def schema_definitions(repo_root):
    return strict_definitions(repo_root)


def _by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_overlay_renders_the_base_and_its_repository(rendered):
    for name, docs in rendered.items():
        kinds = sorted(d["kind"] for d in docs)
        assert kinds == sorted(["Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
                                *["WorkflowTemplate"] * len(STAGES)]), name
        assert all(d["metadata"].get("namespace") == NAMESPACE for d in docs if d["kind"] != "Namespace"), name
        assert set(_by_kind(docs, "WorkflowTemplate")) == {argo.template_name(s) for s in STAGES.values()}


def test_every_rendered_argo_document_is_valid(rendered, submitted, schema_definitions):
    checked = 0
    for name, docs in rendered.items():
        for doc in docs:
            if doc["apiVersion"] == argo.API_VERSION:
                assert schema_errors(schema_definitions, doc["kind"], doc) == [], f"{name}: {doc['metadata']['name']}"
                checked += 1
        (configmap,) = _by_kind(docs, "ConfigMap").values()
        repository = yaml.safe_load(configmap["data"][argo.ARTIFACT_REPOSITORY_KEY])
        assert schema_errors(schema_definitions, "ArtifactRepository", repository) == [], name
    for rel, doc in submitted.items():
        assert schema_errors(schema_definitions, doc["kind"], doc) == [], rel
    assert checked == len(OVERLAYS) * len(STAGES)
    assert {rel.split("/")[0] for rel in submitted} == ({"workflows", "cron"} if "retraining" in PIPELINES
                                                        else {"workflows"})


def _templates_of(doc):
    spec = doc["spec"].get("workflowSpec", doc["spec"])
    return spec, {t["name"]: t for t in spec["templates"]}


def _refs(template):
    steps = template.get("dag", {}).get("tasks", [])
    return [(task["name"], task) for task in steps]


def _workflow_parameters_used(value) -> set[str]:
    return set(re.findall(r"\{\{workflow\.parameters\.([\w-]+)\}\}", json.dumps(value)))


def test_every_template_reference_resolves(rendered, submitted):
    for overlay, docs in rendered.items():
        library = {name: {t["name"]: t for t in d["spec"]["templates"]}
                   for name, d in _by_kind(docs, "WorkflowTemplate").items()}
        for rel, doc in submitted.items():
            spec, local = _templates_of(doc)
            declared = {p["name"] for p in spec["arguments"].get("parameters", [])}
            assert spec["entrypoint"] in local, rel
            if "onExit" in spec:
                assert spec["onExit"] in local, rel
            for template in local.values():
                for tname, task in _refs(template):
                    where = f"{overlay} {rel} {template['name']}/{tname}"
                    if "template" in task:
                        assert task["template"] in local, where
                        continue
                    ref = task["templateRef"]
                    target = library.get(ref["name"], {}).get(ref["template"])
                    assert target is not None, f"{where}: no {ref['name']}/{ref['template']}"
                    given = {p["name"] for p in task.get("arguments", {}).get("parameters", [])}
                    inputs = target["inputs"].get("parameters", [])
                    assert {p["name"] for p in inputs if "default" not in p} <= given <= \
                        {p["name"] for p in inputs}, where
                    # What the referenced template reads from the workflow (the GPU node selector
                    # in the gpu overlay) must be a parameter of every workflow that runs it.
                    missing = _workflow_parameters_used(target) - declared
                    assert not missing, f"{where}: {ref['name']} reads workflow parameters {missing}"
            assert _workflow_parameters_used(spec["templates"]) <= declared, rel


def test_gpu_overlay_adds_the_gpu_settings_to_the_gpu_stages_only(rendered):
    gpu_stages = [s for s in STAGES.values() if s.resources.gpus]
    assert [s.name for s in gpu_stages] == ["train", "retrain"]
    gpu = _by_kind(rendered["gpu"], "WorkflowTemplate")
    base = _by_kind(rendered["minio"], "WorkflowTemplate")
    for stage in STAGES.values():
        (tmpl,) = gpu[argo.template_name(stage)]["spec"]["templates"]
        (plain,) = base[argo.template_name(stage)]["spec"]["templates"]
        assert GPU_RESOURCE not in plain["container"]["resources"]["limits"]
        assert "tolerations" not in plain and "podSpecPatch" not in plain
        if not stage.resources.gpus:
            assert tmpl == plain, stage.name
            continue
        # The kustomize patches give exactly what the generator writes for a GPU cluster.
        (expected,) = argo.build_workflow_template(stage, DEFAULT_IMAGE, gpu=True)["spec"]["templates"]
        assert tmpl == expected, stage.name
        assert tmpl["container"]["resources"]["limits"][GPU_RESOURCE] == "1"
        assert tmpl["container"]["image"].endswith("-gpu")
        assert tmpl["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert tmpl["podSpecPatch"] == '{"nodeSelector": {{workflow.parameters.%s}}}' % GPU_NODE_SELECTOR_PARAM
        # The patch is JSON once Argo substitutes the parameter (a JSON object).
        patched = tmpl["podSpecPatch"].replace("{{workflow.parameters.gpu_node_selector}}",
                                               '{"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}')
        assert json.loads(patched) == {"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}}


def test_data_loading_stages_get_a_memory_backed_dev_shm(rendered):
    for name, doc in _by_kind(rendered["minio"], "WorkflowTemplate").items():
        (tmpl,) = doc["spec"]["templates"]
        stage = STAGES[tmpl["metadata"]["labels"]["tlt-pipelines/stage"]]
        if not stage.resources.shm_size:
            assert "volumes" not in tmpl, name
            continue
        assert tmpl["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory",
                                                                 "sizeLimit": stage.resources.shm_size}}]
        assert tmpl["container"]["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert {n for n, s in STAGES.items() if s.resources.shm_size} >= {"convert", "train", "retrain", "evaluate",
                                                                      "export"}


def test_each_overlay_names_its_own_artifact_repository(rendered):
    def repository(name):
        (configmap,) = _by_kind(rendered[name], "ConfigMap").values()
        assert configmap["metadata"]["annotations"] == {
            "workflows.argoproj.io/default-artifact-repository": argo.ARTIFACT_REPOSITORY_KEY}
        return yaml.safe_load(configmap["data"][argo.ARTIFACT_REPOSITORY_KEY])

    assert repository("minio")["s3"]["endpoint"] == "minio.minio.svc:9000"
    assert repository("gpu") == repository("minio")
    assert repository("s3")["s3"]["endpoint"] == "s3.amazonaws.com"
    assert repository("s3")["s3"]["accessKeySecret"] == {"name": "tlt-storage-credentials", "key": "AWS_ACCESS_KEY_ID"}
    assert set(repository("gcs")) == {"gcs"} and "serviceAccountKeySecret" not in repository("gcs")["gcs"]
    (account,) = _by_kind(rendered["gcs"], "ServiceAccount").values()
    assert "iam.gke.io/gcp-service-account" in account["metadata"]["annotations"]
    # Keys unique per pod: evaluate and evaluate-2 never overwrite each other's outputs.
    assert repository("minio")["s3"]["keyFormat"] == "tlt/{{workflow.name}}/{{pod.name}}"


def test_rbac_lets_the_executor_report_and_nothing_more(rendered):
    docs = rendered["minio"]
    (role,) = _by_kind(docs, "Role").values()
    rules = {(tuple(r["apiGroups"]), res): set(r["verbs"]) for r in role["rules"] for res in r["resources"]}
    assert rules == {(("argoproj.io",), "workflowtaskresults"): {"create", "patch"},
                     (("",), "pods"): {"get", "watch", "patch"},
                     (("",), "pods/log"): {"get", "watch"}}
    (binding,) = _by_kind(docs, "RoleBinding").values()
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": argo.WORKFLOW_SERVICE_ACCOUNT,
                                    "namespace": NAMESPACE}]
    for doc in _by_kind(docs, "WorkflowTemplate").values():
        assert doc["spec"]["templates"][0]["serviceAccountName"] == argo.WORKFLOW_SERVICE_ACCOUNT


def test_secrets_are_templates_with_placeholders_only(rendered, manifests_dir, tmp_path):
    for docs in rendered.values():  # applying an overlay never overwrites real credentials
        assert not [d for d in docs if d["kind"] == "Secret"]
    secrets = manifests_dir / "secrets"
    values = {}
    for example in sorted(secrets.glob("*.env.example")):
        for line in example.read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key] = value
    assert values and set(values.values()) == {SECRET_PLACEHOLDER}
    needed = {key for s in STAGES.values() for sec in s.env_secrets() for key, _ in sec.keys}
    assert needed <= set(values)
    assert "*.env" in (secrets / ".gitignore").read_text().split("\n")
    # Filled-in copies render into the two Secrets the templates name, without a hash suffix.
    work = tmp_path / "secrets"
    shutil.copytree(secrets, work)
    for example in work.glob("*.env.example"):
        shutil.copy(example, work / example.name[:-len(".example")])
    made = {d["metadata"]["name"]: d for d in _kustomize(work)}
    assert set(made) == {"tlt-storage-credentials", "tlt-model-key"}
    assert set(made["tlt-model-key"]["data"]) == {"key"}


def test_retraining_has_a_cron_workflow_with_the_workflow_spec(submitted):
    if "retraining" not in PIPELINES:
        pytest.skip("the retraining pipeline is not in the catalogue yet")
    cron, workflow = submitted["cron/retraining"], submitted["workflows/retraining"]
    assert cron["kind"] == "CronWorkflow"
    spec = cron["spec"]
    assert spec["schedules"] == [CRON_SCHEDULE] and len(CRON_SCHEDULE.split()) == 5
    assert spec["concurrencyPolicy"] == "Forbid" and spec["startingDeadlineSeconds"] > 0
    assert spec["workflowSpec"] == {**workflow["spec"], "serviceAccountName": argo.WORKFLOW_SERVICE_ACCOUNT}
