"""KITTI -> TFRecords: partitioning frames into folds, folds into shards, and writing shards.

Deterministic by construction: listings are sorted, shuffles use a fixed seed, records hold no
time stamps, so the same input gives the same bytes. Shards are independent tasks, written in
parallel by worker processes; they never import TensorFlow (see `tlt.data.tfrecord`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from tqdm import tqdm

from tlt.data.kitti import DataReport, probe_image, read_label_file
from tlt.data.tfrecord import TFRecordWriter, encode_example
from tlt.errors import DataError

__all__ = [
    "SHUFFLE_SEED",
    "Frame",
    "ShardTask",
    "ShardResult",
    "SequencePartition",
    "shard_name",
    "partition_random",
    "read_sequence_map",
    "partition_sequences",
    "split_shards",
    "write_shard",
    "write_shards",
]

log = logging.getLogger("tlt.data.convert")

# Fixed seed of every shuffle, so that two runs over the same data write the same bytes.
SHUFFLE_SEED = 42


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


@dataclass
class SequencePartition:
    """Folds built from a sequence map, and the frames the map and the data set disagree on."""

    folds: list[list[str]]
    frames_not_in_sequence: list[str]
    sequence_frames_missing: list[str]


def shard_name(output_name: str, fold: int, num_folds: int, shard: int, num_shards: int) -> str:
    """TLT's shard file name: ``<name>-fold-000-of-002-shard-00000-of-00010``."""
    return f"{output_name}-fold-{fold:03d}-of-{num_folds:03d}-shard-{shard:05d}-of-{num_shards:05d}"


def partition_random(frame_ids: Sequence[str], val_split: float,
                     seed: int = SHUFFLE_SEED) -> list[list[str]]:
    """Split frames into fold 0 (validation, ``val_split`` percent) and fold 1 (training).

    The sorted ids are shuffled with a fixed seed before the split, so validation frames come from
    the whole data set rather than its first files (TLT split the sorted list).
    """
    ids = sorted(frame_ids)
    random.Random(seed).shuffle(ids)
    num_val = int(len(ids) * val_split / 100.0)
    return [ids[:num_val], ids[num_val:]]


def read_sequence_map(data: bytes, name: str) -> dict[str, list[str]]:
    """Parse a ``kitti_seq_to_frames.json`` map (guide 4.2.2): sequence -> list of frame ids.

    Raises:
        DataError: not JSON, not an object of lists, or a frame listed in two sequences.
    """
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{name}: not valid JSON ({err}), expected "
                        '{"sequence name": ["frame id", ...]}') from None
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise DataError(f"{name}: expected a JSON object mapping each sequence name to a list "
                        "of frame ids")
    owner: dict[str, str] = {}
    seq_map: dict[str, list[str]] = {}
    for seq, frames in raw.items():
        ids = [str(f) for f in frames]
        for fid in ids:
            if fid in owner:
                raise DataError(f"{name}: frame {fid!r} is listed in sequences {owner[fid]!r} "
                                f"and {seq!r}, expected each frame in one sequence")
            owner[fid] = seq
        seq_map[str(seq)] = ids
    return seq_map


def partition_sequences(seq_map: dict[str, list[str]], frame_ids: Iterable[str],
                        num_folds: int, seed: int = SHUFFLE_SEED) -> SequencePartition:
    """Assign whole sequences to ``num_folds`` folds, balancing the folds' frame counts.

    Sequences are taken largest first (ties by name) and each goes to the fold with the fewest
    frames so far (ties to the lowest index): deterministic and close to even. Only frames present
    in the data set count; frames of each fold are then shuffled with a fixed seed.
    """
    present = set(frame_ids)
    in_map = {fid for frames in seq_map.values() for fid in frames}
    kept = {seq: [f for f in frames if f in present] for seq, frames in seq_map.items()}
    folds: list[list[str]] = [[] for _ in range(num_folds)]
    for _seq, frames in sorted(kept.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        target = min(range(num_folds), key=lambda i: (len(folds[i]), i))
        folds[target].extend(frames)
    rng = random.Random(seed)
    for fold in folds:
        rng.shuffle(fold)
    return SequencePartition(folds, sorted(present - in_map), sorted(in_map - present))


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
                err = DataError(f"{frame.image_name}: cannot read the image ({err.strerror})")
                if task.strict:
                    raise err from None
                report.messages.append(str(err))
                report.skipped_frames.append(frame.frame_id)
            except DataError as err:
                if task.strict:
                    raise
                report.messages.append(str(err))
                report.skipped_frames.append(frame.frame_id)
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


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; once TensorFlow (and its thread pools) is loaded in
    # this process, a forked child could inherit held locks, so spawn a clean interpreter then.
    if "fork" in multiprocessing.get_all_start_methods() and "tensorflow" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


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
            tick = lambda: bar.update(1)  # noqa: E731
            for i, task in enumerate(tasks):
                results[i] = write_shard(task, tick)
        else:
            with _pool_context().Pool(workers) as pool:
                # Big shards first keeps both cores busy until the end.
                order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i].frames))
                for i, res in pool.imap_unordered(_write_indexed,
                                                  [(i, tasks[i]) for i in order]):
                    results[i] = res
                    bar.update(len(tasks[i].frames))
    return [r for r in results if r is not None]
