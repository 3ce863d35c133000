"""Detection pipeline: KITTI data set -> TFRecords (convert) -> DetectNet_v2 (train) -> AP (evaluate)
-> prune -> retrain -> AP before vs after (evaluate) -> export (int8 calibration) -> fp32 and int8
engines (build_engine) -> AP of the engine vs Keras vs fp32 engine (evaluate).

Compiled by ``tlt-pipeline compile`` into ``pipelines/detection.yaml`` (Kubeflow) and
``manifests/workflows/detection.yaml`` (Argo); run on a laptop with
``tlt-pipeline run detection --local --param dataset_root=DIR``. Each evaluate task's Metrics output
holds AP per class (and per bucket in kitti mode); its HTML report shows annotated validation
frames. The retrained model's report compares parameters, size on disk, CPU images/s and mAP before
and after pruning; the engine's report compares the Keras model, the fp32 and the int8 engine.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Model

from tlt.orchestration.components import load_component
from tlt.orchestration.task_settings import configure_task
from tlt.orchestration.pipelines import DEFAULT_CONVERT_SPEC, DEFAULT_DETECTION_SPEC

__all__ = ["detection"]

convert = load_component("convert")
train = load_component("train")
evaluate = load_component("evaluate")
prune = load_component("prune")
retrain = load_component("retrain")
export = load_component("export")
build_engine = load_component("build_engine")

Outputs = NamedTuple("Outputs", [("dataset", Dataset), ("model", Model), ("metrics", Metrics),
                                 ("report", HTML), ("pruned_model", Model),
                                 ("retrained_model", Model), ("pruning_report", HTML),
                                 ("export", Model), ("engine", Model), ("engine_metrics", Metrics),
                                 ("engine_report", HTML)])


@dsl.pipeline(name="tlt-detection",
              description="TLT DetectNet_v2 detection: KITTI data set -> TFRecords -> trained detector "
                          "-> AP -> pruned and retrained detector -> int8 engine -> AP of the engine.")
def detection(dataset_root: str = "", convert_spec: str = DEFAULT_CONVERT_SPEC,
              validation_fold: int = 0, train_spec: str = DEFAULT_DETECTION_SPEC,
              evaluation_mode: str = "", gpus: int = 1, pruning_threshold: float = 0.05,
              pruning_normalizer: str = "L2", retrain_epochs: int = 6, engine_precision: str = "int8",
              calibration_batches: int = 4, calibration_batch_size: int = 8) -> Outputs:
    """Convert a KITTI data set, train DetectNet_v2, prune and retrain it, build an engine; evaluate
    each model.

    Args:
        dataset_root: URI of the KITTI data set (local, gs://, s3://); "" keeps the convert spec's path.
        convert_spec: dataset export spec, TLT prototxt text.
        validation_fold: fold recorded as validation by convert, -1 for none (training validates on
            the train spec's dataset_config.validation_fold).
        train_spec: DetectNet_v2 experiment spec, TLT prototxt text; its data sources are replaced by
            the converted TFRecords. Retraining uses it with the pruned model as pretrained model.
        evaluation_mode: "voc" or "kitti"; "" uses the train spec's evaluation_mode.
        gpus: replicas to train on.
        pruning_threshold: tlt-prune -pth: filters whose normalised norm is below it are removed.
        pruning_normalizer: tlt-prune -n: max (the guide's default) or L2. L2 divides each filter's
            norm by the layer's L2 norm of all its filter norms, so wide layers lose most filters
            at a small threshold; with max, models trained for a few epochs keep nearly every
            filter below thresholds of 0.9.
        retrain_epochs: epochs of retraining the pruned model (0: the train spec's num_epochs).
        engine_precision: precision of the final engine (int8 or fp32); the report also shows an
            fp32 engine.
        calibration_batches: int8 calibration batches of the export.
        calibration_batch_size: frames per calibration batch.
    """
    dataset = configure_task(convert(spec=convert_spec, dataset_root=dataset_root,
                                     validation_fold=validation_fold)).outputs["dataset"]
    train_task = configure_task(train(task="detection", spec=train_spec, gpus=gpus, dataset=dataset))
    evaluate_task = configure_task(evaluate(task="detection", mode=evaluation_mode,
                                            model=train_task.outputs["model"], dataset=dataset))
    prune_task = configure_task(prune(pruning_threshold=pruning_threshold,
                                      normalizer=pruning_normalizer,
                                      model=train_task.outputs["model"]))
    prune_task.after(evaluate_task)
    retrain_task = configure_task(retrain(task="detection", spec=train_spec, epochs=retrain_epochs,
                                          gpus=gpus, pretrained_model=prune_task.outputs["pruned_model"],
                                          dataset=dataset))
    pruning_eval = configure_task(evaluate(task="detection", mode=evaluation_mode, dataset=dataset,
                                           model=retrain_task.outputs["model"],
                                           compare_a=train_task.outputs["model"],
                                           labels="unpruned,pruned + retrained"))
    export_task = configure_task(export(data_type="int8", batches=calibration_batches,
                                        cal_batch_size=calibration_batch_size,
                                        model=retrain_task.outputs["model"], dataset=dataset))
    export_task.after(pruning_eval)
    fp32_engine = configure_task(build_engine(precision="fp32", export=export_task.outputs["export"]))
    engine_task = configure_task(build_engine(precision=engine_precision,
                                              export=export_task.outputs["export"]))
    engine_eval = configure_task(evaluate(task="detection", mode=evaluation_mode, spec=train_spec,
                                          framework="engine", dataset=dataset,
                                          model=engine_task.outputs["engine"],
                                          compare_a=retrain_task.outputs["model"],
                                          compare_b=fp32_engine.outputs["engine"]))
    return Outputs(dataset=dataset, model=train_task.outputs["model"],
                   metrics=evaluate_task.outputs["metrics"], report=evaluate_task.outputs["report"],
                   pruned_model=prune_task.outputs["pruned_model"],
                   retrained_model=retrain_task.outputs["model"],
                   pruning_report=pruning_eval.outputs["report"], export=export_task.outputs["export"],
                   engine=engine_eval.outputs["scored_model"],
                   engine_metrics=engine_eval.outputs["metrics"],
                   engine_report=engine_eval.outputs["report"])
