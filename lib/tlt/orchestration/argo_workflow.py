"""The Argo Workflow of a pipeline, translated from its compiled KFP IR, so the DAG is written once
(in ``pipelines/<name>.py``). Each KFP task becomes a DAG task with a ``templateRef`` to its stage's
WorkflowTemplate (`tlt.orchestration.argo`)."""

from __future__ import annotations

from typing import Any, Mapping

from tlt.errors import PipelineError
from tlt.orchestration.argo import (API_VERSION, ARTIFACT_REPOSITORY_CONFIGMAP, ARTIFACT_REPOSITORY_KEY,
                                    LABELS, argo_value, inner_template_name, template_name)
from tlt.orchestration.registry import Stage, get_stage

__all__ = ["build_workflow"]


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
        return {"name": name, "value": argo_value(spec["runtimeValue"]["constant"])}
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
            entry["value"] = argo_value(cast(pdef["defaultValue"]))
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
        "metadata": {"generateName": f"tlt-{name}-", "labels": dict(LABELS),
                     "annotations": {"workflows.argoproj.io/description": ir["pipelineInfo"].get("description", "")}},
        "spec": {
            "entrypoint": name,
            "arguments": {"parameters": params},
            "artifactRepositoryRef": {"configMap": ARTIFACT_REPOSITORY_CONFIGMAP, "key": ARTIFACT_REPOSITORY_KEY},
            "templates": [{"name": name, "dag": {"tasks": tasks}}],
        },
    }
