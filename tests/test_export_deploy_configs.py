"""DeepStream nvinfer configs, labels files and Triton model repositories written by tlt-export."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from export_fixtures import DET_DIMS, KEY, classifier_tlt, detector_tlt, random_batch
from tlt.export import ExportOptions, export_model

SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "triton-model_config.proto"


@pytest.fixture(scope="module")
def model_config_class(tmp_path_factory):
    """Triton's ModelConfig message, compiled from ../shared/schemas with grpc_tools' protoc."""
    if not SCHEMA.is_file():
        pytest.skip("../shared/schemas/triton-model_config.proto is not present")
    import importlib

    out = tmp_path_factory.mktemp("triton_proto")
    # The file name becomes the module name, which cannot hold a '-'.
    (out / "triton_model_config.proto").write_bytes(SCHEMA.read_bytes())
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{out}", f"--python_out={out}",
                    "triton_model_config.proto"], check=True)
    sys.path.insert(0, str(out))
    try:
        module = importlib.import_module("triton_model_config_pb2")
    finally:
        sys.path.remove(str(out))
    return module.ModelConfig


def _ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",))
    parser.optionxform = str  # nvinfer keys are case-sensitive (minBoxes)
    parser.read(path)
    return parser


@pytest.fixture(scope="module")
def detection_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("det_deploy")
    path, _ = detector_tlt()
    return export_model(str(path), KEY, ExportOptions(
        output=str(out / "detector.onnx"), max_batch_size=8, gen_ds_config=True,
        gen_triton_config=True))


def test_detection_nvinfer_config(detection_export):
    ds = _ini(Path(detection_export.ds_config))
    prop = ds["property"]
    assert float(prop["net-scale-factor"]) == pytest.approx(1 / 127.5)
    assert prop["offsets"] == "127.5;127.5;127.5"
    assert prop["model-color-format"] == "0"
    assert prop["onnx-file"] == "detector.onnx"
    assert prop["infer-dims"] == "3;32;64"
    assert prop["output-blob-names"] == "output_cov/Sigmoid;output_bbox/BiasAdd"
    assert prop["num-detected-classes"] == "2"
    assert prop["network-type"] == "0" and prop["network-mode"] == "0"
    assert prop["batch-size"] == "8"
    assert prop["labelfile-path"] == "labels.txt"
    # car clusters with DBSCAN, pedestrian with NMS in the spec: nvinfer has one mode -> DBSCAN.
    assert prop["cluster-mode"] == "1"
    car, pedestrian = ds["class-attrs-0"], ds["class-attrs-1"]
    assert dict(car) == {"pre-cluster-threshold": "0.005", "post-cluster-threshold": "0.1",
                         "detected-min-h": "4", "eps": "0.15", "minBoxes": "1",
                         "dbscan-min-score": "0.05"}
    assert pedestrian["pre-cluster-threshold"] == "0.02"
    assert pedestrian["eps"] == "0.3" and pedestrian["dbscan-min-score"] == "0.1"
    assert pedestrian["detected-min-h"] == "6"
    labels = Path(detection_export.labels_file)
    assert labels.read_text() == "car\npedestrian\n"


def test_nvinfer_scaling_reproduces_the_training_preprocessing(detection_export):
    prop = _ini(Path(detection_export.ds_config))["property"]
    pixels = np.array([0.0, 63.0, 127.5, 255.0])
    offsets = np.array([float(v) for v in prop["offsets"].split(";")])
    nvinfer = float(prop["net-scale-factor"]) * (pixels - offsets[0])
    np.testing.assert_allclose(nvinfer, pixels / 127.5 - 1.0, atol=1e-7)


def test_classification_int8_etlt_nvinfer_config_and_labels(tmp_path):
    from export_fixtures import calibration_images

    path, _ = classifier_tlt()
    result = export_model(str(path), KEY, ExportOptions(
        output=str(tmp_path / "cls.etlt"), data_type="int8", cal_data_file=str(calibration_images()),
        cal_cache_file=str(tmp_path / "cal.bin"), batches=1, cal_batch_size=4, gen_ds_config=True))
    prop = _ini(Path(result.ds_config))["property"]
    assert prop["tlt-encoded-model"] == "cls.etlt"
    assert prop["tlt-model-key"] == "<TLT_KEY>"  # the real key never lands in a config file
    assert KEY not in Path(result.ds_config).read_text()
    assert prop["network-type"] == "1" and prop["network-mode"] == "1"
    assert prop["int8-calib-file"] == "cal.bin"
    assert prop["output-blob-names"] == "predictions/Softmax"
    assert "num-detected-classes" not in prop
    # nvinfer classifiers take the labels of one output on one line, ';'-separated.
    assert Path(result.labels_file).read_text() == "circle;square;triangle\n"


def test_triton_repository_parses_as_model_config_and_serves_the_graph(detection_export,
                                                                       model_config_class):
    from google.protobuf import text_format

    folder = Path(detection_export.triton_model_dir)
    assert folder.name == "detector" and folder.parent.name == "model_repository"
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_class())
    assert config.name == "detector" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    (inp,) = config.input
    assert inp.name == "input_1" and list(inp.dims) == list(DET_DIMS)
    assert model_config_class.DESCRIPTOR.fields_by_name["input"].message_type.enum_values_by_name[
        "FORMAT_NCHW"].number == inp.format
    assert [(o.name, list(o.dims)) for o in config.output] == [
        ("output_cov/Sigmoid", [2, 2, 4]), ("output_bbox/BiasAdd", [8, 2, 4])]
    assert list(config.dynamic_batching.preferred_batch_size) == [1, 4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    # The repository's model answers with the shapes the config declares.
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input_1": random_batch(2, DET_DIMS)})
    assert [list(o.shape[1:]) for o in outputs] == [list(o.dims) for o in config.output]


def test_triton_classifier_has_labels(tmp_path, model_config_class):
    from google.protobuf import text_format

    path, _ = classifier_tlt()
    result = export_model(str(path), KEY, ExportOptions(output=str(tmp_path / "cls 1.onnx"),
                                                        gen_triton_config=True))
    folder = Path(result.triton_model_dir)
    assert folder.name == "cls_1"  # Triton model names have no spaces
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_class())
    assert config.output[0].label_filename == "labels.txt"
    assert list(config.output[0].dims) == [3]
    assert (folder / "labels.txt").read_text() == "circle\nsquare\ntriangle\n"
