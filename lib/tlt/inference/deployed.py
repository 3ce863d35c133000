"""Deployed models: an export (.onnx / .etlt) or an engine, run without TensorFlow.

``--framework`` of tlt-evaluate and tlt-infer picks what a model file is (`FRAMEWORKS`):

- ``tlt``: a trained .tlt model, run by Keras (TensorFlow);
- ``onnx``: an export of tlt-export (plain ``.onnx`` or encrypted ``.etlt``), run by ONNX Runtime;
- ``engine``: an engine file of tlt-converter with its ``<engine>.json`` sidecar, run by the
  backend it was built for (ONNX Runtime, or TensorRT where installed).

Without the flag the name decides (`resolve_framework`). A `DeployedModel` carries the export's
metadata (task, classes, input dims, preprocessing, training spec), so the deployed artifact is
evaluated and run with nothing but itself.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tlt.engines.base import Engine
from tlt.engines.sidecar import EngineInfo, sidecar_path
from tlt.errors import DataError, ModelFileError

__all__ = ["FRAMEWORKS", "FRAMEWORK_HELP", "ENGINE_EXTENSIONS", "resolve_framework",
           "is_deployed", "DeployedModel", "load_deployed", "check_input_dims"]

FRAMEWORKS = ("tlt", "onnx", "engine")
ENGINE_EXTENSIONS = (".engine", ".plan", ".trt")
FRAMEWORK_HELP = ("what MODEL is: tlt (a .tlt model, run by Keras/TensorFlow), onnx (a tlt-export "
                  ".onnx or .etlt, run by ONNX Runtime) or engine (a tlt-converter engine with its "
                  "<engine>.json sidecar, run by ONNX Runtime or TensorRT); default: from the name "
                  "(.onnx/.etlt: onnx; .engine/.plan/.trt or a file with a sidecar: engine; "
                  "else tlt). onnx and engine run without TensorFlow")


def resolve_framework(model: str, framework: str | None = None) -> str:
    """The framework of ``model``: ``framework`` when given, else guessed from the name.

    Raises:
        DataError: an unknown ``framework``.
    """
    if framework:
        if framework not in FRAMEWORKS:
            raise DataError(f"--framework {framework!r}: expected one of {', '.join(FRAMEWORKS)}")
        return framework
    name = str(model).lower()
    if name.endswith((".onnx", ".etlt")):
        return "onnx"
    if name.endswith(ENGINE_EXTENSIONS) or (
            "://" not in name and sidecar_path(str(model)).is_file()):
        return "engine"
    return "tlt"


def is_deployed(model: str, framework: str | None = None) -> bool:
    """True when ``model`` runs without TensorFlow (an export or an engine)."""
    return resolve_framework(model, framework) != "tlt"


class _ExportEngine(Engine):
    """An export run in memory by ONNX Runtime (no engine file: the graph is decrypted here)."""

    def __init__(self, path: str, info: EngineInfo, onnx_bytes: bytes, threads: int):
        super().__init__(path, info)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        try:
            self._session = ort.InferenceSession(onnx_bytes, options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad graphs
            raise ModelFileError(f"{path}: ONNX Runtime cannot load this export: "
                                 f"{str(err).splitlines()[0]}") from None

    def _run_chunk(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(self.output_names, {self.info.input_name: batch})
        return dict(zip(self.output_names, values))


class DeployedModel:
    """An export or engine, ready to run: ``run(batch)`` and the export's metadata.

    Args:
        path: the model file.
        framework: ``onnx`` or ``engine``.
        engine: the runner.
    """

    def __init__(self, path: str, framework: str, engine: Engine):
        self.path = str(path)
        self.framework = framework
        self.engine = engine
        self.metadata: dict = dict(engine.info.export or {})

    @property
    def input_dims(self) -> tuple[int, int, int]:
        """``(C, H, W)`` the model takes."""
        return self.engine.input_dims

    @property
    def output_names(self) -> list[str]:
        """The outputs the model returns."""
        return self.engine.output_names

    @property
    def description(self) -> str:
        """``"int8 onnxruntime engine"`` / ``"fp32 onnx export"``, for logs and results."""
        info = self.engine.info
        if self.framework == "engine":
            return f"{info.precision} {info.backend} engine"
        return f"{info.precision} onnx export"

    def check_task(self, task: str) -> None:
        """Raise `ModelFileError` unless the model is a ``task`` model with its classes."""
        found = self.metadata.get("task")
        if found != task:
            raise ModelFileError(f"{self.path}: is a {found or 'unknown'} model, not a {task} model")
        if not self.metadata.get("classes"):
            raise ModelFileError(f"{self.path}: its export metadata has no class list")

    def output_name(self, requested: str, suffix: str = "") -> str:
        """The output ``requested`` names: itself, or TLT's ``<requested>/<suffix>`` blob name.

        Raises:
            DataError: the model has no such output (its outputs are listed).
        """
        for name in (requested, f"{requested}/{suffix}" if suffix else None):
            if name in self.output_names:
                return name
        raise DataError(f"{self.path}: has no output {requested!r}; its outputs are "
                        f"{', '.join(self.output_names)}")

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``[N, C, H, W]`` float32 (preprocessed) through the model."""
        return self.engine.run(batch)

    def predictor(self, names: Sequence[str]) -> "_Predictor":
        """A Keras-like ``predict_on_batch(images) -> [outputs named names]``."""
        return _Predictor(self, list(names))


class _Predictor:
    def __init__(self, model: DeployedModel, names: list[str]):
        self.model, self.names = model, names

    def predict_on_batch(self, images: np.ndarray) -> list[np.ndarray]:
        outputs = self.model.run(images)
        return [outputs[n] for n in self.names]


def _export_info(exported) -> EngineInfo:
    meta = exported.metadata
    if not meta.get("input_dims") or not meta.get("output_names"):
        raise ModelFileError(f"{exported.path}: an ONNX graph without tlt-export's metadata "
                             "(task, classes, preprocessing); export the .tlt with tlt-export")
    # The graph runs as exported, in fp32: an export's "precision" names the engine it is for.
    return EngineInfo(backend="onnxruntime", precision="fp32",
                      input_name=str(meta.get("input_name", "input_1")),
                      input_dims=[int(d) for d in meta["input_dims"]],
                      output_names=list(meta["output_names"]),
                      max_batch_size=int(meta.get("max_batch_size") or 16), source=exported.path,
                      source_digest=exported.digest, export=meta)


def load_deployed(model: str, *, framework: str | None = None, key: str | None = None,
                  threads: int = 0) -> DeployedModel:
    """Load an export or an engine (see the module docstring).

    Args:
        model: the file (exports may also be gs:// or s3:// URIs).
        framework: ``onnx`` or ``engine``; None: from the name.
        key: the key of an ``.etlt`` (ignored otherwise).
        threads: ONNX Runtime intra-op threads (0: one per core).

    Raises:
        ModelKeyError: an ``.etlt`` with a missing or wrong key.
        ModelFileError: no such file, an engine without its sidecar, a graph without metadata.
        BackendUnavailable: a TensorRT engine on a machine without TensorRT.
        DataError: ``framework`` is ``tlt`` (not a deployed model).
    """
    framework = resolve_framework(model, framework)
    if framework == "engine":
        from tlt.engines import load_engine

        return DeployedModel(model, framework, load_engine(model, threads=threads))
    if framework != "onnx":
        raise DataError(f"{model}: --framework tlt is a Keras model, not an export or engine")
    from tlt.io.exportfile import load_export

    exported = load_export(model, key)
    info = _export_info(exported)
    return DeployedModel(model, framework, _ExportEngine(model, info, exported.onnx_bytes, threads))


def _shown(dims) -> str:
    return " x ".join(str(int(d)) for d in dims)


def check_input_dims(model: DeployedModel, dims: Sequence[int], what: str) -> None:
    """Raise `DataError` naming both sizes unless ``model`` takes ``dims`` ``(C, H, W)``.

    Args:
        model: the loaded export or engine.
        dims: the ``(C, H, W)`` the caller will feed.
        what: where ``dims`` come from, for the message.
    """
    if tuple(model.input_dims) != tuple(int(d) for d in dims):
        kind = "engine" if model.framework == "engine" else "export"
        raise DataError(f"{model.path}: the {kind} takes {_shown(model.input_dims)} (C x H x W) "
                        f"input, but {what} is {_shown(dims)}; use a model built for that size "
                        "or the spec it was trained with")
