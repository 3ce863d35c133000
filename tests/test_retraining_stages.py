"""The retraining stages' adapters (champion, data_gate, promote) on real data and a real registry:
a tiny classifier is trained, promoted on the first run, fine-tuned from the champion through the
retrain adapter (an unpruned pretrained model) and judged against it by the margin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tlt.errors import DataError, GateError, RegistryError
from tlt.io import registry_aliases
from tlt.io.registry import Registry
from tlt.orchestration import adapters
from tlt.orchestration.adapters_retraining import champion, data_gate, promote
from tlt.orchestration.results import RESULTS_KEY
from tlt.stages import promote as promote_stage

KEY = "retraining-stage-key"
NAME = "shapes"

SPEC = """\
model_config { arch: "resnet" n_layers: 10 input_image_size: "3,32,32" }
train_config {
  optimizer: "adam"
  batch_size_per_gpu: 8
  n_epochs: 1
  n_workers: 1
  reg_config { type: "L2" scope: "Conv2D,Dense" weight_decay: 0.00005 }
  lr_config { scheduler: "cosine" learning_rate: 0.002 soft_start: 0.1 }
  checkpoint_interval: 1
}
random_seed: 42
"""

GATE = {"task": "classification", "image_dir": "images", "label_dir": "labels",
        "image_extension": ".png", "max_malformed_rate": 0.05, "max_unreadable_rate": 0.05,
        "max_balance_shift": 0.2, "allow_missing_classes": False, "allow_new_classes": False}


def _champion(registry: Path, out: Path, required: bool = False) -> dict:
    return champion({"registry_uri": str(registry), "model_name": NAME, "alias": "production",
                     "require_champion": required}, {}, {"champion": str(out)})


def _gate(root: Path, data: Path, champ: Path | None, **params) -> dict:
    inputs = {"champion": str(champ)} if champ else {}
    return data_gate({**GATE, "new_data_uri": str(data), **params}, inputs,
                     {"report": str(root / "gate.html"), "gate": str(root / "gate")})


def _promote(root: Path, registry: Path, challenger: Path, champ: Path, data: Path,
             gate: Path, margin: float) -> dict:
    params = {"task": "classification", "spec": "", "data_dir": str(data / "val"),
              "registry_uri": str(registry), "model_name": NAME, "alias": "production",
              "margin": margin, "batch_size": 8}
    return promote(params, {"challenger": str(challenger), "champion": str(champ),
                            "data_report": str(gate)},
                   {"report": str(root / "promote.html"), "decision": str(root / "decision")})


def _never_dangling(registry: Path) -> str:
    """The production version, proven to be a committed version whose files are all there."""
    reg = Registry(registry)
    info = registry_aliases.resolve(reg, NAME, "production")
    for f in info.files:
        assert (registry / info.location / f.path).is_file()
    return info.version


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """First run (no champion: train, promote), then a second run fine-tuning the champion with
    the retrain adapter and a margin nobody can reach (the champion is kept)."""
    from tlt.data.synthetic import make_classification_dataset

    mp = pytest.MonkeyPatch()
    mp.setenv("TLT_KEY", KEY)
    root = tmp_path_factory.mktemp("retraining")
    registry, data = root / "registry", root / "data"
    make_classification_dataset(data, images_per_class=(12, 6, 6), size=32, seed=5)
    out: dict = {"root": root, "registry": registry, "data": data}
    first = root / "first"
    out["champion1"] = _champion(registry, first / "champion")
    out["gate1"] = _gate(first, data / "train", first / "champion")
    common = {"task": "classification", "spec": SPEC, "train_dataset": str(data / "train"),
              "val_dataset": str(data / "val"), "gpus": 1}
    adapters.train(common, {}, {"model": str(first / "model")})
    out["promote1"] = _promote(first, registry, first / "model", first / "champion", data,
                               first / "gate", margin=1.0)
    out["production1"] = _never_dangling(registry)
    second = root / "second"
    out["champion2"] = _champion(registry, second / "champion")
    out["gate2"] = _gate(second, data / "train", second / "champion")
    out["retrain2"] = adapters.retrain({**common, "epochs": 1},
                                       {"pretrained_model": str(second / "champion")},
                                       {"model": str(second / "model")})
    out["promote2"] = _promote(second, registry, second / "model", second / "champion", data,
                               second / "gate", margin=100.0)
    out["production2"] = _never_dangling(registry)
    yield out
    mp.undo()


@pytest.mark.slow  # shares the module\'s two training runs (about 70 s)
def test_empty_registry_has_no_champion_and_says_so(runs):
    meta = runs["champion1"]["champion"]
    assert meta["has_champion"] is False and meta["version"] == ""
    assert runs["champion1"][RESULTS_KEY] == {"has_champion": False}
    folder = runs["root"] / "first" / "champion"
    assert json.loads((folder / "metadata.json").read_text())["has_champion"] is False
    assert not list(folder.glob("*.tlt"))


def test_required_champion_missing_is_one_line(tmp_path):
    with pytest.raises(RegistryError) as err:
        _champion(tmp_path / "registry", tmp_path / "champion", required=True)
    assert "has no production model 'shapes'" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.slow  # shares the module\'s two training runs (about 70 s)
def test_first_run_promotes_and_says_so(runs):
    decision = runs["promote1"]["decision"]
    assert decision["promoted"] == 1.0 and decision["first_run"] == 1.0
    assert runs["production1"] == "1"
    page = (runs["root"] / "first" / "promote.html").read_text()
    assert "Promotion: promote." in page and "first run" in page
    record = registry_aliases.history(Registry(runs["registry"]), NAME)[0]
    assert record.from_version is None and record.to_version == "1"
    assert record.to_metrics == {"accuracy": pytest.approx(decision["challenger_accuracy"])}


@pytest.mark.slow  # shares the module\'s two training runs (about 70 s)
def test_champion_carries_version_metrics_and_training_class_counts(runs):
    meta = runs["champion2"]["champion"]
    assert meta["has_champion"] is True and meta["version"] == "1"
    assert runs["champion2"][RESULTS_KEY] == {"has_champion": True}
    assert meta["class_counts"] == {"circle": 12, "square": 12, "triangle": 12}
    assert (runs["root"] / "second" / "champion" / "model.tlt").is_file()
    # the second run's gate compared the same classes: nothing skipped, zero shift
    gate = json.loads((runs["root"] / "second" / "gate" / "data_gate.json").read_text())
    shift = next(c for c in gate["checks"] if c["name"] == "balance_shift")
    assert gate["passed"] and shift["value"] == 0.0
    assert gate["details"]["reference_class_counts"] == meta["class_counts"]


@pytest.mark.slow  # shares the module\'s two training runs (about 70 s)
def test_retrain_fine_tunes_an_unpruned_champion(runs):
    meta = runs["retrain2"]["model"]
    assert meta["stage"] == "retrain" and meta["pretrained_model"] == "model.tlt"
    assert meta["pruning"] == {} and meta["epochs"] == 1


@pytest.mark.slow  # shares the module\'s two training runs (about 70 s)
def test_not_better_by_margin_keeps_the_champion_with_the_reason(runs):
    decision = runs["promote2"]["decision"]
    assert decision["promoted"] == 0.0 and decision["margin"] == 100.0
    assert runs["production2"] == "1"  # the alias did not move
    reg = Registry(runs["registry"])
    assert [v.version for v in reg.list_versions(NAME)] == ["1", "2"]  # every version kept
    assert reg.get_version(NAME, "2").metadata["decision"]["action"] == "keep"
    assert len(registry_aliases.history(reg, NAME)) == 1
    page = (runs["root"] / "second" / "promote.html").read_text()
    assert "Promotion: keep." in page and "champion kept" in page and "margin 100" in page


def test_better_by_margin_promotes_and_history_keeps_both(tmp_path):
    model = tmp_path / "v1.tlt"
    model.write_bytes(b"one")
    first = promote_stage.run([model], registry_uri=str(tmp_path / "r"), model_name=NAME,
                              challenger_metric=60.0, champion_metric=None,
                              champion_version=None, metric="mAP", margin=1.0,
                              held_out_set="fold 0", task="detection")
    assert first.record is not None and first.version == "1"
    better = tmp_path / "v2.tlt"
    better.write_bytes(b"two")
    second = promote_stage.run([better], registry_uri=str(tmp_path / "r"), model_name=NAME,
                               challenger_metric=61.5, champion_metric=60.0,
                               champion_version="1", metric="mAP", margin=1.0,
                               held_out_set="fold 0", task="detection")
    assert second.version == "2" and second.production == "2"
    assert "beats champion 60.00 by +1.50 >= margin 1.00" in second.summary()
    records = registry_aliases.history(Registry(tmp_path / "r"), NAME)
    assert [(r.from_version, r.to_version) for r in records] == [(None, "1"), ("1", "2")]
    assert (records[1].from_metric, records[1].to_metric) == (60.0, 61.5)
    # a retried step publishes nothing twice
    again = promote_stage.run([better], registry_uri=str(tmp_path / "r"), model_name=NAME,
                              challenger_metric=61.5, champion_metric=60.0,
                              champion_version="1", metric="mAP", margin=1.0,
                              held_out_set="fold 0", task="detection")
    assert again.version == "2" and len(Registry(tmp_path / "r").list_versions(NAME)) == 2


def test_decision_against_a_moved_alias_changes_nothing(tmp_path):
    registry = str(tmp_path / "r")
    for i, (metric, champ) in enumerate([(50.0, None), (55.0, "1")], start=1):
        model = tmp_path / f"m{i}.tlt"
        model.write_bytes(bytes([i]))
        promote_stage.run([model], registry_uri=registry, model_name=NAME,
                          challenger_metric=metric, champion_metric=None if champ is None else 40.0,
                          champion_version=champ, metric="mAP", margin=1.0, held_out_set="f",
                          task="detection")
    late = tmp_path / "late.tlt"
    late.write_bytes(b"late")
    with pytest.raises(RegistryError, match=r"moved by someone else meanwhile \(now v2; the "
                                            r"decision was made against v1\)"):
        promote_stage.run([late], registry_uri=registry, model_name=NAME, challenger_metric=70.0,
                          champion_metric=50.0, champion_version="1", metric="mAP", margin=1.0,
                          held_out_set="f", task="detection")
    assert registry_aliases.current(Registry(registry), NAME).to_version == "2"


def _kitti(root: Path, lines_per_frame: list[list[str]]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, lines in enumerate(lines_per_frame):
        Image.new("RGB", (64, 64), (40, 80, 120)).save(root / "images" / f"{i:06d}.png")
        (root / "labels" / f"{i:06d}.txt").write_text("".join(l + "\n" for l in lines))
    return root


def _label(cls: str, x1: float = 5.0, x2: float = 30.0) -> str:
    return f"{cls} 0.00 0 0.00 {x1:.2f} 10.00 {x2:.2f} 40.00 1.5 1.6 3.9 0.0 1.6 20.0 0.0"


def _detection_champion(folder: Path, counts: dict) -> Path:
    from tlt.artifacts import write_metadata

    folder.mkdir(parents=True)
    write_metadata(folder, "champion", has_champion=True, version="3", class_counts=counts)
    return folder


def test_data_gate_fails_the_run_with_a_report_on_malformed_labels(tmp_path):
    good, bad = _label("car"), "car 0.0 0 0.0 30.00 10.00 5.00 40.00 1 1 1 0 0 0 0"  # x1 > x2
    data = _kitti(tmp_path / "new", [[good] * 4 + [bad]] * 4)
    with pytest.raises(GateError) as err:
        _gate(tmp_path, data, None, task="detection")
    line = str(err.value)
    assert line.startswith("data gate failed: malformed-label rate 20.0% (4 of 20 label lines) > "
                           "max 5.0%") and "\n" not in line
    assert line.endswith(f"(report: {tmp_path / 'gate' / 'data_gate.html'})")
    report = json.loads((tmp_path / "gate" / "data_gate.json").read_text())
    assert report["passed"] is False and report["details"]["malformed_labels"] == 4
    assert "FAIL" in (tmp_path / "gate.html").read_text()  # the UI's page exists too


def test_data_gate_names_a_missing_class_against_the_champion(tmp_path):
    data = _kitti(tmp_path / "new", [[_label("car")] * 3] * 4)
    champ = _detection_champion(tmp_path / "champion", {"car": 10, "pedestrian": 5})
    with pytest.raises(GateError, match="classes missing versus the champion's training data: "
                                        "pedestrian"):
        _gate(tmp_path, data, champ, task="detection")
    passed = _gate(tmp_path / "allowed", data, champ, task="detection",
                   allow_missing_classes=True, max_balance_shift=1.0)
    assert passed["gate"]["passed"] == 1.0 and passed["gate"]["num_frames"] == 4.0
    assert passed["gate"]["balance_shift"] == pytest.approx(1 / 3)


def test_data_gate_on_a_prefix_without_frames_is_one_line(tmp_path):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "labels").mkdir()
    with pytest.raises(DataError) as err:
        _gate(tmp_path, tmp_path / "empty", None, task="detection")
    assert str(err.value).startswith(f"new data {tmp_path / 'empty'} holds no frames: no .png "
                                     f"image in")


def test_argo_door_writes_has_champion_for_the_workflow_condition(tmp_path):
    from tlt.orchestration.entrypoints import run_stage_argv

    result = tmp_path / "results" / "has_champion"
    meta = run_stage_argv("champion", [f"--registry_uri={tmp_path / 'registry'}",
                                       f"--model_name={NAME}",
                                       f"--output-champion={tmp_path / 'champion'}",
                                       f"--result-has_champion={result}"])
    assert result.read_text() == "false"  # what the Argo `when` compares with true
    assert meta["champion"]["has_champion"] is False
