"""``tlt-train classification``: fine-tune a classifier on a folder-per-class data set.

Results folder layout (all written atomically; a rerun on the same folder resumes)::

    results_dir/
      checkpoints/epoch_NNN.keras, latest.json   per-epoch checkpoints (model + optimizer state)
      events/                                    TensorBoard logs
      training_log.csv                           one row of metrics per epoch
      checkpoints/run_identity.json              what a resumed run must share with this one
      classmap.json                              {"class name": index}
      status.json                                progress for UIs and pipelines
      model.tlt                                  the final model (encrypted when a key is given)
      metadata.json                              lineage of the artifact
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlt.artifacts import write_metadata
from tlt.data.augment import AugmentConfig
from tlt.data.classification import scan_image_folder, write_class_map
from tlt.data.classification_input import PREPROCESSING, build_classification_input
from tlt.errors import SpecError
from tlt.status import StatusWriter
from tlt.training.callbacks import final_metrics, trim_training_log
from tlt.training.outputs import FINAL_MODEL_NAME, TrainResult, shippable_model
from tlt.training.results_dir import open_results_dir
from tlt.training.run import RunBase, claim_results_dir, fit_epochs, log_model_summary

__all__ = ["TrainResult", "train_classification", "build_or_load_model", "build_augment_config",
           "FINAL_MODEL_NAME"]

_log = logging.getLogger(__name__)


@dataclass
class _Run(RunBase):
    """A classification run: `RunBase` with the backbone and the data splits."""

    backbone: Any  # BackboneSpec
    train: Any  # ImageFolderSplit
    val: Any  # ImageFolderSplit | None

    @property
    def epochs(self) -> int:
        return int(self.spec.train_config.n_epochs)

    @property
    def image_size(self) -> tuple[int, int, int]:
        return (self.backbone.channels, self.backbone.height, self.backbone.width)


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


def _build_new_model(run: _Run, key: str | None):
    """The model of a new run: from model_config (with pretrained weights), or a pruned graph."""
    from tlt.models.classifier import build_classifier
    from tlt.training.regularizers import apply_regularization
    from tlt.training.transfer import start_from_pretrained

    spec, tc = run.spec, run.spec.train_config
    model = build_classifier(spec.model_config, run.train.num_classes)
    if tc.pretrained_model_path:
        model = start_from_pretrained(model, tc.pretrained_model_path, key,
                                      classes=run.train.class_names, input_shape=run.image_size)
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
        SpecError, DataError, ModelFileError, ModelKeyError: bad spec, data or pretrained model
            (a spec that changed what the folder's checkpoints fix is a SpecError, raised before
            anything but status.json is written).
        StorageError: the results folder is a file.
        Interrupted: SIGTERM; ``status.json`` then says ``interrupted`` and a rerun resumes.
    """
    from tlt.models.backbones._config import parse_model_config
    from tlt.training.strategy import is_chief

    tc = spec.train_config
    if not tc.train_dataset_path:
        raise SpecError("train_config.train_dataset_path is required for training",
                        field="train_config.train_dataset_path")
    backbone = parse_model_config(spec.model_config)
    results = open_results_dir(results_dir)
    chief = is_chief()
    status = StatusWriter(results, "train") if chief else None
    try:
        with contextlib.ExitStack() as stack:
            train, val = _scan_data(tc, stack)
            run = _plan_run(spec, results, chief, status, backbone, train, val, gpus, key)
            model, initial_epoch = build_or_load_model(run, key)
            history = _run_epochs(run, model, initial_epoch, progress)
            if chief:
                _finish(run, model, initial_epoch, history, key, spec_text)
        return TrainResult(model_path=str(results / FINAL_MODEL_NAME), epochs=run.epochs,
                           resumed_from_epoch=initial_epoch, class_names=train.class_names,
                           history=history, skipped_images=len(train.skipped))
    except Exception as err:
        # A UI following status.json must see the run stop ("failed", or "interrupted" for a
        # SIGTERM), not a "running" state forever.
        if status is not None:
            status.finish_with(err)
        raise


def _scan_data(tc, stack: contextlib.ExitStack):
    """The training split and the validation split (or None), staged to local folders."""
    from tlt.io import storage

    train_root = stack.enter_context(storage.staged_input(tc.train_dataset_path))
    train = scan_image_folder(train_root, workers=tc.n_workers)
    val = None
    if tc.val_dataset_path:
        val_root = stack.enter_context(storage.staged_input(tc.val_dataset_path))
        val = scan_image_folder(val_root, class_names=train.class_names, workers=tc.n_workers)
    return train, val


def _plan_run(spec, results: Path, chief: bool, status, backbone, train, val, gpus: int,
              key: str | None) -> _Run:
    """Pick strategy and batching, check the folder can resume, then write the class map."""
    import keras

    from tlt.training.batching import plan_batches
    from tlt.training.strategy import build_strategy, is_multi_worker

    strategy = build_strategy(gpus)
    keras.utils.set_random_seed(spec.random_seed)
    multi_worker = is_multi_worker(strategy)
    batches = plan_batches(int(spec.train_config.batch_size_per_gpu),
                           strategy.num_replicas_in_sync, len(train), drop_remainder=multi_worker,
                           field="train_config.batch_size_per_gpu")
    run = _Run(spec=spec, results=results, chief=chief, status=status, backbone=backbone,
               train=train, val=val, strategy=strategy, multi_worker=multi_worker,
               global_batch=batches.global_batch, steps=batches.steps_per_epoch,
               drop_remainder=batches.drop_remainder)
    _check_folder(run, key)
    _log.info("training with %s on %d replica(s)",
              "MultiWorkerMirroredStrategy" if multi_worker else type(strategy).__name__,
              strategy.num_replicas_in_sync)
    _log.info("found %d training images in %d classes%s; %d steps per epoch of %d images",
              len(train), train.num_classes,
              f", {len(val)} validation images" if val is not None else "", run.steps,
              run.global_batch)
    return run


def _check_folder(run: _Run, key: str | None) -> None:
    """Refuse checkpoints of another spec before writing anything; sweep a killed run's
    temporary files; record this run's identity and class map."""
    from tlt.training.checkpoints import find_latest_checkpoint
    from tlt.training.run_identity import classification_identity
    from tlt.training.transfer import pretrained_pruned_params

    pruned = pretrained_pruned_params(run.spec.train_config.pretrained_model_path, key)
    identity = classification_identity(run.backbone, run.train.class_names, pruned)
    claim_results_dir(run, identity, resuming=find_latest_checkpoint(run.ckpt_dir) is not None)
    if run.chief:
        write_class_map(run.results / "classmap.json", run.train.class_names)


def build_or_load_model(run: _Run, key: str | None):
    """``(compiled model, initial epoch)``: resumed from the newest checkpoint, else new.

    A new model starts from ``train_config.pretrained_model_path`` when one is given (weights of
    matching layers), else from random weights. A pruned pretrained model is retrained as it is
    (its graph, not model_config's widths); its classes and input must be the spec's.
    """
    import keras

    from tlt.training.checkpoints import find_latest_checkpoint
    # Registers the schedules with Keras: a checkpoint's optimizer refers to them by name, and a
    # resumed run in a fresh process has not imported them yet.
    from tlt.training import schedules  # noqa: F401

    latest = find_latest_checkpoint(run.ckpt_dir)
    initial_epoch = 0
    with run.strategy.scope():
        if latest is not None:
            initial_epoch, path = latest
            _log.info("resuming from %s (epoch %d of %d)", path, initial_epoch, run.epochs)
            model = keras.models.load_model(path)
        else:
            model = _build_new_model(run, key)
            _compile(model, run.spec, run.steps, run.train.num_classes)
    log_model_summary(model)
    return model, initial_epoch


def _run_epochs(run: _Run, model, initial_epoch: int, progress: bool) -> dict[str, list[float]]:
    """Train the remaining epochs; return the per-epoch logs of this run."""
    import keras

    from tlt.training.callbacks import StatusCallback
    from tlt.training.checkpoints import EpochCheckpoint

    spec, tc = run.spec, run.spec.train_config
    if initial_epoch >= run.epochs:
        return {}
    train_ds = build_classification_input(
        run.train, image_size=run.image_size, batch_size=run.global_batch, training=True,
        augment=build_augment_config(tc.augmentation_config), seed=spec.random_seed,
        drop_remainder=run.drop_remainder, epoch=initial_epoch)
    val_ds = None
    if run.val is not None:
        val_ds = build_classification_input(run.val, image_size=run.image_size,
                                            batch_size=run.global_batch, training=False)
    callbacks = []
    if run.chief:
        # The CSV row of an epoch is written before its checkpoint, so a kill between the
        # two leaves an extra row (trimmed on resume) rather than a missing one.
        log_path = run.results / "training_log.csv"
        trim_training_log(log_path, initial_epoch)
        callbacks.append(keras.callbacks.CSVLogger(str(log_path), append=True))
    callbacks += [
        EpochCheckpoint(run.ckpt_dir, tc.checkpoint_interval, tc.n_epochs, enabled=run.chief),
        StatusCallback(run.status, tc.n_epochs),
    ]
    if run.chief:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run.results / "events"),
                                                     write_graph=False))
    return fit_epochs(run, model, train_ds, initial_epoch=initial_epoch, callbacks=callbacks,
                      progress=progress, validation_data=val_ds)


def _finish(run: _Run, model, initial_epoch: int, history: dict[str, list[float]],
            key: str | None, spec_text: str | None) -> None:
    """Write the final model and metadata.json; mark status done."""
    from tlt.io import modelfile

    model_path = run.results / FINAL_MODEL_NAME
    metadata = {
        "task": "classification",
        "arch": run.backbone.arch,
        "n_layers": run.backbone.n_layers,
        "classes": run.train.class_names,
        "input_dims": list(run.image_size),
        "preprocessing": PREPROCESSING,
        "epochs": run.epochs,
        "spec": spec_text or "",
    }
    modelfile.save_keras_model(shippable_model(model), str(model_path), metadata, key=key)
    write_metadata(run.results, "train", spec=run.spec,
                   parents=[{"uri": run.spec.train_config.train_dataset_path}],
                   task="classification", model=FINAL_MODEL_NAME, classes=run.train.class_names,
                   epochs=run.epochs, resumed_from_epoch=initial_epoch, encrypted=key is not None,
                   final_metrics=final_metrics(history, run.results))
    run.status.done(model=str(model_path))
