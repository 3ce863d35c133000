"""The pipeline catalogue: which DAGs exist, where their definitions live, and their default specs.

A pipeline is a ``@dsl.pipeline`` function in ``pipelines/<name>.py`` of the checkout; its compiled
IR is ``pipelines/<name>.yaml`` and its Argo Workflow ``manifests/workflows/<name>.yaml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlt.errors import PipelineError
from tlt.orchestration.catalogue import lookup
from tlt.orchestration.components import using_components
from tlt.orchestration.module_files import import_file
from tlt.orchestration.paths import repo_root

__all__ = ["PipelineInfo", "PIPELINES", "DEFAULT_CONVERT_SPEC", "DEFAULT_CLASSIFICATION_SPEC",
           "DEFAULT_DETECTION_SPEC", "DEFAULT_FINETUNE_SPEC", "finetune_spec", "get_pipeline",
           "load_pipeline"]


@dataclass(frozen=True)
class PipelineInfo:
    """One pipeline of the catalogue.

    Attributes:
        name: the catalogue key (``tlt-pipeline run <name>``), file stem in ``pipelines/``.
        function: the ``@dsl.pipeline`` function's name in that file.
        description: one line for ``tlt-pipeline list``.
    """

    name: str
    function: str
    description: str


PIPELINES: dict[str, PipelineInfo] = {
    p.name: p
    for p in (
        PipelineInfo("detection", "detection",
                     "KITTI detection data set -> TFRecords (convert) -> DetectNet_v2 (train) -> AP "
                     "(evaluate) -> prune -> retrain -> AP before vs after (evaluate; a sweep over "
                     "thresholds keeps the smallest model) -> quality gate -> export -> fp32 and int8 "
                     "engines (build_engine) -> AP of the engine (evaluate); a run summary on exit."),
        PipelineInfo("classification", "classification",
                     "Folder-per-class images -> trained classifier (train) -> metrics and confusion "
                     "matrix (evaluate) -> prune -> retrain -> evaluate before vs after (a sweep over "
                     "thresholds keeps the smallest model) -> quality gate -> export -> fp32 and int8 "
                     "engines (build_engine) -> evaluate the engine; a run summary on exit."),
        PipelineInfo("retraining", "retraining",
                     "Scheduled retraining (detection): new data -> data gate -> TFRecords -> "
                     "fine-tune the registry's production model -> champion vs challenger on the "
                     "same held-out set -> promote when better by a margin."),
    )
}

#: Dataset export spec of the detection pipeline's sample data: a KITTI tree with images/ and
#: labels/ (what `tlt.data.synthetic.make_detection_dataset` writes), 20 % validation, 2 shards.
DEFAULT_CONVERT_SPEC = """\
kitti_config {
  root_directory_path: "data/sample-kitti"
  image_dir_name: "images"
  label_dir_name: "labels"
  image_extension: ".png"
  partition_mode: "random"
  num_partitions: 2
  val_split: 20
  num_shards: 2
}
image_directory_path: "data/sample-kitti"
"""


#: Classification experiment of the classification pipeline: a CPU-sized ResNet-10 at 3x32x32
#: (the sample data of `tlt.data.synthetic.make_classification_dataset`). The data set paths are
#: pipeline parameters; a real run passes its own spec (e.g. examples/specs/classification_resnet18.txt).
DEFAULT_CLASSIFICATION_SPEC = """\
model_config {
  arch: "resnet"
  n_layers: 10
  input_image_size: "3,32,32"
}
train_config {
  optimizer: "adam"
  batch_size_per_gpu: 8
  n_epochs: 3
  n_workers: 2
  reg_config { type: "L2" scope: "Conv2D,Dense" weight_decay: 0.00005 }
  lr_config { scheduler: "cosine" learning_rate: 0.002 soft_start: 0.1 }
  checkpoint_interval: 1
}
eval_config { top_k: 2 }
random_seed: 42
"""


#: DetectNet_v2 experiment of the detection pipeline, sized for the demo's sample data (``./build.sh
#: demo``: 240 synthetic frames at 240x128, 192 for training): a ResNet-10 from scratch on car and
#: pedestrian, 20 epochs of batch 8 (about 5 minutes of 2 CPU cores), the settings of
#: ``examples/specs/detection_tiny.txt`` that bench/detection_quality.py measures (see
#: bench/RESULTS.md, "demo"). Validated once, after the last epoch: the evaluate stage scores the
#: final model anyway. Clusters need a confidence (summed coverage) of 0.5 for car and 0.3 for
#: pedestrian: at the default 0.1 the report drew ~17 boxes per frame for ~2 objects (the same model
#: scores 73 instead of 66 mAP there, from the many low-confidence boxes). The data sources are
#: replaced by the convert stage's TFRecords; a real run passes its own spec (for example
#: examples/specs/detection_resnet18.txt).
DEFAULT_DETECTION_SPEC = """\
random_seed: 7
model_config {
  template: "resnet"
  num_layers: 10
  use_pooling: false
  use_batch_norm: true
  all_projections: true
  objective_set { cov {} bbox { scale: 35.0 offset: 0.5 } }
}
bbox_rasterizer_config {
  target_class_config { key: "car" value { cov_center_x: 0.5 cov_center_y: 0.5 cov_radius_x: 0.4 cov_radius_y: 0.4 bbox_min_radius: 1.0 } }
  target_class_config { key: "pedestrian" value { cov_center_x: 0.5 cov_center_y: 0.5 cov_radius_x: 1.0 cov_radius_y: 1.0 bbox_min_radius: 1.0 } }
  deadzone_radius: 0.67
}
postprocessing_config {
  target_class_config { key: "car" value { clustering_config { coverage_threshold: 0.005 dbscan_eps: 0.15 dbscan_min_samples: 0.05 minimum_bounding_box_height: 4 dbscan_confidence_threshold: 0.5 } } }
  target_class_config { key: "pedestrian" value { clustering_config { coverage_threshold: 0.005 dbscan_eps: 0.15 dbscan_min_samples: 0.05 minimum_bounding_box_height: 4 dbscan_confidence_threshold: 0.3 } } }
}
cost_function_config {
  target_classes { name: "car" class_weight: 1.0 coverage_foreground_weight: 0.05 objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 } objectives { name: "bbox" initial_weight: 10.0 weight_target: 10.0 } }
  target_classes { name: "pedestrian" class_weight: 1.0 coverage_foreground_weight: 0.05 objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 } objectives { name: "bbox" initial_weight: 10.0 weight_target: 10.0 } }
  enable_autoweighting: true
  max_objective_weight: 0.9999
  min_objective_weight: 0.0001
}
training_config {
  batch_size_per_gpu: 8
  num_epochs: 20
  learning_rate { soft_start_annealing_schedule { min_learning_rate: 5e-5 max_learning_rate: 5e-3 soft_start: 0.1 annealing: 0.7 } }
  regularizer { type: L1 weight: 3e-9 }
  optimizer { adam { epsilon: 1e-08 beta1: 0.9 beta2: 0.999 } }
  cost_scaling { enabled: false initial_exponent: 20.0 increment: 0.005 decrement: 1.0 }
  checkpoint_interval: 5
}
augmentation_config {
  preprocessing { output_image_width: 240 output_image_height: 128 output_image_channel: 3 min_bbox_width: 1.0 min_bbox_height: 1.0 enable_auto_resize: true allow_small_input: true }
  spatial_augmentation { hflip_probability: 0.5 vflip_probability: 0.0 zoom_min: 1.0 zoom_max: 1.0 translate_max_x: 4.0 translate_max_y: 4.0 }
  color_augmentation { color_shift_stddev: 0.0 hue_rotation_max: 25.0 saturation_shift_max: 0.2 contrast_scale_max: 0.1 contrast_center: 0.5 }
}
evaluation_config {
  validation_period_during_training: 20
  first_validation_epoch: 20
  minimum_detection_ground_truth_overlap { key: "car" value: 0.7 }
  minimum_detection_ground_truth_overlap { key: "pedestrian" value: 0.5 }
  evaluation_bucket_config { key: "easy" value { minimum_height: 10 maximum_height: 9999 minimum_occlusion: 0 maximum_occlusion: 0 truncation { minimum: 0.0 maximum: 0.15 } } }
  evaluation_bucket_config { key: "moderate" value { minimum_height: 6 maximum_height: 9999 minimum_occlusion: 0 maximum_occlusion: 1 truncation { minimum: 0.0 maximum: 0.3 } } }
  evaluation_bucket_config { key: "hard" value { minimum_height: 6 maximum_height: 9999 minimum_occlusion: 0 maximum_occlusion: 2 truncation { minimum: 0.0 maximum: 0.5 } } }
  average_precision_mode: SAMPLE
  evaluation_mode: VOC
  num_recall_points: 11
}
dataset_config {
  data_sources { tfrecords_path: "data/tfrecords/tfrecords-fold-*" image_directory_path: "data/sample-kitti" }
  image_extension: "png"
  target_class_mapping { key: "car" value: "car" }
  target_class_mapping { key: "pedestrian" value: "pedestrian" }
  validation_fold: 0
}
"""


_LEARNING_RATE = re.compile(r"\b(min_learning_rate|max_learning_rate)(\s*:\s*)([0-9.]+(?:[eE][-+]?\d+)?)")


def finetune_spec(spec_text: str, factor: float = 0.1) -> str:
    """A DetectNet_v2 spec for fine-tuning a trained model: its learning rates times ``factor``.

    Fine-tuning with the rates that train from scratch throws a trained detector back: on the
    retraining demo's data (`tlt.orchestration.retraining_demo`), 6 epochs at the full rate took
    the champion from 36.2 to 0.3 mAP, at a tenth of it to 38.9.

    Raises:
        PipelineError: the spec sets no ``min_learning_rate`` / ``max_learning_rate``.
    """
    scaled, count = _LEARNING_RATE.subn(
        lambda m: f"{m.group(1)}{m.group(2)}{float(m.group(3)) * factor:g}", spec_text)
    if count == 0:
        raise PipelineError("fine-tuning spec: the spec sets no min_learning_rate or "
                            "max_learning_rate to scale (expected a soft_start_annealing_schedule)")
    return scaled


#: Fine-tuning experiment of the retraining pipeline: `DEFAULT_DETECTION_SPEC` at a tenth of its
#: learning rates (see `finetune_spec`).
DEFAULT_FINETUNE_SPEC = finetune_spec(DEFAULT_DETECTION_SPEC)


def get_pipeline(name: str) -> PipelineInfo:
    """The catalogue entry of ``name``.

    Raises:
        PipelineError: naming the known pipelines when ``name`` is not one.
    """
    return lookup(PIPELINES, name, f"unknown pipeline {name!r}")


def load_pipeline(name: str, root: str | Path | None = None,
                  components_root: str | Path | None = None, *, retries: bool = True) -> Any:
    """Import ``<root>/pipelines/<name>.py`` and return its ``@dsl.pipeline`` function.

    Args:
        name: catalogue key.
        root: the checkout (folder holding ``pipelines/`` and ``components/``); default `repo_root`.
        components_root: folder whose ``components/`` the pipeline's components come from; default
            ``root`` (``tlt-pipeline compile`` points it at freshly generated components).
        retries: give tasks the registry's retry policy (local runs leave it out).

    Raises:
        PipelineError: unknown pipeline, missing file, or a file without the expected function.
    """
    info = get_pipeline(name)
    root = Path(root if root is not None else repo_root())
    path = root / "pipelines" / f"{info.name}.py"
    if not path.is_file():
        raise PipelineError(f"pipeline file {path} is missing")
    with using_components(components_root if components_root is not None else root, retries=retries):
        module = import_file(path, f"tlt_pipelines_{info.name}")
    func = getattr(module, info.function, None)
    if func is None:
        raise PipelineError(f"{path} defines no pipeline function {info.function}()")
    return func
