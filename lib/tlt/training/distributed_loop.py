"""A minimal training loop for strategies Keras' ``model.fit`` cannot drive (multi-worker).

Keras 3's ``fit`` fails under ``tf.distribute.MultiWorkerMirroredStrategy``: its symbolic build
all-reduces a ``PerReplica`` batch eagerly and its per-step result reduction asks for axis 0 of
scalars (keras-team/keras#20585). This loop keeps everything else Keras does:

- the step is the model's own ``train_step`` / ``test_step`` (compiled losses, ``model.losses``
  regularisation, loss scaling for distribution, ``optimizer.apply_gradients``, which all-reduces
  the gradients), run on every replica with ``strategy.run``;
- losses and metrics are the model's compiled metric objects, whose on-read variables the
  strategy sums over all replicas of all workers when they are read, so the logs hold exactly
  the values ``fit`` would report, under the same keys;
- the Keras callbacks are driven by hand in ``fit``'s order, and validation adds ``val_*`` keys.

Every worker runs the same collective operations in the same order; callbacks that write files
must be disabled on non-chief workers by the caller (see ``tlt.training.strategy.is_chief``).
"""

from __future__ import annotations

import logging
import math

import keras
import tensorflow as tf

from tlt.errors import DataError

__all__ = ["fit_distributed", "distribute_dataset"]

_log = logging.getLogger(__name__)


def distribute_dataset(strategy, dataset):
    """Distribute ``dataset`` (batched by the global batch size) over ``strategy``'s replicas.

    Auto-sharding is set to DATA: the inputs come from file lists and in-memory tensors that
    every worker reads whole, so each worker keeps its share of every global batch (FILE
    sharding would find no reader to shard and fall back with a warning anyway).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _build(model, strategy, element_spec) -> None:
    # Create the compiled metrics', losses' and optimizer's variables now, in cross-replica
    # context, from the batch's spec: created on the first traced step they would be made in a
    # replica context, which tf.distribute refuses. Keras' fit does the same through this
    # method, but from an all-reduced real batch, which is what breaks under multi-worker.
    with strategy.scope():
        model._symbolic_build(data_batch=element_spec)  # noqa: SLF001


def _to_floats(logs) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items()}


def _make_step(model, strategy, step_fn):
    @tf.function(reduce_retracing=True)
    def step(batch):
        strategy.run(step_fn, args=(batch,))
        # Read in cross-replica context: each metric's on-read variables are summed over all
        # replicas (an all-reduce across workers), giving the running global value.
        return model.get_metrics_result()
    return step


def _make_sync(model, strategy):
    # Batch-norm moving statistics are non-trainable variables without an aggregation: every
    # replica updates its own copy from its own batches, so the workers' copies drift apart and
    # the chief would save statistics of its shard only. Averaging them at each epoch end gives
    # every worker (and the checkpoint) the same statistics, those of the whole data.
    variables = [v for v in model.non_trainable_variables
                 if getattr(v, "aggregation", "none") == "none"
                 and tf.as_dtype(v.dtype).is_floating]
    if strategy.num_replicas_in_sync == 1 or not variables:
        return None

    shapes = [tuple(v.shape) for v in variables]
    sizes = [math.prod(shape) for shape in shapes]

    def local_values():
        # One flat vector, so the whole model costs a single all-reduce, not one per variable.
        return tf.concat([tf.reshape(tf.cast(v.value, tf.float32), [-1]) for v in variables], 0)

    @tf.function
    def sync():
        mean = strategy.reduce(tf.distribute.ReduceOp.MEAN, strategy.run(local_values), axis=None)
        for variable, part, shape in zip(variables, tf.split(mean, sizes), shapes):
            variable.assign(tf.cast(tf.reshape(part, shape), variable.dtype))
    return sync


def _next(iterator, epoch: int, step: int, steps_per_epoch: int):
    try:
        return next(iterator)
    except (StopIteration, tf.errors.OutOfRangeError):
        raise DataError(f"training data ran out at step {step + 1} of epoch {epoch + 1}: "
                        f"expected {steps_per_epoch} steps per epoch (use a repeating dataset "
                        f"or fewer steps_per_epoch)") from None


def _evaluate(model, strategy, test_step, dataset, steps, callbacks) -> dict[str, float]:
    model.reset_metrics()
    callbacks.on_test_begin()
    logs: dict[str, float] = {}
    count = 0
    # A finite distributed dataset ends on every worker at the same step: the iterator agrees on
    # end-of-data across workers, handing out empty per-replica batches where needed.
    for batch in dataset:
        if steps is not None and count >= steps:
            break
        callbacks.on_test_batch_begin(count)
        logs = _to_floats(test_step(batch))
        callbacks.on_test_batch_end(count, logs)
        count += 1
    if not count:
        raise DataError("the validation data set yielded no batch")
    callbacks.on_test_end(logs)
    return {f"val_{k}": v for k, v in logs.items()}


def fit_distributed(model, dataset, *, epochs: int, steps_per_epoch: int | None = None,
                    initial_epoch: int = 0, callbacks=None, validation_data=None,
                    validation_steps: int | None = None, strategy=None,
                    local_callbacks=(), verbose: int = 1) -> keras.callbacks.History:
    """Train a compiled Keras model like ``model.fit``, under any tf.distribute strategy.

    Args:
        model: a compiled Keras model, built (and compiled) inside ``strategy.scope()``.
        dataset: a ``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, sample_weight)`` batched by the
            global batch size (per-replica batch times ``strategy.num_replicas_in_sync``). With
            ``steps_per_epoch`` it may be endless and is read on across epochs; without, each
            epoch runs through it once.
        epochs: index of the last epoch to train (as in ``fit``).
        steps_per_epoch: global batches per epoch, or None for one pass over ``dataset``.
        initial_epoch: epoch to start from (a resumed run).
        callbacks: Keras callbacks, called in ``fit``'s order with ``fit``'s log keys.
        validation_data: optional finite ``tf.data.Dataset`` evaluated after every epoch;
            its metrics are logged with a ``val_`` prefix.
        validation_steps: at most this many validation batches (None: the whole data set).
        strategy: the distribution strategy; default: the one the model was built under.
        local_callbacks: those of ``callbacks`` that run the model by themselves on one worker
            (validation, prediction). They get a copy of the model built outside the strategy,
            holding the trained weights at every epoch end: the model's own ``predict`` gathers
            across workers, and would wait forever for workers that do not call it.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch (as in ``fit``).

    Returns:
        The ``History`` callback, whose ``history`` maps each log key to its per-epoch values.

    Raises:
        DataError: the training data ran out before ``steps_per_epoch`` steps, or the
            validation data set is empty.
    """
    strategy = strategy or model.distribute_strategy
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        list(callbacks or []) + [history], add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=epochs, steps=steps_per_epoch)

    _build(model, strategy, dataset.element_spec)
    local_model = None
    if local_callbacks:
        # Built in the caller's (default) strategy: this must run outside strategy.scope().
        # Uncompiled: a compiled copy would need every custom loss registered for
        # deserialisation, and callbacks that run the model only predict with it.
        local_model = type(model).from_config(model.get_config())
        local_model.set_weights(model.get_weights())
        for callback in local_callbacks:
            callback.set_model(local_model)
    train_step = _make_step(model, strategy, model.train_step)
    train_data = distribute_dataset(strategy, dataset)
    test_step = val_data = None
    if validation_data is not None:
        test_step = _make_step(model, strategy, model.test_step)
        val_data = distribute_dataset(strategy, validation_data)

    sync = _make_sync(model, strategy)

    model.stop_training = False
    callback_list.on_train_begin()
    iterator = iter(train_data) if steps_per_epoch is not None else None
    logs: dict[str, float] = {}
    epoch_logs: dict[str, float] = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        if steps_per_epoch is None:
            batches = enumerate(train_data)
        else:
            batches = ((i, _next(iterator, epoch, i, steps_per_epoch))
                       for i in range(steps_per_epoch))
        step = -1
        for step, batch in batches:
            callback_list.on_train_batch_begin(step)
            logs = _to_floats(train_step(batch))
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        if step < 0:
            raise DataError(f"the training data set yielded no batch in epoch {epoch + 1}")
        if sync is not None:
            sync()
        if local_model is not None:
            local_model.set_weights(model.get_weights())
        epoch_logs = dict(logs)
        if val_data is not None:
            epoch_logs.update(_evaluate(model, strategy, test_step, val_data, validation_steps,
                                        callback_list))
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            _log.info("training stopped by a callback after epoch %d", epoch + 1)
            break
    callback_list.on_train_end(epoch_logs)
    return history
