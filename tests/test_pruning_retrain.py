"""A pruned model file is what retraining loads: narrower graph, same names, trainable as is.

Then retraining through the trainers (``tlt-train classification|detection`` with the spec's
pretrained model pointed at a pruned .tlt): widths and weights kept, classes checked, resume.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

import cls_fixtures
from prune_helpers import CLASSES, build, save_model
from tlt.errors import ModelFileError
from tlt.io.modelfile import load_keras_model, save_keras_model
from tlt.models.classifier import build_classifier
from tlt.pruning import PruneSettings
from tlt.pruning.retrain import check_retrain_compatible, is_pruned
from tlt.spec import load as load_spec
from tlt.stages import prune
from tlt.training.transfer import start_from_pretrained

KEY = "retrain_key"


@pytest.fixture(scope="module")
def pruned_file(tmp_path_factory):
    base = tmp_path_factory.mktemp("retrain")
    src = save_model(build("alexnet", "classification"), base / "model.tlt", "classification",
                     key=KEY)
    outcome = prune.run(src, str(base / "pruned"), key=KEY,
                        settings=PruneSettings(pruning_threshold=0.99, min_num_filters=8))
    return src, outcome.model_path


def test_pruned_model_loads_narrow_and_trains(pruned_file):
    src, path = pruned_file
    model, meta = load_keras_model(path, key=KEY)
    original, original_meta = load_keras_model(src, key=KEY)
    assert is_pruned(meta) and not is_pruned(original_meta)
    assert model.get_layer("conv2").kernel.shape[-1] < 256
    assert [layer.name for layer in model.layers] == [layer.name for layer in original.layers]
    check_retrain_compatible(model, meta, classes=CLASSES, input_shape=(3, 32, 32), uri=path)

    # One optimisation step changes the weights and keeps every width.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 0], 3)
    before = model.get_layer("conv2").get_weights()[0].copy()
    model.fit(x, y, epochs=1, verbose=0)
    after = model.get_layer("conv2").get_weights()[0]
    assert after.shape == before.shape and not np.allclose(after, before)


def test_retrain_spec_must_keep_the_classes_and_input(pruned_file):
    _, path = pruned_file
    model, meta = load_keras_model(path, key=KEY)
    with pytest.raises(ModelFileError) as err:
        check_retrain_compatible(model, meta, classes=["car", "person"], uri=path)
    assert str(err.value) == (f"{path}: the pruned model was trained on classes ['car', "
                              f"'person', 'bike'], the spec has ['car', 'person']; a pruned "
                              f"model retrains on its own classes")
    with pytest.raises(ModelFileError, match=r"input is \(3, 32, 32\) \(C, H, W\), the spec "
                                             r"asks for \(3, 64, 64\)"):
        check_retrain_compatible(model, meta, classes=CLASSES, input_shape=(3, 64, 64))


# --------------------------------------------------------------------------------------------
# Retraining through the trainers (`tlt-train classification|detection` on a pruned model)


SHAPES = ["circle", "square", "triangle"]


def _kernels(model) -> dict[str, np.ndarray]:
    return {layer.name: layer.get_weights()[0] for layer in model.layers
            if type(layer).__name__ in ("Conv2D", "Dense") and layer.get_weights()}


def _filters(model) -> dict[str, int]:
    return {name: int(k.shape[-1]) for name, k in _kernels(model).items()}


@pytest.fixture(scope="module")
def cls_pruned(tmp_path_factory):
    """A resnet10 classifier of the shapes classes, saved as .tlt and pruned twice."""
    base = tmp_path_factory.mktemp("cls_retrain")
    data = cls_fixtures.make_shapes(base / "data")
    config = SimpleNamespace(arch="resnet", n_layers=10, input_image_size="3,32,32")
    model = build_classifier(config, 3)
    randomize_like_trained(model)
    src = base / "model.tlt"
    save_keras_model(model, src, {"task": "classification", "classes": SHAPES,
                                  "input_dims": [3, 32, 32]}, key=KEY)
    narrow = prune.run(str(src), str(base / "pruned.tlt"), key=KEY,
                       settings=PruneSettings(pruning_threshold=0.9, min_num_filters=8))
    other = prune.run(str(src), str(base / "other.tlt"), key=KEY,
                      settings=PruneSettings(pruning_threshold=0.5, min_num_filters=8))
    assert narrow.result.params_after != other.result.params_after
    return SimpleNamespace(base=base, data=data, src=src, pruned=narrow.model_path,
                           other=other.model_path, config=config)


def randomize_like_trained(model) -> None:
    from prune_helpers import randomize

    randomize(model, seed=1)


def _cls_spec(ctx, path: Path, pretrained: str, **fields) -> Path:
    fields.setdefault("epochs", 1)
    return cls_fixtures.write_spec(path, ctx.data / "train", pretrained=pretrained, **fields)


def test_start_from_pruned_keeps_widths_weights_and_spec_freeze(cls_pruned):
    pruned, _ = load_keras_model(cls_pruned.pruned, key=KEY)
    config = SimpleNamespace(**vars(cls_pruned.config), freeze_blocks=[0, 1])
    built = build_classifier(config, 3)
    start = start_from_pretrained(built, cls_pruned.pruned, KEY, classes=SHAPES,
                                  input_shape=(3, 32, 32))
    assert start is not built
    assert _filters(start) == _filters(pruned)
    assert _filters(start)["conv1"] < _filters(built)["conv1"]  # 64 filters pruned, stays pruned
    x = np.random.default_rng(2).normal(size=(4, 3, 32, 32)).astype("float32")
    np.testing.assert_allclose(start.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    # The spec's freeze_blocks hold: its stem is frozen although the pruned file's was not.
    assert pruned.get_layer("conv1").trainable
    assert not start.get_layer("conv1").trainable
    assert start.get_layer("predictions").trainable


@pytest.mark.slow
def test_train_classification_retrains_the_pruned_graph(cls_pruned, tmp_path):
    from tlt.training.classification import train_classification

    pruned, _ = load_keras_model(cls_pruned.pruned, key=KEY)
    # A learning rate of 1e-12: kernels move by ~1e-12, so they must still equal the pruned
    # file's, which proves its weights (not model_config's random ones) were trained.
    spec_path = _cls_spec(cls_pruned, tmp_path / "spec.txt", cls_pruned.pruned,
                          learning_rate=1e-12)
    spec = load_spec(str(spec_path), "classification")
    result = train_classification(spec, tmp_path / "out", key=KEY, progress=False)
    final, _ = load_keras_model(result.model_path, key=KEY)
    assert _filters(final) == _filters(pruned)
    for name, kernel in _kernels(pruned).items():
        np.testing.assert_allclose(_kernels(final)[name], kernel, atol=1e-6, err_msg=name)
    identity = json.loads((tmp_path / "out/checkpoints/run_identity.json").read_text())
    assert identity["pretrained_pruned_params"] == pruned.count_params()


def test_pruned_model_with_other_classes_is_one_line(cls_pruned, tmp_path):
    from tlt.cli import train

    src, _ = load_keras_model(cls_pruned.pruned, key=KEY)
    wrong = tmp_path / "wrong.tlt"
    _, meta = load_keras_model(cls_pruned.pruned, key=KEY)
    save_keras_model(src, wrong, {**meta, "classes": ["car", "person", "bike"]}, key=KEY)
    spec = _cls_spec(cls_pruned, tmp_path / "spec.txt", str(wrong))
    code, _, err = _run_main(train.main, "classification", "-e", spec, "-r", tmp_path / "out",
                             "-k", KEY)
    assert code == 1
    assert _error_line(err) == (
        f"tlt-train: error: {wrong}: the pruned model was trained on classes ['car', 'person', "
        f"'bike'], the spec has ['circle', 'square', 'triangle']; a pruned model retrains on its "
        f"own classes")


def _error_line(stderr: str) -> str:
    """The one error line the CLI prints, asserting it is the only one and the last."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("tlt-train: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


def _run_main(main, *args):
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_retrain_killed_after_a_checkpoint_resumes_with_the_pruned_graph(cls_pruned, tmp_path):
    from tlt.cli import train

    pruned, _ = load_keras_model(cls_pruned.pruned, key=KEY)
    spec = _cls_spec(cls_pruned, tmp_path / "spec.txt", cls_pruned.pruned, epochs=3)
    out = tmp_path / "out"
    log = tmp_path / "first.log"
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(
            [str(cls_fixtures.VENV_BIN / "tlt-train"), "classification", "-e", str(spec), "-r",
             str(out), "-k", KEY], stdout=handle, stderr=subprocess.STDOUT,
            env=cls_fixtures.subprocess_env(), text=True)
        try:
            _wait_for_file(proc, out / "checkpoints" / "latest.json", log, timeout=400)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.tlt").exists()

    # Resuming with another pruned model is refused before anything is written.
    other = _cls_spec(cls_pruned, tmp_path / "other.txt", cls_pruned.other, epochs=3)
    code, _, err = _run_main(train.main, "classification", "-e", other, "-r", out, "-k", KEY)
    assert code == 2  # a run-identity mismatch is a SpecError (exit 2), like any changed spec
    assert "pretrained_pruned_params" in _error_line(err)

    code, _, err = _run_main(train.main, "classification", "-e", spec, "-r", out, "-k", KEY)
    assert code == 0, err[-3000:]
    assert "resuming from" in err
    final, _ = load_keras_model(out / "model.tlt", key=KEY)
    assert _filters(final) == _filters(pruned)


def _wait_for_file(proc, path: Path, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) early:\n"
                                 + log.read_text(encoding="utf-8", errors="replace")[-3000:])
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {path} within {timeout} s")


# DetectNet_v2 ---------------------------------------------------------------------------------

DET_CLASSES = ["car", "pedestrian"]


@pytest.fixture(scope="module")
def det_pruned(tmp_path_factory):
    """A resnet10 DetectNet_v2 of the tiny detection spec, saved as .tlt and pruned."""
    import det_fixtures
    from tlt.models.detectnet_v2.model import build_detectnet_v2

    base = tmp_path_factory.mktemp("det_retrain")
    data = det_fixtures.tiny_data(base / "data")
    plain = det_fixtures.write_spec(base / "plain.txt", data, epochs=1)
    spec = load_spec(str(plain), "detection")
    pre = spec.augmentation_config.preprocessing
    model = build_detectnet_v2(spec.model_config, DET_CLASSES, input_height=pre.output_image_height,
                               input_width=pre.output_image_width, allow_small_input=True)
    randomize_like_trained(model)
    src = base / "model.tlt"
    meta = {"task": "detection", "classes": DET_CLASSES,
            "input_dims": [3, det_fixtures.HEIGHT, det_fixtures.WIDTH]}
    save_keras_model(model, src, meta, key=KEY)
    out = prune.run(str(src), str(base / "pruned.tlt"), key=KEY,
                    settings=PruneSettings(pruning_threshold=0.9, min_num_filters=8))
    return SimpleNamespace(base=base, data=data, pruned=out.model_path, meta=meta,
                           full=_filters(model))


def _det_spec(ctx, path: Path, pretrained: str, *, lr: str = "5e-3") -> Path:
    import det_fixtures

    return det_fixtures.write_spec(path, ctx.data, epochs=1, extra_replacements=[
        ('template: "resnet"', f'template: "resnet"\n  pretrained_model_file: "{pretrained}"'),
        ("min_learning_rate: 5e-5", f"min_learning_rate: {lr}"),
        ("max_learning_rate: 5e-3", f"max_learning_rate: {lr}"),
    ])


@pytest.mark.slow
def test_train_detection_retrains_the_pruned_graph(det_pruned, tmp_path):
    from tlt.training.detection import train_detection

    pruned, _ = load_keras_model(det_pruned.pruned, key=KEY)
    assert _filters(pruned)["conv1"] < det_pruned.full["conv1"]
    spec = load_spec(str(_det_spec(det_pruned, tmp_path / "spec.txt", det_pruned.pruned,
                                   lr="1e-12")), "detection")
    result = train_detection(spec, tmp_path / "out", key=KEY, progress=False)
    final, _ = load_keras_model(result.model_path, key=KEY)
    assert _filters(final) == _filters(pruned)
    for name, kernel in _kernels(pruned).items():
        np.testing.assert_allclose(_kernels(final)[name], kernel, atol=1e-6, err_msg=name)
    identity = json.loads((tmp_path / "out/checkpoints/run_identity.json").read_text())
    assert identity["pretrained_pruned_params"] == pruned.count_params()

    # A resumed run (checkpoints hold weights only) rebuilds the pruned graph, not model_config's.
    spec.training_config.num_epochs = 2
    again = train_detection(spec, tmp_path / "out", key=KEY, progress=False)
    assert again.resumed_from_epoch == 1
    assert _filters(load_keras_model(again.model_path, key=KEY)[0]) == _filters(pruned)


def test_detection_pruned_model_with_other_classes_is_one_line(det_pruned, tmp_path):
    from tlt.cli import train

    model, meta = load_keras_model(det_pruned.pruned, key=KEY)
    wrong = tmp_path / "wrong.tlt"
    save_keras_model(model, wrong, {**meta, "classes": ["car", "person"]}, key=KEY)
    spec = _det_spec(det_pruned, tmp_path / "spec.txt", str(wrong))
    code, _, err = _run_main(train.main, "detection", "-e", spec, "-r", tmp_path / "out",
                             "-k", KEY)
    assert code == 1
    assert _error_line(err) == (
        f"tlt-train: error: {wrong}: the pruned model was trained on classes ['car', 'person'], "
        f"the spec has ['car', 'pedestrian']; a pruned model retrains on its own classes")


def test_example_specs_train_with_l1_then_retrain_the_pruned_model():
    specs = Path(__file__).resolve().parents[1] / "examples" / "specs"
    first = load_spec(str(specs / "classification_l1.txt"), "classification", warn=False)
    again = load_spec(str(specs / "classification_retrain.txt"), "classification", warn=False)
    assert first.train_config.reg_config.type == again.train_config.reg_config.type == "L1"
    assert again.train_config.pretrained_model_path == "/workspace/cls_pruned.tlt"
    assert again.model_config == first.model_config
    full = load_spec(str(specs / "detection_resnet18.txt"), "detection", warn=False)
    det = load_spec(str(specs / "detection_retrain.txt"), "detection", warn=False)
    assert det.model_config.pretrained_model_file == "/workspace/det_pruned.tlt"
    det.model_config.pretrained_model_file = full.model_config.pretrained_model_file
    det.training_config.num_epochs = full.training_config.num_epochs
    assert det == full  # only the pruned model and the epochs differ
