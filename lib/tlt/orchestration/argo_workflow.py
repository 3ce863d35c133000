"""The Argo Workflow of a pipeline, translated from its compiled KFP IR, so the DAG is written once
(in ``pipelines/<name>.py``).

Each KFP task becomes a DAG task with a ``templateRef`` to its stage's WorkflowTemplate
(`tlt.orchestration.argo`); the control flow translates as follows:

- a ``dsl.If`` (an IR sub-DAG with a ``triggerPolicy.condition``) -> a nested DAG template whose
  task carries ``when``, the condition with each ``inputs.parameter_values[...]`` replaced by the
  Argo value it names (e.g. ``{{tasks.quality-gate.outputs.parameters.passed}} == true``; the
  stage template writes that output parameter from its ``--result-passed`` file);
- a ``dsl.ParallelFor`` -> a nested DAG template run ``withParam`` (a list parameter) or
  ``withItems`` (a static list), the item passed as the loop's item input;
- ``dsl.Collected`` of an artifact: Argo aggregates only output *parameters* of a loop, never
  artifacts (argoproj/argo-workflows#934), so the fan-in uses Argo's key-only-artifact map-reduce
  pattern: inside the loop, the collected task runs a workflow-local copy of its stage template
  whose collected outputs go to the key ``tlt/<workflow>/<loop>/<task>/<output>/<item>``, and the
  consumer reads the folder ``tlt/<workflow>/<loop>/<task>/<output>`` (one sub-folder per item;
  `tlt.orchestration.entrypoints.run_stage_argv` hands the stage their list). Those keys are
  ``s3`` keys: the fan-in needs an S3 or MinIO artifact repository (not GCS);
- a ``dsl.ExitHandler`` -> the workflow's ``onExit`` template, running the exit stage with the
  workflow's status (``{{workflow.status}}``, ``{{workflow.failures}}``) where KFP passes
  ``PipelineTaskFinalStatus``.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Mapping

from tlt.errors import PipelineError
from tlt.orchestration.argo import (API_VERSION, ARTIFACT_REPOSITORY_CONFIGMAP, ARTIFACT_REPOSITORY_KEY,
                                    LABELS, argo_value, build_workflow_template, inner_template_name,
                                    template_name)
from tlt.orchestration.registry import get_stage
from tlt.orchestration.stage_types import Stage

__all__ = ["EXIT_TEMPLATE", "ITEM_PARAM", "build_workflow", "collected_key"]

#: Name of the ``onExit`` template (a DAG running the pipeline's exit task).
EXIT_TEMPLATE = "exit-handler"
#: Input parameter of a workflow-local loop template naming the iteration in its output keys.
ITEM_PARAM = "tlt-item"
#: Argo's values of the exit stage's final-status parameters (KFP's come from
#: ``PipelineTaskFinalStatus``, see `tlt.orchestration.registry_gates.FINAL_STATUS_PARAMS`).
_ARGO_STATUS = {"state": "{{workflow.status}}", "run_id": "{{workflow.name}}",
                "failures": "{{workflow.failures}}"}
_PREFIX = "pipelinechannel--"
# KFP placeholders a task may get as a whole value -> the Argo variable with the same meaning.
_KFP_PLACEHOLDERS = {"{{$.pipeline_job_uuid}}": "{{workflow.uid}}",
                     "{{$.pipeline_job_name}}": "{{workflow.name}}"}
_CONDITION_INPUT = re.compile(r"inputs\.parameter_values\['([^']+)'\]")
_IR_DEFAULT_CAST = {"NUMBER_INTEGER": int, "BOOLEAN": bool}


def collected_key(loop: str, task: str, output: str) -> str:
    """The artifact-repository folder holding every iteration's ``output`` of loop task ``task``."""
    return f"tlt/{{{{workflow.name}}}}/{loop}/{task}/{output}"


def _clean(name: str) -> str:
    """An IR channel name as an Argo parameter or artifact name (without KFP's prefix)."""
    return name[len(_PREFIX):] if name.startswith(_PREFIX) else name


def _comp_template(comp_name: str) -> str:
    return comp_name[len("comp-"):] if comp_name.startswith("comp-") else comp_name


class _Translator:
    """Walks the IR's DAGs and collects the Argo templates they become."""

    def __init__(self, ir: Mapping[str, Any]):
        self.ir = ir
        self.templates: dict[str, dict[str, Any]] = {}
        self.exit_task: tuple[str, Mapping[str, Any]] | None = None
        self.tasks_by_name = _all_tasks(ir)

    # -- what a task runs ---------------------------------------------------------------------
    def component(self, task: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.ir["components"][task["componentRef"]["name"]]

    def stage(self, task: Mapping[str, Any], tname: str) -> Stage:
        """The registry stage a KFP IR task runs (the function its executor calls)."""
        args = self.container(task).get("args", [])
        if "--function_to_execute" not in args:
            raise PipelineError(f"task {tname} is not a TLT component (no --function_to_execute)")
        return get_stage(args[args.index("--function_to_execute") + 1])

    def container(self, task: Mapping[str, Any]) -> Mapping[str, Any]:
        label = self.component(task)["executorLabel"]
        return self.ir["deploymentSpec"]["executors"][label]["container"]

    # -- values --------------------------------------------------------------------------------
    def parameter(self, spec: Mapping[str, Any], root: bool, where: str) -> str:
        if "componentInputParameter" in spec:
            name = spec["componentInputParameter"]
            return (f"{{{{workflow.parameters.{name}}}}}" if root
                    else f"{{{{inputs.parameters.{_clean(name)}}}}}")
        if "runtimeValue" in spec:
            constant = spec["runtimeValue"]["constant"]
            if isinstance(constant, str) and constant in _KFP_PLACEHOLDERS:
                return _KFP_PLACEHOLDERS[constant]
            return argo_value(constant)
        if "taskOutputParameter" in spec:
            out = spec["taskOutputParameter"]
            return (f"{{{{tasks.{out['producerTask']}.outputs.parameters."
                    f"{self.output_name(out['producerTask'], out['outputParameterKey'])}}}}}")
        raise PipelineError(f"{where}: a parameter input of kind {sorted(spec)} has no Argo translation")

    def artifact(self, name: str, spec: Mapping[str, Any], dag: Mapping[str, Any],
                 where: str) -> dict[str, Any]:
        if "componentInputArtifact" in spec:
            return {"name": name, "from": f"{{{{inputs.artifacts.{_clean(spec['componentInputArtifact'])}}}}}"}
        if "taskOutputArtifact" not in spec:
            raise PipelineError(f"{where}: artifact {name} must come from an upstream task, got {sorted(spec)}")
        out = spec["taskOutputArtifact"]
        producer = dag["tasks"][out["producerTask"]]
        if "parameterIterator" in producer:  # dsl.Collected: the loop's key-only folder
            selector = self.loop_output(producer, out["outputArtifactKey"])
            key = collected_key(out["producerTask"], selector["producerSubtask"],
                                selector["outputArtifactKey"])
            return {"name": name, "s3": {"key": key}}
        return {"name": name, "from": f"{{{{tasks.{out['producerTask']}.outputs.artifacts."
                                      f"{_clean(out['outputArtifactKey'])}}}}}"}

    def loop_output(self, loop_task: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        outputs = self.component(loop_task)["dag"].get("outputs", {}).get("artifacts", {})
        return outputs[key]["artifactSelectors"][0]

    def output_name(self, producer: str, key: str) -> str:
        """The Argo output parameter of a task's IR output: a single-output stage's ``Output`` is
        its one result (the name its template writes)."""
        task = self.tasks_by_name.get(producer)
        if key == "Output" and task is not None and "dag" not in self.component(task):
            stage = self.stage(task, producer)
            if len(stage.results) == 1:
                return stage.results[0].name
        return _clean(key)

    def arguments(self, task: Mapping[str, Any], dag: Mapping[str, Any], root: bool,
                  where: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        inputs = task.get("inputs", {})
        params = [{"name": _clean(k), "value": self.parameter(v, root, f"{where} {k}")}
                  for k, v in sorted(inputs.get("parameters", {}).items())
                  if k not in skip and "taskFinalStatus" not in v]
        arts = [self.artifact(_clean(k), v, dag, where) for k, v in sorted(inputs.get("artifacts", {}).items())]
        return {**({"parameters": params} if params else {}), **({"artifacts": arts} if arts else {})}

    # -- DAGs ----------------------------------------------------------------------------------
    def dag_tasks(self, dag: Mapping[str, Any], root: bool, loop: tuple[str, str] | None = None,
                  collected: frozenset = frozenset()) -> list[dict[str, Any]]:
        """The Argo tasks of one IR DAG.

        Args:
            dag: the IR DAG.
            root: the pipeline's own DAG (inputs are workflow parameters).
            loop: (loop task name, item input) when ``dag`` is a ParallelFor's body.
            collected: (task, output) pairs of this loop body that a ``dsl.Collected`` reads.
        """
        tasks = []
        for tname, task in sorted(dag["tasks"].items()):
            if task.get("triggerPolicy", {}).get("strategy") == "ALL_UPSTREAM_TASKS_COMPLETED":
                self.exit_task = (tname, task)  # the ExitHandler's exit task -> onExit
                continue
            entry = self.task(tname, task, dag, root, loop, collected)
            if task.get("dependentTasks"):
                entry["dependencies"] = sorted(d for d in task["dependentTasks"]
                                               if d in dag["tasks"])
            tasks.append(entry)
        return tasks

    def task(self, tname: str, task: Mapping[str, Any], dag: Mapping[str, Any], root: bool,
             loop: tuple[str, str] | None, collected: frozenset) -> dict[str, Any]:
        where = f"task {tname}"
        comp = self.component(task)
        if "dag" in comp:
            entry = self.group(tname, task, comp, dag, root)
        else:
            entry = {"name": tname, **self.stage_reference(tname, task, loop, collected)}
            arguments = self.arguments(task, dag, root, where)
            if loop is not None and any(t == tname for t, _ in collected):
                arguments.setdefault("parameters", []).append(
                    {"name": ITEM_PARAM, "value": f"{{{{inputs.parameters.{_clean(loop[1])}}}}}"})
            if arguments:
                entry["arguments"] = arguments
        condition = task.get("triggerPolicy", {}).get("condition")
        if condition:
            entry["when"] = self.when(condition, task, root, where)
        return entry

    def stage_reference(self, tname: str, task: Mapping[str, Any], loop: tuple[str, str] | None,
                        collected: frozenset) -> dict[str, Any]:
        stage = self.stage(task, tname)
        outputs = sorted(o for t, o in collected if t == tname)
        if loop is None or not outputs:
            return {"templateRef": {"name": template_name(stage), "template": inner_template_name(stage)}}
        name = f"{loop[0]}-{tname}"
        self.templates[name] = self.keyed_template(stage, task, name, loop[0], tname, outputs)
        return {"template": name}

    def keyed_template(self, stage: Stage, task: Mapping[str, Any], name: str, loop: str,
                       tname: str, outputs: list[str]) -> dict[str, Any]:
        """The stage's container template whose collected outputs go to per-item keys."""
        base = build_workflow_template(stage, self.container(task).get("image"), gpu=False)
        template = copy.deepcopy(base["spec"]["templates"][0])
        template["name"] = name
        template["inputs"].setdefault("parameters", []).append(
            {"name": ITEM_PARAM, "description": "The loop item, naming this iteration's output keys."})
        for art in template.get("outputs", {}).get("artifacts", []):
            if art["name"] in outputs:
                art["s3"] = {"key": f"{collected_key(loop, tname, art['name'])}/"
                                    f"{{{{inputs.parameters.{ITEM_PARAM}}}}}"}
        return template

    def group(self, tname: str, task: Mapping[str, Any], comp: Mapping[str, Any],
              dag: Mapping[str, Any], root: bool) -> dict[str, Any]:
        """A condition, loop or exit-handler sub-DAG: a nested DAG template and the task running it."""
        name = _comp_template(task["componentRef"]["name"])
        iterator = task.get("parameterIterator")
        loop = (tname, iterator["itemInput"]) if iterator else None
        collected = self.collected_outputs(tname, dag) if iterator else frozenset()
        defs = comp.get("inputDefinitions", {})
        inputs: dict[str, Any] = {}
        if defs.get("parameters"):
            inputs["parameters"] = [{"name": _clean(k)} for k in sorted(defs["parameters"])]
        if defs.get("artifacts"):
            inputs["artifacts"] = [{"name": _clean(k)} for k in sorted(defs["artifacts"])]
        body = self.dag_tasks(comp["dag"], root=False, loop=loop, collected=collected)
        outputs = {} if iterator else _dag_outputs(comp["dag"].get("outputs", {}))
        self.templates[name] = {"name": name, **({"inputs": inputs} if inputs else {}),
                                **({"outputs": outputs} if outputs else {}), "dag": {"tasks": body}}
        entry: dict[str, Any] = {"name": tname, "template": name}
        arguments = self.arguments(task, dag, root, f"task {tname}")
        if iterator:
            arguments.setdefault("parameters", []).append(
                {"name": _clean(iterator["itemInput"]), "value": "{{item}}"})
            entry.update(self.loop_items(iterator, task, root, tname))
        if arguments:
            entry["arguments"] = arguments
        return entry

    def collected_outputs(self, loop_name: str, dag: Mapping[str, Any]) -> frozenset:
        """(task, output) pairs of loop ``loop_name``'s body that a consumer in ``dag`` collects."""
        pairs = set()
        loop_task = dag["tasks"][loop_name]
        for task in dag["tasks"].values():
            for spec in task.get("inputs", {}).get("artifacts", {}).values():
                out = spec.get("taskOutputArtifact", {})
                if out.get("producerTask") == loop_name:
                    sel = self.loop_output(loop_task, out["outputArtifactKey"])
                    pairs.add((sel["producerSubtask"], sel["outputArtifactKey"]))
        return frozenset(pairs)

    def loop_items(self, iterator: Mapping[str, Any], task: Mapping[str, Any], root: bool,
                   tname: str) -> dict[str, Any]:
        items = iterator["items"]
        if "raw" in items:
            return {"withItems": [argo_value(v) for v in json.loads(items["raw"])]}
        spec = task["inputs"]["parameters"][items["inputParameter"]]
        return {"withParam": self.parameter(spec, root, f"task {tname} items")}

    def when(self, condition: str, task: Mapping[str, Any], root: bool, where: str) -> str:
        params = task.get("inputs", {}).get("parameters", {})

        def value(match: re.Match) -> str:
            name = match.group(1)
            if name not in params:
                raise PipelineError(f"{where}: condition {condition!r} reads {name}, which the task "
                                    "does not receive")
            return self.parameter(params[name], root, where)

        return _CONDITION_INPUT.sub(value, condition)

    def exit_template(self) -> dict[str, Any] | None:
        """The ``onExit`` DAG running the exit task with the workflow's final status."""
        if self.exit_task is None:
            return None
        tname, task = self.exit_task
        stage = self.stage(task, tname)
        status = {k: v for k, v in _ARGO_STATUS.items() if k in {p.name for p in stage.params}}
        arguments = self.arguments(task, {"tasks": {}}, True, f"exit task {tname}", skip=tuple(status))
        arguments["parameters"] = sorted(arguments.get("parameters", []) +
                                         [{"name": k, "value": v} for k, v in status.items()],
                                         key=lambda p: p["name"])
        run = {"name": tname, "templateRef": {"name": template_name(stage),
                                              "template": inner_template_name(stage)},
               "arguments": arguments}
        return {"name": EXIT_TEMPLATE, "dag": {"tasks": [run]}}


def _selected(kind: str, selector: Mapping[str, Any], key_field: str) -> str:
    return f"tasks['{selector['producerSubtask']}'].outputs.{kind}['{_clean(selector[key_field])}']"


def _one_of(kind: str, selectors: list[Mapping[str, Any]], key_field: str) -> str:
    """An Argo expression picking the output of the branch that ran (a ``dsl.OneOf``)."""
    expr = _selected(kind, selectors[-1], key_field)
    for sel in reversed(selectors[:-1]):
        expr = (f"tasks['{sel['producerSubtask']}'].status == 'Succeeded' ? "
                f"{_selected(kind, sel, key_field)} : {expr}")
    return expr


def _dag_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """A condition sub-DAG's outputs (what its tasks pass out, or a ``dsl.OneOf`` of branches)."""
    arts = []
    for key, spec in sorted(outputs.get("artifacts", {}).items()):
        sels = spec["artifactSelectors"]
        if len(sels) == 1:
            arts.append({"name": _clean(key), "from": f"{{{{tasks.{sels[0]['producerSubtask']}.outputs."
                                                      f"artifacts.{_clean(sels[0]['outputArtifactKey'])}}}}}"})
        else:
            arts.append({"name": _clean(key), "fromExpression": _one_of("artifacts", sels, "outputArtifactKey")})
    params = []
    for key, spec in sorted(outputs.get("parameters", {}).items()):
        if "valueFromParameter" in spec:
            sel = spec["valueFromParameter"]
            params.append({"name": _clean(key), "valueFrom": {"parameter": (
                f"{{{{tasks.{sel['producerSubtask']}.outputs.parameters.{_clean(sel['outputParameterKey'])}}}}}")}})
        else:
            sels = spec["valueFromOneof"]["parameterSelectors"]
            params.append({"name": _clean(key), "valueFrom": {
                "expression": _one_of("parameters", sels, "outputParameterKey")}})
    return {**({"artifacts": arts} if arts else {}), **({"parameters": params} if params else {})}


def _all_tasks(ir: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every task of every DAG of the IR by name (KFP names tasks uniquely across a pipeline)."""
    found: dict[str, Mapping[str, Any]] = {}
    for dag in [ir["root"]["dag"]] + [c["dag"] for c in ir["components"].values() if "dag" in c]:
        found.update(dag.get("tasks", {}))
    return found


def _workflow_parameters(root: Mapping[str, Any]) -> list[dict[str, Any]]:
    params = []
    for pname, pdef in sorted(root.get("inputDefinitions", {}).get("parameters", {}).items()):
        entry: dict[str, Any] = {"name": pname}
        if "defaultValue" in pdef:
            default = pdef["defaultValue"]
            if pdef.get("parameterType") in ("LIST", "STRUCT"):
                entry["value"] = json.dumps(default)  # what withParam and the stages parse
            else:
                cast = _IR_DEFAULT_CAST.get(pdef.get("parameterType"), lambda v: v)
                entry["value"] = argo_value(cast(default))
        if pdef.get("description"):
            entry["description"] = pdef["description"]
        params.append(entry)
    return params


def build_workflow(name: str, ir: Mapping[str, Any]) -> dict[str, Any]:
    """The Argo Workflow of pipeline ``name`` from its compiled KFP IR (the first YAML document).

    Pipeline parameters become workflow parameters with the same names and defaults (lists as
    JSON); the control flow translates as the module describes.

    Raises:
        PipelineError: when the IR uses something without an Argo translation (importers,
            constant artifacts, outputs of a condition used outside it).
    """
    translator = _Translator(ir)
    tasks = translator.dag_tasks(ir["root"]["dag"], root=True)
    templates = [{"name": name, "dag": {"tasks": tasks}}]
    templates += [translator.templates[k] for k in sorted(translator.templates)]
    spec: dict[str, Any] = {
        "entrypoint": name,
        "arguments": {"parameters": _workflow_parameters(ir["root"])},
        "artifactRepositoryRef": {"configMap": ARTIFACT_REPOSITORY_CONFIGMAP, "key": ARTIFACT_REPOSITORY_KEY},
        "templates": templates,
    }
    exit_template = translator.exit_template()
    if exit_template is not None:
        spec["onExit"] = EXIT_TEMPLATE
        spec["templates"].append(exit_template)
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {"generateName": f"tlt-{name}-", "labels": dict(LABELS),
                     "annotations": {"workflows.argoproj.io/description": ir["pipelineInfo"].get("description", "")}},
        "spec": spec,
    }
