"""`tlt.training.distributed_loop.fit_distributed`: parity with ``model.fit``, callbacks and their
log keys, resume, data errors, two replicas (batch-norm sync, exact validation metrics), and
``tlt-train detection`` as two local TF_CONFIG workers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from cli_processes import run_two_workers, subprocess_env
from det_fixtures import read_csv, read_json, tiny_data, write_spec
from tlt.errors import DataError
from tlt.io import modelfile
from tlt.training.distributed_loop import fit_distributed


def _problem(n: int = 64, seed: int = 0):
    """A separable 2-class problem: the class is the sign of the first feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 0).astype("int64"), 2)
    return x, y


def _model(seed: int = 1):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu",
                                kernel_regularizer=keras.regularizers.L2(1e-3))(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class _Recorder(keras.callbacks.Callback):
    """Every hook call with a copy of its logs."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, object, dict]] = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", None, dict(logs or {})))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch, dict(logs or {})))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, dict(logs or {})))

    def on_test_end(self, logs=None):
        self.calls.append(("test_end", None, dict(logs or {})))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs or {})))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", None, dict(logs or {})))


def test_matches_model_fit_step_for_step_and_calls_callbacks_with_fit_keys():
    x, y = _problem()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[:13], y[:13])).batch(8)

    reference = _model()
    expected = reference.fit(train.repeat(), epochs=3, steps_per_epoch=4, validation_data=val,
                             verbose=0, shuffle=False).history
    model = _model()
    recorder = _Recorder()
    history = fit_distributed(model, train.repeat(), epochs=3, steps_per_epoch=4,
                              validation_data=val, callbacks=[recorder], verbose=0).history

    keys = {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert set(history) == set(expected) == keys
    for key in keys:
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, err_msg=key)
    assert history["loss"][-1] < history["loss"][0]
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    hooks = [(name, index) for name, index, _ in recorder.calls]
    per_epoch = [("epoch_begin", None)] + [("batch_end", i) for i in range(4)] + [
        ("test_end", None), ("epoch_end", None)]
    assert [h[0] for h in hooks] == (["train_begin"] + [p[0] for p in per_epoch] * 3
                                     + ["train_end"])
    assert [i for name, i in hooks if name == "epoch_begin"] == [0, 1, 2]
    assert [i for name, i in hooks if name == "batch_end"] == [0, 1, 2, 3] * 3
    batch_logs = [logs for name, _, logs in recorder.calls if name == "batch_end"]
    assert all(set(logs) == {"loss", "accuracy"} for logs in batch_logs)
    # The last batch's running values are the epoch's training values.
    assert batch_logs[3]["loss"] == pytest.approx(history["loss"][0])
    test_logs = [logs for name, _, logs in recorder.calls if name == "test_end"]
    assert test_logs[0] == pytest.approx({"loss": history["val_loss"][0],
                                          "accuracy": history["val_accuracy"][0]})
    epoch_logs = [logs for name, _, logs in recorder.calls if name == "epoch_end"]
    assert epoch_logs[-1] == pytest.approx({k: v[-1] for k, v in history.items()})
    assert recorder.calls[-1] == ("train_end", None, epoch_logs[-1])


def test_one_pass_per_epoch_without_steps_and_resume_from_initial_epoch():
    x, y = _problem(40)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # 16 + 16 + 8
    model = _model()
    recorder = _Recorder()
    history = fit_distributed(model, train, epochs=4, initial_epoch=2, callbacks=[recorder],
                              verbose=0)
    assert [i for name, i, _ in recorder.calls if name == "epoch_begin"] == [2, 3]
    assert [i for name, i, _ in recorder.calls if name == "batch_end"] == [0, 1, 2] * 2
    assert history.epoch == [2, 3] and len(history.history["loss"]) == 2
    # 2 epochs x 3 batches of plain SGD.
    assert int(model.optimizer.iterations.numpy()) == 6


def test_a_callback_can_stop_training():
    x, y = _problem()
    train = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    history = fit_distributed(_model(), train, epochs=5, steps_per_epoch=2,
                              callbacks=[StopAfterFirstEpoch()], verbose=0)
    assert history.epoch == [0]


def test_training_data_that_runs_out_is_a_data_error():
    x, y = _problem(32)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # 2 batches, no repeat
    with pytest.raises(DataError, match=r"^training data ran out at step 3 of epoch 1: "
                                        r"expected 4 steps per epoch"):
        fit_distributed(_model(), train, epochs=1, steps_per_epoch=4, verbose=0)


def test_empty_validation_data_is_a_data_error():
    x, y = _problem(32)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    empty = tf.data.Dataset.from_tensor_slices((x[:0], y[:0])).batch(8)
    with pytest.raises(DataError, match="^the validation data set yielded no batch$"):
        fit_distributed(_model(), train, epochs=1, validation_data=empty, verbose=0)


_TWO_REPLICAS = textwrap.dedent("""\
    import json, sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    from test_distributed_loop import _model, _problem
    from tlt.training.distributed_loop import fit_distributed

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x, y = _problem()
    with strategy.scope():
        model = _model()
    seen = []

    class Local(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model is model)
            logs["local_prediction"] = float(self.model.predict_on_batch(x[:4])[0, 0])

    local = Local()
    train = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16, drop_remainder=True)
    val = tf.data.Dataset.from_tensor_slices((x[:13], y[:13])).batch(8)
    history = fit_distributed(model, train, epochs=2, steps_per_epoch=4, validation_data=val,
                              callbacks=[local], local_callbacks=[local], verbose=0).history
    replicas = [[np.asarray(v) for v in strategy.experimental_local_results(w.value)]
                for w in model.non_trainable_variables]
    plain = keras.Model.from_config(model.get_config())
    plain.set_weights(model.get_weights())
    plain.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    print(json.dumps({
        "history": history, "seen": seen,
        "replica_gap": max(float(np.abs(a - b).max()) for a, b in replicas),
        "evaluate": plain.evaluate(x[:13], y[:13], verbose=0, return_dict=True),
        "prediction": float(plain.predict_on_batch(x[:4])[0, 0]),
    }))
""")


def test_two_replicas_sync_batch_norm_and_report_exact_validation_metrics(tmp_path):
    # A fresh process: the CPU can be split into logical devices only before TF initialises.
    script = tmp_path / "two_replicas.py"
    script.write_text(_TWO_REPLICAS, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    history = result["history"]
    assert history["loss"][1] < history["loss"][0]
    # Each replica's batch-norm statistics come from its half of the batches; the loop averages
    # them, so both replicas hold the same values ...
    assert result["replica_gap"] == 0.0
    # ... and the logged validation metrics are those of the model as saved, on all 13 images
    # (8 + 5, split 4/4 and 3/2 over the replicas).
    assert history["val_loss"][-1] == pytest.approx(result["evaluate"]["loss"], rel=1e-5)
    assert history["val_accuracy"][-1] == pytest.approx(result["evaluate"]["accuracy"])
    # Local callbacks see a copy of the model (not the distributed one) with the trained weights.
    assert result["seen"] == [False, False]
    assert history["local_prediction"][-1] == pytest.approx(result["prediction"], rel=1e-5)


# ------------------------------------------------------------------ detection, 2 workers

@pytest.mark.slow
def test_detection_trains_as_two_local_workers(tmp_path_factory, tmp_path):
    data = tiny_data(tmp_path_factory.getbasetemp() / "detection_shared")
    spec = write_spec(tmp_path / "spec.txt", data, epochs=2, batch_size=2)
    codes, outputs = run_two_workers("detection", spec, tmp_path, timeout=400)
    assert codes == [0, 0], [text[-3000:] for text in outputs]
    for text in outputs:
        # 18 training frames, global batch 2 x 2: 4 equal steps on every worker.
        assert "with MultiWorkerMirroredStrategy on 2 replica(s); 4 steps per epoch of 4 images" \
            in text
    chief, other = tmp_path / "out0", tmp_path / "out1"
    _, meta = modelfile.load_keras_model(chief / "model.tlt")
    assert meta["classes"] == ["car", "pedestrian"] and meta["epochs"] == 2
    assert read_json(chief / "checkpoints" / "latest.json") == {"epoch": 2,
                                                                "file": "epoch_002.npz"}
    rows = read_csv(chief / "training_log.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for row in rows:
        assert np.isfinite(float(row["loss"]))
        for cls in ("car", "pedestrian"):
            for objective in ("cov", "bbox"):
                assert float(row[f"output_{objective}_mean_cost_{cls}"]) > 0
                assert 0 < float(row[f"objective_weight_{cls}_{objective}"]) < 1
    # Validation ran on the chief alone (its copy of the model) after the last epoch.
    report = read_json(chief / "validation" / "final.json")
    assert report["classes"] == ["car", "pedestrian"] and report["num_frames"] == 6
    assert float(rows[1]["val_mAP"]) == pytest.approx(report["mean_ap"][report["buckets"][0]])
    status = read_json(chief / "status.json")
    assert (status["state"], status["epoch"]) == ("done", 2)
    # Autoweighting saw the same global costs on both workers.
    weights = [[line.split("objective weights used: ", 1)[1] for line in text.splitlines()
                if "objective weights used: " in line] for text in outputs]
    assert len(weights[0]) == 2 and weights[0] == weights[1]
    assert not (other / "model.tlt").exists() and not (other / "checkpoints").exists()
    assert not (other / "status.json").exists() and not (other / "validation").exists()
