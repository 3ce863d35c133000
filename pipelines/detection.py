"""Detection pipeline: KITTI data set -> TFRecords (convert) -> DetectNet_v2 (train) -> AP (evaluate)
-> prune -> retrain -> AP before vs after (evaluate), once or per threshold of a prune sweep
(``dsl.ParallelFor``) -> the smallest model within a tolerance of the best (pick_pruned, fan-in with
``dsl.Collected``) -> quality gate on its mAP (``dsl.If``) -> export (int8 calibration) -> fp32 and
int8 engines (build_engine) -> AP of the engine vs Keras vs fp32 engine (evaluate). The whole DAG runs
inside a ``dsl.ExitHandler`` whose exit task (run_summary) writes the run's summary even when a step
fails.

Compiled by ``tlt-pipeline compile`` into ``pipelines/detection.yaml`` (Kubeflow) and
``manifests/workflows/detection.yaml`` (Argo); run on a laptop with
``tlt-pipeline run detection --local --param dataset_root=DIR``. Each evaluate task's Metrics output
holds AP per class (and per bucket in kitti mode); its HTML report shows annotated validation
frames. The retrained model's report compares parameters, size on disk, CPU images/s and mAP before
and after pruning; the engine's report compares the Keras model, the fp32 and the int8 engine.
"""

from kfp import dsl

from tlt.orchestration.model_dag import (MODEL_DAG_STAGES, deploy, gate_passed,
                                         model_dag_local_outputs, pick_and_gate)
from tlt.orchestration.pipeline_parts import load_components
from tlt.orchestration.pipelines import DEFAULT_CONVERT_SPEC, DEFAULT_DETECTION_SPEC
from tlt.orchestration.task_settings import configure_task

__all__ = ["detection", "LOCAL_OUTPUTS"]

#: The KFP components of the DAG's stages, by registry key.
ops = load_components("convert", *MODEL_DAG_STAGES)

#: What a local run reports as the pipeline's outputs (see `model_dag_local_outputs`).
LOCAL_OUTPUTS = model_dag_local_outputs(dataset=("convert", "dataset"))


@dsl.pipeline(name="tlt-detection",
              description="TLT DetectNet_v2 detection: KITTI data set -> TFRecords -> trained detector "
                          "-> AP -> pruned and retrained detector (one threshold or a sweep) -> "
                          "quality gate -> int8 engine -> AP of the engine; a run summary at the end.")
def detection(dataset_root: str = "", convert_spec: str = DEFAULT_CONVERT_SPEC,
              validation_fold: int = 0, train_spec: str = DEFAULT_DETECTION_SPEC,
              evaluation_mode: str = "", gpus: int = 1,
              gpu_node_selector: dict = {}, checkpoint_root: str = "",  # noqa: B006 (KFP needs the literal)
              pruning_thresholds: list = [0.8],
              pruning_normalizer: str = "max", retrain_epochs: int = 20, sweep_tolerance: float = 1.0,
              quality_threshold: float = 10.0, engine_precision: str = "int8",
              calibration_batches: int = 4, calibration_batch_size: int = 8):
    """Convert a KITTI data set, train DetectNet_v2, prune and retrain it, gate it on mAP, build an
    engine; evaluate each model; write a run summary whatever happens.

    Args:
        dataset_root: URI of the KITTI data set (local, gs://, s3://); "" keeps the convert spec's path.
        convert_spec: dataset export spec, TLT prototxt text.
        validation_fold: fold recorded as validation by convert, -1 for none (training validates on
            the train spec's dataset_config.validation_fold).
        train_spec: DetectNet_v2 experiment spec, TLT prototxt text; its data sources are replaced by
            the converted TFRecords. Retraining uses it with the pruned model as pretrained model.
        evaluation_mode: "voc" or "kitti"; "" uses the train spec's evaluation_mode.
        gpus: replicas to train on.
        gpu_node_selector: node selector of the GPU tasks (train, retrain) as a JSON object, e.g.
            {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}; {} selects no label (the GPU
            request and toleration still place them on GPU nodes).
        checkpoint_root: folder (s3://, gs://, local) under which train and retrain mirror their
            results folder while training, so a retried pod resumes from the last checkpoint
            (per run and task: <checkpoint_root>/<run id>/<stage>-<digest>); e.g. a folder under
            the pipeline root such as s3://mlpipeline/v2/checkpoints; "" turns the mirror off.
        pruning_thresholds: tlt-prune -pth values (JSON list): filters whose normalised norm is
            below it are removed. One value prunes and retrains once; several run a prune sweep
            (each pruned, retrained and evaluated in parallel) and keep the smallest model within
            sweep_tolerance of the best mAP. Each value costs a retraining. 0.8 suits the demo's
            model (trained without strong L1, every filter norm is within 72-100 % of its layer's
            largest: 0.8 keeps 58 % of the parameters at -0.1 mAP before retraining); lower it
            (the guide's 0.1) for models trained with L1 regularization.
        pruning_normalizer: tlt-prune -n: max (the guide's default) or L2. L2 scores near-equal
            filters about 1/sqrt(layer width), so its threshold selects layers by width (0.05 cuts
            every 512-wide layer of the demo's ResNet-10 to the 16-filter minimum).
        retrain_epochs: epochs of retraining the pruned model (0: the train spec's num_epochs).
            Retraining restarts the spec's learning-rate schedule and cost autoweighting: on the
            demo 6 epochs lose about 30 mAP even with nothing pruned, 20 recover it (bench/RESULTS.md).
        sweep_tolerance: prune sweep: allowed mAP drop (points of %) from the best candidate
            for a smaller one to be kept.
        quality_threshold: the retrained model's mAP (in %, evaluation_mode) must reach it for
            export and the engine builds to run; otherwise they are skipped and the quality gate's
            report says why (the sample data's retrained detector reaches about 20).
        engine_precision: precision of the final engine (int8 or fp32); the report also shows an
            fp32 engine.
        calibration_batches: int8 calibration batches of the export.
        calibration_batch_size: frames per calibration batch.
    """
    summary = configure_task(ops.run_summary(pipeline="detection"))
    with dsl.ExitHandler(summary, name="detection-run"):
        dataset = configure_task(ops.convert(spec=convert_spec, dataset_root=dataset_root,
                                             validation_fold=validation_fold)).outputs["dataset"]
        train_task = configure_task(ops.train(task="detection", spec=train_spec, gpus=gpus,
                                              dataset=dataset, checkpoint_root=checkpoint_root,
                                              run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                                    node_selector=gpu_node_selector)
        evaluate_task = configure_task(ops.evaluate(task="detection", mode=evaluation_mode,
                                                    model=train_task.outputs["model"],
                                                    dataset=dataset))
        with dsl.ParallelFor(pruning_thresholds, name="prune-sweep") as threshold:
            prune_task = configure_task(ops.prune(pruning_threshold=threshold,
                                                  normalizer=pruning_normalizer,
                                                  model=train_task.outputs["model"]))
            prune_task.after(evaluate_task)
            retrain_task = configure_task(ops.retrain(
                task="detection", spec=train_spec, epochs=retrain_epochs, gpus=gpus,
                pretrained_model=prune_task.outputs["pruned_model"], dataset=dataset,
                checkpoint_root=checkpoint_root, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                node_selector=gpu_node_selector)
            pruning_eval = configure_task(ops.evaluate(task="detection", mode=evaluation_mode,
                                                       dataset=dataset,
                                                       model=retrain_task.outputs["model"],
                                                       compare_a=train_task.outputs["model"],
                                                       labels="unpruned,pruned + retrained"))
        pick, gate = pick_and_gate(ops, "detection", pruning_eval, prune_task,
                                   tolerance=sweep_tolerance, threshold=quality_threshold)
        with gate_passed(gate):
            deploy(ops, pick.outputs["model"], export_data={"dataset": dataset},
                   evaluate_args={"task": "detection", "mode": evaluation_mode, "spec": train_spec,
                                  "dataset": dataset},
                   engine_precision=engine_precision, calibration_batches=calibration_batches,
                   calibration_batch_size=calibration_batch_size)
