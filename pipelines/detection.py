"""Detection pipeline: a KITTI data set -> TFRecords (convert); train and evaluate join in later.

Compiled by ``tlt-pipeline compile`` into ``pipelines/detection.yaml`` (Kubeflow) and
``manifests/workflows/detection.yaml`` (Argo); run on a laptop with
``tlt-pipeline run detection --local --param dataset_root=DIR``.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset

from tlt.orchestration.components import configure_task, load_component
from tlt.orchestration.pipelines import DEFAULT_CONVERT_SPEC

__all__ = ["detection"]

convert = load_component("convert")

Outputs = NamedTuple("Outputs", [("dataset", Dataset)])


@dsl.pipeline(name="tlt-detection",
              description="TLT DetectNet_v2 detection: KITTI data set -> TFRecords (train/evaluate next).")
def detection(dataset_root: str = "", convert_spec: str = DEFAULT_CONVERT_SPEC,
              validation_fold: int = -1) -> Outputs:
    """Convert a KITTI data set into TFRecords.

    Args:
        dataset_root: URI of the KITTI data set (local, gs://, s3://); "" keeps the spec's path.
        convert_spec: dataset export spec, TLT prototxt text.
        validation_fold: fold to mark as validation, -1 for none.
    """
    convert_task = configure_task(convert(spec=convert_spec, dataset_root=dataset_root,
                                          validation_fold=validation_fold))
    return Outputs(dataset=convert_task.outputs["dataset"])
