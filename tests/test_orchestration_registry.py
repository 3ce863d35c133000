"""The stage registry and the KFP components generated from it."""

import inspect

import pytest

from tlt.errors import PipelineError
from tlt.orchestration import adapter_table, registry, stage_types
from tlt.orchestration.components import (
    GENERATED_MARK, load_component, render_component_source, render_readme,
)
from tlt.orchestration.entrypoints import build_stage_parser, run_stage
from tlt.orchestration.paths import DEFAULT_IMAGE, project_image, stage_image
from tlt.orchestration.paths import repo_root as find_repo_root
from tlt.orchestration.registry import get_stage
from tlt.orchestration.stage_types import Artifact, Param, Stage
from tlt.orchestration.task_settings import configure_task

_KFP_TYPES = {str: "String", int: "Integer", float: "Float", bool: "Boolean"}


def test_every_stage_has_an_adapter_and_a_stage_module(repo_root):
    for name in registry.STAGES:
        assert name in adapter_table.ADAPTERS
        assert (repo_root / "lib" / "tlt" / "stages" / f"{name}.py").is_file()
    assert get_stage("convert").cli == "tlt-dataset-convert"


def test_unknown_stage_names_the_known_ones():
    with pytest.raises(PipelineError, match=r"unknown stage 'trian': expected one of convert"):
        get_stage("trian")


def test_registry_entries_are_checked_when_declared():
    with pytest.raises(PipelineError, match=r"parameter n: default '3' is not a int"):
        Param("n", int, "a count", "3")
    with pytest.raises(PipelineError, match=r"type must be one of str, int, float, bool"):
        Param("x", list, "a list")
    with pytest.raises(PipelineError, match=r"kind must be one of .*got 'Tensor'"):
        Artifact("m", "Tensor", "a model")
    with pytest.raises(PipelineError, match=r"stage s: names used twice: x"):
        Stage("s", "tlt-s", "d", params=(Param("x", str, "h"),), outputs=(Artifact("x", "Model", "h"),))


@pytest.mark.parametrize("name", list(registry.STAGES))
def test_generated_component_matches_registry(name):
    from tlt.orchestration.registry_gates import FINAL_STATUS_PARAMS, SINGLE_OUTPUT_STAGES

    stage = get_stage(name)
    comp = load_component(name)
    spec = comp.component_spec
    assert spec.name == name.replace("_", "-")  # KFP's name for the function build_engine
    # The GPU image for the stages that request GPUs (train, retrain), else the CPU image.
    assert spec.implementation.container.image == stage_image(stage)
    assert (stage_image(stage) == DEFAULT_IMAGE) is (stage.resources.gpus == 0)
    # Parameters KFP fills from PipelineTaskFinalStatus are one final_status input instead.
    params = [p for p in stage.params if p.name not in FINAL_STATUS_PARAMS.get(name, {})]
    assert list(spec.inputs) == [p.name for p in params if p.required] + \
        (["final_status"] if name in FINAL_STATUS_PARAMS else []) + \
        [a.name for a in stage.inputs if not a.optional] + \
        [p.name for p in params if not p.required] + \
        [a.name for a in stage.inputs if a.optional]
    for p in params:
        assert spec.inputs[p.name].type == _KFP_TYPES[p.type]
        assert spec.inputs[p.name].optional is (not p.required)
        assert spec.inputs[p.name].description == p.help
        if not p.required:
            assert spec.inputs[p.name].default == p.default
    for a in stage.inputs:
        assert spec.inputs[a.name].type == f"system.{a.kind}@0.0.1"
        assert spec.inputs[a.name].is_artifact_list is getattr(a, "collected", False)  # dsl.Collected
    # Artifacts, then the scalar results (KFP output parameters) a gate's dsl.If reads; a stage in
    # SINGLE_OUTPUT_STAGES returns its one result as KFP's plain ``Output``.
    results = {("Output" if name in SINGLE_OUTPUT_STAGES else r.name): _KFP_TYPES[r.type] for r in stage.results}
    assert {k: v.type for k, v in spec.outputs.items()} == \
        {**{a.name: f"system.{a.kind}@0.0.1" for a in stage.outputs}, **results}
    # The function is thin: everything it does is one call into the library.
    source = inspect.getsource(comp.python_func)
    assert "from tlt.orchestration.entrypoints import run_component" in source
    body = [line for line in source.rsplit('"""', 1)[1].splitlines() if line.strip()]
    assert len(body) <= 8, body


def test_convert_component_signature():
    sig = inspect.signature(load_component("convert").python_func)
    assert list(sig.parameters) == ["spec", "dataset", "dataset_root", "validation_fold"]
    assert sig.parameters["validation_fold"].default == -1
    assert sig.parameters["dataset_root"].default == ""


def test_rendered_sources_are_marked_generated_and_follow_the_image():
    stage = get_stage("convert")
    src = render_component_source(stage, "registry.example/tlt:dev")
    assert src.startswith(f"# {GENERATED_MARK}\n")
    assert '@dsl.component(base_image="registry.example/tlt:dev", install_kfp_package=False)' in src
    readme = render_readme(stage)
    assert "| `validation_fold` | int | `-1` | 0-based fold to mark as validation; -1 for none. |" in readme
    assert "| `dataset` | Dataset |" in readme
    assert "`tlt-storage-credentials` (optional)" in readme


def test_project_image_env_and_override(monkeypatch):
    monkeypatch.delenv("TLT_IMAGE", raising=False)
    assert project_image() == DEFAULT_IMAGE
    monkeypatch.setenv("TLT_IMAGE", "mirror.local/tlt:1")
    assert project_image() == "mirror.local/tlt:1"
    assert project_image("x/y:z") == "x/y:z"


def test_repo_root_from_env_and_package(monkeypatch, tmp_path, repo_root):
    monkeypatch.delenv("TLT_REPO_ROOT", raising=False)
    assert find_repo_root() == repo_root.resolve()
    monkeypatch.setenv("TLT_REPO_ROOT", str(tmp_path))
    with pytest.raises(PipelineError, match=r"is not a TLT Pipelines checkout: expected folders pipelines and components"):
        find_repo_root()


def test_argo_argv_and_stage_parser_agree():
    stage = get_stage("convert")
    argv = stage.argv()
    assert argv[:3] == ["tlt-pipeline", "stage", "convert"]
    assert "--validation_fold={{inputs.parameters.validation_fold}}" in argv
    assert "--output-dataset=/tmp/tlt/outputs/dataset" in argv
    ns = build_stage_parser(stage).parse_args(["--spec=x", "--output-dataset=/o", "--validation_fold=3"])
    assert (ns.spec, ns.dataset_root, ns.validation_fold, ns.output__dataset) == ("x", "", 3, "/o")
    with pytest.raises(PipelineError, match=r"the following arguments are required: --output-dataset"):
        build_stage_parser(stage, prog="p").parse_args(["--spec=x"])
    with pytest.raises(PipelineError, match=r"argument --validation_fold: invalid int value: 'x'"):
        build_stage_parser(stage).parse_args(["--spec=x", "--output-dataset=/o", "--validation_fold=x"])


def test_run_stage_checks_names():
    with pytest.raises(PipelineError, match=r"stage convert: unknown parameter\(s\) fold; expected spec, dataset_root, validation_fold"):
        run_stage("convert", {"spec": "", "fold": 1}, {}, {"dataset": "/x"})
    with pytest.raises(PipelineError, match=r"stage convert: parameter spec is required"):
        run_stage("convert", {}, {}, {"dataset": "/x"})
    with pytest.raises(PipelineError, match=r"output artifacts \[\] given, expected \['dataset'\]"):
        run_stage("convert", {"spec": "x"}, {}, {})


def test_configure_task_applies_resources_and_secrets():
    # The retry policy is checked in the compiled pipeline (tests/test_pipeline_compile.py).
    from kfp import dsl

    comp = load_component("convert")
    captured = {}

    @dsl.pipeline(name="probe")
    def probe(spec: str):
        captured["task"] = configure_task(comp(spec=spec))

    task = captured["task"]
    res = task.container_spec.resources
    stage = get_stage("convert")
    assert (res.cpu_request, res.cpu_limit) == (stage.resources.cpu_request, stage.resources.cpu_limit)
    assert (res.memory_request, res.memory_limit) == (stage.resources.memory_request, stage.resources.memory_limit)
    assert res.accelerator_count is None
    secret = task.platform_config["kubernetes"]["secretAsEnv"][0]
    assert secret["secretName"] == "tlt-storage-credentials" and secret["optional"] is True
    assert [k["envVar"] for k in secret["keyToEnv"]] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"]


def test_model_key_is_a_per_stage_setting():
    # Stages that write or read .tlt files get TLT_KEY from the tlt-model-key secret; convert does not.
    assert [name for name, stage in registry.STAGES.items() if stage.model_key][:6] == [
        "train", "evaluate", "prune", "retrain", "export", "build_engine"]
    assert not get_stage("convert").model_key
    assert get_stage("train").env_secrets() == (stage_types.STORAGE_SECRET, stage_types.MODEL_KEY_SECRET)
    assert get_stage("convert").env_secrets() == (stage_types.STORAGE_SECRET,)
    assert stage_types.MODEL_KEY_SECRET.keys == (("key", "TLT_KEY"),)
    assert stage_types.MODEL_KEY_SECRET.optional is False
    # A new stage opts in with one field.
    later = Stage("export", "tlt-export", "Export a model.", model_key=True)
    assert [env for s in later.env_secrets() for _, env in s.keys][-1] == "TLT_KEY"


def test_configure_task_gives_train_the_model_key_secret():
    from kfp import dsl

    comp = load_component("train")
    captured = {}

    @dsl.pipeline(name="probe")
    def probe(spec: str):
        captured["task"] = configure_task(comp(spec=spec))

    secrets = captured["task"].platform_config["kubernetes"]["secretAsEnv"]
    assert [s["secretName"] for s in secrets] == ["tlt-storage-credentials", "tlt-model-key"]
    assert secrets[1]["keyToEnv"] == [{"secretKey": "key", "envVar": "TLT_KEY"}]
    assert secrets[1]["optional"] is False


def test_missing_component_file_says_how_to_fix(tmp_path):
    with pytest.raises(PipelineError, match=r"component file .*components/convert/component.py is missing: run `tlt-pipeline compile`"):
        load_component("convert", root=tmp_path)


def test_new_stages_mirror_their_clis():
    assert {n: get_stage(n).cli for n in ("prune", "retrain", "export", "build_engine")} == {
        "prune": "tlt-prune", "retrain": "tlt-train", "export": "tlt-export",
        "build_engine": "tlt-converter"}
    prune = get_stage("prune")
    defaults = {p.name: p.default for p in prune.params}
    # tlt-prune's defaults (guide chapter 8).
    assert defaults == {"pruning_threshold": 0.1, "normalizer": "max", "equalization_criterion": "union",
                        "pruning_granularity": 8, "min_num_filters": 16, "excluded_layers": ""}
    assert [a.name for a in get_stage("retrain").inputs] == ["pretrained_model", "dataset"]
    assert [a.name for a in get_stage("evaluate").outputs][-1] == "scored_model"
    assert {a.name for a in get_stage("evaluate").inputs if a.optional} == {"dataset", "compare_a", "compare_b"}


def test_configure_task_finds_a_stage_whose_kfp_name_has_dashes():
    from kfp import dsl

    train, export, build_engine = (load_component(n) for n in ("train", "export", "build_engine"))
    captured = {}

    @dsl.pipeline(name="probe")
    def probe(spec: str):
        model = train(spec=spec).outputs["model"]
        captured["task"] = configure_task(build_engine(export=export(model=model).outputs["export"]))

    assert captured["task"].component_spec.name == "build-engine"
    secrets = captured["task"].platform_config["kubernetes"]["secretAsEnv"]
    assert [s["secretName"] for s in secrets] == ["tlt-storage-credentials", "tlt-model-key"]
