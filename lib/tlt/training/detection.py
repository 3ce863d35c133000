"""``tlt-train detection``: train DetectNet_v2 from TFRecords (guide 5.2 and 11.2).

Results folder layout (atomic writes; a rerun on the same folder resumes)::

    results_dir/
      checkpoints/epoch_NNN.npz, latest.json   weights, Adam slots, objective weights per epoch
      events/                                  TensorBoard logs
      training_log.csv                         losses, per-class costs, objective weights per epoch
      validation/epoch_NNN.json                AP of every validation run
      status.json                              progress (epoch, loss, last mAP)
      model.tlt                                the final model (encrypted when a key is given)
      metadata.json                            lineage
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import keras

from tlt.artifacts import write_metadata
from tlt.data.classification_input import PREPROCESSING
from tlt.io.atomic import atomic_write_text
from tlt.status import StatusWriter
from tlt.training.callbacks import final_metrics, trim_training_log
from tlt.training.classification import TrainResult, _without_optimizer

__all__ = ["train_detection", "ValidationCallback", "build_detection_optimizer"]

_log = logging.getLogger(__name__)

FINAL_MODEL_NAME = "model.tlt"


class ValidationCallback(keras.callbacks.Callback):
    """Evaluate AP every ``validation_period_during_training`` epochs from ``first_validation_epoch``.

    The last epoch is validated too. Prints the AP table like TLT, writes
    ``validation/epoch_NNN.json`` and adds ``val_mAP`` (first
    bucket) and ``val_cost`` to the epoch logs so the CSV and TensorBoard loggers record them.
    """

    def __init__(self, experiment, results_dir: Path, loss, batch_size: int, status,
                 enabled: bool = True, total_epochs: int | None = None):
        super().__init__()
        cfg = experiment.evaluation_config
        self.experiment = experiment
        self.results_dir = Path(results_dir)
        self.loss = loss
        self.batch_size = batch_size
        self.status = status
        self.period = max(1, int(cfg.validation_period_during_training or 1))
        self.first = max(1, int(cfg.first_validation_epoch or 1))
        self.enabled = enabled
        self.total_epochs = total_epochs
        self.last = None

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        scheduled = done >= self.first and (done - self.first) % self.period == 0
        # The last epoch is always validated, so every run ends with the AP of its final model.
        if not self.enabled or not (scheduled or done == self.total_epochs):
            return
        from tlt.evaluation.detection import evaluate_detection_model

        evaluation = evaluate_detection_model(self.model, self.experiment, batch_size=self.batch_size,
                                              loss=self.loss)
        results = evaluation.results
        self.last = evaluation
        first_bucket = results.buckets[0]
        mean_ap = results.mean_ap.get(first_bucket)
        _log.info("validation after epoch %d (%d frames), validation cost: %.6f\n%s", done,
                  evaluation.num_frames, evaluation.validation_cost, results.table())
        out = self.results_dir / "validation" / f"epoch_{done:03d}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        results.write_json(out)
        if logs is not None:
            logs["val_mAP"] = float(mean_ap or 0.0)
            logs["val_cost"] = float(evaluation.validation_cost)
        if self.status is not None:
            self.status.update(last_validation={"epoch": done, "mAP": mean_ap,
                                                "cost": evaluation.validation_cost})


class _CSVLog(keras.callbacks.CSVLogger):
    """Keras' CSVLogger with one column set for a run and every resumption of it.

    Keras fixes the columns at the first epoch it logs, so ``val_mAP``/``val_cost`` were dropped
    when that epoch did not validate, and a resumed run appended rows that did not match the
    file's header. Here the columns are the existing file's header, else the first epoch's keys
    plus the validation keys; epochs without validation get "NA" there.
    """

    def __init__(self, filename: str, always: tuple[str, ...] = ("val_cost", "val_mAP")):
        super().__init__(filename, append=True)
        self._always = always

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        path = Path(self.filename)
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
            if header:
                self.keys = [k for k in header if k != "epoch"]

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            self.keys = sorted(set(logs or {}) | set(self._always))
        super().on_epoch_end(epoch, logs)


def build_detection_optimizer(training_config, schedule):
    """Adam with the spec's parameters (the only optimizer DetectNet_v2 supports in TLT v1)."""
    adam = training_config.optimizer.adam
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=adam.beta1, beta_2=adam.beta2,
                                 epsilon=adam.epsilon)


def _regularizer(training_config):
    from tlt.proto import detection_config_pb2 as pb
    from tlt.training.regularizers import build_regularizer

    reg = training_config.regularizer
    name = pb.RegularizerConfig.RegularizationType.Name(reg.type)
    return build_regularizer(name, reg.weight)


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
        SpecError, DataError, ModelFileError: bad spec, data or pretrained model.
    """
    from tlt.data.detection_input import build_detection_input, check_split
    from tlt.evaluation.detection import class_names_of
    from tlt.io import modelfile
    from tlt.models.detectnet_v2.autoweight import AutoWeighting
    from tlt.models.detectnet_v2.loss import build_detectnet_loss
    from tlt.models.detectnet_v2.model import build_detectnet_v2
    from tlt.training.callbacks import StatusCallback
    from tlt.training.schedules import build_soft_start_annealing
    from tlt.training.state_checkpoints import StateCheckpoint, find_latest_state, load_state
    from tlt.training.strategy import build_strategy, is_chief, is_multi_worker
    from tlt.training.transfer import load_pretrained_model, transfer_weights

    tc = spec.training_config
    pre = spec.augmentation_config.preprocessing
    classes = class_names_of(spec)
    results = Path(results_dir)
    results.mkdir(parents=True, exist_ok=True)
    chief = is_chief()
    status = StatusWriter(results, "train") if chief else None
    try:
        strategy = build_strategy(gpus)
        keras.utils.set_random_seed(spec.random_seed)

        split = check_split(spec, validation=False)
        check_split(spec, validation=True)  # fail now, not at the first validation epoch
        replicas = strategy.num_replicas_in_sync
        global_batch = tc.batch_size_per_gpu * replicas
        multi_worker = is_multi_worker(strategy)
        drop = multi_worker and split.num_frames >= global_batch
        steps = (split.num_frames // global_batch if drop
                 else math.ceil(split.num_frames / global_batch))
        _log.info("training DetectNet_v2 (%s) on %d frames of %s with %s on %d replica(s); "
                  "%d steps per epoch of %d images", ", ".join(classes), split.num_frames,
                  split.description,
                  "MultiWorkerMirroredStrategy" if multi_worker else type(strategy).__name__,
                  replicas, steps, global_batch)

        with strategy.scope():
            model = build_detectnet_v2(spec.model_config, classes, input_height=pre.output_image_height,
                                       input_width=pre.output_image_width,
                                       channels=pre.output_image_channel,
                                       allow_small_input=pre.allow_small_input,
                                       kernel_regularizer=_regularizer(tc))
            loss = build_detectnet_loss(spec.cost_function_config, classes)
            optimizer = build_detection_optimizer(
                tc, build_soft_start_annealing(tc.learning_rate, steps_per_epoch=steps,
                                               epochs=tc.num_epochs))
            model.compile(optimizer=optimizer, **loss.compile_args())
            ckpt_dir = results / "checkpoints"
            latest = find_latest_state(ckpt_dir)
            initial_epoch = 0
            if latest is not None:
                initial_epoch, path = latest
                _log.info("resuming from %s (epoch %d of %d)", path, initial_epoch, tc.num_epochs)
                extra = load_state(path, model, optimizer)
                if extra.get("objective_weights"):
                    loss.set_objective_weights(extra["objective_weights"])
            elif spec.model_config.pretrained_model_file:
                source, _ = load_pretrained_model(spec.model_config.pretrained_model_file, key=key)
                transfer_weights(model, source)
                del source
        summary: list[str] = []
        model.summary(print_fn=lambda line, *a, **k: summary.append(line), line_length=110)
        _log.info("model summary:\n%s", "\n".join(summary))

        history: dict[str, list[float]] = {}
        validation = ValidationCallback(spec, results, loss, global_batch, status, enabled=chief,
                                        total_epochs=int(tc.num_epochs))
        if initial_epoch < tc.num_epochs:
            train_ds = build_detection_input(spec, training=True, batch_size=global_batch,
                                             seed=spec.random_seed, epoch=initial_epoch,
                                             drop_remainder=drop)
            # Order matters: autoweighting sets the next epoch's weights before the checkpoint stores
            # them, and the checkpoint is taken before validation, so a failing validation loses no
            # training.
            callbacks = [
                AutoWeighting(loss),
                StateCheckpoint(ckpt_dir, tc.checkpoint_interval, tc.num_epochs,
                                extra_state=lambda: {"objective_weights": loss.objective_weights()},
                                enabled=chief),
                validation,
                StatusCallback(status, tc.num_epochs),
            ]
            if chief:
                trim_training_log(results / "training_log.csv", initial_epoch)
                callbacks += [_CSVLog(str(results / "training_log.csv")),
                              keras.callbacks.TensorBoard(log_dir=str(results / "events"),
                                                          write_graph=False)]
            if multi_worker:
                from tlt.training.distributed_loop import fit_distributed

                # Keras' fit cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585).
                # Validation predicts on the chief alone, so it gets a model outside the strategy.
                fit = fit_distributed(model, train_ds, epochs=tc.num_epochs,
                                      initial_epoch=initial_epoch, steps_per_epoch=steps,
                                      callbacks=callbacks, strategy=strategy,
                                      local_callbacks=[validation], verbose=1 if progress else 2)
            else:
                fit = model.fit(train_ds, epochs=tc.num_epochs, initial_epoch=initial_epoch,
                                steps_per_epoch=steps, callbacks=callbacks, shuffle=False,
                                verbose=1 if progress else 2)
            history = {k: [float(x) for x in v] for k, v in fit.history.items()}

        model_path = results / FINAL_MODEL_NAME
        if chief:
            bbox = spec.model_config.objective_set.bbox
            metadata = {
                "task": "detection",
                "arch": spec.model_config.template or spec.model_config.arch,
                "n_layers": int(spec.model_config.num_layers),
                "classes": classes,
                "input_dims": [int(pre.output_image_channel), int(pre.output_image_height),
                               int(pre.output_image_width)],
                "preprocessing": PREPROCESSING,
                "stride": 16,
                "bbox_scale": float(bbox.scale),
                "bbox_offset": float(bbox.offset),
                "output_names": ["output_cov", "output_bbox"],
                "epochs": int(tc.num_epochs),
                "spec": spec_text or "",
            }
            modelfile.save_keras_model(_without_optimizer(model), str(model_path), metadata, key=key)
            final = final_metrics(history, results)
            write_metadata(results, "train", spec=spec, parents=[{"uri": split.description}],
                           task="detection", model=FINAL_MODEL_NAME, classes=classes,
                           epochs=int(tc.num_epochs), resumed_from_epoch=initial_epoch,
                           encrypted=key is not None, final_metrics=final)
            if validation.last is not None:
                atomic_write_text(results / "validation" / "final.json",
                                  validation.last.results.to_json() + "\n")
            status.done(model=str(model_path))
        return TrainResult(model_path=str(model_path), epochs=int(tc.num_epochs),
                           resumed_from_epoch=initial_epoch, class_names=classes, history=history)
    except Exception as err:
        # A UI following status.json must see the run stop, not a "running" state forever.
        if status is not None:
            status.failed(str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise
