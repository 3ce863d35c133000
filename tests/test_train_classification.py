"""``tlt-train classification`` end to end: artifacts, encryption, resume after kill -9,
--gpus on CPU, multi-worker, transfer learning and bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from checkpoint_helpers import latest_epoch
from cli_processes import run_two_workers
from cls_fixtures import (VENV_BIN, make_shapes, read_csv_rows, read_json, run_cli,
                          subprocess_env, write_spec, write_truncated_png)
from tlt import spec as spec_loader
from tlt.artifacts import spec_digest
from tlt.cli.train import main as train_main
from tlt.errors import ModelKeyError
from tlt.io import modelfile
from tlt.models.classifier import build_classifier

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """3 classes of coloured shapes at 32x32: 8 train, 4 val images per class."""
    return make_shapes(tmp_path_factory.mktemp("shapes") / "data", per_class=(8, 4, 1))


def _error_line(stderr: str, prog: str = "tlt-train") -> str:
    """The one error line a failing CLI prints (asserting there is exactly one, and last)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, stderr
    assert lines[-1] == errors[0], stderr
    return errors[0]


def test_train_end_to_end_writes_every_artifact_and_an_encrypted_model(shapes, tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.txt", shapes / "train", shapes / "val", epochs=2)
    out = tmp_path / "out"

    code = train_main(["classification", "-e", str(spec), "-r", str(out), "-k", "s3cret"])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"Model written to {out / 'model.tlt'} after 2 epochs" in captured.out
    assert "training with _DefaultDistributionStrategy on 1 replica(s)" in captured.err
    assert "found 24 training images in 3 classes, 12 validation images; 3 steps per epoch" \
        in captured.err

    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch_001.keras", "epoch_002.keras",
                                                       "latest.json", "run_identity.json"]
    assert read_json(ckpts / "run_identity.json") == {
        "arch": "resnet", "n_layers": 10, "input_dims": [3, 32, 32], "use_bias": True,
        "use_batch_norm": True, "all_projections": True, "use_pooling": False,
        "freeze_blocks": [], "freeze_bn": False, "dropout": 0.0, "classes": CLASSES,
        "pretrained_pruned_params": None}
    assert read_json(ckpts / "latest.json") == {"epoch": 2, "file": "epoch_002.keras"}

    rows = read_csv_rows(out / "training_log.csv")
    header, body = rows[0], rows[1:]
    assert header[0] == "epoch" and {"accuracy", "loss", "val_accuracy", "val_loss"} <= set(header)
    assert [r[0] for r in body] == ["0", "1"]
    losses = [float(r[header.index("loss")]) for r in body]
    assert losses[1] < losses[0]  # it learns

    status = read_json(out / "status.json")
    assert (status["state"], status["epoch"], status["total_epochs"]) == ("done", 2, 2)
    assert status["progress"] == 1.0
    assert read_json(out / "classmap.json") == {"circle": 0, "square": 1, "triangle": 2}

    meta = read_json(out / "metadata.json")
    assert meta["stage"] == "train" and meta["task"] == "classification"
    assert meta["parents"] == [{"uri": str(shapes / "train")}]
    assert meta["spec_digest"] == spec_digest(spec_loader.load(spec, "classification"))
    assert (meta["epochs"], meta["resumed_from_epoch"], meta["encrypted"]) == (2, 0, True)
    assert meta["classes"] == CLASSES and meta["model"] == "model.tlt"
    assert meta["final_metrics"]["loss"] == pytest.approx(losses[1], rel=1e-5)

    assert modelfile.read_model_header(out / "model.tlt")["encrypted"] is True
    with pytest.raises(ModelKeyError, match="is encrypted: pass the key"):
        modelfile.load_keras_model(out / "model.tlt")
    with pytest.raises(ModelKeyError, match="wrong key"):
        modelfile.load_keras_model(out / "model.tlt", key="nope")
    model, model_meta = modelfile.load_keras_model(out / "model.tlt", key="s3cret")
    assert model_meta["classes"] == CLASSES and model_meta["input_dims"] == [3, 32, 32]
    assert (model_meta["arch"], model_meta["n_layers"], model_meta["epochs"]) == ("resnet", 10, 2)
    assert model_meta["preprocessing"]["scale"] == pytest.approx(1 / 127.5)
    assert "train_config" in model_meta["spec"]
    assert model.input.shape == (None, 3, 32, 32) and model.output.shape == (None, 3)
    assert getattr(model, "optimizer", None) is None  # shipped without optimizer state
    # The shipped model is the last checkpoint's network.
    last = keras.models.load_model(ckpts / "epoch_002.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), last(x).numpy(), atol=1e-5)


def test_tlt_key_env_encrypts_and_a_corrupt_image_is_skipped_not_fatal(tmp_path, capsys,
                                                                     monkeypatch):
    data = make_shapes(tmp_path / "data", classes=("a", "b"), per_class=(4, 2, 1), size=16)
    broken = write_truncated_png(data / "train" / "a" / "zz_broken.png")
    spec = write_spec(tmp_path / "spec.txt", data / "train", data / "val", epochs=1,
                      input_image_size="3,16,16", batch_size=4)
    monkeypatch.setenv("TLT_KEY", "from-env")

    code = train_main(["classification", "-e", str(spec), "-r", str(tmp_path / "out")])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"[WARNING] tlt.data.classification: skipping {broken}: truncated PNG" in captured.err
    assert "skipped 1 unreadable image(s) of 9" in captured.err
    assert "found 8 training images in 2 classes" in captured.err
    assert modelfile.read_model_header(tmp_path / "out" / "model.tlt")["encrypted"] is True
    _, meta = modelfile.load_keras_model(tmp_path / "out" / "model.tlt", key="from-env")
    assert meta["classes"] == ["a", "b"] and meta["input_dims"] == [3, 16, 16]
    assert read_json(tmp_path / "out" / "metadata.json")["encrypted"] is True


@pytest.mark.parametrize(("model_lines", "expected"), [
    ('arch: "foonet"',
     'model_config.arch must be one of: resnet, vgg, alexnet, googlenet, mobilenet_v1, '
     'mobilenet_v2; got "foonet"'),
    ('arch: "resnet" n_layers: 11',
     "model_config.n_layers must be one of 10, 18, 34, 50, 101 for resnet, got 11"),
    ('arch: "vgg" n_layers: 18', "model_config.n_layers must be one of 16, 19 for vgg, got 18"),
    ('arch: "resnet" n_layers: 10 input_image_size: "3,8,8"',
     'model_config.input_image_size: height and width must be >= 16, got 8x8 in "3,8,8"'),
], ids=["arch", "resnet-depth", "vgg-depth", "input-size"])
def test_bad_model_config_is_one_clear_line(model_lines, expected, shapes, tmp_path, capsys):
    spec = tmp_path / "spec.txt"
    spec.write_text(f"model_config {{ {model_lines} }}\n"
                    f'train_config {{ train_dataset_path: "{shapes / "train"}" n_epochs: 1 }}\n')
    code = train_main(["classification", "-e", str(spec), "-r", str(tmp_path / "out")])
    assert code == 2
    line = _error_line(capsys.readouterr().err)
    assert line.endswith(expected)
    assert not (tmp_path / "out" / "model.tlt").exists()


def test_missing_dataset_path_fails_and_marks_status_failed(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "train"
    spec = write_spec(tmp_path / "spec.txt", missing, epochs=1)
    code = train_main(["classification", "-e", str(spec), "-r", str(tmp_path / "out")])
    assert code != 0
    line = _error_line(capsys.readouterr().err)
    assert line == f"tlt-train: error: {missing}: no such file or folder"
    status = read_json(tmp_path / "out" / "status.json")
    assert status["state"] == "failed" and str(missing) in status["message"]


def test_missing_spec_file_is_one_clear_line(tmp_path, capsys):
    code = train_main(["classification", "-e", str(tmp_path / "nope.txt"), "-r", str(tmp_path)])
    assert code == 2
    assert _error_line(capsys.readouterr().err).endswith("nope.txt: spec file does not exist")


def test_pretrained_model_with_other_input_depth_is_refused(shapes, tmp_path, capsys):
    gray = build_classifier(spec_loader.loads('model_config { arch: "resnet" n_layers: 10 '
                                              'input_image_size: "1,32,32" }',
                                              "classification").model_config, 3)
    pretrained = tmp_path / "gray.tlt"
    modelfile.save_keras_model(gray, pretrained, {"task": "classification"})
    spec = write_spec(tmp_path / "spec.txt", shapes / "train", epochs=1, pretrained=pretrained)
    code = train_main(["classification", "-e", str(spec), "-r", str(tmp_path / "out")])
    assert code == 1
    line = _error_line(capsys.readouterr().err)
    assert line == ("tlt-train: error: pretrained model has input depth 1 (input (1, 32, 32)), "
                    "the spec asks for 3 (input (3, 32, 32))")


def test_pretrained_model_with_wrong_key_is_refused(shapes, tmp_path, capsys):
    model = build_classifier(spec_loader.loads('model_config { arch: "resnet" n_layers: 10 '
                                               'input_image_size: "3,32,32" }',
                                               "classification").model_config, 3)
    pretrained = tmp_path / "pre.tlt"
    modelfile.save_keras_model(model, pretrained, {"task": "classification"}, key="right")
    spec = write_spec(tmp_path / "spec.txt", shapes / "train", epochs=1, pretrained=pretrained)
    code = train_main(["classification", "-e", str(spec), "-r", str(tmp_path / "out"),
                       "-k", "wrong"])
    assert code == 1
    line = _error_line(capsys.readouterr().err)
    assert line == f"tlt-train: error: {pretrained}: cannot decrypt: wrong key or the file is corrupt"


def test_gpus_below_one_is_refused(shapes, tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.txt", shapes / "train", epochs=1)
    code = train_main(["classification", "-e", str(spec), "-r", str(tmp_path), "--gpus", "0"])
    assert code == 2
    assert _error_line(capsys.readouterr().err) == "tlt-train: error: --gpus must be >= 1, got 0"


# ------------------------------------------------------------------ resume after kill -9

def test_resume_after_kill_9_finishes_the_run_exactly_once(tmp_path):
    data = make_shapes(tmp_path / "data", per_class=(16, 4, 1))
    epochs = 5
    spec = write_spec(tmp_path / "spec.txt", data / "train", data / "val", epochs=epochs,
                      checkpoint_interval=1, crop=True)
    out = tmp_path / "out"
    command = [str(VENV_BIN / "tlt-train"), "classification", "-e", str(spec), "-r", str(out)]
    latest = out / "checkpoints" / "latest.json"

    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env=subprocess_env())
        try:
            deadline = time.monotonic() + 400
            while time.monotonic() < deadline and proc.poll() is None:
                if latest_epoch(latest) >= 1:
                    # Let it get into the steps of the next epoch, then pull the plug.
                    time.sleep(0.4)
                    break
                time.sleep(0.05)
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    killed_at = latest_epoch(latest)
    assert 1 <= killed_at < epochs
    assert not (out / "model.tlt").exists()
    assert read_json(out / "status.json")["state"] == "running"

    rerun = run_cli("tlt-train", "classification", "-e", str(spec), "-r", str(out), timeout=400)

    assert rerun.returncode == 0, rerun.stderr
    resumed = out / "checkpoints" / f"epoch_{killed_at:03d}.keras"
    assert f"resuming from {resumed} (epoch {killed_at} of {epochs})" in rerun.stderr
    assert f"after {epochs} epochs (resumed from epoch {killed_at})" in rerun.stdout
    meta = read_json(out / "metadata.json")
    assert (meta["epochs"], meta["resumed_from_epoch"]) == (epochs, killed_at)
    status = read_json(out / "status.json")
    assert (status["state"], status["epoch"]) == ("done", epochs)
    rows = read_csv_rows(out / "training_log.csv")
    assert [int(r[0]) for r in rows[1:]] == list(range(epochs))
    checkpoints = sorted((out / "checkpoints").glob("epoch_*.keras"))
    assert checkpoints and checkpoints[-1].name == f"epoch_{epochs:03d}.keras"
    # Checkpoints keep the optimizer with its learning-rate schedule, a class of ours that
    # Keras finds once tlt.training.schedules is imported (the trainer does that itself).
    import tlt.training.schedules  # noqa: F401

    for path in checkpoints:
        restored = keras.models.load_model(path)
        assert restored.output.shape == (None, 3)
        assert int(restored.optimizer.iterations.numpy()) > 0
    assert read_json(out / "checkpoints" / "latest.json")["epoch"] == epochs
    _, model_meta = modelfile.load_keras_model(out / "model.tlt")
    assert model_meta["epochs"] == epochs


# ------------------------------------------------------------------ tf.distribute

@pytest.mark.slow
def test_gpus_2_on_cpu_mirrors_over_two_logical_devices(shapes, tmp_path):
    spec = write_spec(tmp_path / "spec.txt", shapes / "train", shapes / "val", epochs=1,
                      batch_size=4)
    result = run_cli("tlt-train", "classification", "-e", str(spec), "-r", str(tmp_path / "out"),
                     "--gpus", "2")
    assert result.returncode == 0, result.stderr
    assert "no GPU found: mirroring over 2 logical CPU devices" in result.stderr
    assert "training with MirroredStrategy on 2 replica(s)" in result.stderr
    # The global batch is 2 x 4: 24 images -> 3 steps.
    assert "3 steps per epoch of 8 images" in result.stderr
    assert read_json(tmp_path / "out" / "status.json")["state"] == "done"
    _, meta = modelfile.load_keras_model(tmp_path / "out" / "model.tlt")
    assert meta["classes"] == CLASSES


@pytest.mark.slow
def test_multi_worker_two_local_processes(shapes, tmp_path):
    spec = write_spec(tmp_path / "spec.txt", shapes / "train", shapes / "val", epochs=2,
                      batch_size=4, learning_rate=0.02)

    codes, outputs = run_two_workers("classification", spec, tmp_path)

    assert codes == [0, 0], outputs
    for text in outputs:
        assert "training with MultiWorkerMirroredStrategy on 2 replica(s)" in text
        # Equal batches on every worker: 24 images, global batch 8 -> 3 steps.
        assert "3 steps per epoch of 8 images" in text
    chief, other = tmp_path / "out0", tmp_path / "out1"
    _, meta = modelfile.load_keras_model(chief / "model.tlt")
    assert meta["classes"] == CLASSES and meta["epochs"] == 2
    status = read_json(chief / "status.json")
    assert (status["state"], status["epoch"], status["total_epochs"]) == ("done", 2, 2)
    assert read_json(chief / "checkpoints" / "latest.json") == {"epoch": 2,
                                                                "file": "epoch_002.keras"}
    rows = read_csv_rows(chief / "training_log.csv")
    header, body = rows[0], rows[1:]
    assert {"epoch", "loss", "accuracy", "top_k_accuracy", "val_loss", "val_accuracy",
            "val_top_k_accuracy"} <= set(header)
    assert [r[0] for r in body] == ["0", "1"]
    losses = [float(r[header.index("loss")]) for r in body]
    assert all(np.isfinite(losses)) and losses[1] < losses[0], losses
    for row in body:
        assert 0.0 <= float(row[header.index("val_accuracy")]) <= 1.0
        assert np.isfinite(float(row[header.index("val_loss")]))
    meta = read_json(chief / "metadata.json")
    assert meta["final_metrics"]["loss"] == pytest.approx(losses[1], rel=1e-5)
    # Both workers log the same, globally reduced, metrics for every epoch.
    epoch_lines = [[line.split("tlt.training.callbacks: ", 1)[1] for line in text.splitlines()
                    if "tlt.training.callbacks: epoch " in line] for text in outputs]
    assert len(epoch_lines[0]) == 2 and epoch_lines[0] == epoch_lines[1], epoch_lines
    # The non-chief trains in lockstep but writes nothing.
    assert not (other / "model.tlt").exists()
    assert not (other / "checkpoints").exists()
    assert not (other / "metadata.json").exists() and not (other / "status.json").exists()
    assert not (other / "training_log.csv").exists() and not (other / "events").exists()


# ------------------------------------------------------------------ transfer learning

@pytest.mark.slow
def test_fine_tuning_a_pretrained_model_beats_training_from_scratch(tmp_path, capsys):
    # Pretraining and fine-tuning classes differ, but both are flat coloured shapes on noisy
    # backgrounds: the features (edges, colour, texture statistics, batch-norm moments) carry
    # over. With 2 epochs of 8 images per class, scratch training stays at chance while the
    # pretrained network only has to fit a new head.
    source = make_shapes(tmp_path / "A", classes=("circle", "square", "triangle", "cross"),
                         per_class=(24, 4, 1), seed=1)
    target = make_shapes(tmp_path / "B", classes=("ring", "diamond", "stripes"),
                         per_class=(8, 12, 1), seed=2)
    pre_spec = write_spec(tmp_path / "pre.txt", source / "train", source / "val", epochs=6,
                          learning_rate=0.02)
    assert train_main(["classification", "-e", str(pre_spec), "-r", str(tmp_path / "pre")]) == 0
    capsys.readouterr()

    accuracy = {}
    for name, pretrained in (("fine_tuned", tmp_path / "pre" / "model.tlt"), ("scratch", None)):
        spec = write_spec(tmp_path / f"{name}.txt", target / "train", target / "val", epochs=2,
                          learning_rate=0.02, pretrained=pretrained)
        assert train_main(["classification", "-e", str(spec), "-r", str(tmp_path / name)]) == 0
        err = capsys.readouterr().err
        if pretrained:
            loaded = [line for line in err.splitlines() if "pretrained weights loaded into" in line]
            assert len(loaded) == 1 and "conv1" in loaded[0] and "block_4a_conv_2" in loaded[0]
            skipped = [line for line in err.splitlines() if "pretrained weights skipped" in line]
            assert len(skipped) == 1, skipped
            assert skipped[0].endswith("pretrained weights skipped for predictions: shape "
                                       "[(512, 4), (4,)] in the pretrained model, "
                                       "[(512, 3), (3,)] here")
        else:
            assert "pretrained weights" not in err
        rows = read_csv_rows(tmp_path / name / "training_log.csv")
        accuracy[name] = float(rows[-1][rows[0].index("val_accuracy")])
    assert accuracy["fine_tuned"] >= accuracy["scratch"] + 0.15, accuracy
