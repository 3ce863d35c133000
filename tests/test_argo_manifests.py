"""Argo manifests: valid against Argo's JSON schema (unknown keys rejected), references resolve."""

import copy
import json
import re

import pytest
import yaml

from tlt.errors import PipelineError
from tlt.orchestration import argo, argo_workflow
from tlt.orchestration.compile import compile_tree
from tlt.orchestration.paths import DEFAULT_IMAGE
from tlt.orchestration.pipelines import PIPELINES
from tlt.orchestration.registry import STAGES, get_stage

_PREFIX = "io.argoproj.workflow.v1alpha1."


@pytest.fixture(scope="module")
def schema_definitions(repo_root):
    path = repo_root.parent / "shared" / "schemas" / "argo-workflows-v3.6.schema.json"
    if not path.is_file():
        pytest.skip("../shared/schemas/argo-workflows-v3.6.schema.json is not present")
    defs = json.loads(path.read_text())["definitions"]
    return _strict(defs)


def _strict(node):
    """Copy of the schema with additionalProperties: false on every object that lists properties."""
    node = copy.deepcopy(node)
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "properties" in item and "additionalProperties" not in item:
                item["additionalProperties"] = False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return node


def _validate(defs, kind, doc):
    import jsonschema

    schema = {"$ref": f"#/definitions/{_PREFIX}{kind}", "definitions": defs}
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


@pytest.fixture(scope="module")
def manifests(repo_root):
    files = compile_tree(repo_root, DEFAULT_IMAGE)
    return {rel: yaml.safe_load(text) for rel, text in files.items() if rel.startswith("manifests/")}


def test_strict_schema_rejects_unknown_keys(schema_definitions):
    doc = argo.build_workflow_template(get_stage("convert"))
    doc["spec"]["templates"][0]["retryStrategy"]["limmit"] = "2"
    errors = _validate(schema_definitions, "WorkflowTemplate", doc)
    assert errors == ["spec/templates/0/retryStrategy: Additional properties are not allowed ('limmit' was unexpected)"]


def test_every_generated_argo_document_is_valid(schema_definitions, manifests):
    checked = 0
    for rel, doc in manifests.items():
        if doc.get("apiVersion") != argo.API_VERSION:
            continue
        assert _validate(schema_definitions, doc["kind"], doc) == [], rel
        checked += 1
    assert checked == len(STAGES) + len(PIPELINES)  # a template per stage, a workflow per pipeline


def test_artifact_repository_is_valid(schema_definitions, manifests):
    configmap = manifests["manifests/artifact-repositories.yaml"]
    assert configmap["kind"] == "ConfigMap"
    repo = yaml.safe_load(configmap["data"][argo.ARTIFACT_REPOSITORY_KEY])
    assert _validate(schema_definitions, "ArtifactRepository", repo) == []
    assert repo["s3"]["accessKeySecret"] == {"name": "tlt-storage-credentials", "key": "AWS_ACCESS_KEY_ID"}


def test_templates_mirror_the_registry(manifests):
    for name, stage in STAGES.items():
        doc = manifests[f"manifests/templates/{name}.yaml"]
        # Argo names allow letters, digits and '-' only: build_engine -> tlt-build-engine.
        assert doc["metadata"]["name"] == f"tlt-{name.replace('_', '-')}"
        (tmpl,) = doc["spec"]["templates"]
        assert tmpl["name"] == name.replace("_", "-")
        assert re.fullmatch(r"[a-zA-Z0-9][-a-zA-Z0-9]*", tmpl["name"])
        assert tmpl["container"]["image"] == DEFAULT_IMAGE
        assert [tmpl["container"]["command"][0], *tmpl["container"]["args"]] == stage.argv()
        assert [p["name"] for p in tmpl["inputs"]["parameters"]] == [p.name for p in stage.params]
        assert tmpl["container"]["resources"] == {
            "requests": {"cpu": stage.resources.cpu_request, "memory": stage.resources.memory_request},
            "limits": {"cpu": stage.resources.cpu_limit, "memory": stage.resources.memory_limit}}
        assert tmpl["retryStrategy"]["limit"] == str(stage.retry.num_retries)
        outs = tmpl["outputs"]["artifacts"]
        assert [a["name"] for a in outs] == [a.name for a in stage.outputs]
        assert all(set(a["s3"]) == {"key"} for a in outs)  # bucket/endpoint from the cluster's repository
    convert = manifests["manifests/templates/convert.yaml"]["spec"]["templates"][0]
    assert {p["name"]: p.get("default") for p in convert["inputs"]["parameters"]} == \
        {"spec": None, "dataset_root": "", "validation_fold": "-1"}


def test_model_key_reaches_train_and_evaluate_from_a_secret(manifests):
    def env(name):
        tmpl = manifests[f"manifests/templates/{name}.yaml"]["spec"]["templates"][0]
        return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in tmpl["container"]["env"]}

    for name in ("train", "evaluate", "prune", "retrain", "export", "build_engine"):
        assert env(name)["TLT_KEY"] == {"name": "tlt-model-key", "key": "key", "optional": False}
    assert "TLT_KEY" not in env("convert")
    # Never a workflow parameter (the Argo UI shows parameters to everyone).
    for rel, doc in manifests.items():
        if rel.startswith("manifests/workflows/"):
            names = [p["name"] for p in doc["spec"]["arguments"]["parameters"]]
            assert not [n for n in names if "key" in n.lower()], rel


def test_workflow_template_refs_resolve(manifests):
    templates = {}
    for rel, doc in manifests.items():
        if doc.get("kind") == "WorkflowTemplate":
            templates[doc["metadata"]["name"]] = {t["name"]: t for t in doc["spec"]["templates"]}
    wf = manifests["manifests/workflows/detection.yaml"]
    assert wf["spec"]["entrypoint"] == "detection"
    wf_params = {p["name"] for p in wf["spec"]["arguments"]["parameters"]}
    assert wf_params == {"convert_spec", "dataset_root", "validation_fold", "train_spec",
                         "evaluation_mode", "gpus", "pruning_threshold", "pruning_normalizer",
                         "retrain_epochs", "engine_precision", "calibration_batches",
                         "calibration_batch_size"}
    (dag,) = [t for t in wf["spec"]["templates"] if t["name"] == wf["spec"]["entrypoint"]]
    tasks = dag["dag"]["tasks"]
    assert sorted(t["name"] for t in tasks) == ["build-engine", "build-engine-2", "convert", "evaluate",
                                                "evaluate-2", "evaluate-3", "export", "prune",
                                                "retrain", "train"]
    by_name = {t["name"]: t for t in tasks}
    assert by_name["build-engine-2"]["templateRef"] == {"name": "tlt-build-engine", "template": "build-engine"}
    assert "evaluate-2" in by_name["export"]["dependencies"]
    assert {"name": "compare_b", "from": "{{tasks.build-engine.outputs.artifacts.engine}}"} in \
        by_name["evaluate-3"]["arguments"]["artifacts"]
    for task in tasks:
        ref = task["templateRef"]
        assert ref["name"] in templates, f"{task['name']}: no WorkflowTemplate {ref['name']}"
        target = templates[ref["name"]].get(ref["template"])
        assert target is not None, f"{task['name']}: no template {ref['template']} in {ref['name']}"
        given = {p["name"] for p in task["arguments"]["parameters"]}
        declared = {p["name"] for p in target["inputs"]["parameters"]}
        required = {p["name"] for p in target["inputs"]["parameters"] if "default" not in p}
        assert required <= given <= declared
        for p in task["arguments"]["parameters"]:
            for used in re.findall(r"\{\{workflow\.parameters\.(\w+)\}\}", p["value"]):
                assert used in wf_params
    spec_arg = {p["name"]: p["value"] for p in by_name["convert"]["arguments"]["parameters"]}["spec"]
    assert spec_arg == "{{workflow.parameters.convert_spec}}"
    assert wf["spec"]["artifactRepositoryRef"] == {"configMap": "artifact-repositories", "key": "tlt-minio"}


def test_workflow_translation_of_artifact_passing_and_dependencies():
    ir = {
        "pipelineInfo": {"name": "p"},
        "components": {"comp-convert": {"executorLabel": "exec-convert"}},
        "deploymentSpec": {"executors": {"exec-convert": {"container": {"args": ["--function_to_execute", "convert"]}}}},
        "root": {"inputDefinitions": {"parameters": {"flag": {"parameterType": "BOOLEAN", "defaultValue": True}}},
                 "dag": {"tasks": {
                     "a": {"componentRef": {"name": "comp-convert"}, "taskInfo": {"name": "a"},
                           "inputs": {"parameters": {"spec": {"runtimeValue": {"constant": 3.0}}}}},
                     "b": {"componentRef": {"name": "comp-convert"}, "taskInfo": {"name": "b"},
                           "dependentTasks": ["a"],
                           "inputs": {"artifacts": {"dataset": {"taskOutputArtifact": {
                               "producerTask": "a", "outputArtifactKey": "dataset"}}}}}}}},
    }
    wf = argo_workflow.build_workflow("p", ir)
    assert wf["spec"]["arguments"]["parameters"] == [{"name": "flag", "value": "true"}]
    a, b = wf["spec"]["templates"][0]["dag"]["tasks"]
    assert a["arguments"]["parameters"] == [{"name": "spec", "value": "3"}]
    assert b["dependencies"] == ["a"]
    assert b["arguments"]["artifacts"] == [{"name": "dataset", "from": "{{tasks.a.outputs.artifacts.dataset}}"}]
    ir["root"]["dag"]["tasks"]["b"]["triggerPolicy"] = {"condition": "x"}
    with pytest.raises(PipelineError, match="pipeline p: task b uses control flow"):
        argo_workflow.build_workflow("p", ir)


def test_gpu_stage_with_inputs_makes_a_valid_template(schema_definitions):
    from tlt.orchestration.registry import Artifact, Param, Resources, Stage

    stage = Stage("train", "tlt-train", "Train a model.", params=(Param("spec", str, "spec"),),
                  inputs=(Artifact("dataset", "Dataset", "TFRecords"),),
                  outputs=(Artifact("model", "Model", "the model"),), resources=Resources(gpus=2))
    doc = argo.build_workflow_template(stage)
    assert _validate(schema_definitions, "WorkflowTemplate", doc) == []
    (tmpl,) = doc["spec"]["templates"]
    assert tmpl["container"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert tmpl["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert tmpl["inputs"]["artifacts"] == [{"name": "dataset", "path": "/tmp/tlt/inputs/dataset"}]
    assert "--input-dataset=/tmp/tlt/inputs/dataset" in tmpl["container"]["args"]
