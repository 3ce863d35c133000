"""Units of the shared training machinery: schedules, optimizers, regularisation, checkpoints,
transfer of pretrained weights."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from tlt import spec as spec_loader
from tlt.errors import ModelFileError, ModelKeyError, SpecError
from tlt.io import modelfile
from tlt.models.classifier import build_classifier
from tlt.training.checkpoints import EpochCheckpoint, checkpoint_path, find_latest_checkpoint
from tlt.training.optimizers import build_optimizer
from tlt.training.regularizers import apply_regularization, build_regularizer
from tlt.training.schedules import (CosineSchedule, SoftAnnealSchedule, StepSchedule,
                                    build_lr_schedule)
from tlt.training.transfer import load_pretrained_model, transfer_weights


def _values(schedule, steps):
    return [float(schedule(step)) for step in steps]


# ---------------------------------------------------------------- learning-rate schedules

def test_step_schedule_decays_every_step_size_epochs():
    # 10 steps per epoch, x0.5 every 2 epochs.
    schedule = StepSchedule(0.1, steps_per_epoch=10, step_size=2, gamma=0.5)
    got = _values(schedule, [0, 19, 20, 39, 40, 45, 60])
    np.testing.assert_allclose(got, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125], rtol=1e-6)


def test_soft_anneal_warms_up_then_divides_at_each_point():
    # 100 steps, warm-up over the first 10%, /10 at 50% and at 80%.
    schedule = SoftAnnealSchedule(1.0, total_steps=100, soft_start=0.1,
                                  annealing_points=[0.5, 0.8], annealing_divider=10)
    # Warm-up: lr * (step/100 + 1/100) / 0.1, so step 0 -> 0.1, step 4 -> 0.5, step 9 -> 1.0.
    got = _values(schedule, [0, 4, 9, 30, 49, 50, 79, 80, 99])
    np.testing.assert_allclose(got, [0.1, 0.5, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-5)


def test_cosine_warms_up_then_decays_to_min_ratio():
    schedule = CosineSchedule(1.0, total_steps=100, soft_start=0.2, min_lr_ratio=0.1)
    # Warm-up: (step/100 + 0.01) / 0.2; then 0.1 + 0.9 * (1 + cos(pi * (p - 0.2) / 0.8)) / 2.
    got = _values(schedule, [0, 9, 20, 60, 100])
    np.testing.assert_allclose(got, [0.05, 0.5, 1.0, 0.55, 0.1], rtol=1e-5)
    no_warmup = CosineSchedule(2.0, total_steps=10, soft_start=0.0, min_lr_ratio=0.0)
    np.testing.assert_allclose(_values(no_warmup, [0, 5, 10]), [2.0, 1.0, 0.0], atol=1e-6)


def test_schedules_survive_keras_serialisation():
    for schedule in (StepSchedule(0.1, 7, 3, 0.3),
                     SoftAnnealSchedule(0.2, 50, 0.1, [0.3, 0.6], 4.0),
                     CosineSchedule(0.3, 40, 0.25, 0.05)):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
        assert type(clone) is type(schedule)
        np.testing.assert_allclose(_values(clone, [0, 5, 13, 33]), _values(schedule, [0, 5, 13, 33]))


def test_build_lr_schedule_from_a_spec(tmp_path):
    spec = spec_loader.loads('train_config { train_dataset_path: "x" n_epochs: 4 '
                             'lr_config { scheduler: "cosine" learning_rate: 0.5 soft_start: 0.25 } }',
                             "classification")
    schedule = build_lr_schedule(spec.train_config.lr_config, steps_per_epoch=5, epochs=4)
    assert isinstance(schedule, CosineSchedule) and schedule.total_steps == 20
    # Peak at the end of warm-up (step 5 of 20), then half-way through the decay at step 12.5.
    np.testing.assert_allclose(_values(schedule, [5]), [0.5], rtol=1e-6)
    defaults = spec_loader.loads('train_config { train_dataset_path: "x" }', "classification")
    step = build_lr_schedule(defaults.train_config.lr_config, steps_per_epoch=3, epochs=80)
    assert isinstance(step, StepSchedule)
    assert (step.learning_rate, step.step_size, step.gamma) == pytest.approx((0.006, 10, 0.1))
    with pytest.raises(SpecError, match="scheduler must be one of step, soft_anneal, cosine; got 'linear'"):
        build_lr_schedule(SimpleNamespace(scheduler="linear"), steps_per_epoch=1, epochs=1)


# ---------------------------------------------------------------- optimizers

def _train_config(optimizer, **params):
    spec = spec_loader.loads(f'train_config {{ train_dataset_path: "x" optimizer: "{optimizer}" '
                             f'optimizer_config {{ {" ".join(params.values())} }} }}',
                             "classification")
    return spec.train_config


def test_optimizers_by_name_with_their_parameters():
    sgd = build_optimizer(_train_config("sgd", p="sgd { momentum: 0.5 nesterov: true }"), 0.1)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.momentum == pytest.approx(0.5) and sgd.nesterov is True
    adam = build_optimizer(_train_config("adam", p="adam { beta1: 0.8 }"), 0.01)
    assert isinstance(adam, keras.optimizers.Adam)
    assert (adam.beta_1, adam.beta_2) == pytest.approx((0.8, 0.999))
    rms = build_optimizer(_train_config("rmsprop", p="rmsprop { rho: 0.7 momentum: 0.1 }"), 0.01)
    assert isinstance(rms, keras.optimizers.RMSprop)
    assert (rms.rho, rms.momentum) == pytest.approx((0.7, 0.1))
    assert float(rms.learning_rate) == pytest.approx(0.01)
    schedule = StepSchedule(0.1, 1, 1, 0.5)
    assert build_optimizer(_train_config("sgd"), schedule)._learning_rate is schedule


def test_unknown_optimizer_is_a_spec_error():
    config = SimpleNamespace(optimizer="adagrad", optimizer_config=None)
    with pytest.raises(SpecError, match="optimizer must be one of sgd, adam, rmsprop; got 'adagrad'"):
        build_optimizer(config, 0.1)
    # The spec loader rejects it too, with the field path.
    with pytest.raises(SpecError, match="train_config.optimizer"):
        _train_config("adagrad")


# ---------------------------------------------------------------- regularisation

def _small_model():
    inputs = keras.Input((8, 8, 3), name="input_1")
    x = keras.layers.Conv2D(4, 3, name="conv_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.Conv2D(4, 3, name="conv_b")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(2, name="predictions")(x)
    return keras.Model(inputs, outputs)


def test_regularization_only_on_scoped_layer_classes_and_weights_kept():
    keras.utils.set_random_seed(0)
    model = _small_model()
    model.get_layer("bn_a").trainable = False
    rebuilt = apply_regularization(model, "L1", 0.01, "Conv2D")
    assert rebuilt is not model
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    for source, target in zip(model.layers, rebuilt.layers):
        for a, b in zip(source.get_weights(), target.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert rebuilt.get_layer("bn_a").trainable is False
    # One loss per convolution kernel, none for the Dense layer: 0.01 * sum(|kernel|) each.
    expected = sorted(0.01 * float(np.abs(rebuilt.get_layer(n).kernel.numpy()).sum())
                      for n in ("conv_a", "conv_b"))
    np.testing.assert_allclose(sorted(float(v) for v in rebuilt.losses), expected, rtol=1e-5)
    assert rebuilt.get_layer("predictions").kernel_regularizer is None

    both = apply_regularization(model, "L2", 0.001, "Conv2D, Dense")
    assert len(both.losses) == 3
    x = np.ones((1, 8, 8, 3), "float32")
    np.testing.assert_allclose(both(x).numpy(), model(x).numpy(), rtol=1e-5)


def test_the_specs_regularization_replaces_the_one_a_saved_model_carries():
    # A pruned model is rebuilt from its saved graph, whose layer configs keep the L1 of the run
    # that trained it: a retrain spec without regularization must train without it, and one
    # with another scope or weight must get exactly that.
    baked = apply_regularization(_small_model(), "L1", 0.01, "Conv2D, Dense")
    assert len(baked.losses) == 3
    plain = apply_regularization(baked, "NONE", 0.0, "Conv2D")
    assert plain.losses == []
    assert all(getattr(layer, "kernel_regularizer", None) is None for layer in plain.layers)
    x = np.ones((1, 8, 8, 3), "float32")
    np.testing.assert_allclose(plain(x).numpy(), baked(x).numpy(), rtol=1e-5)
    conv_only = apply_regularization(baked, "L2", 0.5, "Conv2D")
    assert conv_only.get_layer("predictions").kernel_regularizer is None
    assert conv_only.get_layer("conv_a").kernel_regularizer.l2 == pytest.approx(0.5)


def test_regularization_none_or_out_of_scope_returns_the_model_unchanged():
    model = _small_model()
    assert apply_regularization(model, "NONE", 0.01, "Conv2D") is model
    assert apply_regularization(model, "L2", 0.0, "Conv2D") is model
    assert apply_regularization(model, "L2", 0.01, "DepthwiseConv2D") is model
    assert build_regularizer("l2", 0.5).l2 == pytest.approx(0.5)
    with pytest.raises(SpecError, match="reg_config.type must be NONE, L1 or L2; got 'L3'"):
        build_regularizer("L3", 0.1)


# ---------------------------------------------------------------- checkpoints

def _tiny_compiled():
    model = _small_model()
    model.compile(optimizer=keras.optimizers.SGD(StepSchedule(0.1, 2, 1, 0.5), momentum=0.9),
                  loss="mse")
    return model


def test_epoch_checkpoint_interval_last_epoch_latest_json_and_keep(tmp_path):
    model = _tiny_compiled()
    callback = EpochCheckpoint(tmp_path / "ckpt", interval=2, total_epochs=7, keep=2)
    callback.set_model(model)
    for epoch in range(7):
        callback.on_epoch_end(epoch)
    # Saved after epochs 2, 4, 6 and the last one (7); only the 2 newest kept.
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["epoch_006.keras", "epoch_007.keras", "latest.json"]
    assert json.loads((tmp_path / "ckpt" / "latest.json").read_text()) == {
        "epoch": 7, "file": "epoch_007.keras"}
    restored = keras.models.load_model(tmp_path / "ckpt" / "epoch_007.keras")
    schedule = restored.optimizer._learning_rate
    assert isinstance(schedule, StepSchedule) and schedule.gamma == pytest.approx(0.5)

    disabled = EpochCheckpoint(tmp_path / "other", interval=1, total_epochs=1, enabled=False)
    disabled.set_model(model)
    disabled.on_epoch_end(0)
    assert not (tmp_path / "other").exists()


def test_find_latest_skips_a_truncated_or_garbage_newest_file(tmp_path, caplog):
    assert find_latest_checkpoint(tmp_path / "missing") is None
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    assert find_latest_checkpoint(ckpt) is None
    model = _tiny_compiled()
    model.save(checkpoint_path(ckpt, 2))
    good = checkpoint_path(ckpt, 2).read_bytes()
    checkpoint_path(ckpt, 3).write_bytes(good[: len(good) // 2])   # torn write
    checkpoint_path(ckpt, 4).write_bytes(b"garbage, not a zip")      # junk
    (ckpt / "epoch_009.keras.tmp").write_bytes(good)                 # not a checkpoint name
    with caplog.at_level(logging.WARNING):
        assert find_latest_checkpoint(ckpt) == (2, checkpoint_path(ckpt, 2))
    assert "ignoring incomplete checkpoint" in caplog.text and "epoch_004.keras" in caplog.text
    assert checkpoint_path(ckpt, 12).name == "epoch_012.keras"


# ---------------------------------------------------------------- transfer learning

def _cfg(size="3,32,32"):
    return SimpleNamespace(arch="resnet", n_layers=10, input_image_size=size)


def test_transfer_weights_by_name_and_shape_reports_skips(caplog):
    keras.utils.set_random_seed(1)
    source = build_classifier(_cfg(), 5)
    keras.utils.set_random_seed(2)
    target = build_classifier(_cfg(), 3)
    with caplog.at_level(logging.INFO):
        report = transfer_weights(target, source)
    assert list(report.skipped) == ["predictions"]
    assert "(512, 5)" in report.skipped["predictions"] and "(512, 3)" in report.skipped["predictions"]
    weighted = [layer.name for layer in target.layers if layer.get_weights()]
    assert report.loaded == [n for n in weighted if n != "predictions"]
    for name in ("conv1", "block_1a_conv_1", "block_4a_bn_2"):
        for a, b in zip(target.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert "pretrained weights skipped for predictions" in caplog.text
    assert f"pretrained weights loaded into {len(report.loaded)} layers" in caplog.text


def test_transfer_skips_layers_missing_from_the_pretrained_model():
    source = _small_model()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv_a")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv_new")(x)
    target = keras.Model(inputs, keras.layers.Dense(3, name="predictions")(
        keras.layers.Flatten()(x)))
    report = transfer_weights(target, source)
    assert report.loaded == ["conv_a"]
    assert report.skipped["conv_new"] == "not in the pretrained model"
    assert "shape" in report.skipped["predictions"]


def test_transfer_rejects_a_different_input_depth():
    source = build_classifier(_cfg("1,32,32"), 3)
    target = build_classifier(_cfg("3,32,32"), 3)
    with pytest.raises(ModelFileError, match=r"pretrained model has input depth 1 .* the spec asks for 3"):
        transfer_weights(target, source)


def test_load_pretrained_tlt_and_keras_files(tmp_path):
    model = _small_model()
    modelfile.save_keras_model(model, tmp_path / "m.tlt", {"task": "classification"}, key="k1")
    loaded, meta = load_pretrained_model(str(tmp_path / "m.tlt"), key="k1")
    assert meta["task"] == "classification"
    np.testing.assert_array_equal(loaded.get_layer("conv_a").get_weights()[0],
                                  model.get_layer("conv_a").get_weights()[0])
    with pytest.raises(ModelKeyError):
        load_pretrained_model(str(tmp_path / "m.tlt"), key="wrong")
    model.save(tmp_path / "m.keras")
    loaded, meta = load_pretrained_model(str(tmp_path / "m.keras"))
    assert meta == {} and loaded.get_layer("predictions").units == 2
    (tmp_path / "pre.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match=r"pre\.keras: expected a Keras model file \(a \.keras "
                                             r"zip archive\); found 9 bytes that are not a zip"):
        load_pretrained_model(str(tmp_path / "pre.keras"))
