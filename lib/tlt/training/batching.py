"""Global batch size and steps per epoch from the spec's per-GPU batch and the data set size.

A batch larger than the training set is what TLT's Keras input did with it: one step per epoch
holding every image. It is capped here (with one warning line) rather than handed to tf.data:
``batch(2000000000)`` of 32x32 images asks the allocator for 24 TB (the output buffer is sized by
the batch size) and the run stalls with no message.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

__all__ = ["BatchPlan", "plan_batches"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPlan:
    """Batching of one run.

    Attributes:
        batch_size_per_replica: images per replica per step (the spec's value, or the cap).
        global_batch: images per step over all replicas.
        steps_per_epoch: steps that cover the training set once.
        drop_remainder: the last partial batch of an epoch is dropped.
    """

    batch_size_per_replica: int
    global_batch: int
    steps_per_epoch: int
    drop_remainder: bool


def plan_batches(batch_size: int, replicas: int, num_samples: int, *, drop_remainder: bool,
                 field: str, what: str = "training images") -> BatchPlan:
    """Batching for ``num_samples`` training samples on ``replicas`` replicas.

    Args:
        batch_size: the spec's batch size per GPU (replica).
        replicas: ``strategy.num_replicas_in_sync``.
        num_samples: training samples per epoch (> 0).
        drop_remainder: drop each epoch's last partial batch (multi-worker runs need equal
            steps on every worker); applied only when a full batch exists.
        field: the spec field of ``batch_size``, for the warning.
        what: what the samples are, for the warning ("training frames").
    """
    replicas = max(1, int(replicas))
    batch_size = int(batch_size)
    if num_samples > 0 and batch_size * replicas > num_samples:
        capped = (num_samples // replicas) if drop_remainder else math.ceil(num_samples / replicas)
        capped = max(1, capped)
        _log.warning("%s %d x %d replica(s) is more than the %d %s: each epoch is one step of "
                     "%d per replica", field, batch_size, replicas, num_samples, what, capped)
        batch_size = capped
    global_batch = batch_size * replicas
    drop = drop_remainder and num_samples >= global_batch
    steps = num_samples // global_batch if drop else math.ceil(num_samples / global_batch)
    return BatchPlan(batch_size_per_replica=batch_size, global_batch=global_batch,
                     steps_per_epoch=max(1, steps), drop_remainder=drop)
