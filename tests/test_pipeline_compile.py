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
    expected |= {"manifests/artifact-repositories.yaml", "manifests/kustomization.yaml"}
    assert set(compiled) == expected


def test_detection_ir_has_tasks_params_images_resources_and_retry(compiled):
    text = compiled["pipelines/detection.yaml"]
    ir, platform = list(yaml.safe_load_all(text))
    assert ir["pipelineInfo"]["name"] == "tlt-detection"
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert sorted(params) == ["calibration_batch_size", "calibration_batches", "convert_spec",
                              "dataset_root", "engine_precision", "evaluation_mode", "gpus",
                              "pruning_normalizer", "pruning_threshold", "retrain_epochs",
                              "train_spec", "validation_fold"]
    assert params["pruning_threshold"]["parameterType"] == "NUMBER_DOUBLE"
    assert params["retrain_epochs"]["defaultValue"] == 6
    assert params["convert_spec"]["defaultValue"] == DEFAULT_CONVERT_SPEC
    assert params["validation_fold"]["parameterType"] == "NUMBER_INTEGER"
    assert params["validation_fold"]["defaultValue"] == 0
    tasks = ir["root"]["dag"]["tasks"]
    assert sorted(tasks) == ["build-engine", "build-engine-2", "convert", "evaluate", "evaluate-2",
                             "evaluate-3", "export", "prune", "retrain", "train"]
    convert = tasks["convert"]
    assert convert["inputs"]["parameters"]["spec"] == {"componentInputParameter": "convert_spec"}
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
    assert ir["root"]["dag"]["outputs"]["artifacts"]["dataset"]["artifactSelectors"] == [
        {"outputArtifactKey": "dataset", "producerSubtask": "convert"}]
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
    for task in ("train", "evaluate", "prune", "retrain", "export", "build-engine"):
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


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_pipelines_prune_retrain_export_and_evaluate_the_engine_in_order(compiled, pipeline):
    ir, _ = list(yaml.safe_load_all(compiled[f"pipelines/{pipeline}.yaml"]))
    tasks = ir["root"]["dag"]["tasks"]
    # evaluate -> prune -> retrain -> evaluate-2 -> export -> both engines -> evaluate-3
    chain = ["train", "evaluate", "prune", "retrain", "evaluate-2", "export", "build-engine",
             "build-engine-2", "evaluate-3"]
    for before, after in zip(chain, chain[1:]):
        if not after.startswith("build-engine-"):
            assert before in _upstream(tasks, after), f"{before} must run before {after}"
    assert _artifact_sources(tasks["prune"]) == {"model": ("train", "model")}
    assert _artifact_sources(tasks["retrain"])["pretrained_model"] == ("prune", "pruned_model")
    assert _artifact_sources(tasks["evaluate-2"])["model"] == ("retrain", "model")
    assert _artifact_sources(tasks["evaluate-2"])["compare_a"] == ("train", "model")
    assert _artifact_sources(tasks["export"])["model"] == ("retrain", "model")
    assert _artifact_sources(tasks["build-engine"]) == {"export": ("export", "export")}
    assert _artifact_sources(tasks["build-engine-2"]) == {"export": ("export", "export")}
    final = _artifact_sources(tasks["evaluate-3"])
    assert final["model"] == ("build-engine-2", "engine")
    assert final["compare_a"] == ("retrain", "model") and final["compare_b"] == ("build-engine", "engine")
    assert _constants(tasks["export"])["data_type"] == "int8"
    assert _constants(tasks["build-engine"])["precision"] == "fp32"
    assert tasks["build-engine-2"]["inputs"]["parameters"]["precision"] == {
        "componentInputParameter": "engine_precision"}
    assert _constants(tasks["evaluate-3"])["framework"] == "engine"
    assert tasks["prune"]["inputs"]["parameters"]["pruning_threshold"] == {
        "componentInputParameter": "pruning_threshold"}
    assert tasks["retrain"]["inputs"]["parameters"]["epochs"] == {
        "componentInputParameter": "retrain_epochs"}
    outputs = ir["root"]["dag"]["outputs"]["artifacts"]
    assert outputs["engine"]["artifactSelectors"] == [
        {"outputArtifactKey": "scored_model", "producerSubtask": "evaluate-3"}]
    assert outputs["pruning_report"]["artifactSelectors"] == [
        {"outputArtifactKey": "report", "producerSubtask": "evaluate-2"}]


def test_new_stage_components_name_their_cli_and_secret(compiled):
    for stage, cli_name in (("prune", "tlt-prune"), ("retrain", "tlt-train"), ("export", "tlt-export"),
                            ("build_engine", "tlt-converter")):
        readme = compiled[f"components/{stage}/README.md"]
        assert f"- CLI on a laptop: `{cli_name}`" in readme
        assert "- `tlt-model-key` (required): environment `TLT_KEY` (from key `key`)" in readme
