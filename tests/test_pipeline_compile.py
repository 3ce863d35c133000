"""Compiled pipelines: content of the IR, determinism, and staleness of the checked-in copies."""

import shutil

import pytest
import yaml

from tlt.cli import pipeline as cli
from tlt.orchestration.compile import compile_tree, stale_files
from tlt.orchestration.paths import DEFAULT_IMAGE
from tlt.orchestration.pipelines import DEFAULT_CONVERT_SPEC, PIPELINES
from tlt.orchestration.registry import STAGES, get_stage


@pytest.fixture(scope="module")
def compiled(repo_root):
    return compile_tree(repo_root, DEFAULT_IMAGE)


def test_checked_in_generated_files_are_fresh(compiled, repo_root):
    stale = stale_files(compiled, repo_root)
    assert stale == [], f"stale generated files (run `tlt-pipeline compile`): {stale}"


def test_compile_is_deterministic(compiled, repo_root):
    again = compile_tree(repo_root, DEFAULT_IMAGE)
    assert again == compiled
    expected = {f"components/{s}/{f}" for s in STAGES for f in ("component.py", "component.yaml", "README.md")}
    expected |= {f"pipelines/{p}.yaml" for p in PIPELINES} | {f"manifests/workflows/{p}.yaml" for p in PIPELINES}
    expected |= {f"manifests/templates/{s}.yaml" for s in STAGES}
    assert expected <= set(compiled)  # kustomize overlays, secrets and CronWorkflows come on top


def test_detection_ir_has_tasks_params_images_resources_and_retry(compiled):
    text = compiled["pipelines/detection.yaml"]
    ir, platform = list(yaml.safe_load_all(text))
    assert ir["pipelineInfo"]["name"] == "tlt-detection"
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert {"calibration_batch_size", "calibration_batches", "convert_spec", "dataset_root",
            "engine_precision", "evaluation_mode", "gpus", "pruning_normalizer", "pruning_thresholds",
            "quality_threshold", "retrain_epochs", "sweep_tolerance", "train_spec",
            "validation_fold"} <= set(params)
    assert params["pruning_thresholds"]["parameterType"] == "LIST"
    assert params["pruning_thresholds"]["defaultValue"] == [0.8]  # one retraining by default
    assert params["quality_threshold"]["defaultValue"] == 10.0
    assert params["retrain_epochs"]["defaultValue"] == 20
    assert params["convert_spec"]["defaultValue"] == DEFAULT_CONVERT_SPEC
    assert params["validation_fold"]["parameterType"] == "NUMBER_INTEGER"
    assert params["validation_fold"]["defaultValue"] == 0
    tasks = {name: task for name, (task, _) in _flat_tasks(ir).items()}
    assert sorted(tasks) == ["build-engine", "build-engine-2", "convert", "evaluate", "evaluate-2",
                             "evaluate-3", "export", "pick-pruned", "prune", "quality-gate", "retrain",
                             "run-summary", "train"]
    convert = tasks["convert"]
    assert convert["inputs"]["parameters"]["spec"] == {"componentInputParameter": "pipelinechannel--convert_spec"}
    stage = get_stage("convert")
    assert convert["retryPolicy"] == {"backoffDuration": "30s", "backoffFactor": 2.0,
                                      "backoffMaxDuration": "600s", "maxRetryCount": stage.retry.num_retries}
    container = ir["deploymentSpec"]["executors"]["exec-convert"]["container"]
    assert container["image"] == DEFAULT_IMAGE
    assert container["resources"]["resourceCpuLimit"] == stage.resources.cpu_limit
    assert container["resources"]["resourceMemoryRequest"] == stage.resources.memory_request
    assert container["args"][-2:] == ["--function_to_execute", "convert"]
    assert "run_component(" in container["command"][-1]
    # No pip install at start-up: the project image already holds kfp and tlt.
    assert "pip install" not in " ".join(container["command"])
    secret = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-convert"]["secretAsEnv"][0]
    assert secret["secretName"] == "tlt-storage-credentials"


def test_kfp_header_with_multiline_default_stays_yaml(compiled):
    # KFP 2.17 leaves multi-line defaults uncommented in its header; the compile step repairs it.
    header = compiled["pipelines/detection.yaml"].split("\ncomponents:")[0]
    assert all(line.startswith("#") for line in header.splitlines())
    assert '#  root_directory_path: "data/sample-kitti"' in header


def test_default_convert_spec_is_a_valid_dataset_export_spec():
    from tlt import spec

    msg = spec.loads(DEFAULT_CONVERT_SPEC, "dataset_export")
    assert msg.kitti_config.root_directory_path == "data/sample-kitti"
    assert msg.kitti_config.num_shards == 2


def test_component_yaml_loads_back(compiled, tmp_path):
    from kfp import components

    path = tmp_path / "component.yaml"
    path.write_text(compiled["components/convert/component.yaml"])
    comp = components.load_component_from_file(str(path))
    assert comp.component_spec.name == "convert"
    assert sorted(comp.component_spec.inputs) == ["dataset_root", "spec", "validation_fold"]


def _copy_checkout(repo_root, dest):
    for folder in ("components", "pipelines", "manifests"):
        shutil.copytree(repo_root / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.mark.slow  # five full compiles (90 s); the default run keeps one check of freshness
def test_compile_check_reports_stale_files_and_compile_fixes_them(repo_root, tmp_path, monkeypatch, capsys):
    _copy_checkout(repo_root, tmp_path)
    monkeypatch.setenv("TLT_REPO_ROOT", str(tmp_path))
    monkeypatch.delenv("TLT_IMAGE", raising=False)
    assert cli.main(["compile", "--check"]) == 0
    assert "generated files are up to date" in capsys.readouterr().out
    (tmp_path / "manifests/templates/convert.yaml").write_text("edited by hand\n")
    (tmp_path / "components/convert/README.md").unlink()
    assert cli.main(["compile", "--check"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["stale: components/convert/README.md", "stale: manifests/templates/convert.yaml"]
    assert "2 generated file(s) are stale: run `tlt-pipeline compile`" in captured.err
    assert cli.main(["compile"]) == 0
    assert "wrote manifests/templates/convert.yaml" in capsys.readouterr().out
    assert cli.main(["compile", "--check"]) == 0
    # Another image makes every image-bearing file stale.
    assert cli.main(["compile", "--check", "--image", "mirror.local/tlt:dev"]) == 1
    assert "stale: manifests/templates/convert.yaml" in capsys.readouterr().out


def _secret_envs(platform, executor):
    """Environment variable -> (secret, key, optional) of one executor in the kubernetes platform spec."""
    entries = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][executor]["secretAsEnv"]
    return {k["envVar"]: (e["secretName"], k["secretKey"], e["optional"]) for e in entries for k in e["keyToEnv"]}


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_model_key_comes_from_a_secret_never_a_parameter(compiled, pipeline):
    ir, platform = list(yaml.safe_load_all(compiled[f"pipelines/{pipeline}.yaml"]))
    # The key is not something a user types into the Kubeflow UI ...
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert not [name for name in params if "key" in name.lower()]
    assert "TLT_KEY" not in yaml.safe_dump(params)
    # ... it reaches every task that writes or reads a .tlt file from the tlt-model-key secret.
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for task in ("train", "evaluate", "prune", "retrain", "export", "build-engine", "pick-pruned"):
        if f"exec-{task}" in executors:
            assert _secret_envs(platform, f"exec-{task}")["TLT_KEY"] == ("tlt-model-key", "key", False)
    if "convert" in ir["root"]["dag"]["tasks"]:
        assert "TLT_KEY" not in _secret_envs(platform, "exec-convert")
        assert _secret_envs(platform, "exec-convert")["AWS_ACCESS_KEY_ID"][0] == "tlt-storage-credentials"


def test_component_readme_names_the_model_key_secret(compiled):
    assert ("- `tlt-model-key` (required): environment `TLT_KEY` (from key `key`)"
            in compiled["components/train/README.md"])
    assert "tlt-model-key" not in compiled["components/convert/README.md"]


def _upstream(tasks, name):
    """Every task ``name`` depends on, directly or through other tasks."""
    seen, todo = set(), list(tasks[name].get("dependentTasks", []))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo += tasks[dep].get("dependentTasks", [])
    return seen


def _artifact_sources(task):
    return {name: (spec["taskOutputArtifact"]["producerTask"], spec["taskOutputArtifact"]["outputArtifactKey"])
            for name, spec in task.get("inputs", {}).get("artifacts", {}).items()}


def _constants(task):
    return {name: spec["runtimeValue"]["constant"]
            for name, spec in task.get("inputs", {}).get("parameters", {}).items() if "runtimeValue" in spec}


def _flat_tasks(ir):
    """Every task of every DAG of the IR -> (task, name of the group task it runs in or None)."""
    found = {}

    def walk(dag, group):
        for name, task in dag["tasks"].items():
            comp = ir["components"][task["componentRef"]["name"]]
            if "dag" in comp:
                walk(comp["dag"], name)
            else:
                found[name] = (task, group)

    walk(ir["root"]["dag"], None)
    return found


def _groups(ir):
    """Group task name -> (task, component, parent group) for conditions, loops, exit handlers."""
    found = {}

    def walk(dag, parent):
        for name, task in dag["tasks"].items():
            comp = ir["components"][task["componentRef"]["name"]]
            if "dag" in comp:
                found[name] = (task, comp, parent)
                walk(comp["dag"], name)

    walk(ir["root"]["dag"], None)
    return found


def _source(ir, spec, group):
    """(producer task, output, collected?) of an artifact input, through group inputs and loops."""
    groups = _groups(ir)
    collected = False
    while "componentInputArtifact" in spec:
        gtask, _, parent = groups[group]
        spec, group = gtask["inputs"]["artifacts"][spec["componentInputArtifact"]], parent
    out = spec["taskOutputArtifact"]
    producer, key = out["producerTask"], out["outputArtifactKey"]
    while producer in groups:  # a loop's output: dsl.Collected of a task inside it
        sel = groups[producer][1]["dag"]["outputs"]["artifacts"][key]["artifactSelectors"][0]
        producer, key, collected = sel["producerSubtask"], sel["outputArtifactKey"], True
    return producer, key, collected


def _sources(ir, name):
    task, group = _flat_tasks(ir)[name]
    return {k: _source(ir, v, group)[:2] if not _source(ir, v, group)[2] else (*_source(ir, v, group)[:2], "collected")
            for k, v in task.get("inputs", {}).get("artifacts", {}).items()}


@pytest.mark.parametrize("pipeline", ["classification", "detection"])
def test_full_dag_prunes_in_a_sweep_gates_exports_and_summarises(compiled, pipeline):
    ir, _ = list(yaml.safe_load_all(compiled[f"pipelines/{pipeline}.yaml"]))
    flat, groups = _flat_tasks(ir), _groups(ir)
    # ExitHandler: everything runs inside it; its exit task writes the summary whatever happens.
    root = ir["root"]["dag"]["tasks"]
    (handler,) = [n for n in root if n.startswith("exit-handler")]
    assert root["run-summary"]["triggerPolicy"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}
    assert root["run-summary"]["inputs"]["parameters"]["final_status"] == {
        "taskFinalStatus": {"producerTask": handler}}
    assert {n for n, (_, g) in flat.items() if g is None} == {"run-summary"}
    # ParallelFor over the thresholds: prune -> retrain -> evaluate-2 per item.
    (loop,) = [n for n, (t, _, _) in groups.items() if "parameterIterator" in t]
    assert groups[loop][0]["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--pruning_thresholds"}
    assert {n for n, (_, g) in flat.items() if g == loop} == {"prune", "retrain", "evaluate-2"}
    assert flat["prune"][0]["inputs"]["parameters"]["pruning_threshold"] == {
        "componentInputParameter": "pipelinechannel--pruning_thresholds-loop-item"}
    assert _sources(ir, "retrain")["pretrained_model"] == ("prune", "pruned_model")
    assert _sources(ir, "evaluate-2")["model"] == ("retrain", "model")
    assert _sources(ir, "evaluate-2")["compare_a"] == ("train", "model")
    # Collected fan-in of both lists into pick_pruned, whose model the gate judges.
    assert _sources(ir, "pick-pruned") == {"candidates": ("evaluate-2", "scored_model", "collected"),
                                           "pruned_models": ("prune", "pruned_model", "collected")}
    assert _sources(ir, "quality-gate") == {"model": ("pick-pruned", "model")}
    # dsl.If on the gate's result: export, both engines and their evaluation only when it passed.
    (cond,) = [n for n, (t, _, _) in groups.items() if "condition" in t.get("triggerPolicy", {})]
    assert groups[cond][0]["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--quality-gate-Output'] == true")
    assert groups[cond][0]["inputs"]["parameters"]["pipelinechannel--quality-gate-Output"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "quality-gate"}}
    assert {n for n, (_, g) in flat.items() if g == cond} == {"export", "build-engine", "build-engine-2",
                                                              "evaluate-3"}
    assert _sources(ir, "export")["model"] == ("pick-pruned", "model")
    assert _sources(ir, "build-engine") == {"export": ("export", "export")}
    final = _sources(ir, "evaluate-3")
    assert final["model"] == ("build-engine-2", "engine")
    assert final["compare_a"] == ("pick-pruned", "model") and final["compare_b"] == ("build-engine", "engine")
    assert _constants(flat["export"][0])["data_type"] == "int8"
    assert _constants(flat["build-engine"][0])["precision"] == "fp32"
    assert _constants(flat["evaluate-3"][0])["framework"] == "engine"
    gate_outputs = ir["components"]["comp-quality-gate"]["outputDefinitions"]["parameters"]
    assert gate_outputs == {"Output": {"parameterType": "BOOLEAN"}}


@pytest.mark.parametrize("pipeline", ["classification", "detection"])
def test_local_outputs_name_tasks_of_the_compiled_dag(compiled, pipeline):
    from tlt.orchestration.pipelines import load_pipeline

    ir, _ = list(yaml.safe_load_all(compiled[f"pipelines/{pipeline}.yaml"]))
    flat = _flat_tasks(ir)
    func = load_pipeline(pipeline)
    import sys

    outputs = sys.modules[func.pipeline_func.__module__].LOCAL_OUTPUTS
    for name, (task, output) in outputs.items():
        assert task in flat, f"{name}: no task {task}"
        comp = ir["components"][flat[task][0]["componentRef"]["name"]]
        assert output in comp["outputDefinitions"]["artifacts"], f"{name}: {task} has no output {output}"


@pytest.mark.parametrize("pipeline", ["classification", "detection"])
def test_every_pipeline_parameter_is_documented(compiled, pipeline):
    ir, _ = list(yaml.safe_load_all(compiled[f"pipelines/{pipeline}.yaml"]))
    for name, definition in ir["root"]["inputDefinitions"]["parameters"].items():
        assert definition.get("description"), f"{pipeline}: parameter {name} has no Args entry"


def test_new_stage_components_name_their_cli_and_secret(compiled):
    for stage, cli_name in (("prune", "tlt-prune"), ("retrain", "tlt-train"), ("export", "tlt-export"),
                            ("build_engine", "tlt-converter")):
        readme = compiled[f"components/{stage}/README.md"]
        assert f"- CLI on a laptop: `{cli_name}`" in readme
        assert "- `tlt-model-key` (required): environment `TLT_KEY` (from key `key`)" in readme
