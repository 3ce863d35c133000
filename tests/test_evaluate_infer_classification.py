"""``tlt-evaluate classification`` and ``tlt-infer classification`` on a model trained here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cls_fixtures import make_shapes, read_json, write_spec, write_truncated_png
from tlt.cli.evaluate import main as evaluate_main
from tlt.cli.infer import main as infer_main
from tlt.data.classification_input import load_image_for_inference
from tlt.io import modelfile
from tlt.stages import train

CLASSES = ["circle", "square", "triangle"]
KEY = "eval-key"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ResNet-10 trained 3 epochs on 3 shape classes; test split of 5 images per class."""
    root = tmp_path_factory.mktemp("evalinfer")
    data = make_shapes(root / "data", per_class=(10, 3, 5), seed=5)
    spec = write_spec(root / "spec.txt", data / "train", data / "val", epochs=3)
    result = train.run(str(spec), root / "out", key=KEY, progress=False)
    return {"root": root, "data": data, "model": Path(result.model_path)}


def _error_line(stderr: str, prog: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------ evaluate

def test_evaluate_prints_the_table_and_writes_consistent_json(trained, capsys):
    code = evaluate_main(["classification", "-d", str(trained["data"] / "test"),
                          "-pm", str(trained["model"]), "-k", KEY, "-b", "4", "--top_k", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Found 15 images belonging to 3 classes." in captured.err

    default_json = trained["model"].parent / "evaluation.json"
    assert f"Results written to {default_json}" in captured.out
    metrics = read_json(default_json)
    cm = np.array(metrics["confusion_matrix"])
    n = metrics["num_images"]
    assert n == 15 and cm.shape == (3, 3) and cm.sum() == n
    assert metrics["accuracy"] == pytest.approx(np.trace(cm) / n)
    assert sum(row["support"] for row in metrics["per_class"].values()) == n
    assert [metrics["per_class"][c]["support"] for c in CLASSES] == cm.sum(axis=1).tolist()
    for i, name in enumerate(CLASSES):
        row = metrics["per_class"][name]
        assert row["recall"] == pytest.approx(cm[i, i] / cm[i].sum())
        predicted = cm[:, i].sum()
        assert row["precision"] == pytest.approx(cm[i, i] / predicted if predicted else 0.0)
    assert metrics["top_k"] == 2 and metrics["top_k_accuracy"] >= metrics["accuracy"]
    assert metrics["class_names"] == CLASSES and metrics["skipped_images"] == 0
    assert metrics["accuracy"] > 0.5  # the model learned the shapes

    # The printed table carries the same numbers.
    assert f"Accuracy: {metrics['accuracy']:.4f}   Top-2 accuracy: " \
           f"{metrics['top_k_accuracy']:.4f}   Images: 15" in captured.out
    for name in CLASSES:
        row = metrics["per_class"][name]
        assert any(line.startswith(name) and line.split()[1:] == [
            f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
            str(row["support"])] for line in captured.out.splitlines()), captured.out
    assert "Confusion matrix (rows: true class, columns: predicted class):" in captured.out
    matrix_rows = [line.split()[1:] for line in captured.out.splitlines()
                   if line.split() and line.split()[0] in CLASSES and len(line.split()) == 4]
    assert [[int(v) for v in r] for r in matrix_rows] == cm.tolist()


def test_evaluate_skips_a_corrupt_image_and_counts_it(trained, tmp_path, capsys):
    data = _copy_tree(trained["data"] / "test", tmp_path / "test")
    broken = write_truncated_png(data / "square" / "broken.png")
    out = tmp_path / "metrics.json"
    code = evaluate_main(["classification", "-d", str(data), "-pm", str(trained["model"]),
                          "-k", KEY, "--results_json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"skipping {broken}: truncated PNG" in captured.err
    metrics = read_json(out)
    assert metrics["num_images"] == 15 and metrics["skipped_images"] == 1


def test_evaluate_class_folders_must_match_the_model(trained, tmp_path, capsys):
    data = _copy_tree(trained["data"] / "test", tmp_path / "test")
    (data / "triangle").rename(data / "hexagon")
    code = evaluate_main(["classification", "-d", str(data), "-pm", str(trained["model"]),
                          "-k", KEY])
    assert code == 1
    line = _error_line(capsys.readouterr().err, "tlt-evaluate")
    assert line == (f"tlt-evaluate: error: {data}: class folders differ from the model's "
                    f"({trained['model']}) split (missing triangle; unexpected hexagon)")


def test_evaluate_wrong_key_and_missing_model(trained, tmp_path, capsys):
    code = evaluate_main(["classification", "-d", str(trained["data"] / "test"),
                          "-pm", str(trained["model"]), "-k", "not-the-key"])
    assert code == 1
    assert _error_line(capsys.readouterr().err, "tlt-evaluate").endswith(
        "cannot decrypt: wrong key or the file is corrupt")
    code = evaluate_main(["classification", "-d", str(trained["data"] / "test"),
                          "-pm", str(tmp_path / "none.tlt"), "-k", KEY])
    assert code == 1
    assert str(tmp_path / "none.tlt") in _error_line(capsys.readouterr().err, "tlt-evaluate")


# ------------------------------------------------------------------ infer

def _expected(model_path: Path, image: Path) -> tuple[int, float]:
    model, _ = modelfile.load_keras_model(model_path, key=KEY)
    probs = model(load_image_for_inference(str(image), (3, 32, 32))[None]).numpy()[0]
    return int(probs.argmax()), float(probs.max())


def test_infer_single_image_logs_index_name_and_confidence(trained, capsys):
    image = trained["data"] / "test" / "square" / "square_0000.png"
    code = infer_main(["classification", "-m", str(trained["model"]), "-i", str(image),
                       "-k", KEY])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    index, confidence = _expected(trained["model"], image)
    assert f"[INFO] tlt.inference.classification: Class label = {index}" in captured.err
    assert f"Class name = {CLASSES[index]}" in captured.err
    assert f"Confidence = {confidence:.4f}" in captured.err
    assert captured.out.strip() == (f"{image}: class {index} ({CLASSES[index]}), "
                                    f"confidence {confidence:.4f}")


def test_infer_directory_writes_result_csv_for_every_image(trained, tmp_path, capsys):
    images = _copy_tree(trained["data"] / "test", tmp_path / "images")
    broken = write_truncated_png(images / "broken.png")
    code = infer_main(["classification", "-m", str(trained["model"]), "-d", str(images),
                       "-k", KEY, "-b", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"skipping {broken}: truncated PNG" in captured.err
    result = images / "result.csv"
    assert f"Wrote 15 predictions to {result}" in captured.out

    rows = [line.split(",") for line in result.read_text().splitlines()]
    expected_files = sorted(str(p) for p in images.rglob("*.png") if p != broken)
    assert [r[1] for r in rows] == expected_files
    for index, path, name, confidence in rows:
        assert name == CLASSES[int(index)]
        assert 1 / 3 <= float(confidence) <= 1.0
    # Spot-check one row against the model itself.
    first_index, first_conf = _expected(trained["model"], Path(rows[0][1]))
    assert int(rows[0][0]) == first_index and float(rows[0][3]) == pytest.approx(first_conf, abs=1e-5)
    # The folder names are the truth: infer's accuracy equals evaluate's.
    correct = sum(Path(path).parent.name == name for _, path, name, _ in rows)
    assert evaluate_main(["classification", "-d", str(trained["data"] / "test"),
                          "-pm", str(trained["model"]), "-k", KEY,
                          "--results_json", str(tmp_path / "m.json")]) == 0
    assert read_json(tmp_path / "m.json")["accuracy"] == pytest.approx(correct / 15)


def test_infer_class_map_overrides_names_and_must_match_the_model(trained, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in CLASSES:
        shutil.copy(trained["data"] / "test" / name / f"{name}_0001.png", images)
    class_map = tmp_path / "map.json"
    class_map.write_text(json.dumps({"Audi": 0, "BMW": 1, "Mercedes": 2}))
    code = infer_main(["classification", "-m", str(trained["model"]), "-d", str(images),
                       "-k", KEY, "-cm", str(class_map)])
    assert code == 0, capsys.readouterr().err
    rows = [line.split(",") for line in (images / "result.csv").read_text().splitlines()]
    assert len(rows) == 3
    assert all(name == ["Audi", "BMW", "Mercedes"][int(index)] for index, _, name, _ in rows)

    class_map.write_text(json.dumps({"Audi": 0, "BMW": 1}))
    code = infer_main(["classification", "-m", str(trained["model"]), "-d", str(images),
                       "-k", KEY, "-cm", str(class_map)])
    assert code == 1
    assert _error_line(capsys.readouterr().err, "tlt-infer") == \
        "tlt-infer: error: class map has 2 classes, the model predicts 3"


def test_infer_bad_inputs_are_one_clear_line(trained, tmp_path, capsys):
    code = infer_main(["classification", "-m", str(trained["model"]), "-i",
                       str(tmp_path / "nope.png"), "-k", KEY])
    assert code == 1
    assert _error_line(capsys.readouterr().err, "tlt-infer") == \
        f"tlt-infer: error: {tmp_path / 'nope.png'}: image file does not exist"
    (tmp_path / "empty").mkdir()
    code = infer_main(["classification", "-m", str(trained["model"]), "-d",
                       str(tmp_path / "empty"), "-k", KEY])
    assert code == 1
    assert _error_line(capsys.readouterr().err, "tlt-infer") == \
        f"tlt-infer: error: {tmp_path / 'empty'}: no .jpg/.jpeg/.png images found"
    broken = write_truncated_png(tmp_path / "broken.png")
    code = infer_main(["classification", "-m", str(trained["model"]), "-i", str(broken),
                       "-k", KEY])
    assert code == 1
    assert _error_line(capsys.readouterr().err, "tlt-infer") == \
        f"tlt-infer: error: {broken}: truncated PNG image (no IEND chunk)"
