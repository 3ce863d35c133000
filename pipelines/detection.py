"""Detection pipeline: KITTI data set -> TFRecords (convert) -> DetectNet_v2 (train) -> AP (evaluate).

Compiled by ``tlt-pipeline compile`` into ``pipelines/detection.yaml`` (Kubeflow) and
``manifests/workflows/detection.yaml`` (Argo); run on a laptop with
``tlt-pipeline run detection --local --param dataset_root=DIR``. The evaluate task's Metrics output
holds AP per class (and per bucket in kitti mode); its HTML report shows annotated validation frames.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Model

from tlt.orchestration.components import configure_task, load_component
from tlt.orchestration.pipelines import DEFAULT_CONVERT_SPEC, DEFAULT_DETECTION_SPEC

__all__ = ["detection"]

convert = load_component("convert")
train = load_component("train")
evaluate = load_component("evaluate")

Outputs = NamedTuple("Outputs", [("dataset", Dataset), ("model", Model), ("metrics", Metrics),
                                 ("report", HTML)])


@dsl.pipeline(name="tlt-detection",
              description="TLT DetectNet_v2 detection: KITTI data set -> TFRecords -> trained detector -> AP.")
def detection(dataset_root: str = "", convert_spec: str = DEFAULT_CONVERT_SPEC,
              validation_fold: int = 0, train_spec: str = DEFAULT_DETECTION_SPEC,
              evaluation_mode: str = "", gpus: int = 1) -> Outputs:
    """Convert a KITTI data set, train DetectNet_v2 on it and evaluate it.

    Args:
        dataset_root: URI of the KITTI data set (local, gs://, s3://); "" keeps the convert spec's path.
        convert_spec: dataset export spec, TLT prototxt text.
        validation_fold: fold recorded as validation by convert, -1 for none (training validates on
            the train spec's dataset_config.validation_fold).
        train_spec: DetectNet_v2 experiment spec, TLT prototxt text; its data sources are replaced by
            the converted TFRecords.
        evaluation_mode: "voc" or "kitti"; "" uses the train spec's evaluation_mode.
        gpus: replicas to train on.
    """
    convert_task = configure_task(convert(spec=convert_spec, dataset_root=dataset_root,
                                          validation_fold=validation_fold))
    train_task = configure_task(train(task="detection", spec=train_spec, gpus=gpus,
                                      dataset=convert_task.outputs["dataset"]))
    evaluate_task = configure_task(evaluate(task="detection", mode=evaluation_mode,
                                            model=train_task.outputs["model"],
                                            dataset=convert_task.outputs["dataset"]))
    return Outputs(dataset=convert_task.outputs["dataset"], model=train_task.outputs["model"],
                   metrics=evaluate_task.outputs["metrics"], report=evaluate_task.outputs["report"])
