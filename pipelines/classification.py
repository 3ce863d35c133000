"""Classification pipeline: folder-per-class images -> train -> evaluate -> prune -> retrain ->
evaluate (before vs after pruning), once or per threshold of a prune sweep (``dsl.ParallelFor``) ->
the smallest model within a tolerance of the best (pick_pruned, ``dsl.Collected``) -> quality gate
on its accuracy (``dsl.If``) -> export (int8 calibration) -> fp32 and int8 engines (build_engine) ->
evaluate the engine (Keras vs fp32 engine vs int8 engine). The whole DAG runs inside a
``dsl.ExitHandler`` whose exit task (run_summary) writes the run's summary even when a step fails.

Compiled by ``tlt-pipeline compile`` into ``pipelines/classification.yaml`` (Kubeflow) and
``manifests/workflows/classification.yaml`` (Argo); run on a laptop with
``tlt-pipeline run classification --local --param train_dataset=DIR/train --param val_dataset=DIR/val
--param eval_dataset=DIR/test``. Each evaluate task's Metrics and ClassificationMetrics outputs show
accuracy, per-class F1 and the confusion matrix in the Kubeflow UI.
"""

from kfp import dsl

from tlt.orchestration.model_dag import (MODEL_DAG_STAGES, deploy, gate_passed,
                                         model_dag_local_outputs, pick_and_gate)
from tlt.orchestration.pipeline_parts import load_components
from tlt.orchestration.pipelines import DEFAULT_CLASSIFICATION_SPEC
from tlt.orchestration.task_settings import configure_task

__all__ = ["classification", "LOCAL_OUTPUTS"]

#: The KFP components of the DAG's stages, by registry key.
ops = load_components(*MODEL_DAG_STAGES)

#: What a local run reports as the pipeline's outputs (see `model_dag_local_outputs`).
LOCAL_OUTPUTS = model_dag_local_outputs(confusion=("evaluate", "confusion"))


@dsl.pipeline(name="tlt-classification",
              description="TLT image classification: train, evaluate, prune and retrain (one threshold "
                          "or a sweep), gate on accuracy, export and build an engine; evaluate each "
                          "model; a run summary at the end.")
def classification(train_dataset: str, val_dataset: str, eval_dataset: str,
                   spec: str = DEFAULT_CLASSIFICATION_SPEC, gpus: int = 1,
                   gpu_node_selector: dict = {}, checkpoint_root: str = "",  # noqa: B006 (KFP literal)
                   pruning_thresholds: list = [0.05], pruning_normalizer: str = "L2",
                   retrain_epochs: int = 2, sweep_tolerance: float = 1.0,
                   quality_threshold: float = 0.0, engine_precision: str = "int8",
                   calibration_batches: int = 4, calibration_batch_size: int = 8):
    """Train, prune, retrain and deploy an image classifier; evaluate each model; write a run
    summary whatever happens.

    Args:
        train_dataset: URI of the training images (one sub-folder per class); also the int8
            calibration images.
        val_dataset: URI of the validation images.
        eval_dataset: URI of the images to evaluate every model on.
        spec: classification experiment spec, TLT prototxt text; retraining uses it with the
            pruned model as pretrained model.
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
            sweep_tolerance of the best accuracy. Each value costs a retraining.
        pruning_normalizer: tlt-prune -n: max (the guide's default) or L2. L2 divides each filter's
            norm by the layer's L2 norm of all its filter norms, so wide layers lose most filters
            at a small threshold; with max, models trained for a few epochs keep nearly every
            filter below thresholds of 0.9.
        retrain_epochs: epochs of retraining the pruned model (0: the spec's n_epochs).
        sweep_tolerance: prune sweep: allowed accuracy drop (points of %) from the best candidate
            for a smaller one to be kept.
        quality_threshold: the retrained model's accuracy (in %, on eval_dataset) must reach it
            for export and the engine builds to run; otherwise they are skipped and the quality
            gate's report says why. 0 lets every model through: set it for production data.
        engine_precision: precision of the final engine (int8 or fp32); the report also shows an
            fp32 engine.
        calibration_batches: int8 calibration batches of the export.
        calibration_batch_size: images per calibration batch.
    """
    summary = configure_task(ops.run_summary(pipeline="classification"))
    with dsl.ExitHandler(summary, name="classification-run"):
        train_task = configure_task(ops.train(task="classification", spec=spec,
                                              train_dataset=train_dataset, val_dataset=val_dataset,
                                              gpus=gpus, checkpoint_root=checkpoint_root,
                                              run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                                    node_selector=gpu_node_selector)
        evaluate_task = configure_task(ops.evaluate(task="classification", data_dir=eval_dataset,
                                                    model=train_task.outputs["model"]))
        with dsl.ParallelFor(pruning_thresholds, name="prune-sweep") as threshold:
            prune_task = configure_task(ops.prune(pruning_threshold=threshold,
                                                  normalizer=pruning_normalizer,
                                                  model=train_task.outputs["model"]))
            prune_task.after(evaluate_task)
            retrain_task = configure_task(ops.retrain(
                task="classification", spec=spec, epochs=retrain_epochs,
                train_dataset=train_dataset, val_dataset=val_dataset, gpus=gpus,
                pretrained_model=prune_task.outputs["pruned_model"], checkpoint_root=checkpoint_root,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                node_selector=gpu_node_selector)
            pruning_eval = configure_task(ops.evaluate(task="classification", data_dir=eval_dataset,
                                                       model=retrain_task.outputs["model"],
                                                       compare_a=train_task.outputs["model"],
                                                       labels="unpruned,pruned + retrained"))
        pick, gate = pick_and_gate(ops, "classification", pruning_eval, prune_task,
                                   tolerance=sweep_tolerance, threshold=quality_threshold)
        with gate_passed(gate):
            deploy(ops, pick.outputs["model"], export_data={"cal_data_dir": train_dataset},
                   evaluate_args={"task": "classification", "data_dir": eval_dataset},
                   engine_precision=engine_precision, calibration_batches=calibration_batches,
                   calibration_batch_size=calibration_batch_size)
