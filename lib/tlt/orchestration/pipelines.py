"""The pipeline catalogue: which DAGs exist, where their definitions live, and their default specs.

A pipeline is a ``@dsl.pipeline`` function in ``pipelines/<name>.py`` of the checkout; its compiled
IR is ``pipelines/<name>.yaml`` and its Argo Workflow ``manifests/workflows/<name>.yaml``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlt.errors import PipelineError
from tlt.orchestration.components import using_components
from tlt.orchestration.paths import repo_root

__all__ = ["PipelineInfo", "PIPELINES", "DEFAULT_CONVERT_SPEC", "DEFAULT_CLASSIFICATION_SPEC",
           "get_pipeline", "load_pipeline"]


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
                     "KITTI detection data set -> TFRecords (convert); train and evaluate follow."),
        PipelineInfo("classification", "classification",
                     "Folder-per-class images -> trained classifier (train) -> metrics and confusion "
                     "matrix (evaluate)."),
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
eval_config { batch_size: 16 top_k: 2 }
random_seed: 42
"""


def get_pipeline(name: str) -> PipelineInfo:
    """The catalogue entry of ``name``.

    Raises:
        PipelineError: naming the known pipelines when ``name`` is not one.
    """
    try:
        return PIPELINES[name]
    except KeyError:
        raise PipelineError(f"unknown pipeline {name!r}: expected one of {', '.join(PIPELINES)}") from None


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
    module_name = f"tlt_pipelines_{info.name}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    with using_components(components_root if components_root is not None else root, retries=retries):
        spec.loader.exec_module(module)
    func = getattr(module, info.function, None)
    if func is None:
        raise PipelineError(f"{path} defines no pipeline function {info.function}()")
    return func
