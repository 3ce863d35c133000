"""tf.data input pipeline of DetectNet_v2: TFRecord shards -> images and target maps.

Records come from ``tlt-dataset-convert`` (`tlt.data.tfrecord` keys, one frame each, the encoded
image inside). Sources are ``dataset_config.data_sources`` glob patterns, local or gs:// / s3://
(remote shards are downloaded once per process through `tlt.io.storage`). Validation frames are
the shards of ``validation_fold`` (parsed from the shard names) or ``validation_data_source``.

Per frame: decode, crop / resize / augment in one warp (`tlt.data.detection_augment`), drop
boxes that left the image or are below ``min_bbox_width/height``, rasterize the targets
(`tlt.models.detectnet_v2.rasterizer`), scale pixels with the classification ``PREPROCESSING``.
Training is deterministic per (seed, epoch): shard order, record shuffle and every augmentation
draw derive from them, and batches never cross an epoch boundary, so a resumed run sees the same
stream as an uninterrupted one.
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
from tlt.data.classification_input import PREPROCESSING
from tlt.data.detection_augment import build_detection_augment
from tlt.data.tfrecord import decode_example, feature_spec, read_records
from tlt.errors import DataError, SpecError
from tlt.io import storage

__all__ = ["PREPROCESSING", "DetectionSplit", "ValidationBatch", "resolve_split", "check_split",
           "build_detection_input", "iter_validation_frames"]

log = logging.getLogger("tlt.data.detection_input")

_FOLD = re.compile(r"-fold-(\d{3})-of-(\d{3})-shard-\d{5}-of-\d{5}$")
_KEYS = ("frame/id", "frame/width", "frame/height", "frame/encoded", "target/object_class",
         "target/truncation", "target/occlusion", "target/coordinates_x1",
         "target/coordinates_y1", "target/coordinates_x2", "target/coordinates_y2")
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


def _expand(pattern: str, base_dir: str | None) -> list[str]:
    if not storage.is_remote(pattern):
        if base_dir and not os.path.isabs(pattern):
            pattern = os.path.join(base_dir, pattern)
        return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    folder, name = pattern.rsplit("/", 1)
    if any(c in folder for c in "*?["):
        raise SpecError(f"{pattern}: wildcards are supported only in the file name of a "
                        "gs:// or s3:// tfrecords_path")
    return [u for u in storage.list_files(folder, recursive=False)
            if fnmatch.fnmatchcase(u.rsplit("/", 1)[-1], name)]


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
                  cache_dir: str | None = None) -> DetectionSplit:
    """Find the shard files of the training or the validation split.

    Args:
        experiment: a DetectionExperiment.
        validation: the validation split (else the training split).
        base_dir: folder that relative ``tfrecords_path`` patterns are relative to (else the
            working directory).
        cache_dir: where remote shards are downloaded (default: a temporary folder removed at
            exit).

    Returns:
        The DetectionSplit; counts come from convert's ``metadata.json`` when it describes exactly
        these shards, otherwise from a scan of the records.

    Raises:
        SpecError: no data source, or ``validation_fold`` beyond the folds of the shards.
        DataError: a pattern matches no file, or the split has no shard.
    """
    dc = experiment.dataset_config
    mode = dc.WhichOneof("dataset_split_type")
    if validation and mode == "validation_data_source":
        sources = [("dataset_config.validation_data_source", dc.validation_data_source)]
        fold = None
    else:
        if not dc.data_sources:
            raise SpecError("dataset_config.data_sources is empty, expected at least one "
                            "tfrecords_path", field="dataset_config.data_sources")
        sources = [(f"dataset_config.data_sources[{i}]", s) for i, s in enumerate(dc.data_sources)]
        fold = None if mode == "validation_data_source" else dc.validation_fold
    files, described, counts_known = [], [], True
    split = DetectionSplit([], "")
    for where, source in sources:
        pattern = source.tfrecords_path
        if not pattern:
            raise SpecError(f"{where}.tfrecords_path is empty", field=f"{where}.tfrecords_path")
        matched = _expand(pattern, base_dir)
        if not matched:
            raise DataError(f"{where}.tfrecords_path {pattern!r} matches no file")
        folds = {u: _FOLD.search(u.rsplit("/", 1)[-1]) for u in matched}
        if fold is not None:
            num = max((int(m.group(2)) for m in folds.values() if m), default=0)
            if num and fold >= num:
                raise SpecError(f"dataset_config.validation_fold is {fold} but {pattern} has "
                                f"{num} folds (0..{num - 1})", field="dataset_config.validation_fold")
            in_fold = [u for u, m in folds.items() if m and int(m.group(1)) == fold]
            matched = in_fold if validation else [u for u in matched if u not in in_fold]
        described.append(pattern if fold is None else
                         f"{pattern} ({'' if validation else 'all but '}fold {fold})")
        meta = _metadata(pattern, base_dir)
        names = {u.rsplit("/", 1)[-1] for u in matched}
        shard_folds = {n: int(m.group(1)) for n in meta.get("shards", [])
                       if (m := _FOLD.search(n))}
        used = {shard_folds[n] for n in names if n in shard_folds}
        # The metadata counts whole folds: usable when the files are exactly those folds.
        if names == {n for n, f in shard_folds.items() if f in used} and meta.get(
                "frame_sizes") and "frames_per_fold" in meta and "class_counts" in meta:
            split.num_frames += sum(meta["frames_per_fold"][f] for f in used)
            for f in used:
                split.class_counts.update(meta["class_counts"].get(f"fold-{f:03d}", {}))
            split.frame_sizes.update(meta["frame_sizes"])  # all folds: fine for the size check
        else:
            counts_known = False
        files.extend(matched)
    split.description = ", ".join(described)
    if not files:
        raise DataError(f"no {'validation' if validation else 'training'} records in "
                        f"{split.description}")
    split.files = sorted({_local_copy(u, cache_dir) for u in files})
    if not counts_known:
        split.num_frames, split.class_counts, split.frame_sizes = 0, Counter(), Counter()
        _scan(split.files, split)
    return split


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


class _FrameDecoder:
    """Parses a record into image, boxes and class names/ids (shared by train and eval)."""

    def __init__(self, mapping: ClassMapping, channels: int):
        import tensorflow as tf

        keys, values = mapping.lookup_keys_values()
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys or [""], tf.string), tf.constant(values or [-1], tf.int32)), -1)
        self.spec = {k: v for k, v in feature_spec().items() if k in _KEYS}
        self.channels = channels

    def __call__(self, serialized):
        import tensorflow as tf

        f = tf.io.parse_single_example(serialized, self.spec)
        dense = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
                 for k, v in f.items()}
        image = tf.io.decode_image(dense["frame/encoded"], channels=self.channels,
                                   expand_animations=False)
        boxes = tf.stack([dense[f"target/coordinates_{k}"] for k in ("x1", "y1", "x2", "y2")], 1)
        names = tf.strings.lower(dense["target/object_class"])
        return {"id": dense["frame/id"], "image": image, "boxes": boxes, "names": names,
                "class_ids": self.table.lookup(names),
                "truncation": dense["target/truncation"], "occlusion": dense["target/occlusion"]}


def _scale(image_chw):
    """Pixels in [0, 255] -> the network's range, as `tlt.data.classification_input.preprocess`."""
    return (image_chw - PREPROCESSING["offset"]) * PREPROCESSING["scale"]


def _setup(experiment: Any, training: bool, use_training_set: bool, base_dir, cache_dir):
    pre = experiment.augmentation_config.preprocessing
    mapping = build_class_mapping(experiment.dataset_config,
                                  experiment.cost_function_config.target_classes)
    split = resolve_split(experiment, validation=not (training or use_training_set),
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
    _, _, split = _setup(experiment, not validation, False, base_dir, cache_dir)
    return split


def build_detection_input(experiment: Any, *, training: bool, batch_size: int,
                          use_training_set: bool = False, seed: int = 0, epoch: int = 0,
                          drop_remainder: bool = False, base_dir: str | None = None,
                          cache_dir: str | None = None, shuffle_buffer: int = 256):
    """Build the tf.data pipeline of DetectNet_v2 training or evaluation.

    Args:
        experiment: a DetectionExperiment (spec).
        training: training split, shuffled each epoch and augmented, repeating forever; else the
            validation split once, in a fixed order, only cropped/resized.
        batch_size: global batch size.
        use_training_set: evaluation on the training split (no augmentation).
        seed: base seed of shuffling and augmentation.
        epoch: first epoch served (a resumed run passes its start epoch).
        drop_remainder: drop each epoch's last partial batch.
        base_dir: folder relative tfrecords paths are relative to.
        cache_dir: download folder of remote shards.
        shuffle_buffer: records held by the shuffle buffer (each holds an encoded image).

    Returns:
        A ``tf.data.Dataset`` of ``(images [N, C, H, W] float32 in [-1, 1], {"output_cov":
        [N, 2K, Hg, Wg] (coverage, then its mask), "output_bbox": [N, 5K, Hg, Wg] (L, T, R, B per
        class, then the K bbox weights)})`` for K target classes.

    Raises:
        SpecError: class mapping or split settings are inconsistent.
        DataError: no records, fewer training frames than one batch, a target class without
            examples (training), or frames of another size than the network input without
            enable_auto_resize.
    """
    import tensorflow as tf

    from tlt.models.detectnet_v2.rasterizer import build_rasterizer

    pre, mapping, split = _setup(experiment, training, use_training_set, base_dir, cache_dir)
    if training and split.num_frames < (batch_size if drop_remainder else 1):
        # An epoch without a batch would make the endless training stream spin forever.
        raise DataError(f"{split.description} holds {split.num_frames} training frame(s), "
                        f"expected at least {batch_size if drop_remainder else 1} "
                        f"(batch size {batch_size}{', drop_remainder' if drop_remainder else ''})")
    bbox = experiment.model_config.objective_set.bbox
    raster = build_rasterizer(experiment.bbox_rasterizer_config, mapping.target_classes,
                              input_height=pre.output_image_height,
                              input_width=pre.output_image_width,
                              scale=bbox.scale, offset=bbox.offset)
    augment = build_detection_augment(experiment.augmentation_config, training=training)
    decode = _FrameDecoder(mapping, pre.output_image_channel)
    files = tf.constant(split.files)

    def load(ep, index, serialized):
        frame = decode(serialized)
        image, boxes, keep, _ = augment(frame["image"], frame["boxes"],
                                        tf.stack([ep * 1_000_003 + seed, index]),
                                        channels_first=True)
        cov, mask, bbox_t, weight = raster.tf_rasterize(
            tf.boolean_mask(boxes, keep), tf.boolean_mask(frame["class_ids"], keep))
        return _scale(image), {"output_cov": tf.concat([cov, mask], 0),
                                   "output_bbox": tf.concat([bbox_t, weight], 0)}

    def records(ep, order):
        ds = tf.data.Dataset.from_tensor_slices(tf.gather(files, order))
        return ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(split.files)),
                             block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True)

    if training:
        n = len(split.files)

        def epoch_dataset(ep):
            key = tf.stack([tf.cast(seed, tf.int64), ep])
            order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)
            ds = records(ep, order).shuffle(shuffle_buffer, seed=ep * 7919 + seed,
                                            reshuffle_each_iteration=False)
            ds = ds.enumerate().map(lambda i, s: load(ep, i, s),
                                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            return ds.batch(batch_size, drop_remainder=drop_remainder)

        ds = tf.data.Dataset.range(epoch, 1 << 30).flat_map(epoch_dataset)
    else:
        ds = records(tf.constant(0, tf.int64), tf.range(len(split.files))).enumerate()
        ds = ds.map(lambda i, s: load(tf.constant(0, tf.int64), i, s),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    # Each input op on one thread: the pipeline never fans out over the trainer's cores.
    options.threading.max_intra_op_parallelism = 1
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


# Evaluation frames live in their own module; re-exported here for callers of this one.
from tlt.data.detection_frames import ValidationBatch, iter_validation_frames  # noqa: E402
