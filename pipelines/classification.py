"""Classification pipeline: folder-per-class images -> train -> evaluate -> prune -> retrain ->
evaluate (before vs after pruning) -> export (int8 calibration) -> fp32 and int8 engines
(build_engine) -> evaluate the engine (Keras vs fp32 engine vs int8 engine).

Compiled by ``tlt-pipeline compile`` into ``pipelines/classification.yaml`` (Kubeflow) and
``manifests/workflows/classification.yaml`` (Argo); run on a laptop with
``tlt-pipeline run classification --local --param train_dataset=DIR/train --param val_dataset=DIR/val
--param eval_dataset=DIR/test``. Each evaluate task's Metrics and ClassificationMetrics outputs show
accuracy, per-class F1 and the confusion matrix in the Kubeflow UI.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Model

from tlt.orchestration.components import load_component
from tlt.orchestration.task_settings import configure_task
from tlt.orchestration.pipelines import DEFAULT_CLASSIFICATION_SPEC

__all__ = ["classification"]

train = load_component("train")
evaluate = load_component("evaluate")
prune = load_component("prune")
retrain = load_component("retrain")
export = load_component("export")
build_engine = load_component("build_engine")

Outputs = NamedTuple("Outputs", [("model", Model), ("metrics", Metrics),
                                 ("confusion", ClassificationMetrics), ("report", HTML),
                                 ("pruned_model", Model), ("retrained_model", Model),
                                 ("pruning_report", HTML), ("export", Model), ("engine", Model),
                                 ("engine_metrics", Metrics), ("engine_report", HTML)])


@dsl.pipeline(name="tlt-classification",
              description="TLT image classification: train, evaluate, prune, retrain, export and build "
                          "an engine; evaluate each model.")
def classification(train_dataset: str, val_dataset: str, eval_dataset: str,
                   spec: str = DEFAULT_CLASSIFICATION_SPEC, gpus: int = 1,
                   pruning_threshold: float = 0.05, pruning_normalizer: str = "L2",
                   retrain_epochs: int = 2,
                   engine_precision: str = "int8", calibration_batches: int = 4,
                   calibration_batch_size: int = 8) -> Outputs:
    """Train, prune, retrain and deploy an image classifier; evaluate each model.

    Args:
        train_dataset: URI of the training images (one sub-folder per class); also the int8
            calibration images.
        val_dataset: URI of the validation images.
        eval_dataset: URI of the images to evaluate every model on.
        spec: classification experiment spec, TLT prototxt text; retraining uses it with the
            pruned model as pretrained model.
        gpus: replicas to train on.
        pruning_threshold: tlt-prune -pth: filters whose normalised norm is below it are removed.
        pruning_normalizer: tlt-prune -n: max (the guide's default) or L2. L2 divides each filter's
            norm by the layer's L2 norm of all its filter norms, so wide layers lose most filters
            at a small threshold; with max, models trained for a few epochs keep nearly every
            filter below thresholds of 0.9.
        retrain_epochs: epochs of retraining the pruned model (0: the spec's n_epochs).
        engine_precision: precision of the final engine (int8 or fp32); the report also shows an
            fp32 engine.
        calibration_batches: int8 calibration batches of the export.
        calibration_batch_size: images per calibration batch.
    """
    train_task = configure_task(train(task="classification", spec=spec, train_dataset=train_dataset,
                                      val_dataset=val_dataset, gpus=gpus))
    evaluate_task = configure_task(evaluate(task="classification", data_dir=eval_dataset,
                                            model=train_task.outputs["model"]))
    prune_task = configure_task(prune(pruning_threshold=pruning_threshold,
                                      normalizer=pruning_normalizer,
                                      model=train_task.outputs["model"]))
    prune_task.after(evaluate_task)
    retrain_task = configure_task(retrain(task="classification", spec=spec, epochs=retrain_epochs,
                                          train_dataset=train_dataset, val_dataset=val_dataset,
                                          gpus=gpus, pretrained_model=prune_task.outputs["pruned_model"]))
    pruning_eval = configure_task(evaluate(task="classification", data_dir=eval_dataset,
                                           model=retrain_task.outputs["model"],
                                           compare_a=train_task.outputs["model"],
                                           labels="unpruned,pruned + retrained"))
    export_task = configure_task(export(data_type="int8", batches=calibration_batches,
                                        cal_batch_size=calibration_batch_size,
                                        cal_data_dir=train_dataset,
                                        model=retrain_task.outputs["model"]))
    export_task.after(pruning_eval)
    fp32_engine = configure_task(build_engine(precision="fp32", export=export_task.outputs["export"]))
    engine_task = configure_task(build_engine(precision=engine_precision,
                                              export=export_task.outputs["export"]))
    engine_eval = configure_task(evaluate(task="classification", data_dir=eval_dataset,
                                          framework="engine", model=engine_task.outputs["engine"],
                                          compare_a=retrain_task.outputs["model"],
                                          compare_b=fp32_engine.outputs["engine"]))
    return Outputs(model=train_task.outputs["model"], metrics=evaluate_task.outputs["metrics"],
                   confusion=evaluate_task.outputs["confusion"], report=evaluate_task.outputs["report"],
                   pruned_model=prune_task.outputs["pruned_model"],
                   retrained_model=retrain_task.outputs["model"],
                   pruning_report=pruning_eval.outputs["report"], export=export_task.outputs["export"],
                   engine=engine_eval.outputs["scored_model"],
                   engine_metrics=engine_eval.outputs["metrics"],
                   engine_report=engine_eval.outputs["report"])
