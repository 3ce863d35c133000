"""The ``convert`` stage (``tlt-dataset-convert``): a KITTI data set -> TFRecord shards.

Reads ``<root>/<image_dir_name>`` and ``<root>/<label_dir_name>`` (local, gs:// or s3://),
partitions the frames into folds (random split or whole sequences), writes
``<out_dir>/<output_name>-fold-{i:03d}-of-{N:03d}-shard-{s:05d}-of-{S:05d}`` plus
``metadata.json``. Shards are written into a private temporary folder and published only when every
one is complete, so a failed run leaves no partial shard behind and unrelated files in ``out_dir``
are kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tlt.artifacts import write_metadata
from tlt.data.convert import (
    Frame, ShardTask, partition_random, partition_sequences, read_sequence_map, shard_name,
    split_shards, write_shards,
)
from tlt.data.kitti import IMAGE_FORMATS, DataReport, normalise_extension, pair_frames
from tlt.errors import DataError, SpecError
from tlt.io import storage
from tlt.proto.dataset_export_config_pb2 import DatasetExportConfig
from tlt.spec.defaults import apply_defaults
from tlt.status import StatusWriter

__all__ = ["ConvertResult", "KittiSettings", "resolve_settings", "run"]

log = logging.getLogger("tlt.stages.convert")

# Messages kept in metadata.json; the counts always cover everything.
_MAX_MESSAGES = 200


@dataclass
class ConvertResult:
    """What `run` wrote.

    Attributes:
        shards: URIs/paths of the shard files, fold by fold.
        class_counts: ``{"fold-000": {class: n}, ..., "total": {class: n}}`` of written objects.
        num_frames: frames written.
        frames_per_fold: frames written per fold.
        skipped_objects: malformed label lines dropped.
        skipped_frames: ids of frames dropped (unreadable image or label file).
        images_without_labels: ids of images with no label file (not converted).
        labels_without_images: ids of label files with no image.
        validation_fold: the fold training validates on (None when not chosen).
        out_dir: where the shards are.
        metadata: the content of ``metadata.json``.
    """

    shards: list[str]
    class_counts: dict[str, dict[str, int]]
    num_frames: int
    frames_per_fold: list[int]
    skipped_objects: int
    skipped_frames: list[str]
    images_without_labels: list[str]
    labels_without_images: list[str]
    validation_fold: int | None
    out_dir: str
    metadata: dict[str, Any] = field(default_factory=dict)


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


def resolve_settings(config: DatasetExportConfig) -> KittiSettings:
    """Apply the documented defaults (`tlt.spec.defaults`) and check the values `run` relies on.

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
    folds = kc.num_partitions
    if mode == "random" and folds not in (0, 2):
        raise SpecError("kitti_config.num_partitions must be 2 in random partition mode "
                        f"(fold 0 validation, fold 1 training), got {folds}",
                        field="kitti_config.num_partitions")
    if mode == "sequence" and folds < 1:
        raise SpecError(f"kitti_config.num_partitions must be > 0, got {folds}",
                        field="kitti_config.num_partitions")
    if kc.num_shards < 1:
        raise SpecError(f"kitti_config.num_shards must be > 0, got {kc.num_shards}",
                        field="kitti_config.num_shards")
    if mode == "random" and not 0.0 <= kc.val_split <= 100.0:
        raise SpecError(f"kitti_config.val_split must be in [0, 100], got {kc.val_split:g}",
                        field="kitti_config.val_split")
    if mode == "sequence" and not kc.kitti_sequence_to_frames_file:
        raise SpecError("kitti_config.kitti_sequence_to_frames_file is required in sequence "
                        "partition mode", field="kitti_config.kitti_sequence_to_frames_file")
    return KittiSettings(
        root=kc.root_directory_path, image_dir=kc.image_dir_name, label_dir=kc.label_dir_name,
        extension=normalise_extension(kc.image_extension), partition_mode=mode,
        num_folds=2 if mode == "random" else folds, num_shards=kc.num_shards,
        val_split=float(kc.val_split), sequence_file=kc.kitti_sequence_to_frames_file)


def _load_spec(spec: DatasetExportConfig | str | os.PathLike) -> DatasetExportConfig:
    if isinstance(spec, DatasetExportConfig):
        return spec
    from tlt import spec as spec_lib

    return spec_lib.load(os.fspath(spec), "dataset_export")


def _check_validation_fold(fold: int | None, settings: KittiSettings) -> int | None:
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


def _log_counts(counts: Counter) -> None:
    lines = "".join(f"\n{name}: {n}" for name, n in sorted(counts.items()))
    log.info("Wrote the following numbers of objects:%s", lines)


def _publish(tmp: Path, out_dir: str, names: list[str], output_name: str) -> None:
    """Move finished files into ``out_dir`` (metadata.json last) and drop stale shards."""
    if storage.is_remote(out_dir):
        storage.upload_tree(tmp, out_dir)
        existing = storage.list_files(out_dir, recursive=False)
    else:
        for name in names + ["metadata.json"]:
            os.replace(tmp / name, Path(out_dir) / name)
        existing = [str(p) for p in Path(out_dir).iterdir()]
    # Shards of an earlier run with other fold/shard counts would be read by a glob on the name.
    pattern = re.compile(re.escape(output_name) + r"-fold-\d{3}-of-\d{3}-shard-\d{5}-of-\d{5}")
    for path in existing:
        base = path.rstrip("/").rsplit("/", 1)[-1]
        if pattern.fullmatch(base) and base not in names:
            storage.delete(path)


def run(spec: DatasetExportConfig | str | os.PathLike, out_dir: str | os.PathLike, *,
        output_name: str = "tfrecords", validation_fold: int | None = None, strict: bool = False,
        num_workers: int | None = None, progress: bool = True) -> ConvertResult:
    """Convert a KITTI data set into TFRecord shards.

    Args:
        spec: a DatasetExportConfig, or the path of a dataset_export spec file.
        out_dir: output folder: local path, gs:// or s3:// URI.
        output_name: base name of the shard files.
        validation_fold: the fold training will validate on; checked against the partitions
            and recorded in metadata.json (random mode: always 0).
        strict: fail on the first malformed label line or unreadable image instead of skipping it.
        num_workers: worker processes (None: every core; 1: in this process).
        progress: show a progress bar over frames.

    Returns:
        A ConvertResult describing the shards written.

    Raises:
        SpecError: a spec field or ``validation_fold`` is out of range.
        DataError: the data set is missing, empty or (with ``strict``) malformed, or nothing is
            left to convert after skipping.
        StorageError: ``out_dir`` cannot be written (checked before any work).
    """
    config = _load_spec(spec)
    settings = resolve_settings(config)
    fold_checked = _check_validation_fold(validation_fold, settings)
    out_dir = os.fspath(out_dir)
    storage.check_writable_prefix(out_dir)
    remote_out = storage.is_remote(out_dir)
    if not storage.isdir(settings.root):
        raise DataError(f"dataset root {settings.root} does not exist "
                        "(kitti_config.root_directory_path)")
    log.info("Instantiating a kitti converter")
    report = DataReport()
    image_uri = storage.join(settings.root, settings.image_dir)
    label_uri = storage.join(settings.root, settings.label_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_name}.", suffix=".partial",
                                dir=None if remote_out else out_dir))
    status = StatusWriter(tmp if remote_out else out_dir, "convert")
    try:
        with _staged_folder(image_uri, "image folder") as images, \
                _staged_folder(label_uri, "label folder") as labels:
            frames = _list_frames(settings, images, labels, image_uri, label_uri, report)
            by_id = {f.frame_id: f for f in frames}
            extra: dict[str, Any] = {}
            if settings.partition_mode == "random":
                folds = partition_random(list(by_id), settings.val_split)
            else:
                folds, extra = _sequence_folds(settings, list(by_id))
            names, tasks = [], []
            for fold, ids in enumerate(folds):
                for shard, chunk in enumerate(split_shards(ids, settings.num_shards)):
                    name = shard_name(output_name, fold, settings.num_folds, shard,
                                      settings.num_shards)
                    names.append(name)
                    tasks.append(ShardTask(str(tmp / name), fold, shard, [by_id[i] for i in chunk],
                                           IMAGE_FORMATS[settings.extension], strict))
            status.update(num_frames=sum(len(t.frames) for t in tasks), num_shards=len(tasks))
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
        counts: dict[str, dict[str, int]] = {}
        frames_per_fold, total, sizes = [], Counter(), Counter()
        for fold in range(settings.num_folds):
            fold_counts = Counter()
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
        shards = [storage.join(out_dir, n) for n in names]
        meta = write_metadata(
            tmp, "convert", spec=config, parents=[{"uri": settings.root}],
            output_name=output_name, partition_mode=settings.partition_mode,
            num_partitions=settings.num_folds, num_shards=settings.num_shards,
            validation_fold=fold_checked, num_frames=num_frames, frames_per_fold=frames_per_fold,
            class_counts=counts, shards=names, frame_sizes=dict(sorted(sizes.items())),
            skipped_objects=report.skipped_objects, skipped_frames=sorted(report.skipped_frames),
            images_without_labels=report.images_without_labels,
            labels_without_images=report.labels_without_images,
            problems=report.messages[:_MAX_MESSAGES], num_problems=len(report.messages),
            image_directory_path=config.image_directory_path or image_uri, **extra)
        status.done(num_frames=num_frames, message=f"wrote {len(names)} shard(s)")
        _publish(tmp, out_dir, names, output_name)
    except BaseException as err:
        with contextlib.suppress(Exception):
            status.failed(str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ConvertResult(shards, counts, num_frames, frames_per_fold, report.skipped_objects,
                         sorted(report.skipped_frames), report.images_without_labels,
                         report.labels_without_images, fold_checked, out_dir, meta)
