"""Helpers of the export and engine tests: tiny untrained .tlt models, calibration images, exports.

The models are built, not trained: export and engine tests compare the exported graph with the
Keras model it came from, which needs weights, not accuracy. Everything is built once per test
session (``_ONCE``) and shared by the test modules that import these helpers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tlt.data.classification_input import PREPROCESSING

__all__ = ["KEY", "CLS_DIMS", "DET_DIMS", "DET_CLASSES", "detection_spec_text", "tiny_classifier",
           "tiny_detector", "classifier_tlt", "detector_tlt", "calibration_images", "exported",
           "random_batch", "work_dir"]

KEY = "export-test-key"
CLS_DIMS = (3, 32, 32)
DET_DIMS = (3, 32, 64)
DET_CLASSES = ["car", "pedestrian"]
_REPO = Path(__file__).resolve().parents[1]
_ONCE: dict[str, object] = {}


def work_dir() -> Path:
    """A session-wide scratch folder for the shared artifacts."""
    if "dir" not in _ONCE:
        _ONCE["tmp"] = tempfile.TemporaryDirectory(prefix="tlt-export-tests-")
        _ONCE["dir"] = Path(_ONCE["tmp"].name)
    return _ONCE["dir"]  # type: ignore[return-value]


def detection_spec_text() -> str:
    """The tiny detection spec with NMS for pedestrians (so per-class settings differ)."""
    text = (_REPO / "examples" / "specs" / "detection_tiny.txt").read_text(encoding="utf-8")
    old = """    key: "pedestrian"
    value {
      clustering_config {
        coverage_threshold: 0.005
        dbscan_eps: 0.15
        dbscan_min_samples: 0.05
        minimum_bounding_box_height: 4
      }"""
    new = """    key: "pedestrian"
    value {
      clustering_config {
        coverage_threshold: 0.02
        dbscan_eps: 0.3
        dbscan_min_samples: 0.1
        minimum_bounding_box_height: 6
        clustering_algorithm: NMS
        nms_iou_threshold: 0.4
      }"""
    assert text.count(old) == 1, "examples/specs/detection_tiny.txt changed: update this helper"
    return text.replace(old, new)


def tiny_classifier(arch: str = "resnet", n_layers: int = 10, dims=CLS_DIMS, classes: int = 3):
    """An untrained classifier with random batch-norm statistics (so folding is exercised)."""
    from tlt.models.classifier import build_classifier

    config = SimpleNamespace(arch=arch, n_layers=n_layers, use_batch_norm=True,
                             input_image_size=",".join(map(str, dims)))
    return _randomize_bn(build_classifier(config, classes))


def tiny_detector(arch: str = "resnet", n_layers: int = 10, dims=DET_DIMS):
    """An untrained DetectNet_v2 on the tiny spec's model_config, at ``dims``."""
    from tlt import spec
    from tlt.models.detectnet_v2.model import build_detectnet_v2

    experiment = spec.loads(detection_spec_text(), "detection", path="<tiny spec>")
    config = experiment.model_config
    config.template = arch
    config.num_layers = n_layers
    return _randomize_bn(build_detectnet_v2(config, DET_CLASSES, input_height=dims[1],
                                            input_width=dims[2], channels=dims[0],
                                            allow_small_input=True))


def _randomize_bn(model):
    import keras

    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.1, beta.shape).astype("float32"),
                               rng.normal(0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.5, 1.5, var.shape).astype("float32")])
    return model


def classifier_tlt(key: str | None = KEY) -> tuple[Path, object]:
    """``(path, keras model)`` of the shared ResNet-10 classifier .tlt (3 classes, 3x32x32)."""
    name = f"cls-{bool(key)}"
    if name not in _ONCE:
        from tlt.io.modelfile import save_keras_model

        model = tiny_classifier()
        path = work_dir() / f"classifier{'' if key else '_plain'}.tlt"
        save_keras_model(model, path, {"task": "classification", "arch": "resnet", "n_layers": 10,
                                       "classes": ["circle", "square", "triangle"],
                                       "input_dims": list(CLS_DIMS),
                                       "preprocessing": PREPROCESSING}, key=key)
        _ONCE[name] = (path, model)
    return _ONCE[name]  # type: ignore[return-value]


def detector_tlt() -> tuple[Path, object]:
    """``(path, keras model)`` of the shared DetectNet_v2 ResNet-10 .tlt (car, pedestrian)."""
    if "det" not in _ONCE:
        from tlt.io.modelfile import save_keras_model

        model = tiny_detector()
        path = work_dir() / "detector.tlt"
        save_keras_model(model, path, {
            "task": "detection", "arch": "resnet", "n_layers": 10, "classes": DET_CLASSES,
            "input_dims": list(DET_DIMS), "preprocessing": PREPROCESSING, "stride": 16,
            "bbox_scale": 35.0, "bbox_offset": 0.5, "output_names": ["output_cov", "output_bbox"],
            "spec": detection_spec_text()}, key=KEY)
        _ONCE["det"] = (path, model)
    return _ONCE["det"]  # type: ignore[return-value]


def calibration_images(count: int = 8) -> Path:
    """A folder of ``count`` synthetic 40x40 PNG images (sizes differ from the input: resized)."""
    name = f"images-{count}"
    if name not in _ONCE:
        from tlt.data.synthetic import make_classification_dataset

        root = work_dir() / name
        per_class = (count - 2 * (count // 3), count // 3, count // 3)
        make_classification_dataset(root, classes=("a", "b", "c"), images_per_class=per_class,
                                    size=40, seed=4)
        _ONCE[name] = root
    return _ONCE[name]  # type: ignore[return-value]


def exported(kind: str = "cls-int8") -> dict:
    """Shared exports: ``cls-int8`` (.etlt + cal.bin) and ``det`` (.onnx); built once."""
    name = f"export-{kind}"
    if name not in _ONCE:
        from tlt.export import ExportOptions, export_model

        out = work_dir() / kind
        if kind == "cls-int8":
            path, _ = classifier_tlt()
            options = ExportOptions(output=str(out / "classifier.etlt"), data_type="int8",
                                    cal_data_file=str(calibration_images()),
                                    cal_cache_file=str(out / "cal.bin"), batches=2,
                                    cal_batch_size=4, max_batch_size=4)
            result = export_model(str(path), KEY, options)
        else:
            path, _ = detector_tlt()
            result = export_model(str(path), KEY, ExportOptions(output=str(out / "detector.onnx")))
        _ONCE[name] = {"result": result, "dir": out, "output": Path(result.output)}
    return _ONCE[name]  # type: ignore[return-value]


def random_batch(n: int, dims, seed: int = 0) -> np.ndarray:
    """A batch in the network's input range [-1, 1]."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, *dims)).astype(np.float32)
