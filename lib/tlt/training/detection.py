"""``tlt-train detection``: train DetectNet_v2 from TFRecords (guide 5.2 and 11.2).

Results folder layout (atomic writes; a rerun on the same folder resumes)::

    results_dir/
      checkpoints/epoch_NNN.npz, latest.json   weights, Adam slots, objective weights, epoch logs
      checkpoints/run_identity.json            what a resumed run must share with this one
      events/                                  TensorBoard logs
      training_log.csv                         losses, per-class costs, objective weights per epoch
      validation/epoch_NNN.json                AP of every validation run
      status.json                              progress (epoch, loss, last mAP)
      model.tlt                                the final model (encrypted when a key is given)
      metadata.json                            lineage

Crash safety: an epoch's checkpoint is written before its validation (a failing validation
loses no training) and stores the epoch's logs. A run killed after the checkpoint but before the
epoch's CSV row was written redoes that epoch's validation and row from the checkpoint on resume,
so ``training_log.csv`` holds every epoch once and ``validation/`` every scheduled file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from tlt.artifacts import write_metadata
from tlt.data.classification_input import PREPROCESSING
from tlt.io.atomic import atomic_write_text
from tlt.status import StatusWriter
from tlt.training.callbacks import final_metrics, trim_training_log
from tlt.training.detection_callbacks import TrainingLogCSV, ValidationCallback, logged_epochs
from tlt.training.outputs import FINAL_MODEL_NAME, TrainResult, shippable_model
from tlt.training.results_dir import open_results_dir
from tlt.training.run import RunBase, claim_results_dir, fit_epochs, log_model_summary

__all__ = ["train_detection", "build_or_load_model", "build_detection_optimizer",
           "ValidationCallback", "DetectionModel"]

_log = logging.getLogger(__name__)


@dataclass
class _Run(RunBase):
    """A DetectNet_v2 run: `RunBase` with the classes, the data and the precision plan."""

    classes: list[str]
    data_description: str
    precision: Any  # tlt.training.precision.PrecisionPlan
    pruned_params: int | None = None  # set when the pretrained model is a pruned one

    @property
    def log_path(self) -> Path:
        return self.results / "training_log.csv"

    @property
    def epochs(self) -> int:
        return int(self.spec.training_config.num_epochs)


@dataclass
class DetectionModel:
    """A compiled DetectNet_v2 with its loss, optimizer and where training stands."""

    model: Any
    loss: Any
    optimizer: Any
    initial_epoch: int = 0
    extra: dict = field(default_factory=dict)  # the checkpoint's extra state (resumed runs)


def build_detection_optimizer(training_config, schedule):
    """Adam with the spec's parameters (the only optimizer DetectNet_v2 supports in TLT v1)."""
    adam = training_config.optimizer.adam
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=adam.beta1, beta_2=adam.beta2,
                                 epsilon=adam.epsilon)


def _regularization(training_config) -> tuple[str, float]:
    """``(type name, weight)`` of the spec's regularizer."""
    from tlt.proto import detection_config_pb2 as pb

    reg = training_config.regularizer
    return pb.RegularizerConfig.RegularizationType.Name(reg.type), float(reg.weight)


def _regularizer(training_config):
    from tlt.training.regularizers import build_regularizer

    return build_regularizer(*_regularization(training_config))


def train_detection(spec, results_dir: str | Path, *, key: str | None = None, gpus: int = 1,
                    spec_text: str | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume) DetectNet_v2 as the spec says.

    Args:
        spec: a DetectionExperiment with defaults applied.
        results_dir: local results folder; one with checkpoints is resumed.
        key: encryption key of the final .tlt (and of a .tlt pretrained model).
        gpus: MirroredStrategy replicas (logical CPU devices where no GPU exists).
        spec_text: the spec as written, stored in the model's metadata.
        progress: per-step progress bar.

    Raises:
        SpecError, DataError, ModelFileError: bad spec, data or pretrained model (a spec that
            changed what the results folder's checkpoints fix is a SpecError).
        StorageError: the results folder is a file.
        Interrupted: SIGTERM; ``status.json`` then says ``interrupted`` and a rerun resumes.
    """
    from tlt.training.strategy import is_chief

    results = open_results_dir(results_dir)
    chief = is_chief()
    status = StatusWriter(results, "train") if chief else None
    try:
        run = _plan_run(spec, results, gpus, chief, status, key)
        state = build_or_load_model(run, key)
        validation = ValidationCallback(spec, results, state.loss, run.global_batch, status,
                                        enabled=chief, total_epochs=run.epochs)
        if chief:
            trim_training_log(run.log_path, state.initial_epoch)
            _complete_cut_epoch(run, state, validation)
        history = _run_epochs(run, state, validation, progress)
        if chief:
            _finish(run, state, validation, history, key, spec_text)
        return TrainResult(model_path=str(results / FINAL_MODEL_NAME), epochs=run.epochs,
                           resumed_from_epoch=state.initial_epoch, class_names=run.classes,
                           history=history)
    except Exception as err:
        # A UI following status.json must see the run stop ("failed", or "interrupted" for a
        # SIGTERM), not a "running" state forever.
        if status is not None:
            status.finish_with(err)
        raise


def _plan_run(spec, results: Path, gpus: int, chief: bool, status, key: str | None) -> _Run:
    """Check the data, pick the strategy, precision and batch; check the folder can resume."""
    from tlt.data.detection_input import check_split
    from tlt.evaluation.detection import class_names_of
    from tlt.training.batching import plan_batches
    from tlt.training.precision import build_precision_plan
    from tlt.training.strategy import build_strategy, is_multi_worker

    tc = spec.training_config
    classes = class_names_of(spec)
    strategy = build_strategy(gpus)
    keras.utils.set_random_seed(spec.random_seed)
    split = check_split(spec, validation=False)
    check_split(spec, validation=True)  # fail now, not at the first validation epoch
    multi_worker = is_multi_worker(strategy)
    batches = plan_batches(int(tc.batch_size_per_gpu), strategy.num_replicas_in_sync,
                           split.num_frames, drop_remainder=multi_worker,
                           field="training_config.batch_size_per_gpu", what="training frames")
    precision = build_precision_plan(_floatx(spec), tc.cost_scaling)
    for warning in precision.warnings:
        _log.warning("%s", warning)
    for note in precision.notes:
        _log.info("%s", note)
    run = _Run(spec=spec, results=results, chief=chief, status=status, classes=classes,
               strategy=strategy, multi_worker=multi_worker, global_batch=batches.global_batch,
               steps=batches.steps_per_epoch, drop_remainder=batches.drop_remainder,
               data_description=split.description, precision=precision)
    _check_folder(run, key)
    _log.info("training DetectNet_v2 (%s) on %d frames of %s with %s on %d replica(s); "
              "%d steps per epoch of %d images", ", ".join(classes), split.num_frames,
              split.description,
              "MultiWorkerMirroredStrategy" if multi_worker else type(strategy).__name__,
              strategy.num_replicas_in_sync, run.steps, run.global_batch)
    return run


def _floatx(spec) -> str:
    from tlt.proto import detection_config_pb2 as pb

    enum = pb.DetectionModelConfig.TrainingPrecision.BackendFloatx
    return enum.Name(spec.model_config.training_precision.backend_floatx)


def _check_folder(run: _Run, key: str | None) -> None:
    """Refuse checkpoints of another spec, then sweep a killed run's temporary files."""
    from tlt.training.run_identity import detection_identity
    from tlt.training.state_checkpoints import find_latest_state
    from tlt.training.transfer import pretrained_pruned_params

    run.pruned_params = pretrained_pruned_params(run.spec.model_config.pretrained_model_file, key)
    identity = detection_identity(run.spec, run.classes, run.precision.policy, run.pruned_params)
    claim_results_dir(run, identity, resuming=find_latest_state(run.ckpt_dir) is not None)


def build_or_load_model(run: _Run, key: str | None) -> DetectionModel:
    """The compiled model of this run: resumed from the newest checkpoint, else new.

    A new model starts from ``model_config.pretrained_model_file`` when one is given (weights
    of matching layers), else from random weights. A pruned pretrained model is trained as it
    is, resumed runs included: the checkpoints hold weights only, and its graph is not the one
    model_config describes.
    """
    from tlt.models.detectnet_v2.loss import build_detectnet_loss
    from tlt.training.precision import apply_loss_scaling, dtype_policy
    from tlt.training.schedules import build_soft_start_annealing
    from tlt.training.state_checkpoints import find_latest_state, load_state

    spec, tc = run.spec, run.spec.training_config
    with run.strategy.scope(), dtype_policy(run.precision.policy):
        latest = find_latest_state(run.ckpt_dir)
        model = _build_model(run, key, pretrained=latest is None)
        loss = build_detectnet_loss(spec.cost_function_config, run.classes)
        schedule = build_soft_start_annealing(tc.learning_rate, steps_per_epoch=run.steps,
                                              epochs=tc.num_epochs)
        optimizer = apply_loss_scaling(build_detection_optimizer(tc, schedule), run.precision)
        # Loss scaling is exactly what cost_scaling says: never Keras' automatic default.
        model.compile(optimizer=optimizer, auto_scale_loss=False, **loss.compile_args())
        state = DetectionModel(model, loss, optimizer)
        if latest is not None:
            state.initial_epoch, path = latest
            _log.info("resuming from %s (epoch %d of %d)", path, state.initial_epoch, run.epochs)
            state.extra = load_state(path, model, optimizer)
            if state.extra.get("objective_weights"):
                loss.set_objective_weights(state.extra["objective_weights"])
    log_model_summary(model)
    return state


def _build_model(run: _Run, key: str | None, *, pretrained: bool):
    """DetectNet_v2 from model_config, with pretrained weights when ``pretrained``; or the
    pruned graph of a pruned pretrained model (regularised like a built one)."""
    from tlt.models.detectnet_v2.model import build_detectnet_v2
    from tlt.training.transfer import start_from_pretrained

    spec, tc = run.spec, run.spec.training_config
    pre = spec.augmentation_config.preprocessing
    uri = spec.model_config.pretrained_model_file
    model = build_detectnet_v2(spec.model_config, run.classes,
                               input_height=pre.output_image_height,
                               input_width=pre.output_image_width,
                               channels=pre.output_image_channel,
                               allow_small_input=pre.allow_small_input,
                               kernel_regularizer=_regularizer(tc))
    if not uri or (not pretrained and run.pruned_params is None):
        return model  # resumed: the checkpoint's weights replace any pretrained ones
    shape = (pre.output_image_channel, pre.output_image_height, pre.output_image_width)
    chosen = start_from_pretrained(model, uri, key, classes=run.classes, input_shape=shape)
    if chosen is model:
        return model
    if run.precision.policy != "float32":
        _log.warning("the pruned model retrains in float32: its saved graph fixes its dtypes")
    return _regularized(chosen, tc)


def _regularized(model, training_config):
    """``model`` with the spec's regulariser on every convolution kernel (as built ones have)."""
    from tlt.training.regularizers import apply_regularization

    return apply_regularization(model, *_regularization(training_config), "Conv2D,Dense")


def _complete_cut_epoch(run: _Run, state: DetectionModel, validation: ValidationCallback) -> None:
    """Redo the epoch-end work (validation, CSV row) a kill cut short after the checkpoint.

    The checkpoint of epoch N stores N's logs; if the CSV has no row for N, the run died in
    N's validation or before the row was written. The restored model, objective weights and
    optimizer are exactly those of that moment, so the redone validation is the one that was lost.
    """
    done = state.initial_epoch
    logs = state.extra.get("logs")
    if done == 0 or logs is None or (done - 1) in logged_epochs(run.log_path):
        return
    _log.info("epoch %d ended before its validation and log row were written; completing them",
              done)
    model = state.model
    if run.multi_worker:
        # The strategy's model predicts collectively and would wait for the other workers.
        model = type(model).from_config(model.get_config())
        model.set_weights(state.model.get_weights())
    csv_log = TrainingLogCSV(str(run.log_path))
    callbacks = keras.callbacks.CallbackList([validation, csv_log], model=model)
    csv_log.on_train_begin()
    try:
        callbacks.on_epoch_end(done - 1, dict(logs))
    finally:
        csv_log.on_train_end()
    validation.set_model(state.model)


def _run_epochs(run: _Run, state: DetectionModel, validation: ValidationCallback,
                progress: bool) -> dict[str, list[float]]:
    """Train the remaining epochs; return the per-epoch logs of this run."""
    from tlt.data.detection_input import build_detection_input
    from tlt.models.detectnet_v2.autoweight import AutoWeighting
    from tlt.training.callbacks import StatusCallback
    from tlt.training.state_checkpoints import StateCheckpoint

    spec, tc = run.spec, run.spec.training_config
    if state.initial_epoch >= run.epochs:
        return {}
    train_ds = build_detection_input(spec, training=True, batch_size=run.global_batch,
                                     seed=spec.random_seed, epoch=state.initial_epoch,
                                     drop_remainder=run.drop_remainder)
    loss = state.loss
    # Order matters: autoweighting sets the next epoch's weights (and logs the used ones) before
    # the checkpoint stores them with the epoch's logs; the checkpoint comes before validation,
    # so a failing validation loses no training, and `_complete_cut_epoch` can redo validation
    # and the CSV row of an epoch whose run died between the two.
    callbacks = [
        AutoWeighting(loss),
        StateCheckpoint(run.ckpt_dir, tc.checkpoint_interval, tc.num_epochs,
                        extra_state=lambda: {"objective_weights": loss.objective_weights()},
                        enabled=run.chief),
        validation,
        StatusCallback(run.status, tc.num_epochs),
    ]
    if run.chief:
        callbacks += [TrainingLogCSV(str(run.log_path)),
                      keras.callbacks.TensorBoard(log_dir=str(run.results / "events"),
                                                  write_graph=False)]
    # Validation predicts on the chief alone: a multi-worker run gives it a model outside the
    # strategy.
    return fit_epochs(run, state.model, train_ds, initial_epoch=state.initial_epoch,
                      callbacks=callbacks, progress=progress, local_callbacks=[validation])


def _finish(run: _Run, state: DetectionModel, validation: ValidationCallback,
            history: dict[str, list[float]], key: str | None, spec_text: str | None) -> None:
    """Write the final model, metadata.json, validation/final.json; mark status done."""
    from tlt.io import modelfile

    spec = run.spec
    pre = spec.augmentation_config.preprocessing
    bbox = spec.model_config.objective_set.bbox
    model_path = run.results / FINAL_MODEL_NAME
    metadata = {
        "task": "detection",
        "arch": spec.model_config.template or spec.model_config.arch,
        "n_layers": int(spec.model_config.num_layers),
        "classes": run.classes,
        "input_dims": [int(pre.output_image_channel), int(pre.output_image_height),
                       int(pre.output_image_width)],
        "preprocessing": PREPROCESSING,
        "stride": 16,
        "bbox_scale": float(bbox.scale),
        "bbox_offset": float(bbox.offset),
        "output_names": ["output_cov", "output_bbox"],
        "epochs": run.epochs,
        "training_precision": run.precision.policy,
        "spec": spec_text or "",
    }
    modelfile.save_keras_model(shippable_model(state.model), str(model_path), metadata, key=key)
    write_metadata(run.results, "train", spec=spec, parents=[{"uri": run.data_description}],
                   task="detection", model=FINAL_MODEL_NAME, classes=run.classes,
                   epochs=run.epochs, resumed_from_epoch=state.initial_epoch,
                   encrypted=key is not None, final_metrics=final_metrics(history, run.results))
    final = run.results / "validation" / "final.json"
    last_epoch = run.results / "validation" / f"epoch_{run.epochs:03d}.json"
    if validation.last is not None:
        atomic_write_text(final, validation.last.results.to_json() + "\n")
    elif not final.exists() and last_epoch.is_file():
        # A rerun of a run killed just before this point: the last epoch's report is the final one.
        atomic_write_text(final, last_epoch.read_text(encoding="utf-8"))
    run.status.done(model=str(model_path))
