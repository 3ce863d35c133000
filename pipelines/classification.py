"""Classification pipeline: folder-per-class images -> train -> evaluate.

Compiled by ``tlt-pipeline compile`` into ``pipelines/classification.yaml`` (Kubeflow) and
``manifests/workflows/classification.yaml`` (Argo); run on a laptop with
``tlt-pipeline run classification --local --param train_dataset=DIR/train --param val_dataset=DIR/val
--param eval_dataset=DIR/test``. The evaluate task's Metrics and ClassificationMetrics outputs show
accuracy, per-class F1 and the confusion matrix in the Kubeflow UI.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Model

from tlt.orchestration.components import configure_task, load_component
from tlt.orchestration.pipelines import DEFAULT_CLASSIFICATION_SPEC

__all__ = ["classification"]

train = load_component("train")
evaluate = load_component("evaluate")

Outputs = NamedTuple("Outputs", [("model", Model), ("metrics", Metrics),
                                 ("confusion", ClassificationMetrics), ("report", HTML)])


@dsl.pipeline(name="tlt-classification",
              description="TLT image classification: train a classifier, then evaluate it.")
def classification(train_dataset: str, val_dataset: str, eval_dataset: str,
                   spec: str = DEFAULT_CLASSIFICATION_SPEC, gpus: int = 1) -> Outputs:
    """Train and evaluate an image classifier.

    Args:
        train_dataset: URI of the training images (one sub-folder per class).
        val_dataset: URI of the validation images.
        eval_dataset: URI of the images to evaluate the final model on.
        spec: classification experiment spec, TLT prototxt text.
        gpus: replicas to train on.
    """
    train_task = configure_task(train(task="classification", spec=spec, train_dataset=train_dataset,
                                      val_dataset=val_dataset, gpus=gpus))
    evaluate_task = configure_task(evaluate(task="classification", data_dir=eval_dataset,
                                            model=train_task.outputs["model"]))
    return Outputs(model=train_task.outputs["model"], metrics=evaluate_task.outputs["metrics"],
                   confusion=evaluate_task.outputs["confusion"],
                   report=evaluate_task.outputs["report"])
