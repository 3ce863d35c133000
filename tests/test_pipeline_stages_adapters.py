"""The prune, retrain, export and build_engine adapters and the comparing evaluate, chained on a
tiny classifier the way the pipelines chain them (folders in, folders and metadata out)."""

import json
from pathlib import Path

import pytest

from tlt.errors import PipelineError
from tlt.orchestration import adapters
from tlt.orchestration.model_cards import ModelCard, comparison_html, insert_section, model_file

KEY = "pipeline-stage-key"

SPEC = """\
model_config { arch: "resnet" n_layers: 10 input_image_size: "3,32,32" }
train_config {
  optimizer: "adam"
  batch_size_per_gpu: 8
  n_epochs: 2
  n_workers: 2
  reg_config { type: "L1" scope: "Conv2D,Dense" weight_decay: 0.00005 }
  lr_config { scheduler: "cosine" learning_rate: 0.002 soft_start: 0.1 }
  checkpoint_interval: 1
}
random_seed: 42
"""


def _eval_params(data_dir, **extra):
    params = {"task": "classification", "data_dir": str(data_dir), "spec": "", "mode": "",
              "batch_size": 16, "top_k": 2, "framework": "", "labels": ""}
    params.update(extra)
    return params


def _eval_outputs(root: Path) -> dict:
    return {"metrics": str(root / "metrics"), "confusion": str(root / "confusion"),
            "report": str(root / "report.html"), "scored_model": str(root / "scored")}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Run train -> prune -> retrain -> export -> build_engine (fp32 and int8) once."""
    from tlt.data.synthetic import make_classification_dataset

    mp = pytest.MonkeyPatch()
    mp.setenv("TLT_KEY", KEY)
    root = tmp_path_factory.mktemp("chain")
    data = root / "data"
    make_classification_dataset(data, images_per_class=(16, 8, 8), size=32, seed=5)
    common = {"task": "classification", "spec": SPEC, "train_dataset": str(data / "train"),
              "val_dataset": str(data / "val"), "gpus": 1}
    meta = {}
    meta["train"] = adapters.train(common, {}, {"model": str(root / "trained")})
    meta["prune"] = adapters.prune(
        {"pruning_threshold": 0.05, "normalizer": "L2", "equalization_criterion": "union",
         "pruning_granularity": 8, "min_num_filters": 8, "excluded_layers": ""},
        {"model": str(root / "trained")}, {"pruned_model": str(root / "pruned")})
    meta["retrain"] = adapters.retrain({**common, "epochs": 1},
                                       {"pretrained_model": str(root / "pruned")},
                                       {"model": str(root / "retrained")})
    meta["export"] = adapters.export(
        {"data_type": "int8", "batches": 2, "cal_batch_size": 8, "max_batch_size": 16,
         "cal_data_dir": str(data / "train")},
        {"model": str(root / "retrained")}, {"export": str(root / "export")})
    for precision in ("fp32", "int8"):
        meta[precision] = adapters.build_engine(
            {"precision": precision, "max_batch_size": 16, "batch_size": 8, "backend": "onnxruntime"},
            {"export": str(root / "export")}, {"engine": str(root / f"engine_{precision}")})
    yield root, data, meta
    mp.undo()


@pytest.mark.slow
def test_prune_and_retrain_keep_the_pruned_model(chain):
    from tlt.io.modelfile import load_keras_model

    root, _, meta = chain
    pruned = meta["prune"]["pruned_model"]
    assert pruned["params_after"] < pruned["params_before"]
    assert pruned["pruning_ratio"] == pytest.approx(pruned["params_after"] / pruned["params_before"])
    assert pruned["settings"]["pruning_threshold"] == 0.05
    retrained = meta["retrain"]["model"]
    assert retrained["stage"] == "retrain" and retrained["epochs"] == 1
    assert retrained["pruning"]["params_after"] == pruned["params_after"]
    model, _ = load_keras_model(str(root / "retrained" / "model.tlt"), key=KEY)
    # Retraining keeps the pruned graph: as many parameters as the pruned model, not the original.
    assert model.count_params() == pruned["params_after"]


@pytest.mark.slow
def test_export_and_engines_describe_themselves(chain):
    root, _, meta = chain
    exported = meta["export"]["export"]
    assert exported["model"] == "model.etlt" and exported["encrypted"] is True
    assert exported["calibration_cache"] == "cal.bin" and (root / "export" / "cal.bin").is_file()
    assert exported["input_dims"] == [3, 32, 32]
    assert exported["output_names"] == ["predictions/Softmax"]
    assert any(f.endswith("config.pbtxt") for f in exported["files"])
    assert any(f.endswith("labels.txt") for f in exported["files"])
    for precision in ("fp32", "int8"):
        engine = meta[precision]["engine"]
        assert engine["format"] == "engine" and engine["precision"] == precision
        assert engine["input_dims"] == [3, 32, 32]
        assert engine["output_names"] == ["predictions/Softmax"]
        assert engine["size_bytes"] == (root / f"engine_{precision}" / "model.engine").stat().st_size
        on_disk = json.loads((root / f"engine_{precision}" / "metadata.json").read_text())
        assert on_disk["model"] == "model.engine" and on_disk["stage"] == "build_engine"


@pytest.mark.slow
def test_pruning_evaluation_compares_before_and_after(chain, tmp_path):
    root, data, meta = chain
    out = _eval_outputs(tmp_path)
    result = adapters.evaluate(_eval_params(data / "test", labels="unpruned,pruned + retrained"),
                               {"model": str(root / "retrained"), "compare_a": str(root / "trained")},
                               out)
    metrics = result["metrics"]
    assert metrics["unpruned_params"] == meta["prune"]["pruned_model"]["params_before"]
    assert metrics["pruned_retrained_params"] == meta["prune"]["pruned_model"]["params_after"]
    assert metrics["pruned_retrained_accuracy"] == pytest.approx(100 * metrics["accuracy"])
    assert metrics["unpruned_images_per_second"] > 0 and metrics["pruned_retrained_images_per_second"] > 0
    assert metrics["pruned_retrained_size_bytes"] < metrics["unpruned_size_bytes"]
    report = Path(out["report"]).read_text()
    assert "Before and after pruning" in report and "pruned + retrained" in report
    assert result["report"]["models_compared"] == 2
    card = result["scored_model"]
    assert card["format"] == "tlt" and card["accuracy"] == pytest.approx(100 * metrics["accuracy"])


@pytest.mark.slow
def test_engine_evaluation_compares_keras_fp32_and_int8(chain, tmp_path):
    root, data, _ = chain
    out = _eval_outputs(tmp_path)
    result = adapters.evaluate(
        _eval_params(data / "test", framework="engine"),
        {"model": str(root / "engine_int8"), "compare_a": str(root / "retrained"),
         "compare_b": str(root / "engine_fp32")}, out)
    metrics = result["metrics"]
    keras = metrics["keras_tlt_accuracy"]
    fp32 = metrics["fp32_onnxruntime_engine_accuracy"]
    int8 = metrics["int8_onnxruntime_engine_accuracy"]
    assert fp32 == pytest.approx(keras, abs=0.1)
    # 16 test images of a model trained for 3 epochs, calibrated on 16 images: int8 may flip up to
    # two of them (6.25 pt each); the 0.5 pt of issue 9 is measured on real data by bench/engine.py.
    assert abs(int8 - keras) <= 2 * 100 / 16 + 1e-6
    card = result["scored_model"]
    assert card["format"] == "engine" and card["precision"] == "int8"
    assert card["input_dims"] == [3, 32, 32] and card["output_names"] == ["predictions/Softmax"]
    assert card["accuracy"] == pytest.approx(int8) and card["size_bytes"] > 0
    assert (tmp_path / "scored" / "model.engine").is_file()
    assert (tmp_path / "scored" / "model.engine.json").is_file()
    report = Path(out["report"]).read_text()
    assert "Keras model and deployed engines" in report
    assert report.index("Keras (.tlt)") < report.index("fp32 onnxruntime engine") < report.index(
        "int8 onnxruntime engine")


def test_model_file_prefers_metadata_then_suffix(tmp_path):
    (tmp_path / "b.onnx").write_bytes(b"x")
    (tmp_path / "a.engine").write_bytes(b"x")
    assert model_file(tmp_path).name == "a.engine"
    (tmp_path / "metadata.json").write_text(json.dumps({"model": "b.onnx"}))
    assert model_file(tmp_path).name == "b.onnx"
    with pytest.raises(PipelineError, match="no model file"):
        model_file(tmp_path / "empty")


def test_comparison_table_is_relative_to_the_first_row():
    cards = [ModelCard("unpruned", "a.tlt", "tlt", "fp32", [3, 8, 8], ["p"], 4_000_000, 1000, 100.0, 90.0),
             ModelCard("pruned", "b.tlt", "tlt", "fp32", [3, 8, 8], ["p"], 1_000_000, 250, 250.0, 89.5)]
    section = comparison_html("Before and after pruning", cards, "accuracy")
    assert "<td>0.25x</td>" in section and "<td>2.50x</td>" in section and "<td>-0.50</td>" in section
    assert "<td>250</td>" in section and "<td>1.000</td>" in section
    page = insert_section("<html><body><h1>Report</h1><p>x</p></body></html>", section)
    assert page.index("</h1>") < page.index("Before and after pruning") < page.index("<p>x</p>")


def test_export_int8_without_calibration_images_is_one_line(tmp_path):
    (tmp_path / "model.tlt").write_bytes(b"not read: the calibration check comes first")
    with pytest.raises(PipelineError, match="data_type int8 needs calibration images"):
        adapters.export({"data_type": "int8", "batches": 1, "cal_batch_size": 1,
                         "max_batch_size": 1, "cal_data_dir": ""},
                        {"model": str(tmp_path)}, {"export": str(tmp_path / "out")})
