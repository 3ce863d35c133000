"""Exports and engines given to tlt-evaluate / tlt-infer: each bad input is one clear line."""

from __future__ import annotations

import shutil

import pytest

from deployed_fixtures import shapes_folder, untrained_engine
from det_fixtures import run_main, spec_text
from export_fixtures import KEY, exported
from tlt.cli.evaluate import main as evaluate_main
from tlt.cli.infer import main as infer_main
from tlt.engines.sidecar import read_sidecar, write_sidecar


def _error_line(stderr: str, prog: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), stderr
    return lines[0]


def test_wrong_key_for_an_etlt_says_the_key_is_wrong():
    etlt = exported("cls-int8")["output"]
    code, _, stderr = run_main(evaluate_main, "classification", "-d", shapes_folder(),
                               "-pm", etlt, "-k", "not-the-key")
    assert code == 1
    assert _error_line(stderr, "tlt-evaluate") == (
        f"tlt-evaluate: error: {etlt}: cannot decrypt: wrong key or the file is corrupt")


def test_etlt_without_a_key_asks_for_it():
    etlt = exported("cls-int8")["output"]
    code, _, stderr = run_main(infer_main, "classification", "-m", etlt, "-d", shapes_folder())
    assert code == 1
    assert _error_line(stderr, "tlt-infer") == (
        f"tlt-infer: error: {etlt} is encrypted: pass the key with -k or TLT_KEY")


def test_engine_without_its_sidecar(tmp_path):
    lonely = tmp_path / "lonely.engine"
    shutil.copy(untrained_engine("cls-int8"), lonely)
    code, _, stderr = run_main(evaluate_main, "classification", "-d", shapes_folder(),
                               "-pm", lonely)
    assert code == 1
    assert _error_line(stderr, "tlt-evaluate") == (
        f"tlt-evaluate: error: {lonely}: no engine sidecar lonely.engine.json next to it "
        "(tlt-converter writes both files; copy them together)")


def test_tensorrt_plan_on_a_machine_without_tensorrt(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed")
    except ImportError:
        pass
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\x00not a real plan: the loader stops before reading it")
    info = read_sidecar(untrained_engine("cls-int8"))
    info.backend, info.created = "tensorrt", ""
    write_sidecar(plan, info)
    code, _, stderr = run_main(evaluate_main, "classification", "-d", shapes_folder(), "-pm", plan)
    assert code == 1
    assert _error_line(stderr, "tlt-evaluate") == (
        "tlt-evaluate: error: TensorRT is not installed in this environment (Python package "
        "'tensorrt' from NVIDIA's index, with a GPU and CUDA); build a CPU engine with "
        "--backend onnxruntime")


def test_detection_engine_built_for_another_input_size(tmp_path):
    """The engine takes 3 x 32 x 64; the spec's network input is 3 x 64 x 128: both named."""
    engine = untrained_engine("det")
    spec = tmp_path / "spec.txt"
    spec.write_text(spec_text({"tfrecords": str(tmp_path / "none*"), "root": str(tmp_path)},
                              width=128, height=64), encoding="utf-8")
    code, _, stderr = run_main(evaluate_main, "detection", "-e", spec, "-m", engine)
    assert code == 1
    assert _error_line(stderr, "tlt-evaluate") == (
        f"tlt-evaluate: error: {engine}: the engine takes 3 x 32 x 64 (C x H x W) input, but the "
        "spec's network input (augmentation_config.preprocessing output_image_channel x "
        "output_image_height x output_image_width) is 3 x 64 x 128; use a model built for that "
        "size or the spec it was trained with")


def test_classifier_engine_given_to_detection(tmp_path):
    engine = untrained_engine("cls-int8")
    spec = tmp_path / "spec.txt"
    spec.write_text(spec_text({"tfrecords": str(tmp_path / "none*"), "root": str(tmp_path)}),
                    encoding="utf-8")
    code, _, stderr = run_main(evaluate_main, "detection", "-e", spec, "-m", engine)
    assert code == 1
    assert _error_line(stderr, "tlt-evaluate") == (
        f"tlt-evaluate: error: {engine}: is a classification model, not a detection model")


def test_onnx_without_tlt_metadata(tmp_path):
    """An ONNX graph made elsewhere lacks classes and preprocessing: say what to do."""
    import onnx

    from tlt.io.exportfile import load_export

    plain = tmp_path / "foreign.onnx"
    graph = onnx.load_from_string(load_export(exported("cls-int8")["output"], KEY).onnx_bytes)
    onnx.save(graph, plain)
    code, _, stderr = run_main(infer_main, "classification", "-m", plain, "-d", shapes_folder())
    assert code == 1
    assert _error_line(stderr, "tlt-infer") == (
        f"tlt-infer: error: {plain}: an ONNX graph without tlt-export's metadata (task, classes, "
        "preprocessing); export the .tlt with tlt-export")


def test_detection_output_the_model_lacks(tmp_path):
    images = tmp_path / "images"
    shutil.copytree(shapes_folder() / "circle", images)
    code, _, stderr = run_main(infer_main, "detection", "-m", untrained_engine("det"), "-i", images,
                               "-o", tmp_path / "out", "-k", "--output_cov", "coverage")
    assert code == 1
    assert _error_line(stderr, "tlt-infer") == (
        f"tlt-infer: error: {untrained_engine('det')}: has no output 'coverage'; its outputs are "
        "output_cov/Sigmoid, output_bbox/BiasAdd")
