"""Argo manifests: valid against Argo's JSON schema (unknown keys rejected), references resolve."""

import re

import pytest
import yaml

from argo_schema import schema_errors, strict_definitions
from tlt.errors import PipelineError
from tlt.orchestration import argo, argo_workflow
from tlt.orchestration.compile import compile_tree
from tlt.orchestration.paths import DEFAULT_IMAGE
from tlt.orchestration.pipelines import PIPELINES
from tlt.orchestration.registry import STAGES, get_stage

@pytest.fixture(scope="module")
def schema_definitions(repo_root):
    return strict_definitions(repo_root)


@pytest.fixture(scope="module")
def manifests(repo_root):
    files = compile_tree(repo_root, DEFAULT_IMAGE)
    # Single-document files by path; every document of every file under "<path>#<i>" as well.
    docs = {}
    for rel, text in files.items():
        if rel.startswith("manifests/") and rel.endswith(".yaml"):
            parts = [d for d in yaml.safe_load_all(text) if d is not None]
            if len(parts) == 1:
                docs[rel] = parts[0]
            docs.update({f"{rel}#{i}": d for i, d in enumerate(parts)})
    return docs


def test_strict_schema_rejects_unknown_keys(schema_definitions):
    doc = argo.build_workflow_template(get_stage("convert"))
    doc["spec"]["templates"][0]["retryStrategy"]["limmit"] = "2"
    errors = schema_errors(schema_definitions, "WorkflowTemplate", doc)
    assert errors == ["spec/templates/0/retryStrategy: Additional properties are not allowed ('limmit' was unexpected)"]


def test_every_generated_argo_document_is_valid(schema_definitions, manifests):
    names = set()
    for rel, doc in manifests.items():
        if "#" not in rel or not isinstance(doc, dict) or doc.get("apiVersion") != argo.API_VERSION:
            continue
        assert schema_errors(schema_definitions, doc["kind"], doc) == [], rel
        names.add((doc["kind"], rel.split("#")[0]))
    # A template per stage, a workflow per pipeline (kustomize may add more documents).
    assert {("WorkflowTemplate", f"manifests/templates/{s}.yaml") for s in STAGES} <= names
    assert {("Workflow", f"manifests/workflows/{p}.yaml") for p in PIPELINES} <= names


def test_artifact_repository_is_valid(schema_definitions, manifests):
    configmaps = {id(d): d for d in manifests.values() if isinstance(d, dict) and d.get("kind") == "ConfigMap"
                  and d["metadata"]["name"] == argo.ARTIFACT_REPOSITORY_CONFIGMAP}.values()
    assert configmaps
    for configmap in configmaps:
        repo = yaml.safe_load(configmap["data"][argo.ARTIFACT_REPOSITORY_KEY])
        assert schema_errors(schema_definitions, "ArtifactRepository", repo) == []


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
        # Scalar results (a gate's verdict) are output parameters read from the result files.
        assert tmpl["outputs"].get("parameters", []) == [
            {"name": r.name, "valueFrom": {"path": f"/tmp/tlt/results/{r.name}"}} for r in stage.results]
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


def _all_tasks(wf):
    """Every DAG task of a workflow (nested condition, loop and exit-handler templates too)."""
    return [t for tmpl in wf["spec"]["templates"] if "dag" in tmpl for t in tmpl["dag"]["tasks"]]


@pytest.mark.parametrize("pipeline", ["detection", "classification"])
def test_workflow_template_refs_resolve(manifests, pipeline):
    templates = {}
    for rel, doc in manifests.items():
        if isinstance(doc, dict) and doc.get("kind") == "WorkflowTemplate":
            templates[doc["metadata"]["name"]] = {t["name"]: t for t in doc["spec"]["templates"]}
    wf = manifests[f"manifests/workflows/{pipeline}.yaml"]
    local = {t["name"]: t for t in wf["spec"]["templates"]}
    wf_params = {p["name"] for p in wf["spec"]["arguments"]["parameters"]}
    assert {"pruning_thresholds", "sweep_tolerance", "quality_threshold"} <= wf_params
    for task in _all_tasks(wf):
        if "templateRef" in task:
            ref = task["templateRef"]
            assert ref["name"] in templates, f"{task['name']}: no WorkflowTemplate {ref['name']}"
            target = templates[ref["name"]].get(ref["template"])
            assert target is not None, f"{task['name']}: no template {ref['template']} in {ref['name']}"
        else:
            target = local.get(task["template"])
            assert target is not None, f"{task['name']}: no template {task['template']} in the workflow"
        given = {p["name"] for p in task.get("arguments", {}).get("parameters", [])}
        declared = {p["name"] for p in target.get("inputs", {}).get("parameters", [])}
        required = {p["name"] for p in target.get("inputs", {}).get("parameters", []) if "default" not in p}
        assert required <= given <= declared, task["name"]
        given_art = {a["name"] for a in task.get("arguments", {}).get("artifacts", [])}
        declared_art = {a["name"] for a in target.get("inputs", {}).get("artifacts", [])}
        assert given_art <= declared_art, task["name"]
        for p in task.get("arguments", {}).get("parameters", []):
            for used in re.findall(r"\{\{workflow\.parameters\.(\w+)\}\}", p["value"]):
                assert used in wf_params


def test_detection_workflow_translates_gate_sweep_fan_in_and_exit_handler(manifests):
    wf = manifests["manifests/workflows/detection.yaml"]
    spec = wf["spec"]
    assert spec["onExit"] == "exit-handler"
    templates = {t["name"]: t for t in spec["templates"]}
    (summary,) = templates["exit-handler"]["dag"]["tasks"]
    assert summary["templateRef"] == {"name": "tlt-run-summary", "template": "run-summary"}
    args = {p["name"]: p["value"] for p in summary["arguments"]["parameters"]}
    assert args == {"pipeline": "detection", "state": "{{workflow.status}}", "run_id": "{{workflow.name}}",
                    "failures": "{{workflow.failures}}"}
    params = {p["name"]: p.get("value") for p in spec["arguments"]["parameters"]}
    assert params["pruning_thresholds"] == "[0.8]" and params["quality_threshold"] == "10"
    body = {t["name"]: t for t in templates["exit-handler-1"]["dag"]["tasks"]}
    loop = next(t for name, t in body.items() if name.startswith("for-loop"))
    assert loop["withParam"] == "{{inputs.parameters.pruning_thresholds}}"
    gate = next(t for name, t in body.items() if name.startswith("condition"))
    assert gate["when"] == "{{tasks.quality-gate.outputs.parameters.passed}} == true"
    assert "quality-gate" in gate["dependencies"]
    # The fan-in reads the loop's per-item key folders; inside the loop the evaluation writes there.
    fan_in = {a["name"]: a for a in body["pick-pruned"]["arguments"]["artifacts"]}
    assert fan_in["candidates"] == {"name": "candidates", "s3": {
        "key": f"tlt/{{{{workflow.name}}}}/{loop['name']}/evaluate-2/scored_model"}}
    keyed = templates[f"{loop['name']}-evaluate-2"]
    (scored,) = [a for a in keyed["outputs"]["artifacts"] if a["name"] == "scored_model"]
    assert scored["s3"]["key"] == (f"tlt/{{{{workflow.name}}}}/{loop['name']}/evaluate-2/scored_model/"
                                   "{{inputs.parameters.tlt-item}}")
    inner = {t["name"]: t for t in templates[loop["template"]]["dag"]["tasks"]}
    assert {"name": "tlt-item", "value": "{{inputs.parameters.pruning_thresholds-loop-item}}"} in \
        inner["prune"]["arguments"]["parameters"]
    assert {"name": "pruning_threshold", "value": "{{inputs.parameters.pruning_thresholds-loop-item}}"} in \
        inner["prune"]["arguments"]["parameters"]
    deploy = {t["name"] for t in templates[gate["template"]]["dag"]["tasks"]}
    assert deploy == {"export", "build-engine", "build-engine-2", "evaluate-3"}


def _tiny_ir(trigger=None):
    return {
        "pipelineInfo": {"name": "p"},
        "components": {"comp-convert": {"executorLabel": "exec-convert"}},
        "deploymentSpec": {"executors": {"exec-convert": {"container": {"args": ["--function_to_execute", "convert"]}}}},
        "root": {"inputDefinitions": {"parameters": {"flag": {"parameterType": "BOOLEAN", "defaultValue": True}}},
                 "dag": {"tasks": {
                     "a": {"componentRef": {"name": "comp-convert"}, "taskInfo": {"name": "a"},
                           "inputs": {"parameters": {"spec": {"runtimeValue": {"constant": 3.0}},
                                                     "pipelinechannel--flag": {"componentInputParameter": "flag"}}}},
                     "b": {"componentRef": {"name": "comp-convert"}, "taskInfo": {"name": "b"},
                           "dependentTasks": ["a"], **({"triggerPolicy": trigger} if trigger else {}),
                           "inputs": {"parameters": {"pipelinechannel--flag": {"componentInputParameter": "flag"}},
                                      "artifacts": {"dataset": {"taskOutputArtifact": {
                                          "producerTask": "a", "outputArtifactKey": "dataset"}}}}}}}},
    }


def test_workflow_translation_of_artifact_passing_dependencies_and_conditions():
    wf = argo_workflow.build_workflow("p", _tiny_ir())
    assert wf["spec"]["arguments"]["parameters"] == [{"name": "flag", "value": "true"}]
    a, b = wf["spec"]["templates"][0]["dag"]["tasks"]
    assert {"name": "spec", "value": "3"} in a["arguments"]["parameters"]
    assert b["dependencies"] == ["a"]
    assert b["arguments"]["artifacts"] == [{"name": "dataset", "from": "{{tasks.a.outputs.artifacts.dataset}}"}]
    assert "when" not in b and "onExit" not in wf["spec"]
    wf = argo_workflow.build_workflow("p", _tiny_ir(
        {"condition": "!(inputs.parameter_values['pipelinechannel--flag'] == true)"}))
    b = wf["spec"]["templates"][0]["dag"]["tasks"][1]
    assert b["when"] == "!({{workflow.parameters.flag}} == true)"
    with pytest.raises(PipelineError, match="condition .* reads pipelinechannel--other"):
        argo_workflow.build_workflow("p", _tiny_ir({"condition": "inputs.parameter_values['pipelinechannel--other'] == 1"}))


def test_gpu_stage_with_inputs_makes_a_valid_template(schema_definitions):
    from tlt.orchestration.stage_types import Artifact, Param, Resources, Stage

    stage = Stage("train", "tlt-train", "Train a model.", params=(Param("spec", str, "spec"),),
                  inputs=(Artifact("dataset", "Dataset", "TFRecords"),),
                  outputs=(Artifact("model", "Model", "the model"),), resources=Resources(gpus=2))
    doc = argo.build_workflow_template(stage)
    assert schema_errors(schema_definitions, "WorkflowTemplate", doc) == []
    (tmpl,) = doc["spec"]["templates"]
    assert tmpl["container"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert tmpl["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert tmpl["inputs"]["artifacts"] == [{"name": "dataset", "path": "/tmp/tlt/inputs/dataset"}]
    assert "--input-dataset=/tmp/tlt/inputs/dataset" in tmpl["container"]["args"]


def test_one_of_outputs_of_branches_become_argo_expressions():
    """A dsl.OneOf over If/Else branches: the branch group's output picks the branch that ran."""
    outputs = {"artifacts": {"pipelinechannel--condition-branches-1-oneof-1": {"artifactSelectors": [
        {"producerSubtask": "condition-2", "outputArtifactKey": "pipelinechannel--retrain-model"},
        {"producerSubtask": "condition-3", "outputArtifactKey": "pipelinechannel--train-model"}]}},
        "parameters": {"pipelinechannel--condition-branches-1-oneof-2": {"valueFromOneof": {"parameterSelectors": [
            {"producerSubtask": "condition-2", "outputParameterKey": "pipelinechannel--a-Output"},
            {"producerSubtask": "condition-3", "outputParameterKey": "pipelinechannel--b-Output"}]}}}}
    translated = argo_workflow._dag_outputs(outputs)
    assert translated["artifacts"] == [{
        "name": "condition-branches-1-oneof-1",
        "fromExpression": "tasks['condition-2'].status == 'Succeeded' ? "
                          "tasks['condition-2'].outputs.artifacts['retrain-model'] : "
                          "tasks['condition-3'].outputs.artifacts['train-model']"}]
    assert translated["parameters"] == [{
        "name": "condition-branches-1-oneof-2",
        "valueFrom": {"expression": "tasks['condition-2'].status == 'Succeeded' ? "
                                    "tasks['condition-2'].outputs.parameters['a-Output'] : "
                                    "tasks['condition-3'].outputs.parameters['b-Output']"}}]
