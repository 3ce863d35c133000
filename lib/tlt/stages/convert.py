"""The ``convert`` stage (``tlt-dataset-convert``): a KITTI data set -> TFRecord shards.

Reads ``<root>/<image_dir_name>`` and ``<root>/<label_dir_name>`` (local, gs:// or s3://) and
writes ``<out_dir>/<output_name>-fold-{i:03d}-of-{N:03d}-shard-{s:05d}-of-{S:05d}`` plus
``metadata.json``. The work is `tlt.data.convert.convert_kitti`; the output is built in a staging
folder and published in one step (`tlt.data.convert_publish`), so a failed, killed or
interrupted run leaves the previous output as it was, and ``status.json`` says ``done`` only once
the new one is in place. Unrelated files in ``out_dir`` are kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tlt.artifacts import write_metadata
from tlt.data.convert import (
    Conversion, KittiSettings, check_validation_fold, convert_kitti, resolve_settings,
)
from tlt.data.convert_publish import clear_leftovers, publish, staging_folder
from tlt.errors import DataError
from tlt.io import storage
from tlt.proto.dataset_export_config_pb2 import DatasetExportConfig
from tlt.status import StatusWriter

__all__ = ["ConvertResult", "KittiSettings", "resolve_settings", "run"]

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


def _load_spec(spec: DatasetExportConfig | str | os.PathLike) -> DatasetExportConfig:
    if isinstance(spec, DatasetExportConfig):
        return spec
    from tlt import spec as spec_lib

    return spec_lib.load(os.fspath(spec), "dataset_export")


def _check_out_dir(out_dir: str) -> None:
    if not storage.is_remote(out_dir) and os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"output folder {out_dir} is an existing file, expected a folder "
                        "(or a new path) for the shards")
    storage.check_writable_prefix(out_dir)


@contextlib.contextmanager
def _status(out_dir: str) -> Iterator[StatusWriter]:
    """status.json in ``out_dir``; for object storage kept locally and uploaded at the end."""
    if not storage.is_remote(out_dir):
        yield StatusWriter(out_dir, "convert")
        return
    local = tempfile.mkdtemp(prefix=f"tlt-convert-{os.getpid()}-status-")
    try:
        status = StatusWriter(local, "convert")
        storage.upload_file(status.path, storage.join(out_dir, "status.json"))
        try:
            yield status
        finally:
            with contextlib.suppress(Exception):
                storage.upload_file(status.path, storage.join(out_dir, "status.json"))
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _write_metadata(staging: Path, config: DatasetExportConfig, settings: KittiSettings,
                    conv: Conversion, output_name: str, validation_fold: int | None) -> dict:
    report = conv.report
    image_uri = storage.join(settings.root, settings.image_dir)
    return write_metadata(
        staging, "convert", spec=config, parents=[{"uri": settings.root}],
        output_name=output_name, partition_mode=settings.partition_mode,
        num_partitions=settings.num_folds, num_shards=conv.num_shards,
        num_shards_requested=settings.num_shards, validation_fold=validation_fold,
        num_frames=conv.num_frames, frames_per_fold=conv.frames_per_fold,
        class_counts=conv.class_counts, shards=conv.names, frame_sizes=conv.frame_sizes,
        skipped_objects=report.skipped_objects, skipped_frames=sorted(report.skipped_frames),
        images_without_labels=report.images_without_labels,
        labels_without_images=report.labels_without_images,
        problems=report.messages[:_MAX_MESSAGES], num_problems=len(report.messages),
        image_directory_path=config.image_directory_path or image_uri, **conv.extra)


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
        DataError: the data set is missing, empty or (with ``strict``) malformed, nothing is
            left to convert after skipping, or ``out_dir`` is an existing file.
        StorageError: ``out_dir`` cannot be written (checked before any work).
        Interrupted: SIGTERM; status.json says ``interrupted`` and the old output is kept.
    """
    config = _load_spec(spec)
    settings = resolve_settings(config)
    fold = check_validation_fold(validation_fold, settings)
    out_dir = os.fspath(out_dir)
    _check_out_dir(out_dir)
    clear_leftovers(out_dir, output_name)
    with _status(out_dir) as status:
        try:
            with staging_folder(out_dir, output_name) as staging:
                conv = convert_kitti(
                    settings, staging, output_name, strict=strict, num_workers=num_workers,
                    progress=progress,
                    on_plan=lambda frames, shards: status.update(num_frames=frames,
                                                                 num_shards=shards))
                meta = _write_metadata(staging, config, settings, conv, output_name, fold)
                publish(staging, out_dir, conv.names, output_name)
            status.done(num_frames=conv.num_frames, message=f"wrote {len(conv.names)} shard(s)")
        except BaseException as err:
            with contextlib.suppress(Exception):
                status.finish_with(err)
            raise
    report = conv.report
    return ConvertResult([storage.join(out_dir, n) for n in conv.names], conv.class_counts,
                         conv.num_frames, conv.frames_per_fold, report.skipped_objects,
                         sorted(report.skipped_frames), report.images_without_labels,
                         report.labels_without_images, fold, out_dir, meta)
