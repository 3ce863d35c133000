"""Checks a local run makes before kfp.local starts: one clear line instead of a failed task.

A task that fails inside kfp.local costs a subprocess, TensorFlow's start-up and an executor
traceback; what can be known beforehand (a data set folder that is missing, a spec that does not
parse, a required parameter left out) is checked here, in the same words the stages would use.
URIs (``gs://``, ``s3://``) are left to the stages: only they hold the credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from tlt.errors import PipelineError, SpecError

__all__ = ["check_local_run"]


def check_local_run(pipeline: str, args: Mapping[str, Any], func: Any) -> None:
    """Check the arguments of a local run of ``pipeline`` before any task starts.

    Args:
        pipeline: catalogue name.
        args: the arguments given (parameters left out take the pipeline's defaults).
        func: the loaded pipeline (its inputs give the defaults and the required names).

    Raises:
        PipelineError: a required parameter is missing, a local data set folder does not exist or a
            spec parameter does not parse; the message says which ``--param`` to pass.
    """
    inputs = func.component_spec.inputs or {}
    missing = [name for name, spec in inputs.items() if not spec.optional and name not in args]
    if missing:
        flags = " ".join(f"--param {name}=..." for name in missing)
        raise PipelineError(f"pipeline {pipeline} needs {flags}{_SAMPLE_HINTS.get(pipeline, '')}")
    values = {name: args.get(name, spec.default) for name, spec in inputs.items()}
    _check_deployment(values)
    check = _CHECKS.get(pipeline)
    if check is not None:
        check(values)


def _check_deployment(values: Mapping[str, Any]) -> None:
    """The prune, retrain and engine parameters both pipelines share (when a pipeline has them)."""
    from tlt.engines.builder import default_backend
    from tlt.pruning import NORMALIZERS

    thresholds = values.get("pruning_thresholds", [0.1])
    if not thresholds:
        raise PipelineError("--param pruning_thresholds=[]: give at least one threshold")
    for threshold in thresholds:
        if not 0.0 < float(threshold) <= 1.0:
            raise PipelineError(f"--param pruning_thresholds: {float(threshold):g} must be in (0, 1]")
    if float(values.get("sweep_tolerance", 1.0)) < 0:
        raise PipelineError(f"--param sweep_tolerance={values['sweep_tolerance']}: must be >= 0")
    normalizer = values.get("pruning_normalizer", "max")
    if normalizer not in NORMALIZERS:
        raise PipelineError(f"--param pruning_normalizer={normalizer}: expected one of "
                            f"{', '.join(NORMALIZERS)}")
    if int(values.get("retrain_epochs", 0)) < 0:
        raise PipelineError(f"--param retrain_epochs={values['retrain_epochs']}: must be >= 0 "
                            "(0 keeps the spec's epoch count)")
    precision = values.get("engine_precision", "int8")
    if precision not in ("fp32", "fp16", "int8"):
        raise PipelineError(f"--param engine_precision={precision}: expected fp32, fp16 or int8")
    if precision == "fp16" and default_backend() != "tensorrt":
        raise PipelineError("--param engine_precision=fp16: fp16 engines need TensorRT on a GPU; "
                            "this machine builds ONNX Runtime engines (fp32 or int8)")
    for name in ("calibration_batches", "calibration_batch_size"):
        if name in values and int(values[name]) < 1:
            raise PipelineError(f"--param {name}={values[name]}: must be >= 1")


_SAMPLE_HINTS = {
    "detection": " (a KITTI folder with images/ and labels/; make sample data with "
                 "`tlt-sample-data detection DIR`)",
    "classification": " (folders with one sub-folder of images per class; make sample data with "
                      "`tlt-sample-data classification DIR`, which writes DIR/train, DIR/val, DIR/test)",
}


def _is_uri(path: str) -> bool:
    return "://" in path


def _spec(param: str, text: str, kind: str) -> Any:
    from tlt import spec as tlt_spec

    try:
        return tlt_spec.loads(text, kind)
    except SpecError as err:
        raise PipelineError(f"--param {param}: {err}") from None


def _check_detection(values: Mapping[str, Any]) -> None:
    convert_spec = _spec("convert_spec", values["convert_spec"], "dataset_export")
    _spec("train_spec", values["train_spec"], "detection")
    root = values.get("dataset_root") or ""
    if not root:
        spec_root = convert_spec.kitti_config.root_directory_path
        if _is_uri(spec_root) or Path(spec_root).is_dir():
            return
        raise PipelineError("pipeline detection needs a data set: pass --param dataset_root=DIR"
                            + _SAMPLE_HINTS["detection"])
    if _is_uri(root):
        return
    if not Path(root).is_dir():
        raise PipelineError(f"--param dataset_root={root}: no such folder"
                            + _SAMPLE_HINTS["detection"])
    kitti = convert_spec.kitti_config
    for what, sub in (("images", kitti.image_dir_name), ("labels", kitti.label_dir_name)):
        if sub and not (Path(root) / sub).is_dir():
            raise PipelineError(f"--param dataset_root={root}: no {what} folder {sub}/ in it (the "
                                f"convert spec's kitti_config.{what[:-1]}_dir_name)"
                                + _SAMPLE_HINTS["detection"])


def _check_classification(values: Mapping[str, Any]) -> None:
    _spec("spec", values["spec"], "classification")
    for param in ("train_dataset", "val_dataset", "eval_dataset"):
        path = values.get(param) or ""
        if path and not _is_uri(path) and not Path(path).is_dir():
            raise PipelineError(f"--param {param}={path}: no such folder" + _SAMPLE_HINTS["classification"])


_CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "detection": _check_detection,
    "classification": _check_classification,
}
