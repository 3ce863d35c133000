"""Stage adapters: orchestration parameters and artifact folders -> one `tlt.stages` call.

Each adapter has the signature ``adapter(params, inputs, outputs) -> {output name: metadata}``:
``params`` maps parameter names to typed values, ``inputs``/``outputs`` map artifact names to local
folders. The returned metadata is what the Kubeflow UI shows on each output artifact. KFP
components and Argo containers both reach the stages only through these functions.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Mapping

from tlt.errors import PipelineError

__all__ = ["ADAPTERS", "get_adapter", "convert", "train", "evaluate"]

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
    if params.get("train_dataset"):
        spec.train_config.train_dataset_path = params["train_dataset"]
    if params.get("val_dataset"):
        spec.train_config.val_dataset_path = params["val_dataset"]
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
    """Evaluate the train stage's model.tlt; shape the numbers as KFP Metrics/ClassificationMetrics."""
    from pathlib import Path

    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate as evaluate_stage

    if params["task"] != "classification":
        raise PipelineError(f"evaluate: task {params['task']!r} is not supported; expected classification")
    Path(outputs["metrics"]).mkdir(parents=True, exist_ok=True)
    Path(outputs["confusion"]).mkdir(parents=True, exist_ok=True)
    result = evaluate_stage.run_classification(
        str(Path(inputs["model"]) / "model.tlt"), params["data_dir"], key=resolve_key(None),
        batch_size=int(params["batch_size"]), top_k=int(params["top_k"]),
        results_json=str(Path(outputs["metrics"]) / "evaluation.json"))
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
    return {"metrics": _jsonable(scalars), "confusion": confusion}


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
