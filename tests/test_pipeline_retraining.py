"""The retraining pipeline: its compiled DAG (control flow, caching, secrets) and two local runs
against one registry (the first promotes, the second compares and decides), plus the bad inputs
that stop a run before it trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format

from tlt.errors import PipelineError
from tlt.io import registry_aliases
from tlt.io.registry import Registry
from tlt.orchestration.pipelines import (DEFAULT_FINETUNE_SPEC, PIPELINES, finetune_spec,
                                         load_pipeline)

KEY = "retraining-pipeline-key"
MODEL = "detectnet-test"


@pytest.fixture(scope="module")
def compiled():
    func = load_pipeline("retraining")
    return (json_format.MessageToDict(func.pipeline_spec),
            json_format.MessageToDict(func.platform_spec))


def test_catalogue_lists_it():
    assert PIPELINES["retraining"].function == "retraining"


def test_fine_tuning_spec_scales_the_learning_rates():
    text = "lr { soft_start_annealing_schedule { min_learning_rate: 5e-5 max_learning_rate: 0.004 } }"
    assert finetune_spec(text) == ("lr { soft_start_annealing_schedule { min_learning_rate: 5e-06 "
                                   "max_learning_rate: 0.0004 } }")
    assert "max_learning_rate: 0.0005 " in DEFAULT_FINETUNE_SPEC
    with pytest.raises(PipelineError, match="sets no min_learning_rate or max_learning_rate"):
        finetune_spec("training_config { num_epochs: 3 }")


def test_first_run_or_fine_tune_is_chosen_on_has_champion(compiled):
    ir, _ = compiled
    tasks = ir["root"]["dag"]["tasks"]
    assert set(tasks) == {"champion", "data-gate", "convert", "condition-branches-1"}
    assert tasks["convert"]["dependentTasks"] == ["data-gate"]  # no convert of refused data
    branches = ir["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    conditions = {name: t["triggerPolicy"]["condition"] for name, t in branches.items()}
    assert conditions == {
        "condition-2": "inputs.parameter_values['pipelinechannel--champion-has_champion'] == true",
        "condition-3": "!(inputs.parameter_values['pipelinechannel--champion-has_champion'] == "
                       "true)"}
    fine_tune = ir["components"]["comp-condition-2"]["dag"]["tasks"]
    first_run = ir["components"]["comp-condition-3"]["dag"]["tasks"]
    assert set(fine_tune) == {"retrain", "promote"} and set(first_run) == {"train", "promote-2"}
    for promote, trainer in ((fine_tune["promote"], "retrain"), (first_run["promote-2"], "train")):
        challenger = promote["inputs"]["artifacts"]["challenger"]["taskOutputArtifact"]
        assert challenger == {"producerTask": trainer, "outputArtifactKey": "model"}
    retrain_from = fine_tune["retrain"]["inputs"]["artifacts"]["pretrained_model"]
    assert retrain_from["componentInputArtifact"] == "pipelinechannel--champion-champion"
    spec = fine_tune["retrain"]["inputs"]["parameters"]["spec"]["componentInputParameter"]
    assert spec == "pipelinechannel--finetune_spec"


def test_registry_stages_are_never_cached_and_read_the_key_from_the_secret(compiled):
    ir, platform = compiled
    tasks = {**ir["root"]["dag"]["tasks"], **ir["components"]["comp-condition-2"]["dag"]["tasks"]}
    for name in ("champion", "data-gate", "promote"):
        assert tasks[name]["cachingOptions"] == {}, name  # enableCache false
    # New frames arrive under the same prefix: a cache hit would reuse the last run's TFRecords.
    assert tasks["convert"]["cachingOptions"] == {}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    secrets = {name: [s["secretName"] for s in e.get("secretAsEnv", [])]
               for name, e in executors.items()}
    assert secrets["exec-promote"] == ["tlt-storage-credentials", "tlt-model-key"]
    assert secrets["exec-retrain"] == ["tlt-storage-credentials", "tlt-model-key"]
    assert secrets["exec-champion"] == ["tlt-storage-credentials"]
    inputs = ir["root"]["inputDefinitions"]["parameters"]
    assert not any("key" in name for name in inputs)  # never a parameter the UI would show


def _tiny_spec() -> str:
    from tlt.orchestration.retraining_demo import demo_spec

    return demo_spec(epochs=1, width=128, height=64, batch_size=4)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two local runs of the pipeline against one registry, on two data batches."""
    from tlt.data.synthetic import make_detection_dataset
    from tlt.orchestration.local_run import run_local

    mp = pytest.MonkeyPatch()
    mp.setenv("TLT_KEY", KEY)
    root = tmp_path_factory.mktemp("retraining-runs")
    out = {"root": root, "registry": root / "registry", "runs": []}
    for i, seed in enumerate((21, 22), start=1):
        batch = root / f"batch-{i}"
        make_detection_dataset(batch, num_frames=16, width=128, height=64, seed=seed)
        params = {"new_data_uri": str(batch), "registry_uri": str(out["registry"]),
                  "model_name": MODEL, "train_spec": _tiny_spec(),
                  "finetune_spec": finetune_spec(_tiny_spec()), "finetune_epochs": 1,
                  "margin": 1.0}
        out["runs"].append(run_local("retraining", params, pipeline_root=root / "runs"))
    yield out
    mp.undo()


@pytest.mark.slow
def test_first_run_promotes_second_compares_and_decides(two_runs):
    first, second = two_runs["runs"]
    assert [s.name for s in first.steps if s.status == "succeeded"] == [
        "champion", "data-gate", "convert", "train", "promote-2"]
    assert [s.name for s in second.steps if s.status == "succeeded"] == [
        "champion", "data-gate", "convert", "retrain", "promote"]
    reg = Registry(two_runs["registry"])
    assert [v.version for v in reg.list_versions(MODEL)] == ["1", "2"]  # every version kept
    d1 = reg.get_version(MODEL, "1").metadata["decision"]
    d2 = reg.get_version(MODEL, "2").metadata["decision"]
    assert d1["promote"] and d1["first_run"] and "(first run)" in d1["reason"]
    assert not d2["first_run"] and d2["champion"] is not None
    better = d2["challenger"] - d2["champion"] >= 1.0
    assert d2["promote"] == better
    assert ("challenger promoted" in d2["reason"]) == better
    production = registry_aliases.resolve(reg, MODEL, "production")
    assert production.version == ("2" if better else "1")
    for f in production.files:  # the alias names a committed version whose files are there
        assert (two_runs["registry"] / production.location / f.path).is_file()
    records = registry_aliases.history(reg, MODEL)
    assert [r.to_version for r in records] == (["1", "2"] if better else ["1"])
    # the challenger was scored on the held-out fold of its own batch, like its champion
    meta = reg.get_version(MODEL, "2").metadata
    assert meta["held_out_set"].startswith(f"validation fold 0 of {two_runs['root'] / 'batch-2'}")
    assert meta["fine_tuned_from"] == "1"
    # lineage for the next data gate: every class of the raw batch (synthetic KITTI has vans and
    # cyclists too, which the spec's target_class_mapping leaves out of training)
    assert set(meta["class_counts"]) == {"car", "pedestrian", "van", "cyclist"}
    page = (second.run_dir / "promote" / "report").read_text(encoding="utf-8")
    assert f"Promotion: {'promote' if better else 'keep'}." in page


@pytest.mark.slow
def test_broken_new_data_stops_before_training_and_changes_no_registry(two_runs, tmp_path):
    from tlt.orchestration.local_run import run_local

    batch = tmp_path / "broken"
    (batch / "images").mkdir(parents=True)
    (batch / "labels").mkdir()
    with pytest.raises(PipelineError) as err:
        run_local("retraining", {"new_data_uri": str(batch),
                                 "registry_uri": str(two_runs["registry"]),
                                 "model_name": MODEL, "train_spec": _tiny_spec(),
                                 "finetune_spec": finetune_spec(_tiny_spec())},
                  pipeline_root=tmp_path / "runs")
    assert str(err.value).startswith(f"pipeline retraining: step data-gate failed: new data "
                                     f"{batch} holds no frames")
    assert len(Registry(two_runs["registry"]).list_versions(MODEL)) == 2


def test_required_champion_missing_fails_in_one_line(tmp_path, monkeypatch):
    from tlt.data.synthetic import make_detection_dataset
    from tlt.orchestration.local_run import run_local

    monkeypatch.setenv("TLT_KEY", KEY)
    batch = tmp_path / "batch"
    make_detection_dataset(batch, num_frames=4, width=128, height=64, seed=1)
    with pytest.raises(PipelineError) as err:
        run_local("retraining", {"new_data_uri": str(batch), "registry_uri": str(tmp_path / "r"),
                                 "model_name": MODEL, "require_champion": True},
                  pipeline_root=tmp_path / "runs")
    assert str(err.value).startswith(
        f"pipeline retraining: step champion failed: registry {tmp_path / 'r'} has no production "
        f"model '{MODEL}' (the registry is empty)")
