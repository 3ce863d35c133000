"""Scheduled retraining pipeline (detection): new data -> data gate -> convert -> fine-tune the
registry's production model (champion) -> evaluate champion and challenger on the same held-out
set -> promote the challenger only when it is better by a margin.

Compiled by ``tlt-pipeline compile`` into ``pipelines/retraining.yaml`` (Kubeflow), the Argo
Workflow ``manifests/workflows/retraining.yaml`` and its CronWorkflow; scheduled on Kubeflow with
``tlt-pipeline schedule retraining --cron "0 3 * * *" --host URL --param new_data_uri=s3://...``;
run on a laptop with ``tlt-pipeline run retraining --local --param new_data_uri=DIR
--param registry_uri=DIR`` (``tlt-pipeline demo-retraining`` runs it twice on sample data).

The first run finds no champion: it trains from the spec (from scratch, or from the spec's
pretrained model), publishes the model as version 1 and promotes it, and its report says so.
Later runs fine-tune the champion, publish the challenger as the next version whatever the outcome
(every version keeps its metrics, lineage and the decision) and move the ``production`` alias only
when the challenger beats the champion by ``margin``; otherwise the promote task's report says why
the champion stays.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML

from tlt.orchestration.pipeline_parts import load_components
from tlt.orchestration.pipelines import (DEFAULT_CONVERT_SPEC, DEFAULT_DETECTION_SPEC,
                                         DEFAULT_FINETUNE_SPEC)
from tlt.orchestration.task_settings import configure_task

__all__ = ["retraining"]

#: The KFP components of the DAG's stages, by registry key.
ops = load_components("champion", "data_gate", "convert", "train", "retrain", "promote")

Outputs = NamedTuple("Outputs", [("data_report", HTML)])


def _promote(challenger, champ, dataset, gate, train_spec: str, registry_uri: str,
             model_name: str, alias: str, margin: float):
    """The promote task of one branch. Each branch has its own: kfp.local resolves a ``dsl.OneOf``
    of parameters but not of artifacts, and the challenger is an artifact."""
    return configure_task(ops.promote(task="detection", spec=train_spec, registry_uri=registry_uri,
                                      model_name=model_name, alias=alias, margin=margin,
                                      challenger=challenger, champion=champ.outputs["champion"],
                                      dataset=dataset, data_report=gate.outputs["gate"]))


@dsl.pipeline(name="tlt-retraining",
              description="TLT scheduled retraining (detection): new data -> data gate -> TFRecords "
                          "-> fine-tuned champion -> champion vs challenger on the same held-out set "
                          "-> promote when better by a margin.")
def retraining(new_data_uri: str = "data/sample-kitti", registry_uri: str = "data/registry",
               model_name: str = "detectnet", alias: str = "production",
               require_champion: bool = False, convert_spec: str = DEFAULT_CONVERT_SPEC,
               train_spec: str = DEFAULT_DETECTION_SPEC,
               finetune_spec: str = DEFAULT_FINETUNE_SPEC, finetune_epochs: int = 5,
               margin: float = 1.0, max_malformed_rate: float = 0.05,
               max_balance_shift: float = 0.2, allow_missing_classes: bool = False,
               allow_new_classes: bool = False, gpus: int = 1,
               gpu_node_selector: dict = {},  # noqa: B006 (KFP needs the literal default)
               checkpoint_root: str = "") -> Outputs:
    """Check new data, fine-tune the champion on it, and promote the challenger if it is better.

    Args:
        new_data_uri: the new KITTI data (local folder, gs:// or s3:// prefix with images/ and
            labels/); a prefix without frames fails the data gate in one line.
        registry_uri: the model registry (local folder, gs:// or s3://) holding the champion and
            receiving every challenger as a new version.
        model_name: the model's name in the registry.
        alias: the alias naming the champion (moved by a promotion).
        require_champion: fail when the registry has no champion, instead of training the first
            one from train_spec.
        convert_spec: dataset export spec, TLT prototxt text; its root is replaced by new_data_uri.
            Fold 0 is the held-out set both models are scored on.
        train_spec: DetectNet_v2 experiment spec; its data sources become the new TFRecords. A first
            run trains it as it is; both models are scored with its evaluation settings.
        finetune_spec: the experiment that fine-tunes the champion (its weights the starting
            point): the same model, classes and input size as train_spec, at a lower learning rate
            (the default is the default train_spec at a tenth of its rates, since the full rate
            throws a trained detector back; `tlt.orchestration.pipelines.finetune_spec` makes one
            from any spec).
        finetune_epochs: epochs of fine-tuning the champion (0: the spec's num_epochs).
        margin: mAP points the challenger must gain over the champion to be promoted (a tie never
            promotes).
        max_malformed_rate: data gate: highest share of malformed label lines.
        max_balance_shift: data gate: highest class-balance shift (total variation distance,
            0..1) against the champion's training data.
        allow_missing_classes: data gate: pass although a champion class has no object.
        allow_new_classes: data gate: pass although there are classes the champion never saw.
        gpus: replicas to train on.
        gpu_node_selector: node selector of the GPU tasks (fine-tune, first training) as a JSON
            object, e.g. {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}; {} selects none.
        checkpoint_root: folder (s3://, gs://, local) under which training mirrors its checkpoints
            so a retried pod resumes; "" turns the mirror off.
    """
    # finetune_spec is checked against the champion's and train_spec's model before any work.
    champ = configure_task(ops.champion(registry_uri=registry_uri, model_name=model_name,
                                        alias=alias, require_champion=require_champion,
                                        task="detection", finetune_spec=finetune_spec,
                                        train_spec=train_spec))
    gate = configure_task(ops.data_gate(task="detection", new_data_uri=new_data_uri,
                                        max_malformed_rate=max_malformed_rate,
                                        max_balance_shift=max_balance_shift,
                                        allow_missing_classes=allow_missing_classes,
                                        allow_new_classes=allow_new_classes,
                                        champion=champ.outputs["champion"]))
    convert_task = configure_task(ops.convert(spec=convert_spec, dataset_root=new_data_uri,
                                              validation_fold=0))
    convert_task.after(gate)  # never convert (or train on) data the gate refused
    # New frames arrive under the same prefix, so a cache hit on the parameters would reuse the
    # first run's TFRecords: convert every run.
    convert_task.set_caching_options(False)
    dataset = convert_task.outputs["dataset"]
    registry = dict(registry_uri=registry_uri, model_name=model_name, alias=alias, margin=margin)
    with dsl.If(champ.outputs["has_champion"] == True, name="champion-exists"):  # noqa: E712
        finetune = configure_task(ops.retrain(task="detection", spec=finetune_spec,
                                              epochs=finetune_epochs, gpus=gpus,
                                              pretrained_model=champ.outputs["champion"],
                                              dataset=dataset, checkpoint_root=checkpoint_root,
                                              run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                                  node_selector=gpu_node_selector)
        _promote(finetune.outputs["model"], champ, dataset, gate, train_spec, **registry)
    with dsl.Else(name="first-run"):
        first = configure_task(ops.train(task="detection", spec=train_spec, gpus=gpus,
                                         dataset=dataset, checkpoint_root=checkpoint_root,
                                         run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                               node_selector=gpu_node_selector)
        _promote(first.outputs["model"], champ, dataset, gate, train_spec, **registry)
    return Outputs(data_report=gate.outputs["report"])
