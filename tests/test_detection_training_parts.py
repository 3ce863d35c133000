"""Units of DetectNet_v2 training: the soft-start annealing schedule and npz state checkpoints."""

import json
import math

import keras
import numpy as np
import pytest

from tlt.training.schedules import SoftStartAnnealingSchedule, build_soft_start_annealing
from tlt.training.state_checkpoints import StateCheckpoint, find_latest_state, load_state, save_state


def _rate(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_soft_start_annealing_rises_holds_and_decays_exponentially():
    s = SoftStartAnnealingSchedule(min_lr=1e-5, max_lr=1e-3, total_steps=1000, soft_start=0.1, annealing=0.7)
    assert _rate(s, 0) == pytest.approx(1e-5)
    # Half-way through the warm-up: the geometric mean of min and max.
    assert _rate(s, 50) == pytest.approx(math.sqrt(1e-5 * 1e-3), rel=1e-4)
    assert _rate(s, 100) == pytest.approx(1e-3)
    assert _rate(s, 400) == pytest.approx(1e-3)
    assert _rate(s, 699) == pytest.approx(1e-3)
    assert _rate(s, 850) == pytest.approx(math.sqrt(1e-5 * 1e-3), rel=1e-4)
    assert _rate(s, 1000) == pytest.approx(1e-5, rel=1e-4)
    assert _rate(s, 5000) == pytest.approx(1e-5, rel=1e-4)  # clamped past the end
    restored = SoftStartAnnealingSchedule.from_config(s.get_config())
    assert _rate(restored, 850) == pytest.approx(_rate(s, 850))


def test_soft_start_annealing_from_spec_checks_the_rates():
    from tlt import spec

    experiment = spec.load("examples/specs/detection_tiny.txt", "detection")
    lr = experiment.training_config.learning_rate
    schedule = build_soft_start_annealing(lr, steps_per_epoch=10, epochs=2)
    assert schedule.total_steps == 20
    lr.soft_start_annealing_schedule.min_learning_rate = 0.0
    with pytest.raises(Exception, match=r"0 < min_learning_rate <= max_learning_rate, got 0.0"):
        build_soft_start_annealing(lr, steps_per_epoch=10, epochs=2)


def _model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def test_state_round_trip_restores_weights_optimizer_slots_and_extra(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model()
    x, y = np.random.rand(8, 3).astype("float32"), np.random.rand(8, 2).astype("float32")
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "epoch_002.npz"
    save_state(path, model, model.optimizer, {"epoch": 2, "objective_weights": {"car": {"cov": 0.25}}})

    fresh = _model()
    extra = load_state(path, fresh, fresh.optimizer)
    assert extra == {"epoch": 2, "objective_weights": {"car": {"cov": 0.25}}}
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 2
    for a, b in zip(model.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))


def test_latest_state_skips_a_torn_newest_file_and_callback_keeps_the_newest(tmp_path):
    model = _model()
    model.fit(np.zeros((2, 3)), np.zeros((2, 2)), epochs=1, verbose=0)
    callback = StateCheckpoint(tmp_path, interval=1, total_epochs=5, keep=2,
                               extra_state=lambda: {"k": 1})
    callback.set_model(model)
    for epoch in range(4):
        callback.on_epoch_end(epoch)
    assert sorted(p.name for p in tmp_path.glob("epoch_*.npz")) == ["epoch_003.npz", "epoch_004.npz"]
    assert json.loads((tmp_path / "latest.json").read_text()) == {"epoch": 4, "file": "epoch_004.npz"}
    (tmp_path / "epoch_005.npz").write_bytes((tmp_path / "epoch_004.npz").read_bytes()[:100])
    assert find_latest_state(tmp_path) == (4, tmp_path / "epoch_004.npz")
    assert find_latest_state(tmp_path / "missing") is None


def test_a_checkpoint_of_another_model_is_one_clear_error(tmp_path):
    from tlt.errors import ModelFileError

    model = _model()
    path = tmp_path / "epoch_001.npz"
    save_state(path, model, model.optimizer, {"epoch": 1})
    inputs = keras.Input((3,))
    other = keras.Model(inputs, keras.layers.Dense(5, name="dense")(inputs))
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(ModelFileError, match=r"epoch_001.npz: checkpoint does not fit the model of "
                                             r"this spec .*use a fresh results folder"):
        load_state(path, other, other.optimizer)


def test_state_checkpoint_stores_the_epochs_logs_for_a_resumed_run(tmp_path):
    # A run killed between an epoch's checkpoint and its CSV row writes that row from these.
    model = _model()
    model.fit(np.zeros((2, 3)), np.zeros((2, 2)), epochs=1, verbose=0)
    callback = StateCheckpoint(tmp_path, interval=1, total_epochs=3,
                               extra_state=lambda: {"objective_weights": {"car": {"cov": 0.5}}})
    callback.set_model(model)
    callback.on_epoch_end(0, {"loss": np.float32(0.25), "objective_weight_car_cov": 0.5})
    extra = load_state(tmp_path / "epoch_001.npz", _model(), _model().optimizer)
    assert extra == {"epoch": 1, "logs": {"loss": 0.25, "objective_weight_car_cov": 0.5},
                     "objective_weights": {"car": {"cov": 0.5}}}


def test_loss_scaled_optimizer_state_round_trips_with_its_scale(tmp_path):
    def scaled_model():
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
        model.compile(optimizer=keras.optimizers.LossScaleOptimizer(
            keras.optimizers.Adam(1e-2), initial_scale=2.0 ** 20, dynamic_growth_steps=200),
            loss="mse", auto_scale_loss=False)
        return model

    model = scaled_model()
    model.fit(np.random.rand(8, 3), np.random.rand(8, 2), epochs=1, verbose=0)
    model.optimizer.dynamic_scale.assign(1024.0)
    save_state(tmp_path / "epoch_001.npz", model, model.optimizer, {"epoch": 1})
    fresh = scaled_model()
    load_state(tmp_path / "epoch_001.npz", fresh, fresh.optimizer)
    assert float(fresh.optimizer.dynamic_scale.numpy()) == 1024.0
    assert int(fresh.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())
