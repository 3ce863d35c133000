"""tf.distribute strategy selection: one device, ``--gpus N`` or several nodes (TF_CONFIG)."""

from __future__ import annotations

import json
import logging
import os

__all__ = ["build_strategy", "is_chief", "is_multi_worker"]

_log = logging.getLogger(__name__)


def _tf_config() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError:
        return {}


def is_chief() -> bool:
    """True unless this process is a non-chief worker of a multi-worker run."""
    config = _tf_config()
    task = config.get("task", {})
    workers = config.get("cluster", {}).get("worker", [])
    if len(workers) <= 1 or not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def is_multi_worker(strategy) -> bool:
    """True for a MultiWorkerMirroredStrategy, which Keras' ``model.fit`` cannot drive.

    Trainers then use `tlt.training.distributed_loop.fit_distributed` and drop each epoch's
    last partial batch so every worker runs the same number of steps.
    """
    import tensorflow as tf

    # The class behind tf.distribute.MultiWorkerMirroredStrategy is CollectiveAllReduceStrategy,
    # so its type name does not say "MultiWorker"; isinstance does.
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def build_strategy(gpus: int = 1):
    """Pick the distribution strategy for this process.

    - TF_CONFIG naming more than one worker: MultiWorkerMirroredStrategy (several nodes).
    - ``gpus > 1``: MirroredStrategy over the first ``gpus`` GPUs; on a machine without GPUs the
      CPU is split into ``gpus`` logical devices instead, which runs the same code path (used by
      the tests and handy for checking a multi-GPU spec on a laptop).
    - otherwise the default (single-device) strategy.
    """
    import tensorflow as tf

    config = _tf_config()
    if len(config.get("cluster", {}).get("worker", [])) > 1:
        _log.info("multi-worker training from TF_CONFIG (task %s)", config.get("task"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if gpus <= 1:
        return tf.distribute.get_strategy()
    physical = tf.config.list_physical_devices("GPU")
    if physical:
        if len(physical) < gpus:
            _log.warning("--gpus %d asked but only %d GPU(s) visible; using %d", gpus,
                         len(physical), len(physical))
        devices = [f"/gpu:{i}" for i in range(min(gpus, len(physical)))]
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        # Configure before anything lists logical devices: listing them initialises the runtime,
        # after which the CPU can no longer be split.
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * gpus)
        except RuntimeError:
            _log.warning("TensorFlow already initialised; cannot split the CPU into %d devices", gpus)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")[:gpus]]
        _log.warning("no GPU found: mirroring over %d logical CPU devices", len(devices))
    return tf.distribute.MirroredStrategy(devices=devices)
