"""Adapters of the train and retrain stages: a spec and data sets -> `tlt.stages.train` /
`tlt.stages.retrain` -> a results folder, mirrored to object storage while training so a retried
pod resumes from its predecessor's checkpoints."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Mapping

from tlt.orchestration.adapters_common import jsonable, use_convert_output
from tlt.orchestration.model_cards import model_file

_log = logging.getLogger(__name__)

__all__ = ["retrain", "train"]


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
    _check_pretrained(spec, params["task"], pretrained)
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
    """The model artifact's metadata: classes, epochs, where training resumed, final metrics."""
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
    return jsonable({k: meta[k] for k in ("params_before", "params_after", "pruning_ratio", "settings")
                     if k in meta})


def _check_pretrained(spec, task: str, pretrained: str) -> None:
    """Fine-tuning starts from the pretrained model's weights: stop with one line when the spec's
    architecture or input size is not that model's (a pruned file keeps its original's)."""
    from tlt.io.modelfile import read_model_metadata, resolve_key
    from tlt.retraining.model_match import check_pretrained_matches

    if pretrained.endswith((".tlt", ".etlt")):
        check_pretrained_matches(spec, task, read_model_metadata(pretrained, key=resolve_key(None)),
                                 pretrained)
