"""Stage adapters: orchestration parameters and artifact folders -> one `tlt.stages` call.

Each adapter has the signature ``adapter(params, inputs, outputs) -> {output name: metadata}``:
``params`` maps parameter names to typed values, ``inputs``/``outputs`` map artifact names to local
folders. The returned metadata is what the Kubeflow UI shows on each output artifact. KFP
components and Argo containers both reach the stages only through these functions.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Mapping

from tlt.errors import PipelineError

_log = logging.getLogger(__name__)

__all__ = ["ADAPTERS", "get_adapter", "convert", "train", "evaluate", "detection_scalars"]

Adapter = Callable[[Mapping[str, Any], Mapping[str, str], Mapping[str, str]], dict[str, dict[str, Any]]]


def convert(params: Mapping[str, Any], inputs: Mapping[str, str],
            outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.convert` on a prototxt spec; describe the TFRecords for the UI.

    Args:
        params: ``spec`` (prototxt text), ``dataset_root`` (URI or "" to keep the spec's) and
            ``validation_fold`` (-1 for none).
        inputs: unused (convert reads the raw data set named by the spec).
        outputs: ``dataset``: the folder to write the shards and ``metadata.json`` to.

    Returns:
        ``{"dataset": {...}}`` with frame, shard and per-fold class counts.
    """
    from tlt import spec as tlt_spec
    from tlt.stages import convert as convert_stage

    spec = tlt_spec.loads(params["spec"], "dataset_export")
    root = params.get("dataset_root")
    if root:
        old_root = spec.kitti_config.root_directory_path
        spec.kitti_config.root_directory_path = root
        # The image root recorded for training moves with the data set unless the spec chose another.
        if spec.image_directory_path in ("", old_root):
            spec.image_directory_path = root
    fold = int(params.get("validation_fold", -1))
    # Progress bars only help a person watching a terminal; pod logs would fill with \r updates.
    result = convert_stage.run(spec, outputs["dataset"], validation_fold=None if fold < 0 else fold,
                               progress=sys.stderr.isatty())
    return {"dataset": {
        "stage": "convert",
        "num_frames": int(result.num_frames),
        "num_shards": len(result.shards),
        "frames_per_fold": _jsonable(result.frames_per_fold),
        "validation_fold": -1 if result.validation_fold is None else int(result.validation_fold),
        "class_counts": _jsonable(result.class_counts),
        "skipped_frames": len(result.skipped_frames),
        "skipped_objects": int(result.skipped_objects),
        "root_directory_path": spec.kitti_config.root_directory_path,
    }}


def _use_convert_output(spec, dataset_dir: str) -> None:
    """Point a detection spec's data sources at the convert stage's TFRecords folder."""
    del spec.dataset_config.data_sources[:]
    source = spec.dataset_config.data_sources.add()
    source.tfrecords_path = f"{dataset_dir}/tfrecords-fold-*"
    if spec.dataset_config.WhichOneof("dataset_split_type") == "validation_data_source":
        spec.dataset_config.validation_fold = 0


def train(params: Mapping[str, Any], inputs: Mapping[str, str],
          outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.train` into the model artifact folder (a rerun resumes from checkpoints).

    The model key comes from the TLT_KEY environment variable (a Kubernetes secret), never from a
    parameter, which the Kubeflow UI would display.
    """
    from tlt import spec as tlt_spec
    from tlt.io.modelfile import resolve_key
    from tlt.stages import train as train_stage

    task = params["task"]
    spec = tlt_spec.loads(params["spec"], task)
    if task == "classification":
        if params.get("train_dataset"):
            spec.train_config.train_dataset_path = params["train_dataset"]
        if params.get("val_dataset"):
            spec.train_config.val_dataset_path = params["val_dataset"]
    elif "dataset" in inputs:
        _use_convert_output(spec, inputs["dataset"])
    result = train_stage.run(spec, outputs["model"], task=task, key=resolve_key(None),
                             gpus=int(params.get("gpus", 1)), progress=sys.stderr.isatty())
    return {"model": {
        "stage": "train",
        "task": task,
        "model_file": "model.tlt",
        "classes": list(result.class_names),
        "epochs": int(result.epochs),
        "resumed_from_epoch": int(result.resumed_from_epoch),
        "final_metrics": {k: float(v[-1]) for k, v in result.history.items() if v},
    }}


def evaluate(params: Mapping[str, Any], inputs: Mapping[str, str],
             outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Evaluate the train stage's model.tlt; shape the numbers as KFP Metrics/ClassificationMetrics.

    The ``report`` output is a single HTML file (what the Kubeflow UI renders).
    """
    from pathlib import Path

    from tlt.io.atomic import atomic_write_text

    model_file = str(Path(inputs["model"]) / "model.tlt")
    for name in ("metrics", "confusion"):
        Path(outputs[name]).mkdir(parents=True, exist_ok=True)
    if params["task"] == "classification":
        metrics, confusion, report = _evaluate_classification(params, model_file, outputs)
    elif params["task"] == "detection":
        metrics, confusion, report = _evaluate_detection(params, inputs, model_file, outputs)
    else:
        raise PipelineError(f"evaluate: unknown task {params['task']!r}; expected classification or detection")
    atomic_write_text(outputs["report"], report)
    return {"metrics": _jsonable(metrics), "confusion": confusion,
            "report": {"task": params["task"]}}


def _evaluate_classification(params, model_file: str, outputs):
    from pathlib import Path

    from tlt.evaluation.report import classification_report_html
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate as evaluate_stage

    if not params.get("data_dir"):
        raise PipelineError("evaluate: classification needs the data_dir parameter")
    result = evaluate_stage.run_classification(
        model_file, params["data_dir"], key=resolve_key(None), batch_size=int(params["batch_size"]),
        top_k=int(params["top_k"]), results_json=str(Path(outputs["metrics"]) / "evaluation.json"))
    m = result.metrics
    scalars = {"accuracy": m["accuracy"], f"top_{m['top_k']}_accuracy": m["top_k_accuracy"],
               "macro_f1": m["macro_f1"], "num_images": m["num_images"]}
    scalars.update({f"f1_{name}": row["f1"] for name, row in m["per_class"].items()})
    # The structure kfp.dsl.ClassificationMetrics.log_confusion_matrix writes, built here so the
    # adapter stays independent of KFP objects.
    confusion = {"confusionMatrix": {
        "annotationSpecs": [{"displayName": name} for name in m["class_names"]],
        "rows": [{"row": [int(v) for v in row]} for row in m["confusion_matrix"]],
    }}
    return scalars, confusion, classification_report_html(m)


def _evaluate_detection(params, inputs, model_file: str, outputs):
    from pathlib import Path

    from tlt import spec as tlt_spec
    from tlt.evaluation.report import annotated_validation_samples, detection_report_html
    from tlt.io.modelfile import load_keras_model, resolve_key
    from tlt.stages import evaluate as evaluate_stage

    model, metadata = load_keras_model(model_file, key=resolve_key(None), compile=False)
    spec_text = params.get("spec") or metadata.get("spec", "")
    if not spec_text:
        raise PipelineError("evaluate: detection needs the spec parameter (the model stores none)")
    spec = tlt_spec.loads(spec_text, "detection")
    if "dataset" in inputs:
        _use_convert_output(spec, inputs["dataset"])
    evaluation = evaluate_stage.run_detection(
        spec, model_file, key=resolve_key(None), mode=params.get("mode") or None,
        batch_size=int(params["batch_size"]),
        results_json=str(Path(outputs["metrics"]) / "evaluation.json"))
    _log.info("Found %d samples in validation set; validation cost %.6f\n%s", evaluation.num_frames,
              evaluation.validation_cost, evaluation.results.table())
    samples = annotated_validation_samples(model, spec, max_frames=4)
    report = detection_report_html(evaluation.results, evaluation.validation_cost, samples)
    return detection_scalars(evaluation), {}, report


def detection_scalars(evaluation) -> dict[str, float]:
    """The Kubeflow Metrics of a detection evaluation: the AP table's columns and the cost.

    ``ap_<class>_<column>`` and ``mAP_<column>`` for ``combined`` and every bucket, as in the
    results JSON (``columns``), skipping the n/a cells (no ground truth); ``mAP`` repeats
    ``mAP_combined`` (0 when n/a) as the one number a run is compared by.
    """
    results = evaluation.results
    scalars = {"validation_cost": evaluation.validation_cost, "num_frames": evaluation.num_frames,
               "mAP": results.mean_ap.get("combined") or 0.0}
    scalars.update({k: v for k, v in results.columns().items() if v is not None})
    return scalars


#: Registry key -> adapter. Every `tlt.orchestration.registry.STAGES` key has one (a test checks).
ADAPTERS: dict[str, Adapter] = {
    "convert": convert,
    "train": train,
    "evaluate": evaluate,
}


def get_adapter(stage: str) -> Adapter:
    """The adapter of ``stage``.

    Raises:
        PipelineError: when the stage has no adapter.
    """
    try:
        return ADAPTERS[stage]
    except KeyError:
        raise PipelineError(f"stage {stage!r} has no adapter: expected one of {', '.join(ADAPTERS)}") from None


def _jsonable(value: Any) -> Any:
    """Plain dicts/lists/ints/floats/strings, so KFP can store the value as artifact metadata."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int) or hasattr(value, "__index__"):
        return int(value)
    if isinstance(value, float) or hasattr(value, "__float__"):
        return float(value)
    return str(value)
