"""Exports and engines are evaluated and run with no TensorFlow in the process.

Each test runs the CLI in a fresh interpreter whose import system refuses ``tensorflow``,
``keras`` and ``tf2onnx`` (`deployed_fixtures.run_without_tensorflow`): any import of them on the
path fails the run, and the process also checks no such module got loaded.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from deployed_fixtures import run_without_tensorflow, shapes_folder, untrained_engine
from det_fixtures import spec_text, tiny_data
from export_fixtures import KEY, exported


@pytest.fixture(scope="module")
def det_data(tmp_path_factory) -> dict:
    return tiny_data(tmp_path_factory.getbasetemp() / "detection_shared")


def _ok(proc) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("TF-FREE"), proc.stdout
    return proc.stdout


def test_the_blocker_really_blocks_tensorflow():
    proc = run_without_tensorflow("""
        try:
            import tensorflow
        except ImportError as err:
            print("blocked:", err)
        """)
    assert "blocked: tensorflow is blocked in this test" in proc.stdout


def test_evaluate_classification_engine(tmp_path):
    out = tmp_path / "eval.json"
    stdout = _ok(run_without_tensorflow(f"""
        from tlt.cli.evaluate import main
        assert main(["classification", "-d", {str(shapes_folder())!r},
                     "-pm", {str(untrained_engine("cls-int8"))!r},
                     "--results_json", {str(out)!r}]) == 0
        """))
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 9 and metrics["runtime"] == "fp32 onnxruntime engine"
    assert f"Accuracy: {metrics['accuracy']:.4f}   Top-{metrics['top_k']} accuracy: " \
           f"{metrics['top_k_accuracy']:.4f}   Images: 9" in stdout
    assert "(fp32 onnxruntime engine, no TensorFlow)" in stdout


def test_infer_classification_etlt(tmp_path):
    images = shutil.copytree(shapes_folder(), tmp_path / "images")
    stdout = _ok(run_without_tensorflow(f"""
        from tlt.cli.infer import main
        assert main(["classification", "-m", {str(exported("cls-int8")["output"])!r},
                     "-d", {str(images)!r}, "-k", {KEY!r}, "-b", "4"]) == 0
        """))
    rows = (images / "result.csv").read_text().splitlines()
    assert f"Wrote 9 predictions to {images / 'result.csv'}" in stdout and len(rows) == 9
    assert {r.split(",")[2] for r in rows} <= {"circle", "square", "triangle"}


def test_evaluate_detection_engine(det_data, tmp_path):
    """Frames read by the pure-Python TFRecord reader, 128x64 resized to the 64x32 engine."""
    spec = tmp_path / "spec.txt"
    spec.write_text(spec_text(det_data, width=64, height=32), encoding="utf-8")
    out = tmp_path / "eval.json"
    stdout = _ok(run_without_tensorflow(f"""
        from tlt.cli.evaluate import main
        assert main(["detection", "-e", {str(spec)!r}, "-m", {str(untrained_engine("det"))!r},
                     "--results_json", {str(out)!r}]) == 0
        """))
    report = json.loads(out.read_text())
    assert report["runtime"] == "fp32 onnxruntime engine" and report["validation_cost"] is None
    found = re.search(r"^Found (\d+) samples in validation set$", stdout, re.MULTILINE)
    assert found and int(found.group(1)) == report["num_frames"] > 0
    assert "Validation cost: n/a (needs the .tlt model's training loss)" in stdout
    assert re.search(r"^mAP\s", stdout, re.MULTILINE), stdout


def test_infer_detection_onnx_export(tmp_path):
    images = shutil.copytree(shapes_folder() / "triangle", tmp_path / "images")
    out = tmp_path / "out"
    stdout = _ok(run_without_tensorflow(f"""
        from tlt.cli.infer import main
        assert main(["detection", "-m", {str(exported("det")["output"])!r}, "-i", {str(images)!r},
                     "-o", {str(out)!r}, "-k", "-bo", "-g", "0"]) == 0
        """))
    assert "Processed 3 image(s)" in stdout
    assert sorted(p.suffix for p in (out / "labels").iterdir()) == [".txt"] * 3
    assert len(list((out / "images_annotated").iterdir())) == 3
