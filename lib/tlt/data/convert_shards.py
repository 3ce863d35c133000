"""Writing TFRecord shards of KITTI frames, in parallel worker processes.

Shards are independent tasks; workers never import TensorFlow (see `tlt.data.tfrecord`). Workers
end with the converter: on SIGTERM or Ctrl-C the pool is terminated, and on Linux a worker is
killed by the kernel when its parent dies (even by ``kill -9``), so no orphan keeps writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from tqdm import tqdm

from tlt.data.kitti import DataReport, probe_image, read_label_file
from tlt.data.tfrecord import TFRecordWriter, encode_example
from tlt.errors import DataError

__all__ = ["Frame", "ShardTask", "ShardResult", "shard_name", "split_shards", "write_shard",
           "write_shards"]

log = logging.getLogger("tlt.data.convert")

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass(frozen=True)
class Frame:
    """One image/label pair: local paths plus the names used in messages (e.g. the source URI)."""

    frame_id: str
    image: str
    label: str
    image_name: str
    label_name: str


@dataclass
class ShardTask:
    """Everything a worker needs to write one shard file."""

    path: str
    fold: int
    shard: int
    frames: list[Frame]
    image_format: str
    strict: bool = False


@dataclass
class ShardResult:
    """What a worker wrote into one shard, and what it skipped."""

    fold: int
    shard: int
    path: str
    num_frames: int = 0
    class_counts: Counter = field(default_factory=Counter)
    frame_sizes: Counter = field(default_factory=Counter)
    report: DataReport = field(default_factory=DataReport)


def shard_name(output_name: str, fold: int, num_folds: int, shard: int, num_shards: int) -> str:
    """TLT's shard file name: ``<name>-fold-000-of-002-shard-00000-of-00010``."""
    return f"{output_name}-fold-{fold:03d}-of-{num_folds:03d}-shard-{shard:05d}-of-{num_shards:05d}"


def split_shards(items: Sequence, num_shards: int) -> list[list]:
    """Split ``items`` into ``num_shards`` contiguous chunks whose sizes differ by at most one."""
    base, extra = divmod(len(items), num_shards)
    chunks, start = [], 0
    for i in range(num_shards):
        end = start + base + (1 if i < extra else 0)
        chunks.append(list(items[start:end]))
        start = end
    return chunks


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _skip_or_raise(err: DataError, frame: Frame, task: ShardTask, report: DataReport) -> None:
    if task.strict:
        raise err
    report.messages.append(str(err))
    report.skipped_frames.append(frame.frame_id)


def write_shard(task: ShardTask, on_frame: Callable[[], None] | None = None) -> ShardResult:
    """Write one shard: one record per readable frame, in the task's order.

    Unreadable images or label files skip their frame (or raise with ``task.strict``); malformed
    label lines skip their object. Runs in worker processes, so it returns everything it learnt.

    Args:
        task: the shard's output path and frames.
        on_frame: called after each frame (progress in serial runs).

    Raises:
        DataError: ``task.strict`` and a frame or a label line is malformed.
    """
    result = ShardResult(task.fold, task.shard, task.path)
    report = result.report
    with TFRecordWriter(task.path) as writer:
        for frame in task.frames:
            try:
                data = _read_file(frame.image)
                info = probe_image(data, frame.image_name, task.image_format)
                objects = read_label_file(frame.label, display=frame.label_name, width=info.width,
                                          height=info.height, strict=task.strict, report=report)
            except OSError as err:
                _skip_or_raise(DataError(f"{frame.image_name}: cannot read the image "
                                         f"({err.strerror})"), frame, task, report)
            except DataError as err:
                _skip_or_raise(err, frame, task, report)
            else:
                writer.write(*encode_example(frame.frame_id, info.width, info.height, info.format,
                                             data, objects))
                result.num_frames += 1
                result.class_counts.update(o.object_class for o in objects)
                result.frame_sizes[f"{info.width}x{info.height}"] += 1
            if on_frame is not None:
                on_frame()
    return result


def _write_indexed(item: tuple[int, ShardTask]) -> tuple[int, ShardResult]:
    index, task = item
    return index, write_shard(task)


def _worker_init(parent_pid: int) -> None:
    """Make a pool worker end with its parent, whatever way the parent ends."""
    # A forked worker inherits the parent's SIGTERM handler, which raises Interrupted: caught by
    # the pool inside a task, the worker would live on and Pool.terminate() would wait forever.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Ctrl-C reaches the whole process group; the parent alone decides, then terminates the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; once TensorFlow (and its thread pools) is loaded in
    # this process, a forked child could inherit held locks, so spawn a clean interpreter then.
    if "fork" in multiprocessing.get_all_start_methods() and "tensorflow" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _write_parallel(tasks: Sequence[ShardTask], workers: int, results: list,
                    bar: tqdm) -> None:
    # Leaving the with-block on any exception (Interrupted included) terminates the workers.
    with _pool_context().Pool(workers, initializer=_worker_init,
                              initargs=(os.getpid(),)) as pool:
        # Big shards first keeps both cores busy until the end.
        order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i].frames))
        for i, res in pool.imap_unordered(_write_indexed, [(i, tasks[i]) for i in order]):
            results[i] = res
            bar.update(len(tasks[i].frames))


def write_shards(tasks: Sequence[ShardTask], *, num_workers: int | None = None,
                 progress: bool = True) -> list[ShardResult]:
    """Write every shard, in parallel across processes when more than one worker is allowed.

    Args:
        tasks: the shards to write.
        num_workers: worker processes; None uses every core (capped by the number of shards);
            1 writes in this process.
        progress: show a tqdm bar over frames.

    Returns:
        One result per task, in task order.
    """
    workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
    workers = max(1, min(workers, sum(1 for t in tasks if t.frames)))
    total = sum(len(t.frames) for t in tasks)
    for task in tasks:
        log.info("Writing partition %d, shard %d", task.fold, task.shard)
    results: list[ShardResult | None] = [None] * len(tasks)
    with tqdm(total=total, unit="frame", desc="convert", disable=not progress,
              file=sys.stderr) as bar:
        if workers == 1:
            for i, task in enumerate(tasks):
                results[i] = write_shard(task, lambda: bar.update(1))
        else:
            _write_parallel(tasks, workers, results, bar)
    return [r for r in results if r is not None]
