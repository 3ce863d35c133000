"""A finetune_spec whose model (arch / depth / input size) is not the champion's or train_spec's:
refused in one line by the champion stage, before anything is converted or trained; promote
scores each model at the input size its own file records (it used to stop on a Keras shape
error) and records the model with the version for the next run's check.

The models here are built, not trained (random weights, saved as real .tlt files with the
metadata training writes): only their shapes matter, and building takes a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tlt.errors import SpecError
from tlt.io.registry import Registry
from tlt.orchestration.adapters_retraining import champion, promote
from tlt.retraining.model_match import (ModelShape, check_finetune_spec, check_pretrained_matches,
                                        shape_of_metadata, shape_of_spec)

KEY = "model-match-key"
NAME = "detectnet-match"

CHAMPION_LINE = (
    "finetune_spec model_config (resnet 18, 3x128x240) differs from the champion's (resnet 10, "
    "3x64x96): fine-tuning starts from the champion's weights, so the architecture and input size "
    "must match; change finetune_spec, or train a new model from scratch with train_spec under "
    "another model_name")


def _spec_text(width: int = 128, height: int = 64, layers: int = 10) -> str:
    from tlt.orchestration.retraining_demo import demo_spec

    text = demo_spec(epochs=1, width=width, height=height, batch_size=4)
    assert text.count("num_layers: 10") == 1
    return text.replace("num_layers: 10", f"num_layers: {layers}")


def _spec(**kwargs):
    from tlt import spec as tlt_spec

    return tlt_spec.loads(_spec_text(**kwargs), "detection")


def test_spec_and_metadata_shapes_read_the_same_fields():
    assert str(shape_of_spec(_spec(width=240, height=128, layers=18), "detection")) == \
        "resnet 18, 3x128x240"
    assert shape_of_metadata({"arch": "resnet", "n_layers": 10, "input_dims": [3, 64, 96]}) == \
        ModelShape("resnet", 10, (3, 64, 96))
    assert shape_of_metadata({"arch": "resnet", "n_layers": 10}) is None  # older file: unknown


def test_classification_specs_read_as_training_records_them():
    from tlt import spec as tlt_spec

    text = 'model_config { arch: "googlenet" n_layers: 18 input_image_size: "3,64,48" }'
    # Training records depth 0 for a fixed-depth family whatever n_layers says: so must the check.
    assert shape_of_spec(tlt_spec.loads(text, "classification"), "classification") == \
        ModelShape("googlenet", 0, (3, 64, 48))


def test_finetune_spec_against_champion_and_train_spec_is_one_line():
    finetune = ModelShape("resnet", 18, (3, 128, 240))
    with pytest.raises(SpecError) as err:
        check_finetune_spec(finetune, champion=ModelShape("resnet", 10, (3, 64, 96)))
    assert str(err.value) == CHAMPION_LINE
    with pytest.raises(SpecError) as err:
        check_finetune_spec(finetune, train=ModelShape("resnet", 18, (3, 64, 96)))
    assert str(err.value).startswith(
        "finetune_spec model_config (resnet 18, 3x128x240) differs from train_spec's (resnet 18, "
        "3x64x96): a first run trains train_spec's model")
    check_finetune_spec(finetune, champion=finetune, train=finetune)  # the same model passes


def test_fine_tune_stage_check_names_the_file_and_both_models():
    meta = {"arch": "resnet", "n_layers": 10, "input_dims": [3, 64, 128]}
    with pytest.raises(SpecError) as err:
        check_pretrained_matches(_spec(width=160, height=96), "detection", meta, "champ/model.tlt")
    assert str(err.value) == (
        "spec model_config (resnet 10, 3x96x160) differs from the pretrained model champ/model.tlt "
        "(resnet 10, 3x64x128): fine-tuning starts from its weights, so the architecture and "
        "input size must match")
    check_pretrained_matches(_spec(), "detection", meta, "champ/model.tlt")
    check_pretrained_matches(_spec(), "detection", {}, "old.tlt")  # nothing recorded: let through


def _model(folder: Path, *, width: int, height: int, layers: int = 10) -> Path:
    """A DetectNet_v2 .tlt of the demo spec's classes with training's metadata, plus the
    artifact's metadata.json (as a train/retrain output)."""
    from tlt.artifacts import write_metadata
    from tlt.evaluation.detection import class_names_of
    from tlt.io.modelfile import save_keras_model
    from tlt.models.detectnet_v2.model import build_detectnet_v2

    spec = _spec(width=width, height=height, layers=layers)
    classes = class_names_of(spec)
    model = build_detectnet_v2(spec.model_config, classes, input_height=height, input_width=width,
                               allow_small_input=True)
    folder.mkdir(parents=True)
    save_keras_model(model, folder / "model.tlt", {
        "task": "detection", "arch": "resnet", "n_layers": layers, "classes": classes,
        "input_dims": [3, height, width], "epochs": 1}, key=KEY)
    write_metadata(folder, "retrain", task="detection", model="model.tlt", classes=classes,
                   epochs=1)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Held-out TFRecords of 8 frames, a registry whose champion is a 128x64 resnet 10 (published
    by a first-run promote), and a challenger fine-tuned at 160x96 (another input size)."""
    from tlt.data.synthetic import make_detection_dataset
    from tlt.orchestration.adapters import convert
    from tlt.orchestration.pipelines import DEFAULT_CONVERT_SPEC

    mp = pytest.MonkeyPatch()
    mp.setenv("TLT_KEY", KEY)
    root = tmp_path_factory.mktemp("model-match")
    make_detection_dataset(root / "kitti", num_frames=8, width=128, height=64, seed=4)
    convert({"spec": DEFAULT_CONVERT_SPEC, "dataset_root": str(root / "kitti"),
             "validation_fold": 0}, {}, {"dataset": str(root / "dataset")})
    w = {"root": root, "registry": root / "registry", "dataset": root / "dataset"}
    _champion(w, "first")
    w["first"] = _promote(w, "first", _model(root / "m1", width=128, height=64))
    _champion(w, "second")
    w["second"] = _promote(w, "second", _model(root / "m2", width=160, height=96))
    yield w
    mp.undo()


def _champion(w: dict, run: str, **params) -> dict:
    return champion({"registry_uri": str(w["registry"]), "model_name": NAME,
                     "alias": "production", "require_champion": False, **params},
                    {}, {"champion": str(w["root"] / run / "champion")})


def _promote(w: dict, run: str, challenger: Path) -> dict:
    out = w["root"] / run
    params = {"task": "detection", "spec": _spec_text(), "data_dir": "",
              "registry_uri": str(w["registry"]), "model_name": NAME, "alias": "production",
              "margin": 1.0, "batch_size": 4}
    return promote(params, {"challenger": str(challenger), "champion": str(out / "champion"),
                            "dataset": str(w["dataset"])},
                   {"report": str(out / "promote.html"), "decision": str(out / "decision")})


def test_promote_scores_each_model_at_its_own_input_size(world):
    # Before: "Input 0 ... expected shape=(None, 3, 96, 160), found shape=(1, 3, 64, 128)".
    decision = world["second"]["decision"]
    assert decision["first_run"] == 0.0 and "champion_mAP" in decision
    page = (world["root"] / "second" / "promote.html").read_text(encoding="utf-8")
    assert "<th>challenger model</th><td>resnet 10, 3x96x160</td>" in page
    assert "<th>champion model</th><td>resnet 10, 3x64x128</td>" in page


def test_promote_records_each_version_s_model(world):
    reg = Registry(world["registry"])
    assert reg.get_version(NAME, "1").metadata["model_config"] == {
        "arch": "resnet", "n_layers": 10, "input_dims": [3, 64, 128]}
    assert reg.get_version(NAME, "2").metadata["model_config"]["input_dims"] == [3, 96, 160]


def test_champion_stage_refuses_a_finetune_spec_of_another_model(world):
    # The champion (version 1: the margin kept it) is 128x64; a 240x128 resnet 18 cannot start
    # from it, and the run stops in the first stage.
    with pytest.raises(SpecError) as err:
        _champion(world, "third", finetune_spec=_spec_text(width=240, height=128, layers=18))
    assert str(err.value) == (
        "finetune_spec model_config (resnet 18, 3x128x240) differs from the champion's (resnet "
        "10, 3x64x128): fine-tuning starts from the champion's weights, so the architecture and "
        "input size must match; change finetune_spec, or train a new model from scratch with "
        "train_spec under another model_name")
    ok = _champion(world, "fourth", finetune_spec=_spec_text(), train_spec=_spec_text())
    assert ok["champion"]["model_config"]["input_dims"] == [3, 64, 128]


def test_champion_stage_compares_finetune_spec_with_train_spec_on_a_first_run(tmp_path):
    with pytest.raises(SpecError) as err:
        champion({"registry_uri": str(tmp_path / "empty"), "model_name": NAME,
                  "alias": "production", "require_champion": False,
                  "finetune_spec": _spec_text(layers=18), "train_spec": _spec_text()},
                 {}, {"champion": str(tmp_path / "champion")})
    assert str(err.value).startswith("finetune_spec model_config (resnet 18, 3x64x128) differs "
                                     "from train_spec's (resnet 10, 3x64x128)")


def test_the_champion_stage_declares_the_params_the_check_reads(world):
    # Through the stage door every component uses: unknown parameters would be refused there.
    from tlt.orchestration.entrypoints import run_stage

    params = {"registry_uri": str(world["registry"]), "model_name": NAME,
              "finetune_spec": _spec_text(width=160, height=96), "train_spec": _spec_text()}
    with pytest.raises(SpecError, match=r"^finetune_spec model_config \(resnet 10, 3x96x160\) "
                                        r"differs from the champion's \(resnet 10, 3x64x128\)"):
        run_stage("champion", params, {}, {"champion": str(world["root"] / "fifth")})
