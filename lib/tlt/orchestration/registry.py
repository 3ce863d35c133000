"""The stage registry: the one description of every stage that KFP components and Argo templates share.

A stage's registry key is also its module in `tlt.stages`, its folder in ``components/`` and its task
name in every DAG. The model stages are declared here, the gate stages in
`tlt.orchestration.registry_gates` and the retraining stages in `tlt.orchestration.registry_retraining`
(the types are in `tlt.orchestration.stage_types`). Adding a stage is one `Stage(...)` entry plus an
adapter in `tlt.orchestration.adapter_table`; ``tlt-pipeline compile`` then writes its component and
template.
A stage that reads or writes .tlt model files sets ``model_key=True``: on a cluster its container
then gets the model key (TLT_KEY) from the `MODEL_KEY_SECRET` Kubernetes secret, never from a
pipeline parameter, which the Kubeflow UI would show to everyone.

Kubernetes settings live here too, per stage: train and retrain are the GPU stages
(``Resources.gpus``): they are the compute. build_engine is not: a TensorRT engine only runs on the
GPU model it was built on, so it would need its evaluation on that GPU as well, and the pipelines'
engines are ONNX Runtime engines built and scored on CPU nodes. Stages that load images get a
memory-backed /dev/shm (``Resources.shm_size``); train and retrain resume from checkpoints mirrored
to object storage (`CHECKPOINT_PARAMS`) and are never cached (``caching=False``).
"""

from __future__ import annotations

from tlt.orchestration.catalogue import lookup
from tlt.orchestration.registry_gates import GATE_STAGES
from tlt.orchestration.registry_retraining import RETRAINING_STAGES
from tlt.orchestration.stage_types import (CHECKPOINT_PARAMS, Artifact, Param, Resources,
                                           RetryPolicy, Stage)

__all__ = ["STAGES", "get_stage", "stage_names"]

# Stages that decode images get a memory-backed /dev/shm; the others run on the default
# `Resources` (1-2 CPUs, 2-4 GiB).
_IMAGE_STAGE = Resources(shm_size="512Mi")

_TASK = Param("task", str, "classification or detection.", "classification")


def _training_stage(name: str, description: str, *, params: tuple[Param, ...],
                    inputs: tuple[Artifact, ...], model_help: str) -> Stage:
    """A GPU training stage (train, retrain): ``task``, then ``params``, then the data sets, the
    replicas and `CHECKPOINT_PARAMS`; one ``model`` output; never cached, since a rerun must resume
    from the mirrored checkpoints rather than reuse an earlier run's model."""
    return Stage(
        name=name,
        cli="tlt-train",
        description=description,
        params=(
            _TASK,
            *params,
            Param("train_dataset", str, "Classification: URI of the training images; overrides "
                  "train_config.train_dataset_path when not empty.", ""),
            Param("val_dataset", str, "Classification: URI of the validation images; overrides "
                  "train_config.val_dataset_path when not empty.", ""),
            Param("gpus", int, "Replicas to train on (MirroredStrategy).", 1),
            *CHECKPOINT_PARAMS,
        ),
        inputs=inputs,
        outputs=(Artifact("model", "Model", model_help),),
        resources=Resources(cpu_request="2", cpu_limit="4", memory_request="4Gi", memory_limit="8Gi",
                            gpus=1, shm_size="1Gi"),
        retry=RetryPolicy(num_retries=3),
        model_key=True,
        caching=False,
    )


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            name="convert",
            cli="tlt-dataset-convert",
            description="Convert a KITTI detection data set into sharded TFRecords, one set of shards per fold.",
            params=(
                Param("spec", str, "Dataset export spec (TLT prototxt text, as tlt-dataset-convert -d reads)."),
                Param("dataset_root", str, "URI of the KITTI data set (local path, gs:// or s3://); "
                      "overrides kitti_config.root_directory_path when not empty.", ""),
                Param("validation_fold", int, "0-based fold to mark as validation; -1 for none.", -1),
            ),
            outputs=(Artifact("dataset", "Dataset", "Folder of TFRecord shards with metadata.json "
                              "(class counts per fold and in total)."),),
            resources=_IMAGE_STAGE,
        ),
        _training_stage(
            "train",
            "Train a model from an experiment spec; a rerun on the same results folder resumes from its last checkpoint.",
            params=(Param("spec", str, "Experiment spec (TLT prototxt text, as tlt-train -e reads)."),),
            inputs=(Artifact("dataset", "Dataset", "Detection: TFRecords from the convert stage; they "
                             "replace dataset_config.data_sources (validation_fold is kept).",
                             optional=True),),
            model_help="Results folder: model.tlt, checkpoints, training log, status.json and "
                       "metadata.json.",
        ),
        Stage(
            name="evaluate",
            cli="tlt-evaluate",
            description="Evaluate a trained model, export or engine (optionally against others); metrics, the confusion matrix and a report go to the Kubeflow UI.",
            params=(
                _TASK,
                Param("data_dir", str, "Classification: URI of the evaluation images (one sub-folder "
                      "per class).", ""),
                Param("spec", str, "Detection: experiment spec text; empty uses the spec stored in "
                      "the model.", ""),
                Param("mode", str, "Detection: voc or kitti; empty uses the spec's evaluation_mode.", ""),
                Param("batch_size", int, "Images per batch.", 16),
                Param("top_k", int, "Classification: k of the top-k accuracy.", 5),
                Param("framework", str, "What the model is: tlt (Keras), onnx (an export) or engine; "
                      "empty: from the file name.", ""),
                Param("labels", str, "Comma-separated row names of the comparison table, for "
                      "compare_a, compare_b (when connected) and model in that order; empty names "
                      "them by format and precision.", ""),
            ),
            inputs=(
                Artifact("model", "Model", "The model to evaluate: a train, retrain or prune output "
                         "(model.tlt, run in Keras) or an export or build_engine output (run without "
                         "TensorFlow)."),
                Artifact("dataset", "Dataset", "Detection: TFRecords from the convert stage (its "
                         "validation fold is evaluated).", optional=True),
                Artifact("compare_a", "Model", "A model scored on the same data and compared in the "
                         "report (first row: sizes and speeds are relative to it).", optional=True),
                Artifact("compare_b", "Model", "A second model to compare (second row).",
                         optional=True),
            ),
            outputs=(
                Artifact("metrics", "Metrics", "Scalar metrics (accuracy and per-class F1, or AP per "
                         "class and bucket) and the full JSON."),
                Artifact("confusion", "ClassificationMetrics", "Classification: confusion matrix for "
                         "the Kubeflow UI (empty for detection)."),
                Artifact("report", "HTML", "Evaluation report; for detection with annotated "
                         "validation frames; with compared models, a table of parameters, size on "
                         "disk, CPU images/s and accuracy / mAP of each."),
                Artifact("scored_model", "Model", "A copy of the evaluated model (an engine with its "
                         "sidecar) whose metadata carries format, precision, input dims, output "
                         "names, size and the accuracy / mAP measured here."),
            ),
            resources=_IMAGE_STAGE,
            model_key=True,
        ),
        Stage(
            name="prune",
            cli="tlt-prune",
            description="Remove the filters of a trained model whose normalised norm is below the threshold; the pruned model keeps TLT's input and output names.",
            params=(
                Param("pruning_threshold", float, "Filters whose normalised norm is below it are "
                      "removed; in (0, 1] (tlt-prune -pth).", 0.1),
                Param("normalizer", str, "Norm normalisation per layer: max or L2 (-n).", "max"),
                Param("equalization_criterion", str, "How element-wise groups agree: union, "
                      "intersection, arithmetic_mean or geometric_mean (-eq).", "union"),
                Param("pruning_granularity", int, "Kept filter counts are multiples of this (-pg).", 8),
                Param("min_num_filters", int, "Each layer keeps at least this many filters (-nf).", 16),
                Param("excluded_layers", str, "Comma-separated layers never pruned (-el); empty for "
                      "none.", ""),
            ),
            inputs=(Artifact("model", "Model", "Output of the train stage (its model.tlt is pruned)."),),
            outputs=(Artifact("pruned_model", "Model", "model.tlt of the pruned model and metadata.json "
                              "(parameters before and after, pruning ratio, settings)."),),
            model_key=True,
        ),
        _training_stage(
            "retrain",
            "Retrain a pruned model (its pruned graph and weights) from an experiment spec to recover accuracy; a rerun resumes from its last checkpoint.",
            params=(
                Param("spec", str, "Experiment spec (TLT prototxt text); its pretrained model "
                      "becomes the pruned model."),
                Param("epochs", int, "Epochs to retrain; replaces the spec's epoch count when > 0.", 0),
            ),
            inputs=(
                Artifact("pretrained_model", "Model", "Output of the prune stage: the pruned model.tlt "
                         "to retrain."),
                Artifact("dataset", "Dataset", "Detection: TFRecords from the convert stage.",
                         optional=True),
            ),
            model_help="Results folder of the retrained model: model.tlt, checkpoints, training log, "
                       "status.json and metadata.json.",
        ),
        Stage(
            name="export",
            cli="tlt-export",
            description="Export a trained model to ONNX (.etlt, encrypted with the model key) with an INT8 calibration cache and DeepStream and Triton configurations.",
            params=(
                Param("data_type", str, "fp32, fp16 or int8 (int8 also writes the calibration "
                      "cache cal.bin).", "int8"),
                Param("batches", int, "Calibration batches (int8).", 4),
                Param("cal_batch_size", int, "Images per calibration batch (int8).", 8),
                Param("max_batch_size", int, "Largest batch of the engines built from the export.", 16),
                Param("cal_data_dir", str, "Classification: URI of the calibration images (int8); "
                      "detection uses the dataset input's frames.", ""),
            ),
            inputs=(
                Artifact("model", "Model", "A train or retrain output (its model.tlt is exported)."),
                Artifact("dataset", "Dataset", "Detection: TFRecords whose frames calibrate int8.",
                         optional=True),
            ),
            outputs=(Artifact("export", "Model", "model.etlt (model.onnx without a key), cal.bin, "
                              "the DeepStream nvinfer config with labels.txt, a Triton model "
                              "repository and metadata.json."),),
            resources=_IMAGE_STAGE,
            model_key=True,
        ),
        Stage(
            name="build_engine",
            cli="tlt-converter",
            description="Build an inference engine from an export: ONNX Runtime on CPU (fp32, or int8 from the calibration cache), TensorRT on a GPU.",
            params=(
                Param("precision", str, "fp32, fp16 (TensorRT only) or int8 (-t).", "fp32"),
                Param("max_batch_size", int, "Largest batch the engine runs at once (-m).", 16),
                Param("batch_size", int, "Calibration batch size, TensorRT's optimum batch (-b).", 8),
                Param("backend", str, "auto (TensorRT with a GPU, else ONNX Runtime), onnxruntime "
                      "or tensorrt.", "auto"),
            ),
            inputs=(Artifact("export", "Model", "Output of the export stage (its model and cal.bin)."),),
            outputs=(Artifact("engine", "Model", "model.engine with its model.engine.json sidecar and "
                              "metadata.json (format, precision, input dims, output names, size)."),),
            model_key=True,
        ),
        *GATE_STAGES,
        *RETRAINING_STAGES,
    )
}


def stage_names() -> list[str]:
    """Registry keys in registry order."""
    return list(STAGES)


def get_stage(name: str) -> Stage:
    """The registry entry of stage ``name``.

    Raises:
        PipelineError: naming the known stages when ``name`` is not one.
    """
    return lookup(STAGES, name, f"unknown stage {name!r}")
