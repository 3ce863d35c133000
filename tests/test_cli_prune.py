"""``tlt-prune`` end to end: encrypted .tlt in, valid encrypted .tlt out (same inputs, outputs and
classes, fewer parameters, settings and counts in its metadata), TLT's log lines, one clear line
for every bad input."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from cli_processes import VENV_BIN, subprocess_env
from prune_helpers import CLASSES, build, kill_fraction, randomize, save_model
from tlt.cli.prune import main
from tlt.errors import ModelKeyError
from tlt.io.modelfile import load_keras_model, read_model_header, save_keras_model

KEY = "nvidia_tlt"
EXACT = ["-pth", "0.01", "-pg", "1", "-nf", "1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Encrypted .tlt files of a ResNet-10 classifier (a quarter of its filters dead) and a
    ResNet-10 DetectNet_v2, with the original Keras models and a fixed input batch."""
    base = tmp_path_factory.mktemp("prune_models")
    found = {}
    for task in ("classification", "detection"):
        model = build("resnet10", task)
        randomize(model)
        _, expected = kill_fraction(model, 0.25)
        path = save_model(model, base / f"{task}.tlt", task, key=KEY)
        found[task] = {"path": path, "model": model, "expected": expected}
    found["x"] = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype("float32")
    return found


def _run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err


def _outputs(model, x):
    out = model(x, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def test_prune_classification_model(models, tmp_path, capsys):
    src = models["classification"]
    out = tmp_path / "pruned.tlt"
    code, err = _run(capsys, "-pm", src["path"], "-o", out, "-k", KEY, *EXACT)
    assert code == 0, err

    pruned, meta = load_keras_model(out, key=KEY)
    original = src["model"]
    assert read_model_header(out)["encrypted"] is True
    with pytest.raises(ModelKeyError):
        load_keras_model(out, key="not-the-key")
    assert [t.name for t in pruned.inputs] == ["input_1"]
    assert [tuple(t.shape) for t in pruned.inputs] == [tuple(t.shape) for t in original.inputs]
    assert pruned.output_names == original.output_names == ["predictions"]
    assert [tuple(t.shape) for t in pruned.outputs] == [(None, len(CLASSES))]
    # Only dead filters went: the file's model answers exactly as the original did.
    for a, b in zip(_outputs(pruned, models["x"]), _outputs(original, models["x"])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    info = meta["pruning"]
    assert meta["task"] == "classification" and meta["classes"] == list(CLASSES)
    assert info["params_before"] == original.count_params()
    assert info["params_after"] == pruned.count_params() < info["params_before"]
    assert info["pruning_ratio"] == pytest.approx(info["params_after"] / info["params_before"])
    assert info["settings"] == {"normalizer": "max", "equalization_criterion": "union",
                                "pruning_granularity": 1, "pruning_threshold": 0.01,
                                "min_num_filters": 1, "excluded_layers": []}
    assert {k: v[1] for k, v in info["widths"].items()} == src["expected"]
    assert f"Parameters before pruning: {info['params_before']}" in err
    assert f"Parameters after pruning: {info['params_after']}" in err
    assert re.search(rf"\[INFO\] tlt\.stages\.prune: Pruning ratio: "
                     rf"{re.escape(str(info['pruning_ratio']))}$", err, re.M)


def test_prune_detection_model_into_an_artifact_folder(models, tmp_path, capsys):
    src = models["detection"]
    out = tmp_path / "pruned"
    code, err = _run(capsys, "-pm", src["path"], "-o", out, "-k", KEY, "-pth", "0.5")
    assert code == 0, err

    pruned, meta = load_keras_model(out / "model.tlt", key=KEY)
    original = src["model"]
    assert pruned.output_names == original.output_names == ["output_cov", "output_bbox"]
    assert [tuple(t.shape) for t in pruned.outputs] == [(None, 3, 2, 2), (None, 12, 2, 2)]
    assert pruned.get_layer("output_cov_conv").get_weights()[0].shape[-1] == 3
    assert meta["output_names"] == ["output_cov", "output_bbox"]
    assert meta["pruning"]["settings"]["pruning_granularity"] == 8  # the guide's defaults
    assert meta["pruning"]["settings"]["min_num_filters"] == 16
    widths = meta["pruning"]["widths"]
    assert all(after % 8 == 0 or after == before for before, after in widths.values())
    assert all(after >= min(16, before) for before, after in widths.values())

    record = json.loads((out / "metadata.json").read_text())
    assert record["stage"] == "prune"
    assert record["parents"] == [{"uri": src["path"]}]
    assert record["model"] == "model.tlt" and record["encrypted"] is True
    assert record["params_after"] == pruned.count_params()
    assert record["params_before"] == original.count_params()


def test_verbose_lists_every_layer_width(models, tmp_path, capsys):
    code, err = _run(capsys, "-pm", models["classification"]["path"], "-o", tmp_path / "p.tlt",
                     "-k", KEY, "-v", *EXACT, "-el", "block_4a_conv_1")
    assert code == 0, err
    expected = models["classification"]["expected"]
    assert f"block_1a_conv_1: 64 -> {expected['block_1a_conv_1']} filters" in err
    assert "block_4a_conv_1: 512 -> 512 filters (kept: block_4a_conv_1: excluded layer " \
           "block_4a_conv_1)" in err
    assert "predictions: 3 -> 3 filters (kept: predictions: feeds model output predictions)" in err


def test_help_shows_the_guides_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["-h"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--normalizer", "max"), ("--equalization_criterion", "union"),
                          ("--pruning_granularity", "8"), ("--pruning_threshold", "0.1"),
                          ("--min_num_filters", "16"), ("--excluded_layers", "[]")):
        assert flag in text
        assert f"(default: {default})" in text


def _not_a_model(tmp_path):
    path = tmp_path / "notes.tlt"
    path.write_text("just text\n")
    return path


def _foreign_model(tmp_path):
    import keras

    inputs = keras.Input((4,), name="x")
    path = tmp_path / "foreign.tlt"
    save_keras_model(keras.Model(inputs, keras.layers.Dense(2)(inputs)), str(path), {}, key=KEY)
    return path


@pytest.mark.parametrize("case, code, message", [
    ("threshold_zero", 2, "--pruning_threshold must be in (0, 1], got 0"),
    ("threshold_above_one", 2, "--pruning_threshold must be in (0, 1], got 1.01"),
    ("granularity_zero", 2, "--pruning_granularity must be >= 1, got 0"),
    ("min_filters_zero", 2, "--min_num_filters must be >= 1, got 0"),
    ("unknown_layer", 2, "--excluded_layers: the model has no layer named 'block_1a_bn_9'; "
                         "closest: block_1a_bn_2, block_1a_bn_1"),
    ("wrong_key", 1, "cannot decrypt: wrong key or the file is corrupt"),
    ("not_a_model", 1, "not a TLT model file (bad magic bytes)"),
    ("foreign_model", 1, "not a model of this toolkit (its metadata names no task of "
                         "classification, detection)"),
    ("missing", 1, "no such model file"),
])
def test_bad_input_gives_one_line(models, tmp_path, capsys, case, code, message):
    model, key, extra = models["classification"]["path"], KEY, []
    if case == "threshold_zero":
        extra = ["-pth", "0"]
    elif case == "threshold_above_one":
        extra = ["-pth", "1.01"]
    elif case == "granularity_zero":
        extra = ["-pg", "0"]
    elif case == "min_filters_zero":
        extra = ["-nf", "0"]
    elif case == "unknown_layer":
        extra = ["-el", "block_1a_bn_9"]
    elif case == "wrong_key":
        key = "guess"
    elif case == "not_a_model":
        model = _not_a_model(tmp_path)
    elif case == "foreign_model":
        model = _foreign_model(tmp_path)
    elif case == "missing":
        model = tmp_path / "absent.tlt"
    rc, err = _run(capsys, "-pm", model, "-o", tmp_path / "out.tlt", "-k", key, *extra)
    assert rc == code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tlt-prune: error: ") and message in lines[0]
    assert not (tmp_path / "out.tlt").exists()


@pytest.mark.slow  # a fresh TensorFlow process: ~20 s on a quiet machine, more on a busy one
def test_installed_entry_point_reads_the_key_from_the_environment(models, tmp_path):
    out = tmp_path / "pruned.tlt"
    proc = subprocess.run([str(VENV_BIN / "tlt-prune"), "-pm", models["classification"]["path"],
                           "-o", str(out), "-pth", "0.3"],
                          capture_output=True, text=True, timeout=600,
                          env=subprocess_env(TLT_KEY=KEY))
    assert proc.returncode == 0, proc.stderr
    assert "Pruning model and appending pruned nodes to new graph" in proc.stderr
    assert "Pruning ratio: " in proc.stderr
    assert read_model_header(out)["encrypted"] is True
    _, meta = load_keras_model(out, key=KEY)
    assert meta["pruning"]["settings"]["pruning_threshold"] == 0.3


def test_prune_from_and_to_object_storage(models, s3_bucket, capsys):
    from tlt.io import storage

    src = f"{s3_bucket}/models/classification.tlt"
    storage.write_bytes(src, open(models["classification"]["path"], "rb").read())
    out = f"{s3_bucket}/pruned"
    code, err = _run(capsys, "-pm", src, "-o", out, "-k", KEY, *EXACT)
    assert code == 0, err
    record = json.loads(storage.read_text(f"{out}/metadata.json"))
    assert record["stage"] == "prune" and record["parents"] == [{"uri": src}]
    assert record["tlt_version"] and record["created"]
    pruned, meta = load_keras_model(f"{out}/model.tlt", key=KEY)
    assert record["params_after"] == meta["pruning"]["params_after"] == pruned.count_params()
