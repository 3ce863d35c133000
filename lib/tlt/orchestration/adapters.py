"""Stage adapters: orchestration parameters and artifact folders -> one `tlt.stages` call.

Each adapter has the signature ``adapter(params, inputs, outputs) -> {output name: metadata}``:
``params`` maps parameter names to typed values, ``inputs``/``outputs`` map artifact names to local
folders. The returned metadata is what the Kubeflow UI shows on each output artifact. KFP
components and Argo containers both reach the stages only through these functions.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from tlt.errors import PipelineError
from tlt.orchestration.model_cards import model_file

_log = logging.getLogger(__name__)

__all__ = ["use_convert_output", "convert", "train", "retrain", "prune", "export", "build_engine",
           "evaluate", "detection_scalars"]


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


def use_convert_output(spec, dataset_dir: str) -> None:
    """Point a detection spec's data sources at the convert stage's TFRecords folder (fold 0
    validates when the spec validates on a fold)."""
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
    from tlt.io.modelfile import resolve_key
    from tlt.stages import train as train_stage

    spec = _training_spec(params, inputs)
    with _checkpoint_mirror("train", params, inputs, outputs["model"]):
        result = train_stage.run(spec, outputs["model"], task=params["task"], key=resolve_key(None),
                                 gpus=int(params.get("gpus", 1)), progress=sys.stderr.isatty())
    return {"model": _training_metadata("train", params["task"], result, outputs["model"])}


def retrain(params: Mapping[str, Any], inputs: Mapping[str, str],
            outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.retrain`: the train stage with the pruned model.tlt as pretrained model.

    Training keeps a pruned model's graph (`tlt.pruning.is_pruned`) and loads its weights;
    ``epochs`` > 0 replaces the spec's epoch count (retraining needs far fewer epochs).
    """
    from tlt.io.modelfile import resolve_key
    from tlt.stages import retrain as retrain_stage

    spec = _training_spec(params, inputs)
    pretrained = str(model_file(inputs["pretrained_model"]))
    with _checkpoint_mirror("retrain", params, inputs, outputs["model"]):
        result = retrain_stage.run(spec, outputs["model"], pretrained_model=pretrained,
                                   task=params["task"], epochs=int(params.get("epochs", 0)),
                                   key=resolve_key(None), gpus=int(params.get("gpus", 1)),
                                   progress=sys.stderr.isatty())
    meta = _training_metadata("retrain", params["task"], result, outputs["model"])
    meta.update(pretrained_model=Path(pretrained).name, pruning=_pruning_of(pretrained))
    return {"model": meta}


def _checkpoint_mirror(stage: str, params: Mapping[str, Any], inputs: Mapping[str, str],
                       results_dir: str) -> contextlib.AbstractContextManager:
    """Mirror ``results_dir`` under ``checkpoint_root`` while training (nothing when it is empty).

    A retried pod starts with an empty results folder; the mirror brings back its predecessor's
    checkpoints, so training resumes instead of starting over. The mirror's folder is
    ``<checkpoint_root>/<run_id>/<stage>-<digest of params and inputs>``: one per task and run.
    """
    from tlt.io.checkpoint_sync import CheckpointMirror, inputs_digest, mirror_uri

    root = params.get("checkpoint_root") or ""
    if not root:
        return contextlib.nullcontext()
    digest = inputs_digest(params, inputs, skip=("checkpoint_root", "run_id"))
    remote = mirror_uri(root, params.get("run_id") or "", stage, digest)
    _log.info("%s: mirroring the results folder to %s", stage, remote)
    return CheckpointMirror(results_dir, remote)


def _training_spec(params: Mapping[str, Any], inputs: Mapping[str, str]):
    """The experiment of a train/retrain task: its spec with the data sets the pipeline gives."""
    from tlt import spec as tlt_spec

    task = params["task"]
    spec = tlt_spec.loads(params["spec"], task)
    if task == "classification":
        if params.get("train_dataset"):
            spec.train_config.train_dataset_path = params["train_dataset"]
        if params.get("val_dataset"):
            spec.train_config.val_dataset_path = params["val_dataset"]
    elif "dataset" in inputs:
        use_convert_output(spec, inputs["dataset"])
    return spec


def _training_metadata(stage: str, task: str, result, folder: str) -> dict[str, Any]:
    model_path = Path(folder) / "model.tlt"
    return {
        "stage": stage,
        "task": task,
        "model_file": "model.tlt",
        "classes": list(result.class_names),
        "epochs": int(result.epochs),
        "resumed_from_epoch": int(result.resumed_from_epoch),
        "size_bytes": model_path.stat().st_size if model_path.is_file() else 0,
        "final_metrics": {k: float(v[-1]) for k, v in result.history.items() if v},
    }


def _pruning_of(model_path: str) -> dict[str, Any]:
    """The pruning record (counts and settings) of a pruned model's artifact folder, or {}."""
    from tlt.artifacts import read_metadata

    meta = read_metadata(Path(model_path).parent)
    return _jsonable({k: meta[k] for k in ("params_before", "params_after", "pruning_ratio", "settings")
                      if k in meta})


def prune(params: Mapping[str, Any], inputs: Mapping[str, str],
          outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.prune` on the trained model into the pruned Model artifact folder.

    Args:
        params: the tlt-prune options (``excluded_layers`` as comma-separated names).
        inputs: ``model``: a train (or retrain) output folder.
        outputs: ``pruned_model``: receives model.tlt (encrypted with TLT_KEY) and metadata.json.

    Returns:
        ``{"pruned_model": {...}}`` with both parameter counts, the ratio and the settings.
    """
    from tlt.io.modelfile import resolve_key
    from tlt.pruning import PruneSettings
    from tlt.stages import prune as prune_stage

    settings = PruneSettings(
        normalizer=params["normalizer"], equalization_criterion=params["equalization_criterion"],
        pruning_granularity=int(params["pruning_granularity"]),
        pruning_threshold=float(params["pruning_threshold"]),
        min_num_filters=int(params["min_num_filters"]),
        excluded_layers=tuple(n.strip() for n in params.get("excluded_layers", "").split(",") if n.strip()))
    Path(outputs["pruned_model"]).mkdir(parents=True, exist_ok=True)
    outcome = prune_stage.run(str(model_file(inputs["model"])), outputs["pruned_model"],
                              key=resolve_key(None), settings=settings)
    result = outcome.result
    return {"pruned_model": _jsonable({
        "stage": "prune", "task": outcome.metadata.get("task"), "model_file": prune_stage.MODEL_FILE,
        "classes": list(outcome.metadata.get("classes", [])),
        "params_before": result.params_before, "params_after": result.params_after,
        "pruning_ratio": result.ratio, "settings": settings.to_dict(),
        "size_bytes": Path(outcome.model_path).stat().st_size})}


def export(params: Mapping[str, Any], inputs: Mapping[str, str],
           outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.export`: ONNX (.etlt under TLT_KEY), the int8 calibration cache and the
    DeepStream and Triton configurations, all in the ``export`` folder.

    Calibration images (``data_type`` int8): detection frames decoded from the convert stage's
    TFRecords (input ``dataset``), or classification images from ``cal_data_dir``.
    """
    from tlt.artifacts import write_metadata
    from tlt.io.modelfile import resolve_key
    from tlt.stages import export as export_stage

    key = resolve_key(None)
    out = Path(outputs["export"])
    out.mkdir(parents=True, exist_ok=True)
    source = model_file(inputs["model"])
    name = "model.etlt" if key else "model.onnx"
    needed = int(params["batches"]) * int(params["cal_batch_size"])
    with _calibration_images(params, inputs, needed) as cal_dir:
        result = export_stage.run(
            str(source), key=key, output=str(out / name), data_type=params["data_type"],
            cal_data_file=cal_dir, cal_cache_file=str(out / "cal.bin"),
            batches=int(params["batches"]), cal_batch_size=int(params["cal_batch_size"]),
            max_batch_size=int(params["max_batch_size"]), gen_ds_config=True, gen_triton_config=True)
    meta = result.metadata
    fields = _jsonable({
        "model": name, "format": "onnx", "encrypted": bool(key), "task": meta.get("task"),
        "precision": meta.get("precision"), "input_dims": meta.get("input_dims"),
        "output_names": meta.get("output_names"), "classes": meta.get("classes", []),
        "size_bytes": (out / name).stat().st_size,
        "calibration_cache": Path(result.cal_cache_file).name if result.cal_cache_file else "",
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())})
    write_metadata(out, "export", parents=[{"uri": str(source)}], **fields)
    return {"export": {"stage": "export", **fields}}


@contextlib.contextmanager
def _calibration_images(params: Mapping[str, Any], inputs: Mapping[str, str],
                        needed: int) -> Iterator[str | None]:
    """A local folder of calibration images for an int8 export (None for other data types)."""
    import tempfile

    from tlt.io import storage

    if params["data_type"] != "int8":
        yield None
    elif "dataset" in inputs:
        with tempfile.TemporaryDirectory(prefix="tlt-calibration-") as tmp:
            _frames_to_images(inputs["dataset"], Path(tmp), needed)
            yield tmp
    elif params.get("cal_data_dir"):
        with storage.staged_input(params["cal_data_dir"]) as local:
            yield str(local)
    else:
        raise PipelineError("export: data_type int8 needs calibration images: connect the dataset "
                            "input (detection TFRecords) or set cal_data_dir (classification images)")


def _frames_to_images(dataset: str, folder: Path, needed: int) -> None:
    """Write the first ``needed`` frames of the TFRecord shards in ``dataset`` as image files."""
    from tlt.data.tfrecord import decode_example, read_records

    shards = sorted(p for p in Path(dataset).glob("*") if p.is_file() and not p.name.endswith(".json"))
    written = 0
    for shard in shards:
        for record in read_records(shard):
            ex = decode_example(record)
            ext = {b"jpeg": "jpg"}.get(ex["frame/format"][0], ex["frame/format"][0].decode("ascii"))
            (folder / f"{written:06d}.{ext}").write_bytes(ex["frame/encoded"][0])
            written += 1
            if written == needed:
                return
    # Fewer frames than needed: the export's calibration says how many it found and needs.


def build_engine(params: Mapping[str, Any], inputs: Mapping[str, str],
                 outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.build_engine` (tlt-converter) on the export: ``engine`` gets model.engine,
    its sidecar and metadata.json; int8 uses the export's calibration cache."""
    from tlt.artifacts import write_metadata
    from tlt.io.modelfile import resolve_key
    from tlt.stages import build_engine as engine_stage

    out = Path(outputs["engine"])
    out.mkdir(parents=True, exist_ok=True)
    source = model_file(inputs["export"])
    export_meta = _read_artifact_meta(inputs["export"])
    info = engine_stage.run(
        str(source), key=resolve_key(None), input_dims=tuple(export_meta.get("input_dims") or ()),
        engine_path=str(out / "model.engine"), cache_file=str(Path(inputs["export"]) / "cal.bin"),
        precision=params["precision"], max_batch_size=int(params["max_batch_size"]),
        batch_size=int(params["batch_size"]), backend=params["backend"])
    fields = _jsonable({
        "model": "model.engine", "format": "engine", "backend": info.backend,
        "precision": info.precision, "input_dims": list(info.input_dims),
        "output_names": list(info.output_names), "max_batch_size": info.max_batch_size,
        "task": (info.export or {}).get("task"), "classes": (info.export or {}).get("classes", []),
        "size_bytes": (out / "model.engine").stat().st_size, "runtime_version": info.runtime_version})
    write_metadata(out, "build_engine", parents=[{"uri": str(source)}], **fields)
    return {"engine": {"stage": "build_engine", **fields}}


def _read_artifact_meta(folder: str) -> dict[str, Any]:
    from tlt.artifacts import read_metadata

    meta = read_metadata(folder)
    if not meta:
        raise PipelineError(f"{folder}: no metadata.json (not an output of the export stage)")
    return meta


def evaluate(params: Mapping[str, Any], inputs: Mapping[str, str],
             outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Evaluate a model, export or engine; shape the numbers as KFP Metrics/ClassificationMetrics.

    ``model`` is a train/retrain/prune output (its model.tlt runs in Keras) or an export/build_engine
    output (run by ONNX Runtime or TensorRT; ``framework`` forces the kind). Models connected to
    ``compare_a`` / ``compare_b`` are scored on the same data and the report gets a table of all of
    them (parameters, size on disk, CPU images/s, accuracy / mAP). ``scored_model`` receives a copy
    of the evaluated model whose metadata is its card with the accuracy / mAP. The ``report``
    output is a single HTML file (what the Kubeflow UI renders).
    """
    from tlt.io.atomic import atomic_write_text

    task = params["task"]
    if task not in ("classification", "detection"):
        raise PipelineError(f"evaluate: unknown task {task!r}; expected classification or detection")
    path = model_file(inputs["model"])
    for name in ("metrics", "confusion", "scored_model"):
        Path(outputs[name]).mkdir(parents=True, exist_ok=True)
    spec = None
    if task == "classification":
        metrics, confusion, report = _evaluate_classification(params, str(path), outputs)
        metric_name, metric = "accuracy", 100.0 * float(metrics["accuracy"])
    else:
        spec, (metrics, confusion, report) = _evaluate_detection(params, inputs, str(path), outputs)
        metric_name, metric = "mAP", float(metrics["mAP"])
    compared = [inputs[n] for n in ("compare_a", "compare_b") if n in inputs]
    cards = _comparison_cards(params, compared, path, metric, lambda file: _score(params, spec, file))
    if len(cards) > 1:
        from tlt.orchestration.model_cards import comparison_html, insert_section

        report = insert_section(report, comparison_html(_comparison_title(cards), cards, metric_name))
        metrics.update(_comparison_scalars(cards, metric_name))
    atomic_write_text(outputs["report"], report)
    card_meta = _scored_model(cards[-1], outputs["scored_model"], metric_name)
    return {"metrics": _jsonable(metrics), "confusion": confusion,
            "report": {"task": task, "models_compared": len(cards)}, "scored_model": card_meta}


def _labels(params: Mapping[str, Any]) -> list[str]:
    return [s.strip() for s in params.get("labels", "").split(",")]


def _comparison_cards(params, compared: list[str], path: Path, metric: float,
                      score: Callable[[str], float]) -> list:
    """Cards of the ``compared`` artifact folders (scored by ``score``), then of the evaluated
    model (``metric`` already measured)."""
    from tlt.io.modelfile import resolve_key
    from tlt.orchestration.model_cards import describe_model, images_per_second

    entries = [(model_file(folder), None) for folder in compared]
    entries.append((path, metric))
    chosen = (_labels(params) + [""] * len(entries))[:len(entries)]
    cards = []
    for (file, known), label in zip(entries, chosen):
        framework = params.get("framework") if file == path else None
        card, run = describe_model(file, key=resolve_key(None), label=label, framework=framework)
        card.images_per_second = images_per_second(run, card.input_dims,
                                                   batch_size=min(int(params["batch_size"]), 8))
        card.metric = known if known is not None else score(str(file))
        cards.append(card)
    return cards


def _comparison_title(cards) -> str:
    if any(c.format != "tlt" for c in cards):
        return "Keras model and deployed engines, side by side"
    return "Before and after pruning"


def _comparison_scalars(cards, metric_name: str) -> dict[str, float]:
    """Per-model scalars for the Kubeflow UI: ``<label>_<metric>``, ``_images_per_second`` ..."""
    scalars: dict[str, float] = {}
    for card in cards:
        slug = re.sub(r"[^a-z0-9]+", "_", card.label.lower()).strip("_")
        scalars[f"{slug}_{metric_name}"] = card.metric
        scalars[f"{slug}_images_per_second"] = card.images_per_second
        scalars[f"{slug}_size_bytes"] = card.size_bytes
        if card.params is not None:
            scalars[f"{slug}_params"] = card.params
    return scalars


def _score(params, spec, file: str) -> float:
    """Accuracy (classification) or mAP (detection, on ``spec``'s validation data) in % of
    another model on the same data as the evaluated one."""
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate as evaluate_stage

    if params["task"] == "classification":
        result = evaluate_stage.run_classification(file, params["data_dir"], key=resolve_key(None),
                                                   batch_size=int(params["batch_size"]),
                                                   top_k=int(params["top_k"]))
        return 100.0 * float(result.metrics["accuracy"])
    evaluation = evaluate_stage.run_detection(spec, file, key=resolve_key(None),
                                              mode=params.get("mode") or None,
                                              batch_size=int(params["batch_size"]))
    return float(evaluation.results.mean_ap.get("combined") or 0.0)


def _scored_model(card, folder: str, metric_name: str) -> dict[str, Any]:
    """Copy the evaluated model (and an engine's sidecar) into ``folder`` with its card."""
    import shutil

    from tlt.artifacts import write_metadata
    from tlt.engines import sidecar_path

    source = Path(card.file)
    shutil.copyfile(source, Path(folder) / source.name)
    sidecar = sidecar_path(str(source))
    if card.format == "engine" and sidecar.is_file():
        shutil.copyfile(sidecar, Path(folder) / sidecar.name)
    meta = _jsonable(card.metadata(metric_name))
    write_metadata(folder, "evaluate", parents=[{"uri": str(source)}], model=source.name, **meta)
    return {"stage": "evaluate", **meta}


def _evaluate_classification(params, model_path: str, outputs):
    from tlt.evaluation.report import classification_report_html
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate as evaluate_stage

    if not params.get("data_dir"):
        raise PipelineError("evaluate: classification needs the data_dir parameter")
    result = evaluate_stage.run_classification(
        model_path, params["data_dir"], key=resolve_key(None), batch_size=int(params["batch_size"]),
        top_k=int(params["top_k"]), results_json=str(Path(outputs["metrics"]) / "evaluation.json"),
        framework=params.get("framework") or None)
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


def _detection_spec(params, inputs, stored_spec: str | None):
    """The detection experiment: the spec parameter, else the one stored in the model; its data
    sources replaced by the convert stage's TFRecords when connected."""
    from tlt import spec as tlt_spec

    spec_text = params.get("spec") or stored_spec or ""
    if not spec_text:
        raise PipelineError("evaluate: detection needs the spec parameter (the model stores none)")
    spec = tlt_spec.loads(spec_text, "detection")
    if "dataset" in inputs:
        use_convert_output(spec, inputs["dataset"])
    return spec


def _detection_predictor(params, model_path: str, key: str | None):
    """(predictor with ``predict_on_batch``, the spec stored in the model or None)."""
    from tlt.inference.deployed import resolve_framework

    framework = resolve_framework(model_path, params.get("framework") or None)
    if framework == "tlt":
        from tlt.io.modelfile import load_keras_model

        model, metadata = load_keras_model(model_path, key=key, compile=False)
        return model, metadata.get("spec")
    from tlt.evaluation.deployed_detection import BBOX, COV
    from tlt.inference.deployed import load_deployed

    deployed = load_deployed(model_path, framework=framework, key=key)
    names = [deployed.output_name(*COV), deployed.output_name(*BBOX)]
    return deployed.predictor(names), deployed.metadata.get("spec")


def _evaluate_detection(params, inputs, model_path: str, outputs):
    from tlt.evaluation.report import annotated_validation_samples, detection_report_html
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate as evaluate_stage

    predictor, stored_spec = _detection_predictor(params, model_path, resolve_key(None))
    spec = _detection_spec(params, inputs, stored_spec)
    evaluation = evaluate_stage.run_detection(
        spec, model_path, key=resolve_key(None), mode=params.get("mode") or None,
        batch_size=int(params["batch_size"]),
        results_json=str(Path(outputs["metrics"]) / "evaluation.json"),
        framework=params.get("framework") or None)
    _log.info("Found %d samples in validation set; validation cost %s\n%s", evaluation.num_frames,
              evaluation.validation_cost, evaluation.results.table())
    samples = annotated_validation_samples(predictor, spec, max_frames=4)
    report = detection_report_html(evaluation.results, evaluation.validation_cost, samples)
    return spec, (detection_scalars(evaluation), {}, report)


def detection_scalars(evaluation) -> dict[str, float]:
    """The Kubeflow Metrics of a detection evaluation: the AP table's columns and the cost.

    ``ap_<class>_<column>`` and ``mAP_<column>`` for ``combined`` and every bucket, as in the
    results JSON (``columns``), skipping the n/a cells (no ground truth); ``mAP`` repeats
    ``mAP_combined`` (0 when n/a) as the one number a run is compared by.
    """
    results = evaluation.results
    scalars = {"num_frames": evaluation.num_frames, "mAP": results.mean_ap.get("combined") or 0.0}
    if evaluation.validation_cost is not None:  # deployed models have no training loss to report
        scalars["validation_cost"] = evaluation.validation_cost
    scalars.update({k: v for k, v in results.columns().items() if v is not None})
    return scalars


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
