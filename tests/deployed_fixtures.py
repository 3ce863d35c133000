"""Helpers of the deployed-model tests: trained models exported and built into engines, once.

Classification: a ResNet-10 trained here on the shape data set (as in
test_evaluate_infer_classification). Detection: the tiny DetectNet_v2 trained 20 epochs on
`det_fixtures.tiny_data` (the shared 2-epoch model finds nothing, so its AP compares nothing). Each is exported with `tlt.export` (fp32 and int8 with a
calibration cache from its training images) and built with `tlt.engines` into ONNX Runtime fp32
and int8 engines. Everything is memoised per session (``_ONCE``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from cls_fixtures import make_shapes, write_spec
from det_fixtures import tiny_data
from det_fixtures import write_spec as write_det_spec
from export_fixtures import work_dir

__all__ = ["KEY", "CLASSES", "trained_classifier", "classifier_artifacts", "detector_artifacts",
           "trained_detector", "untrained_engine", "shapes_folder", "run_without_tensorflow"]

KEY = "deployed-key"
CLASSES = ["circle", "square", "triangle"]
_ONCE: dict[str, object] = {}


def trained_classifier() -> dict:
    """``{"data", "model"}``: a ResNet-10 trained 3 epochs (test split: 5 images per class)."""
    if "cls" not in _ONCE:
        from tlt.stages import train

        root = work_dir() / "deployed_cls"
        data = make_shapes(root / "data", per_class=(10, 3, 5), seed=5)
        spec = write_spec(root / "spec.txt", data / "train", data / "val", epochs=3)
        result = train.run(str(spec), root / "out", key=KEY, progress=False)
        _ONCE["cls"] = {"data": data, "model": Path(result.model_path), "root": root}
    return _ONCE["cls"]  # type: ignore[return-value]


def _export_and_build(name: str, model: Path, key: str | None, dims, cal_images: Path,
                      suffix: str) -> dict:
    """fp32 and int8 exports of ``model`` and their fp32 / int8 ONNX Runtime engines."""
    from tlt.engines import BuildOptions, build_engine
    from tlt.export import ExportOptions, export_model

    out = work_dir() / name
    cal = out / "cal.bin"
    fp32 = export_model(str(model), key, ExportOptions(output=str(out / f"fp32{suffix}"),
                                                       max_batch_size=8)).output
    int8 = export_model(str(model), key, ExportOptions(
        output=str(out / f"int8{suffix}"), data_type="int8", cal_data_file=str(cal_images),
        cal_cache_file=str(cal), batches=4, cal_batch_size=4, max_batch_size=8)).output
    engines = {}
    for precision, source in (("fp32", fp32), ("int8", int8)):
        path = out / f"{precision}.engine"
        build_engine(source, key, BuildOptions(input_dims=tuple(dims), engine_path=str(path),
                                               cache_file=str(cal), precision=precision,
                                               max_batch_size=8, backend="onnxruntime"))
        engines[precision] = path
    return {"dir": out, "fp32_export": Path(fp32), "int8_export": Path(int8),
            "fp32_engine": engines["fp32"], "int8_engine": engines["int8"], "cal": cal}


def classifier_artifacts() -> dict:
    """`trained_classifier` plus its .etlt exports and engines."""
    if "cls_art" not in _ONCE:
        trained = trained_classifier()
        built = _export_and_build("deployed_cls_art", trained["model"], KEY, (3, 32, 32),
                                  trained["data"] / "train", ".etlt")
        _ONCE["cls_art"] = {**trained, **built}
    return _ONCE["cls_art"]  # type: ignore[return-value]


# An undertrained detector scores 0 AP at the spec's overlaps (0.7 / 0.5); looser overlaps and
# coverage threshold give it non-zero AP, so the engine-vs-Keras comparison compares something.
_LOOSE = [('minimum_detection_ground_truth_overlap { key: "car" value: 0.7 }',
           'minimum_detection_ground_truth_overlap { key: "car" value: 0.1 }'),
          ('minimum_detection_ground_truth_overlap { key: "pedestrian" value: 0.5 }',
           'minimum_detection_ground_truth_overlap { key: "pedestrian" value: 0.1 }')]


def trained_detector(base: Path, epochs: int = 20) -> dict:
    """``{"spec", "eval_spec", "model", "data"}``: the tiny DetectNet_v2 trained ``epochs`` epochs
    on `det_fixtures.tiny_data` (validated once, at the end); ``eval_spec`` has loose overlaps."""
    if "det" not in _ONCE:
        from tlt.stages import train

        data = tiny_data(base)
        root = work_dir() / "deployed_det"
        root.mkdir(parents=True, exist_ok=True)
        last = [("first_validation_epoch: 1", f"first_validation_epoch: {epochs}")]
        spec = write_det_spec(root / "spec.txt", data, epochs=epochs, batch_size=4,
                              extra_replacements=last)
        eval_spec = write_det_spec(root / "eval_spec.txt", data, epochs=epochs, batch_size=4,
                                   extra_replacements=last + _LOOSE)
        eval_spec.write_text(eval_spec.read_text().replace("coverage_threshold: 0.005",
                                                           "coverage_threshold: 0.001"))
        result = train.run(str(spec), root / "results", task="detection", progress=False)
        _ONCE["det"] = {"spec": spec, "eval_spec": eval_spec, "data": data,
                        "model": Path(result.model_path)}
    return _ONCE["det"]  # type: ignore[return-value]


def detector_artifacts(base: Path) -> dict:
    """`trained_detector` (data under ``base``) plus its .onnx exports and engines."""
    if "det_art" not in _ONCE:
        trained = trained_detector(base)
        images = Path(trained["data"]["root"]) / "images"
        built = _export_and_build("deployed_det_art", trained["model"], None, (3, 64, 128),
                                  images, ".onnx")
        _ONCE["det_art"] = {**trained, **built}
    return _ONCE["det_art"]  # type: ignore[return-value]


def untrained_engine(kind: str) -> Path:
    """An fp32 ONNX Runtime engine of `export_fixtures.exported` (``cls-int8``: the untrained
    3x32x32 classifier .etlt, key ``export_fixtures.KEY``; ``det``: the 3x32x64 detector .onnx)."""
    name = f"engine-{kind}"
    if name not in _ONCE:
        from export_fixtures import CLS_DIMS, DET_DIMS
        from export_fixtures import KEY as EXPORT_KEY
        from export_fixtures import exported
        from tlt.engines import BuildOptions, build_engine

        export = exported(kind)
        path = export["dir"] / "fp32.engine"
        dims = CLS_DIMS if kind == "cls-int8" else DET_DIMS
        build_engine(str(export["output"]), EXPORT_KEY,
                     BuildOptions(input_dims=dims, engine_path=str(path), max_batch_size=4,
                                  backend="onnxruntime"))
        _ONCE[name] = path
    return _ONCE[name]  # type: ignore[return-value]


def shapes_folder() -> Path:
    """A small folder-per-class data set of the export fixtures' classes (circle, square,
    triangle; 40x40 images, resized to the 32x32 input)."""
    if "shapes" not in _ONCE:
        root = work_dir() / "deployed_shapes"
        make_shapes(root, per_class=(2, 1, 3), size=40, seed=11)
        _ONCE["shapes"] = root / "test"
    return _ONCE["shapes"]  # type: ignore[return-value]


_NO_TF = """\
import importlib.abc, sys

class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "tf_keras"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _NoTensorFlow())
"""


def run_without_tensorflow(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing TensorFlow / Keras raises ImportError.

    ``code`` runs after the blocker is installed; the process then prints ``TF-FREE`` when no
    TensorFlow module was loaded.
    """
    script = _NO_TF + textwrap.dedent(code) + textwrap.dedent("""
        loaded = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
        print("TF-FREE" if not loaded else f"TF-LOADED {loaded[:3]}")
        """)
    from cli_processes import subprocess_env

    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(), check=False)
