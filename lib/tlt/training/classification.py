"""``tlt-train classification``: fine-tune a classifier on a folder-per-class data set.

Results folder layout (all written atomically; a rerun on the same folder resumes)::

    results_dir/
      checkpoints/epoch_NNN.keras, latest.json   per-epoch checkpoints (model + optimizer state)
      events/                                    TensorBoard logs
      training_log.csv                           one row of metrics per epoch
      classmap.json                              {"class name": index}
      status.json                                progress for UIs and pipelines
      model.tlt                                  the final model (encrypted when a key is given)
      metadata.json                              lineage of the artifact
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from tlt.artifacts import write_metadata
from tlt.data.augment import AugmentConfig
from tlt.data.classification import scan_image_folder, write_class_map
from tlt.data.classification_input import PREPROCESSING, build_classification_input
from tlt.errors import SpecError
from tlt.status import StatusWriter
from tlt.training.callbacks import final_metrics, trim_training_log

__all__ = ["TrainResult", "train_classification", "build_augment_config", "FINAL_MODEL_NAME"]

_log = logging.getLogger(__name__)

FINAL_MODEL_NAME = "model.tlt"


@dataclass
class TrainResult:
    """What a training run produced."""

    model_path: str
    epochs: int
    resumed_from_epoch: int
    class_names: list[str]
    history: dict[str, list[float]] = field(default_factory=dict)
    skipped_images: int = 0


def build_augment_config(aug) -> AugmentConfig:
    """Translate the spec's ``train_config.augmentation_config`` into an `AugmentConfig`."""
    jitter = aug.enable_color_jitter
    return AugmentConfig(
        random_crop=aug.enable_random_crop,
        crop_scale=(aug.random_crop_min_scale, aug.random_crop_max_scale),
        hflip=aug.enable_horizontal_flip,
        brightness=aug.brightness if jitter else 0.0,
        contrast=aug.contrast if jitter else 0.0,
        saturation=aug.saturation if jitter else 0.0,
        hue=aug.hue if jitter else 0.0,
    )


def _build_new_model(spec, num_classes: int, key: str | None):
    from tlt.models.classifier import build_classifier
    from tlt.training.regularizers import apply_regularization
    from tlt.training.transfer import load_pretrained_model, transfer_weights

    tc = spec.train_config
    model = build_classifier(spec.model_config, num_classes)
    if tc.pretrained_model_path:
        source, _ = load_pretrained_model(tc.pretrained_model_path, key=key)
        transfer_weights(model, source)
        del source
    reg = tc.reg_config
    return apply_regularization(model, reg.type, reg.weight_decay, reg.scope)


def _compile(model, spec, steps_per_epoch: int, num_classes: int):
    import keras

    from tlt.training.optimizers import build_optimizer
    from tlt.training.schedules import build_lr_schedule

    tc = spec.train_config
    schedule = build_lr_schedule(tc.lr_config, steps_per_epoch=steps_per_epoch, epochs=tc.n_epochs)
    top_k = max(1, min(spec.eval_config.top_k, num_classes))
    model.compile(
        optimizer=build_optimizer(tc, schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=tc.label_smoothing),
        metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(k=top_k, name="top_k_accuracy")],
    )


def _without_optimizer(model):
    """An uncompiled copy of ``model`` (same graph, names and weights): the shipped model does
    not carry optimizer slots, which would triple its size for nothing."""
    import keras

    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def train_classification(spec, results_dir: str | Path, *, key: str | None = None, gpus: int = 1,
                         spec_text: str | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume training) a classifier as the spec says.

    Args:
        spec: a ClassificationExperiment message with defaults applied (tlt.spec.load).
        results_dir: local results folder; an existing one with checkpoints is resumed.
        key: encryption key of the final .tlt (and of a .tlt pretrained model); None = plain.
        gpus: replicas for MirroredStrategy (logical CPU devices where no GPU exists).
        spec_text: the spec as the user wrote it, stored in the model's metadata.
        progress: show Keras' per-step progress bar (else one line per epoch).

    Raises:
        SpecError, DataError, ModelFileError, ModelKeyError: bad spec, data or pretrained model.
    """
    import contextlib

    import keras

    from tlt.io import storage
    from tlt.models.backbones._config import parse_model_config
    from tlt.training.strategy import build_strategy, is_chief

    tc = spec.train_config
    if not tc.train_dataset_path:
        raise SpecError("train_config.train_dataset_path is required for training",
                        field="train_config.train_dataset_path")
    backbone = parse_model_config(spec.model_config)
    results = Path(results_dir)
    results.mkdir(parents=True, exist_ok=True)
    chief = is_chief()
    status = StatusWriter(results, "train") if chief else None
    strategy = build_strategy(gpus)
    keras.utils.set_random_seed(spec.random_seed)

    try:
        with contextlib.ExitStack() as stack:
            train_root = stack.enter_context(storage.staged_input(tc.train_dataset_path))
            train = scan_image_folder(train_root, workers=tc.n_workers)
            val = None
            if tc.val_dataset_path:
                val_root = stack.enter_context(storage.staged_input(tc.val_dataset_path))
                val = scan_image_folder(val_root, class_names=train.class_names,
                                        workers=tc.n_workers)
            return _fit(spec, results, train, val, backbone, strategy, chief, status, key,
                        spec_text, progress)
    except Exception as err:
        # A UI following status.json must see the run stop, not a "running" state forever.
        if status is not None:
            status.failed(str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise


def _fit(spec, results, train, val, backbone, strategy, chief, status, key, spec_text,
         progress) -> TrainResult:
    import keras

    from tlt.io import modelfile
    from tlt.training.callbacks import StatusCallback
    from tlt.training.checkpoints import EpochCheckpoint, find_latest_checkpoint
    from tlt.training.strategy import is_multi_worker
    # Registers the schedules with Keras: a checkpoint's optimizer refers to them by name, and a
    # resumed run in a fresh process has not imported them yet.
    from tlt.training import schedules  # noqa: F401

    image_size = (backbone.channels, backbone.height, backbone.width)

    tc = spec.train_config
    num_classes = train.num_classes
    if chief:
        write_class_map(results / "classmap.json", train.class_names)
    replicas = strategy.num_replicas_in_sync
    global_batch = tc.batch_size_per_gpu * replicas

    multi_worker = is_multi_worker(strategy)
    strategy_name = "MultiWorkerMirroredStrategy" if multi_worker else type(strategy).__name__
    drop = multi_worker and len(train) >= global_batch
    steps_per_epoch = (len(train) // global_batch) if drop else math.ceil(len(train) / global_batch)
    _log.info("training with %s on %d replica(s)", strategy_name, replicas)
    _log.info("found %d training images in %d classes%s; %d steps per epoch of %d images",
              len(train), num_classes,
              f", {len(val)} validation images" if val is not None else "", steps_per_epoch,
              global_batch)

    ckpt_dir = results / "checkpoints"
    latest = find_latest_checkpoint(ckpt_dir)
    initial_epoch = 0
    with strategy.scope():
        if latest is not None:
            initial_epoch, path = latest
            _log.info("resuming from %s (epoch %d of %d)", path, initial_epoch, tc.n_epochs)
            model = keras.models.load_model(path)
        else:
            model = _build_new_model(spec, num_classes, key)
            _compile(model, spec, steps_per_epoch, num_classes)
    summary: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: summary.append(line), line_length=110)
    _log.info("model summary:\n%s", "\n".join(summary))

    history: dict[str, list[float]] = {}
    if initial_epoch < tc.n_epochs:
        train_ds = build_classification_input(
            train, image_size=image_size, batch_size=global_batch, training=True,
            augment=build_augment_config(tc.augmentation_config), seed=spec.random_seed,
            drop_remainder=drop, epoch=initial_epoch)
        val_ds = None
        if val is not None:
            val_ds = build_classification_input(val, image_size=image_size, batch_size=global_batch,
                                                training=False)
        callbacks = []
        if chief:
            # The CSV row of an epoch is written before its checkpoint, so a kill between the
            # two leaves an extra row (trimmed on resume) rather than a missing one.
            log_path = results / "training_log.csv"
            trim_training_log(log_path, initial_epoch)
            callbacks.append(keras.callbacks.CSVLogger(str(log_path), append=True))
        callbacks += [
            EpochCheckpoint(ckpt_dir, tc.checkpoint_interval, tc.n_epochs, enabled=chief),
            StatusCallback(status, tc.n_epochs),
        ]
        if chief:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(results / "events"),
                                                         write_graph=False))
        if multi_worker:
            from tlt.training.distributed_loop import fit_distributed

            # Keras' fit cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585).
            fit = fit_distributed(model, train_ds, epochs=tc.n_epochs, initial_epoch=initial_epoch,
                                  steps_per_epoch=steps_per_epoch, validation_data=val_ds,
                                  callbacks=callbacks, strategy=strategy,
                                  verbose=1 if progress else 2)
        else:
            fit = model.fit(train_ds, epochs=tc.n_epochs, initial_epoch=initial_epoch,
                            steps_per_epoch=steps_per_epoch, validation_data=val_ds,
                            callbacks=callbacks, shuffle=False, verbose=1 if progress else 2)
        history = {k: [float(x) for x in v] for k, v in fit.history.items()}

    model_path = results / FINAL_MODEL_NAME
    if chief:
        metadata = {
            "task": "classification",
            "arch": backbone.arch,
            "n_layers": backbone.n_layers,
            "classes": train.class_names,
            "input_dims": list(image_size),
            "preprocessing": PREPROCESSING,
            "epochs": int(tc.n_epochs),
            "spec": spec_text or "",
        }
        modelfile.save_keras_model(_without_optimizer(model), str(model_path), metadata, key=key)
        write_metadata(results, "train", spec=spec, parents=[{"uri": tc.train_dataset_path}],
                       task="classification", model=FINAL_MODEL_NAME, classes=train.class_names,
                       epochs=int(tc.n_epochs), resumed_from_epoch=initial_epoch,
                       encrypted=key is not None,
                       final_metrics=final_metrics(history, results))
        status.done(model=str(model_path))
    return TrainResult(model_path=str(model_path), epochs=int(tc.n_epochs),
                       resumed_from_epoch=initial_epoch, class_names=train.class_names,
                       history=history, skipped_images=len(train.skipped))
