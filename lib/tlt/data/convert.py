"""KITTI -> TFRecords: from a spec's ``kitti_config`` to shards written in a staging folder.

`resolve_settings` checks the spec; `convert_kitti` lists the frames, partitions them into folds
(`tlt.data.convert_partition`), splits folds into shards, writes them (`tlt.data.convert_shards`)
and sums up what was written. Publishing the staging folder is `tlt.data.convert_publish`'s job;
the stage (`tlt.stages.convert`) joins the two.

Deterministic by construction: listings are sorted, shuffles use a fixed seed, records hold no
time stamps, so the same input gives the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from tlt.data.convert_partition import partition_random, partition_sequences, read_sequence_map
from tlt.data.convert_shards import (
    Frame, ShardResult, ShardTask, shard_name, split_shards, write_shards,
)
from tlt.data.kitti import IMAGE_FORMATS, DataReport, normalise_extension, pair_frames
from tlt.errors import DataError, SpecError
from tlt.io import storage
from tlt.spec.defaults import apply_defaults
from tlt.spec.rules import MAX_PARTITIONS, MAX_SHARDS

__all__ = ["KittiSettings", "Conversion", "resolve_settings",
           "check_validation_fold", "convert_kitti"]

log = logging.getLogger("tlt.data.convert")

@dataclass(frozen=True)
class KittiSettings:
    """``kitti_config`` with defaults applied and values checked."""

    root: str
    image_dir: str
    label_dir: str
    extension: str
    partition_mode: str
    num_folds: int
    num_shards: int
    val_split: float
    sequence_file: str


@dataclass
class Conversion:
    """What `convert_kitti` wrote into the staging folder.

    Attributes:
        names: shard file names, fold by fold.
        num_shards: shards per fold (the spec's ``num_shards``, capped by the largest fold).
        num_frames: frames written.
        frames_per_fold: frames written per fold.
        class_counts: ``{"fold-000": {class: n}, ..., "total": {class: n}}`` of written objects.
        frame_sizes: ``{"WxH": frames}`` over all folds.
        report: skipped objects and frames, unpaired files, messages (sorted by file).
        extra: sequence-mode findings for metadata.json.
    """

    names: list[str]
    num_shards: int
    num_frames: int
    frames_per_fold: list[int]
    class_counts: dict[str, dict[str, int]]
    frame_sizes: dict[str, int]
    report: DataReport
    extra: dict[str, Any] = field(default_factory=dict)


def _range_error(name: str, lo: int, hi: int, value: int) -> SpecError:
    return SpecError(f"kitti_config.{name} must be in [{lo}, {hi}], got {value}",
                     field=f"kitti_config.{name}")


def _check_counts(mode: str, folds: int, shards: int) -> None:
    if mode == "random" and folds not in (0, 2):
        raise SpecError("kitti_config.num_partitions must be 2 in random partition mode "
                        f"(fold 0 validation, fold 1 training), got {folds}",
                        field="kitti_config.num_partitions")
    if mode == "sequence" and not 1 <= folds <= MAX_PARTITIONS:
        raise _range_error("num_partitions", 1, MAX_PARTITIONS, folds)
    # The spec rules check the same bounds; messages built in code are checked here.
    if not 1 <= shards <= MAX_SHARDS:
        raise _range_error("num_shards", 1, MAX_SHARDS, shards)


def resolve_settings(config: Any) -> KittiSettings:
    """Apply the documented defaults (`tlt.spec.defaults`) and check the values convert relies on.

    Args:
        config: a ``DatasetExportConfig`` message.

    Raises:
        SpecError: a missing or out-of-range field, named by its path.
        DataError: an image extension the converter cannot store.
    """
    if not config.HasField("kitti_config"):
        raise SpecError("kitti_config is required", field="kitti_config")
    kc = type(config.kitti_config)()
    kc.CopyFrom(config.kitti_config)
    apply_defaults(kc)
    if not kc.root_directory_path:
        raise SpecError("kitti_config.root_directory_path is required (the data set root)",
                        field="kitti_config.root_directory_path")
    mode = kc.partition_mode
    if mode not in ("random", "sequence"):
        raise SpecError(f"kitti_config.partition_mode must be 'random' or 'sequence', got {mode!r}",
                        field="kitti_config.partition_mode")
    _check_counts(mode, kc.num_partitions, kc.num_shards)
    if mode == "random" and not 0.0 <= kc.val_split <= 100.0:
        raise SpecError(f"kitti_config.val_split must be in [0, 100], got {kc.val_split:g}",
                        field="kitti_config.val_split")
    if mode == "sequence" and not kc.kitti_sequence_to_frames_file:
        raise SpecError("kitti_config.kitti_sequence_to_frames_file is required in sequence "
                        "partition mode", field="kitti_config.kitti_sequence_to_frames_file")
    return KittiSettings(
        root=kc.root_directory_path, image_dir=kc.image_dir_name, label_dir=kc.label_dir_name,
        extension=normalise_extension(kc.image_extension), partition_mode=mode,
        num_folds=2 if mode == "random" else kc.num_partitions, num_shards=kc.num_shards,
        val_split=float(kc.val_split), sequence_file=kc.kitti_sequence_to_frames_file)


def check_validation_fold(fold: int | None, settings: KittiSettings) -> int | None:
    """The fold training validates on: checked against the partitions (random mode: always 0).

    Raises:
        SpecError: ``fold`` is not a fold of these settings.
    """
    if settings.partition_mode == "random":
        if fold not in (None, 0):
            raise SpecError(f"validation_fold must be 0 in random partition mode (fold 0 is the "
                            f"validation fold, fold 1 the training fold), got {fold}",
                            field="validation_fold")
        return 0
    if fold is not None and not 0 <= fold < settings.num_folds:
        raise SpecError(f"validation_fold must be in [0, {settings.num_folds - 1}] for "
                        f"{settings.num_folds} partitions, got {fold}", field="validation_fold")
    return fold


@contextlib.contextmanager
def _staged_folder(uri: str, what: str) -> Iterator[Path]:
    if storage.is_remote(uri):
        if not storage.isdir(uri):
            raise DataError(f"{what} {uri} does not exist (no objects under it)")
        with storage.staged_input(uri) as path:
            yield path
    else:
        if not os.path.isdir(uri):
            raise DataError(f"{what} {uri} does not exist or is not a folder")
        yield Path(uri)


def _list_frames(settings: KittiSettings, images: Path, labels: Path, image_uri: str,
                 label_uri: str, report: DataReport) -> list[Frame]:
    pairs = pair_frames(images, labels, settings.extension, report)
    if not pairs and not report.images_without_labels:
        names = os.listdir(images)
        if not names:
            raise DataError(f"image folder {image_uri} is empty")
        found = sorted({os.path.splitext(n)[1] for n in names})
        raise DataError(f"image folder {image_uri} has no {settings.extension!r} images (found "
                        f"{', '.join(found)}); check kitti_config.image_extension")
    return [Frame(fid, img, lab, storage.join(image_uri, os.path.basename(img)),
                  storage.join(label_uri, os.path.basename(lab)))
            for fid, (img, lab) in pairs.items()]


def _sequence_folds(settings: KittiSettings, frame_ids: list[str]) -> tuple[list[list[str]], dict]:
    name = settings.sequence_file
    uri = name if (storage.is_remote(name) or os.path.isabs(name)) else storage.join(
        settings.root, name)
    if not storage.exists(uri):
        raise DataError(f"sequence map {uri} does not exist "
                        "(kitti_config.kitti_sequence_to_frames_file)")
    seq_map = read_sequence_map(storage.read_bytes(uri), uri)
    part = partition_sequences(seq_map, frame_ids, settings.num_folds)
    if part.frames_not_in_sequence:
        log.warning("%d frame(s) are in no sequence of %s and are not converted: %s",
                    len(part.frames_not_in_sequence), uri,
                    ", ".join(part.frames_not_in_sequence[:10]))
    return part.folds, {"frames_not_in_sequence": part.frames_not_in_sequence,
                        "sequence_frames_missing": part.sequence_frames_missing}


def _shards_per_fold(requested: int, folds: list[list[str]]) -> int:
    """``num_shards``, capped by the largest fold: more shards than frames would all be empty."""
    largest = max((len(f) for f in folds), default=0)
    if largest == 0:
        return 1  # nothing to write; convert_kitti reports it once the shards are written
    if requested <= largest:
        return requested
    log.warning("kitti_config.num_shards is %d but the largest fold has %d frame(s); writing %d "
                "shard(s) per fold", requested, largest, largest)
    return largest


def _plan(settings: KittiSettings, folds: list[list[str]], by_id: dict[str, Frame],
          staging: Path, output_name: str, strict: bool) -> tuple[int, list[str], list[ShardTask]]:
    num_shards = _shards_per_fold(settings.num_shards, folds)
    names, tasks = [], []
    for fold, ids in enumerate(folds):
        for shard, chunk in enumerate(split_shards(ids, num_shards)):
            name = shard_name(output_name, fold, settings.num_folds, shard, num_shards)
            names.append(name)
            tasks.append(ShardTask(str(staging / name), fold, shard, [by_id[i] for i in chunk],
                                   IMAGE_FORMATS[settings.extension], strict))
    return num_shards, names, tasks


def _log_counts(counts: Counter) -> None:
    lines = "".join(f"\n{name}: {n}" for name, n in sorted(counts.items()))
    log.info("Wrote the following numbers of objects:%s", lines)


def _summarise(results: list[ShardResult], num_folds: int) -> tuple[list[int], dict, dict]:
    """Frames per fold, class counts per fold and in total, frame sizes (logged as TLT did)."""
    counts: dict[str, dict[str, int]] = {}
    frames_per_fold, total, sizes = [], Counter(), Counter()
    for fold in range(num_folds):
        fold_counts: Counter = Counter()
        for r in results:
            if r.fold == fold:
                fold_counts.update(r.class_counts)
                sizes.update(r.frame_sizes)
        frames_per_fold.append(sum(r.num_frames for r in results if r.fold == fold))
        _log_counts(fold_counts)
        counts[f"fold-{fold:03d}"] = dict(sorted(fold_counts.items()))
        total.update(fold_counts)
    _log_counts(total)
    counts["total"] = dict(sorted(total.items()))
    return frames_per_fold, counts, dict(sorted(sizes.items()))


def convert_kitti(settings: KittiSettings, staging: str | os.PathLike, output_name: str, *,
                  strict: bool = False, num_workers: int | None = None, progress: bool = True,
                  on_plan: Callable[[int, int], None] | None = None) -> Conversion:
    """Write the shards of a KITTI data set into ``staging`` (local folder, created beforehand).

    Args:
        settings: checked settings (`resolve_settings`).
        staging: the folder the shard files go to.
        output_name: base name of the shard files.
        strict: fail on the first malformed label line or unreadable image instead of skipping it.
        num_workers: worker processes (None: every core; 1: in this process).
        progress: show a progress bar over frames.
        on_plan: called with (frames, shards) once the shards are planned, before writing.

    Raises:
        DataError: the data set is missing, empty or (with ``strict``) malformed, or nothing is
            left to convert after skipping.
    """
    if not storage.isdir(settings.root):
        raise DataError(f"dataset root {settings.root} does not exist "
                        "(kitti_config.root_directory_path)")
    log.info("Instantiating a kitti converter")
    report = DataReport()
    image_uri = storage.join(settings.root, settings.image_dir)
    label_uri = storage.join(settings.root, settings.label_dir)
    with _staged_folder(image_uri, "image folder") as images, \
            _staged_folder(label_uri, "label folder") as labels:
        by_id = {f.frame_id: f for f in _list_frames(settings, images, labels, image_uri,
                                                      label_uri, report)}
        extra: dict[str, Any] = {}
        if settings.partition_mode == "random":
            folds = partition_random(list(by_id), settings.val_split)
        else:
            folds, extra = _sequence_folds(settings, list(by_id))
        num_shards, names, tasks = _plan(settings, folds, by_id, Path(staging), output_name,
                                         strict)
        if on_plan is not None:
            on_plan(sum(len(t.frames) for t in tasks), len(tasks))
        results = write_shards(tasks, num_workers=num_workers, progress=progress)
    for res in results:
        report.merge(res.report)
    report.messages.sort()  # by file, whatever shard each frame went to
    for message in report.messages:
        log.warning("%s", message)
    num_frames = sum(r.num_frames for r in results)
    if num_frames == 0:
        raise DataError(f"no frames left to convert under {settings.root}: "
                        f"{len(report.skipped_frames)} skipped, "
                        f"{len(report.images_without_labels)} image(s) without a label file")
    frames_per_fold, counts, sizes = _summarise(results, settings.num_folds)
    return Conversion(names, num_shards, num_frames, frames_per_fold, counts, sizes, report, extra)
