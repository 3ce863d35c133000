"""Kubernetes settings from the stage registry, in every compiled pipeline (KFP IR and the
kfp-kubernetes platform spec) and in the Argo templates: GPU request, toleration and node-selector
parameter, memory-backed /dev/shm, retries with backoff, secrets, caching, checkpoint mirror."""

import pytest
import yaml

from tlt.errors import PipelineError
from tlt.orchestration import argo
from tlt.orchestration.compile import compile_tree
from tlt.orchestration.components import load_component
from tlt.orchestration.paths import DEFAULT_IMAGE
from tlt.orchestration.pipelines import PIPELINES
from tlt.orchestration.registry import STAGES, get_stage
from tlt.orchestration.stage_types import GPU_NODE_SELECTOR_PARAM, GPU_TOLERATION
from tlt.orchestration.task_settings import configure_task


@pytest.fixture(scope="module")
def compiled(repo_root):
    files = compile_tree(repo_root, DEFAULT_IMAGE)
    return {name: list(yaml.safe_load_all(files[f"pipelines/{name}.yaml"])) for name in PIPELINES}


def _stage_tasks(ir):
    """(task name, task, executor label, stage) of every TLT task in every DAG of the IR."""
    dags = [ir["root"]["dag"]] + [c["dag"] for c in ir["components"].values() if "dag" in c]
    for dag in dags:
        for name, task in dag["tasks"].items():
            comp = ir["components"][task["componentRef"]["name"]]
            if "executorLabel" not in comp:
                continue
            args = ir["deploymentSpec"]["executors"][comp["executorLabel"]]["container"]["args"]
            yield name, task, comp["executorLabel"], get_stage(args[args.index("--function_to_execute") + 1])


def _platform(docs, label):
    platform = docs[1] if len(docs) > 1 else {}
    return platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}) \
        .get("executors", {}).get(label, {})


def test_registry_declares_gpu_shm_and_caching():
    assert [n for n, s in STAGES.items() if s.resources.gpus] == ["train", "retrain"]
    # Training always trains (resuming from its mirror); convert reuses an earlier run's shards.
    assert {"train", "retrain"} <= {n for n, s in STAGES.items() if not s.caching}
    assert get_stage("convert").caching is True
    for name in ("train", "retrain"):
        assert [p.name for p in get_stage(name).params][-2:] == ["checkpoint_root", "run_id"]


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_every_task_has_retries_secrets_shm_and_the_registry_caching(compiled, pipeline):
    docs = compiled[pipeline]
    ir = docs[0]
    seen = set()
    for name, task, label, stage in _stage_tasks(ir):
        seen.add(stage.name)
        retry = task["retryPolicy"]
        assert retry["maxRetryCount"] == stage.retry.num_retries, name
        assert retry["backoffDuration"] == f"{stage.retry.backoff_seconds}s", name
        assert retry["backoffMaxDuration"] == f"{stage.retry.backoff_max_seconds}s", name
        # The registry's choice, except where a pipeline knows better: retraining reads new frames
        # under an unchanged prefix, so its convert must not be a cache hit on the parameters.
        cached = stage.caching and not (pipeline == "retraining" and stage.name == "convert")
        assert task.get("cachingOptions", {}).get("enableCache", False) is cached, name
        k8s = _platform(docs, label)
        assert [s["secretName"] for s in k8s["secretAsEnv"]] == [s.secret for s in stage.env_secrets()], name
        mounts = k8s.get("emptyDirMounts", [])
        if stage.resources.shm_size:
            assert mounts == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": stage.resources.shm_size,
                               "volumeName": "dshm"}], name
        else:
            assert mounts == [], name
        resources = ir["deploymentSpec"]["executors"][label]["container"]["resources"]
        if stage.resources.gpus:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu", name
            assert resources["accelerator"]["resourceCount"] == str(stage.resources.gpus), name
            assert k8s["tolerations"] == [GPU_TOLERATION], name
        else:
            assert "accelerator" not in resources and "tolerations" not in k8s, name
    assert seen, pipeline


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_gpu_tasks_read_the_node_selector_parameter(compiled, pipeline):
    docs = compiled[pipeline]
    ir = docs[0]
    gpu_tasks = [(n, label) for n, _, label, stage in _stage_tasks(ir) if stage.resources.gpus]
    if not gpu_tasks:
        pytest.skip(f"{pipeline} has no GPU stage")
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert params[GPU_NODE_SELECTOR_PARAM]["parameterType"] == "STRUCT"
    assert params[GPU_NODE_SELECTOR_PARAM]["defaultValue"] == {}
    for name, label in gpu_tasks:
        selector = _platform(docs, label)["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"]
        # Inside a dsl.If/ExitHandler sub-DAG KFP names it pipelinechannel--gpu_node_selector.
        assert selector.endswith(GPU_NODE_SELECTOR_PARAM), name


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_training_tasks_mirror_checkpoints_under_the_run(compiled, pipeline):
    ir = compiled[pipeline][0]
    for name, task, _, stage in _stage_tasks(ir):
        if stage.name not in ("train", "retrain"):
            continue
        params = task["inputs"]["parameters"]
        assert params["run_id"] == {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}, name
        assert params["checkpoint_root"]["componentInputParameter"].endswith("checkpoint_root"), name


def _probe(build):
    from kfp import dsl

    captured = {}

    @dsl.pipeline(name="probe")
    def probe(spec: str = "s", gpu_node_selector: dict = {}):
        captured["task"] = build(spec, gpu_node_selector)

    return captured["task"].platform_config["kubernetes"]


def test_configure_task_takes_the_node_selector_as_a_parameter_or_a_dict():
    train = load_component("train")
    k8s = _probe(lambda spec, sel: configure_task(train(spec=spec), node_selector=sel))
    assert k8s["nodeSelector"] == {"nodeSelectorJson": {"componentInputParameter": "gpu_node_selector"}}
    k8s = _probe(lambda spec, sel: configure_task(train(spec=spec), node_selector={"pool": "t4"}))
    assert k8s["nodeSelector"] == {"labels": {"pool": "t4"}}
    k8s = _probe(lambda spec, sel: configure_task(train(spec=spec)))
    assert "nodeSelector" not in k8s and k8s["tolerations"] == [GPU_TOLERATION]


def test_node_selector_on_a_cpu_stage_is_a_compile_time_error():
    convert = load_component("convert")
    with pytest.raises(PipelineError, match="stage convert runs on CPU nodes: pass node_selector "
                                            r"\(gpu_node_selector\) only to GPU stages"):
        _probe(lambda spec, sel: configure_task(convert(spec=spec), node_selector=sel))


def test_argo_templates_carry_the_same_settings():
    for stage in STAGES.values():
        (base,) = argo.build_workflow_template(stage, DEFAULT_IMAGE, gpu=False)["spec"]["templates"]
        (gpu,) = argo.build_workflow_template(stage, DEFAULT_IMAGE)["spec"]["templates"]
        assert base["retryStrategy"]["backoff"]["duration"] == f"{stage.retry.backoff_seconds}s"
        assert ("volumes" in base) is bool(stage.resources.shm_size)
        assert "nvidia.com/gpu" not in base["container"]["resources"]["limits"]
        assert ("nvidia.com/gpu" in gpu["container"]["resources"]["limits"]) is bool(stage.resources.gpus)
        results = [p["name"] for p in base["outputs"].get("parameters", [])]
        assert results == [r.name for r in stage.results]
        for out in base["outputs"].get("parameters", []):
            assert out["valueFrom"] == {"path": f"/tmp/tlt/results/{out['name']}"}
            assert f"--result-{out['name']}=/tmp/tlt/results/{out['name']}" in base["container"]["args"]
    assert [p["name"] for p in argo.build_workflow_template(get_stage("champion"))["spec"]["templates"][0]
            ["outputs"]["parameters"]] == ["has_champion"]


def test_a_bad_secret_name_fails_when_the_registry_is_declared():
    from tlt.orchestration.stage_types import SecretEnv

    with pytest.raises(PipelineError, match=r"secret name '': expected a Kubernetes object name"):
        SecretEnv(secret="", keys=(("key", "TLT_KEY"),))
    with pytest.raises(PipelineError, match=r"secret name 'TLT_Key': expected a Kubernetes object name"):
        SecretEnv(secret="TLT_Key", keys=(("key", "TLT_KEY"),))
    with pytest.raises(PipelineError, match=r"secret tlt-model-key: keys must map secret keys to environment"):
        SecretEnv(secret="tlt-model-key", keys=(("key", "TLT-KEY"),))
    assert SecretEnv(secret="tlt-model-key", keys=(("key", "TLT_KEY"),)).secret == "tlt-model-key"
