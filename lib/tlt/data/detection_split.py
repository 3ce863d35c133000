"""The TFRecord shards of a DetectNet_v2 split: which files, how many frames, sizes, classes.

Sources are ``dataset_config.data_sources`` glob patterns, local or gs:// / s3:// (remote shards
are downloaded once per process through `tlt.io.storage`). Validation frames are the shards of
``validation_fold`` (parsed from the shard names) or ``validation_data_source``; evaluation with
``use_training_set`` reads both splits, as the guide's ``tlt-evaluate --use_training_set`` does.
Used by the training input (`tlt.data.detection_input`) and the evaluation frames
(`tlt.data.detection_frames`).
"""

from __future__ import annotations

import atexit
import fnmatch
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tlt.data.class_mapping import ClassMapping, build_class_mapping, check_class_presence
from tlt.data.tfrecord import check_tfrecord_file, decode_example, read_records
from tlt.errors import DataError, SpecError
from tlt.io import storage

__all__ = ["DetectionSplit", "resolve_split", "resolve_evaluation_split", "check_split",
           "prepare_split"]

log = logging.getLogger(__name__)

_FOLD = re.compile(r"-fold-(\d{3})-of-(\d{3})-shard-\d{5}-of-\d{5}$")
_MAX_NAMED = 20          # frames listed by name in a size error
_CACHE: dict[str, str] = {}  # local copy -> remote shard URI, for this process


@dataclass
class DetectionSplit:
    """The TFRecord files of one split and what is known about their frames.

    Attributes:
        files: local paths of the shard files, sorted.
        description: the patterns (and fold) the files come from, for messages.
        num_frames: frames in the files.
        class_counts: objects per (lower-cased) source class.
        frame_sizes: ``{"WxH": frames}``.
        frames_by_size: ``{"WxH": [frame ids]}`` when the records were scanned, else empty.
    """

    files: list[str]
    description: str
    num_frames: int = 0
    class_counts: Counter = field(default_factory=Counter)
    frame_sizes: Counter = field(default_factory=Counter)
    frames_by_size: dict[str, list[str]] = field(default_factory=dict)


def _local_copy(uri: str, cache_dir: str | None) -> str:
    """A local path of a shard: itself, or its download (once per process and cache folder)."""
    if not storage.is_remote(uri):
        return uri
    if cache_dir is None:
        if "" not in _CACHE:
            _CACHE[""] = tempfile.mkdtemp(prefix="tlt-tfrecords-")
            atexit.register(shutil.rmtree, _CACHE[""], True)
        cache_dir = _CACHE[""]
    digest = hashlib.sha1(uri.encode("utf-8")).hexdigest()[:16]
    local = os.path.join(cache_dir, digest, uri.rsplit("/", 1)[-1])
    if _CACHE.get(local) != uri or not os.path.exists(local):
        os.makedirs(os.path.dirname(local), exist_ok=True)
        storage.download_file(uri, local)
        _CACHE[local] = uri
    return local


# Files tlt-dataset-convert writes next to its shards: a pattern such as the guide's
# `tfrecords/kitti_trainval/*` matches them too, and they are not records.
_CONVERT_SIDE_FILES = ("metadata.json", "status.json")


def _expand(pattern: str, base_dir: str | None) -> list[str]:
    if not storage.is_remote(pattern):
        if base_dir and not os.path.isabs(pattern):
            pattern = os.path.join(base_dir, pattern)
        files = sorted(p for p in glob.glob(pattern)
                       if os.path.isfile(p) and os.path.basename(p) not in _CONVERT_SIDE_FILES)
        for path in files:  # name a non-TFRecord file here, before tf.data reads it blindly
            check_tfrecord_file(path)
        return files
    folder, name = pattern.rsplit("/", 1)
    if any(c in folder for c in "*?["):
        raise SpecError(f"{pattern}: wildcards are supported only in the file name of a "
                        "gs:// or s3:// tfrecords_path")
    return [u for u in storage.list_files(folder, recursive=False)
            if fnmatch.fnmatchcase(u.rsplit("/", 1)[-1], name)
            and u.rsplit("/", 1)[-1] not in _CONVERT_SIDE_FILES]


def _metadata(pattern: str, base_dir: str | None) -> dict:
    if not storage.is_remote(pattern) and base_dir and not os.path.isabs(pattern):
        pattern = os.path.join(base_dir, pattern)
    uri = storage.join(pattern.rsplit("/", 1)[0] if "/" in pattern else ".", "metadata.json")
    try:
        return json.loads(storage.read_text(uri)) if storage.exists(uri) else {}
    except (ValueError, UnicodeDecodeError):
        log.warning("%s is not valid JSON; the records will be scanned instead", uri)
        return {}


def _scan(files: list[str], split: DetectionSplit) -> None:
    """Count frames, sizes and classes by reading the records (no image decoding)."""
    for path in files:
        for record in read_records(path, verify=False):
            ex = decode_example(record)
            size = f"{ex['frame/width'][0]}x{ex['frame/height'][0]}"
            split.num_frames += 1
            split.frame_sizes[size] += 1
            split.frames_by_size.setdefault(size, []).append(ex["frame/id"][0].decode("utf-8"))
            split.class_counts.update(c.decode("utf-8") for c in ex["target/object_class"])


def resolve_split(experiment: Any, *, validation: bool, base_dir: str | None = None,
                  cache_dir: str | None = None, allow_empty: bool = False) -> DetectionSplit:
    """Find the shard files of the training or the validation split.

    Args:
        experiment: a DetectionExperiment.
        validation: the validation split (else the training split).
        base_dir: folder that relative ``tfrecords_path`` patterns are relative to (else the
            working directory).
        cache_dir: where remote shards are downloaded (default: a temporary folder removed at
            exit).
        allow_empty: return a split without files, rather than fail, when the patterns match
            files but none of the split (e.g. an empty validation fold).

    Returns:
        The DetectionSplit; counts come from convert's ``metadata.json`` when it describes exactly
        these shards, otherwise from a scan of the records.

    Raises:
        SpecError: no data source, or ``validation_fold`` beyond the folds of the shards.
        DataError: a pattern matches no file, or the split has no shard.
    """
    sources, fold = _sources(experiment.dataset_config, validation)
    files, described, counts_known = [], [], True
    split = DetectionSplit([], "")
    for where, source in sources:
        pattern = source.tfrecords_path
        if not pattern:
            raise SpecError(f"{where}.tfrecords_path is empty", field=f"{where}.tfrecords_path")
        matched = _expand(pattern, base_dir)
        if not matched:
            raise DataError(f"{where}.tfrecords_path {pattern!r} matches no file")
        if fold is not None:
            matched = _in_fold(matched, pattern, fold, validation)
        described.append(pattern if fold is None else
                         f"{pattern} ({'' if validation else 'all but '}fold {fold})")
        counts_known &= _count_from_metadata(split, _metadata(pattern, base_dir), matched)
        files.extend(matched)
    split.description = ", ".join(described)
    if not files and allow_empty:
        return split
    if not files:
        raise DataError(f"no {'validation' if validation else 'training'} records in "
                        f"{split.description}")
    split.files = sorted({_local_copy(u, cache_dir) for u in files})
    if not counts_known:
        split.num_frames, split.class_counts, split.frame_sizes = 0, Counter(), Counter()
        _scan(split.files, split)
    return split


def _sources(dc: Any, validation: bool) -> tuple[list[tuple[str, Any]], int | None]:
    """``([(spec path, DataSource)], validation fold or None)`` of one split."""
    mode = dc.WhichOneof("dataset_split_type")
    if validation and mode == "validation_data_source":
        return [("dataset_config.validation_data_source", dc.validation_data_source)], None
    if not dc.data_sources:
        raise SpecError("dataset_config.data_sources is empty, expected at least one "
                        "tfrecords_path", field="dataset_config.data_sources")
    sources = [(f"dataset_config.data_sources[{i}]", s) for i, s in enumerate(dc.data_sources)]
    return sources, None if mode == "validation_data_source" else dc.validation_fold


def _in_fold(matched: list[str], pattern: str, fold: int, validation: bool) -> list[str]:
    """The shards of ``fold`` (validation) or of every other fold (training)."""
    folds = {u: _FOLD.search(u.rsplit("/", 1)[-1]) for u in matched}
    num = max((int(m.group(2)) for m in folds.values() if m), default=0)
    if num and fold >= num:
        raise SpecError(f"dataset_config.validation_fold is {fold} but {pattern} has "
                        f"{num} folds (0..{num - 1})", field="dataset_config.validation_fold")
    in_fold = [u for u, m in folds.items() if m and int(m.group(1)) == fold]
    return in_fold if validation else [u for u in matched if u not in in_fold]


def _count_from_metadata(split: DetectionSplit, meta: dict, matched: list[str]) -> bool:
    """Add convert's counts of ``matched`` to ``split``; False when the metadata cannot tell."""
    names = {u.rsplit("/", 1)[-1] for u in matched}
    shard_folds = {n: int(m.group(1)) for n in meta.get("shards", []) if (m := _FOLD.search(n))}
    used = {shard_folds[n] for n in names if n in shard_folds}
    # The metadata counts whole folds: usable when the files are exactly those folds.
    if names != {n for n, f in shard_folds.items() if f in used} or not meta.get(
            "frame_sizes") or "frames_per_fold" not in meta or "class_counts" not in meta:
        return False
    split.num_frames += sum(meta["frames_per_fold"][f] for f in used)
    for f in used:
        split.class_counts.update(meta["class_counts"].get(f"fold-{f:03d}", {}))
    split.frame_sizes.update(meta["frame_sizes"])  # all folds: fine for the size check
    return True


def resolve_evaluation_split(experiment: Any, *, use_training_set: bool = False,
                             base_dir: str | None = None,
                             cache_dir: str | None = None) -> DetectionSplit:
    """The frames an evaluation reads: the validation split, or training + validation.

    The guide's ``tlt-evaluate detection --use_training_set`` "runs evaluation on training +
    validation dataset"; shards both splits name are read once, and an empty validation fold
    leaves the training frames.

    Raises:
        SpecError / DataError: as `resolve_split`, for either split.
    """
    validation = resolve_split(experiment, validation=True, base_dir=base_dir, cache_dir=cache_dir,
                               allow_empty=use_training_set)
    if not use_training_set:
        return validation
    training = resolve_split(experiment, validation=False, base_dir=base_dir, cache_dir=cache_dir)
    if not validation.files:
        return training
    merged = DetectionSplit(sorted(set(training.files) | set(validation.files)),
                            f"{training.description} and {validation.description}")
    if len(merged.files) < len(training.files) + len(validation.files):
        _scan(merged.files, merged)  # shared shards: the sums would count their frames twice
        return merged
    merged.num_frames = training.num_frames + validation.num_frames
    merged.class_counts = training.class_counts + validation.class_counts
    merged.frame_sizes = training.frame_sizes + validation.frame_sizes  # the size check reads keys
    if training.frames_by_size and validation.frames_by_size:
        for size in set(training.frames_by_size) | set(validation.frames_by_size):
            merged.frames_by_size[size] = (training.frames_by_size.get(size, [])
                                           + validation.frames_by_size.get(size, []))
    return merged


def _bad_sizes(sizes: Counter, pre: Any) -> list[tuple[str, str]]:
    """The ``"WxH"`` sizes the network cannot take, with the reason ("" = wrong size)."""
    out = (pre.output_image_width, pre.output_image_height)
    crop = (pre.crop_left, pre.crop_top, pre.crop_right, pre.crop_bottom)
    cropped = crop[2] > crop[0] and crop[3] > crop[1]
    bad = []
    for size in sorted(sizes):
        w, h = (int(v) for v in size.split("x"))
        if cropped and (crop[2] > w or crop[3] > h):
            bad.append((size, f"smaller than the crop (crop_right {crop[2]}, "
                              f"crop_bottom {crop[3]})"))
        elif not pre.enable_auto_resize and (
                (crop[2] - crop[0], crop[3] - crop[1]) if cropped else (w, h)) != out:
            bad.append((size, ""))
    return bad


def _check_sizes(split: DetectionSplit, pre: Any) -> None:
    """Fail up front on frames the network cannot take (size, crop), naming them."""
    bad = _bad_sizes(split.frame_sizes, pre)
    if bad and not split.frames_by_size:
        # Metadata only counts sizes (over all folds): read this split's records for the ids.
        scanned = DetectionSplit([], "")
        _scan(split.files, scanned)
        split.frames_by_size = scanned.frames_by_size
        bad = _bad_sizes(scanned.frame_sizes, pre)
    if not bad:
        return
    named = [f"{fid} ({size})" for size, _ in bad for fid in split.frames_by_size[size]]
    listed = ", ".join(named[:_MAX_NAMED]) + (f" and {len(named) - _MAX_NAMED} more"
                                              if len(named) > _MAX_NAMED else "")
    reason = next((r for _, r in bad if r), "")
    if reason:
        raise DataError(f"{len(named)} frame(s) in {split.description} are {reason}: {listed}")
    out = f"{pre.output_image_width}x{pre.output_image_height}"
    if pre.crop_right > pre.crop_left and pre.crop_bottom > pre.crop_top:
        out += (f", but the crop is {pre.crop_right - pre.crop_left}x"
                f"{pre.crop_bottom - pre.crop_top}")
    raise DataError(f"{len(named)} frame(s) in {split.description} do not have the network "
                    f"input size {out} (augmentation_config.preprocessing.output_image_width x "
                    "output_image_height) and enable_auto_resize is false: "
                    f"{listed}; set augmentation_config.preprocessing.enable_auto_resize: true "
                    "to resize them")




def prepare_split(experiment: Any, *, training: bool, use_training_set: bool = False,
                  base_dir: str | None = None,
                  cache_dir: str | None = None) -> tuple[Any, ClassMapping, DetectionSplit]:
    """Resolve the split a pipeline reads and check it (sizes; class presence for training).

    Args:
        experiment: a DetectionExperiment.
        training: the training split; else the evaluation split (`resolve_evaluation_split`).
        use_training_set: evaluation on training + validation frames.
        base_dir: folder relative tfrecords paths are relative to.
        cache_dir: download folder of remote shards.

    Returns:
        ``(preprocessing config, class mapping, split)``.
    """
    pre = experiment.augmentation_config.preprocessing
    mapping = build_class_mapping(experiment.dataset_config,
                                  experiment.cost_function_config.target_classes)
    if training:
        split = resolve_split(experiment, validation=False, base_dir=base_dir, cache_dir=cache_dir)
    else:
        split = resolve_evaluation_split(experiment, use_training_set=use_training_set,
                                         base_dir=base_dir, cache_dir=cache_dir)
    _check_sizes(split, pre)
    if training:
        check_class_presence(split.class_counts, mapping, split.description)
    return pre, mapping, split


def check_split(experiment: Any, *, validation: bool, base_dir: str | None = None,
                cache_dir: str | None = None) -> DetectionSplit:
    """Resolve a split and run its checks now (sizes; class presence for training).

    Training calls this for both splits up front, so a bad validation source fails before the
    first epoch rather than after hours of training.
    """
    _, _, split = prepare_split(experiment, training=not validation, base_dir=base_dir,
                                cache_dir=cache_dir)
    return split
