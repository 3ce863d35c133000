"""DetectNet_v2 input pipeline: records -> images and targets, splits, class mapping, sizes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tlt import spec as spec_lib
from tlt.data.class_mapping import build_class_mapping, check_class_presence
from tlt.data.detection_frames import iter_validation_frames
from tlt.data.detection_input import build_detection_input, resolve_split
from tlt.data.detection_split import resolve_evaluation_split
from tlt.errors import DataError, SpecError
from tlt.stages.convert import run as convert

W, H = 256, 96            # network input: a 16 x 6 grid
# Objects of every frame at the network size; the 320x120 frames hold them scaled by 1.25.
OBJECTS = [("Automobile", (16, 16, 80, 64)), ("Person", (100, 10, 116, 70)),
           ("DontCare", (200, 48, 240, 88)), ("Van", (200, 0, 240, 30))]
MAPPING = {"car": "car", "automobile": "car", "person": "pedestrian"}


def _write_frame(root: Path, fid: str, scale: float) -> None:
    size = (round(W * scale), round(H * scale))
    image = Image.new("RGB", size, (90, 90, 90))
    draw = ImageDraw.Draw(image)
    lines = []
    for cls, box in OBJECTS:
        x1, y1, x2, y2 = (v * scale for v in box)
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=(250, 250, 250))
        lines.append(f"{cls} 0.00 0 -10 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} "
                     "-1 -1 -1 -1000 -1000 -1000 -10\n")
    image.save(root / "images" / f"{fid}.png")
    (root / "labels" / f"{fid}.txt").write_text("".join(lines))


def _make_records(root: Path, scales: list[float], val_split: float) -> tuple[Path, object]:
    data = root / "kitti"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    for i, scale in enumerate(scales):
        _write_frame(data, f"{i:06d}", scale)
    spec = spec_lib.loads(f'kitti_config {{ root_directory_path: "{data}" num_shards: 2 '
                          f'val_split: {val_split} }}', "dataset_export")
    out = root / "tfrecords"
    result = convert(spec, out, output_name="kitti", num_workers=1, progress=False)
    return out, result


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """8 frames at the network size: 2 in fold 0 (validation), 6 in fold 1."""
    return _make_records(tmp_path_factory.mktemp("native"), [1.0] * 8, 25)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """5 training frames: 3 at the network size, 2 (000003, 000004) at 320x120."""
    return _make_records(tmp_path_factory.mktemp("mixed"), [1.0, 1.0, 1.0, 1.25, 1.25], 0)


def _spec(pattern: str, *, classes=("car", "pedestrian"), mapping=None, auto_resize=False,
          augment=False, split='validation_fold: 0'):
    mapping = MAPPING if mapping is None else mapping
    raster = "".join(f'target_class_config {{ key: "{c}" value {{ cov_radius_x: 0.4 '
                     f'cov_radius_y: 0.4 bbox_min_radius: 1.0 }} }}\n' for c in classes)
    cost = "".join(f'target_classes {{ name: "{c}" objectives {{ name: "cov" }} '
                   f'objectives {{ name: "bbox" }} }}\n' for c in classes)
    maps = "".join(f'target_class_mapping {{ key: "{k}" value: "{v}" }}\n'
                   for k, v in mapping.items())
    p, t, c = (0.5, 8, 25.0) if augment else (0.0, 0, 0.0)
    text = f"""
model_config {{ num_layers: 10 }}
bbox_rasterizer_config {{ {raster} deadzone_radius: 0.67 }}
cost_function_config {{ {cost} }}
augmentation_config {{
  preprocessing {{ output_image_width: {W} output_image_height: {H} min_bbox_width: 1.0
                  min_bbox_height: 1.0 enable_auto_resize: {str(auto_resize).lower()} }}
  spatial_augmentation {{ hflip_probability: {p} zoom_min: 1.0 zoom_max: 1.0
                         translate_max_x: {t} translate_max_y: {t} }}
  color_augmentation {{ hue_rotation_max: {c} saturation_shift_max: {c / 100}
                       contrast_scale_max: {c / 200} color_shift_stddev: {c / 500} }}
}}
dataset_config {{
  data_sources {{ tfrecords_path: "{pattern}" image_directory_path: "unused" }}
  image_extension: "png"
  {maps}
  {split}
}}
"""
    return spec_lib.loads(text, "detection")


def _all(ds):
    return [(x.numpy(), {k: v.numpy() for k, v in y.items()}) for x, y in ds]


def test_class_mapping_many_to_one_ignore_and_errors():
    experiment = _spec("unused*")
    mapping = build_class_mapping(experiment.dataset_config,
                                  experiment.cost_function_config.target_classes)
    assert mapping.target_classes == ("car", "pedestrian")
    assert [mapping.index(n) for n in ("Automobile", "car", "person", "Van", "DontCare")] == \
        [0, 0, 1, -1, -1]
    assert mapping.sources_of("car") == ["automobile", "car"]
    with pytest.raises(SpecError) as err:
        build_class_mapping(experiment.dataset_config, ["car", "pedestrian", "cyclist"])
    assert "cost_function_config.target_classes[2] 'cyclist' has no source class mapped" in \
        str(err.value)
    with pytest.raises(DataError) as err:
        check_class_presence({"fold-000": {"car": 3}, "total": {"car": 3, "van": 1}}, mapping,
                             "/data/train*")
    assert str(err.value) == ("target class 'pedestrian' has no examples in /data/train*: "
                              "source classes mapped to it: person (classes present: car (3), "
                              "van (1))")


def test_shapes_dtypes_and_targets(records):
    out, _ = records
    ds = build_detection_input(_spec(f"{out}/kitti*"), training=False, batch_size=4,
                               use_training_set=True)
    batches = _all(ds)
    assert [x.shape for x, _ in batches] == [(4, 3, H, W), (4, 3, H, W)]  # training + validation
    x, y = batches[0]
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0
    # Grey background 90 and white boxes 250, scaled as x / 127.5 - 1.
    np.testing.assert_allclose(x[0, :, 40, 48], 250 / 127.5 - 1, atol=1e-5)
    np.testing.assert_allclose(x[0, :, 80, 150], 90 / 127.5 - 1, atol=1e-5)
    cov, bbox = y["output_cov"], y["output_bbox"]
    assert cov.shape == (4, 4, 6, 16) and bbox.shape == (4, 10, 6, 16)
    assert cov.dtype == np.float32 and bbox.dtype == np.float32
    for i in range(4):  # every frame holds the same objects
        np.testing.assert_array_equal(cov[i], cov[0])
    # Automobile -> car (channel 0) around its centre cell (row 2, col 3); Person -> pedestrian.
    assert cov[0, 0, 2, 3] == 1.0 and cov[0, 1, 2, 3] == 0.0
    assert cov[0, 1, 2, 6] > 0.5 and cov[0, 0, 2, 6] == 0.0
    # bbox targets of the car at cell (2, 3): reference point 16 * (3, 2) + 0.5, scale 35.
    np.testing.assert_allclose(bbox[0, 0:4, 2, 3], [(48.5 - 16) / 35, (32.5 - 16) / 35,
                                                    (80 - 48.5) / 35, (64 - 32.5) / 35],
                               rtol=1e-6)
    assert bbox[0, 8, 2, 3] > 0 and bbox[0, 9, 2, 3] == 0  # bbox weights of car, pedestrian
    # DontCare (rows 3-5, cols 12-14) and the unmapped Van (rows 0-1) are ignore regions:
    # cov_mask (channels 2, 3) is 0 there for every class, and nothing is foreground.
    mask = cov[0, 2:4]
    assert (mask[:, 3:6, 12:15] == 0).all() and (mask[:, 0:2, 12:15] == 0).all()
    assert (cov[0, 0:2, :, 12:15] == 0).all()
    assert (mask[:, :, 9:11] == 1).all() and (cov[0, 0:2, :, 9:11] == 0).all()


def test_validation_fold_split_counts(records, tmp_path):
    out, result = records
    assert result.frames_per_fold == [2, 6]
    experiment = _spec(f"{out}/kitti*")
    train = resolve_split(experiment, validation=False)
    val = resolve_split(experiment, validation=True)
    assert (train.num_frames, val.num_frames) == (6, 2)
    assert all("fold-001" in f for f in train.files) and all("fold-000" in f for f in val.files)
    assert sum(len(x) for x, _ in _all(build_detection_input(
        experiment, training=False, batch_size=3))) == 2
    # Training batches stay inside an epoch: 6 frames in batches of 4 -> 4, 2, 4, 2.
    ds = build_detection_input(experiment, training=True, batch_size=4)
    assert [len(x) for x, _ in ds.take(4)] == [4, 2, 4, 2]
    with pytest.raises(DataError) as err:
        build_detection_input(experiment, training=True, batch_size=8, drop_remainder=True)
    assert str(err.value) == (f"{out}/kitti* (all but fold 0) holds 6 training frame(s), "
                              "expected at least 8 (batch size 8, drop_remainder)")
    # Without convert's metadata the records are scanned: same answer.
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in out.glob("kitti-fold-*"):
        shutil.copy(f, bare / f.name)
    scanned = resolve_split(_spec(f"{bare}/kitti*"), validation=True)
    val_ids = [i for b in iter_validation_frames(experiment, batch_size=4) for i in b.frame_ids]
    assert scanned.num_frames == 2 and sorted(scanned.frames_by_size["256x96"]) == sorted(val_ids)
    assert scanned.class_counts == val.class_counts == {
        "automobile": 2, "person": 2, "dontcare": 2, "van": 2}
    with pytest.raises(SpecError) as err:
        resolve_split(_spec(f"{out}/kitti*", split="validation_fold: 2"), validation=True)
    assert f"dataset_config.validation_fold is 2 but {out}/kitti* has 2 folds (0..1)" in \
        str(err.value)


def test_validation_data_source(records):
    out, _ = records
    experiment = _spec(f"{out}/kitti-fold-001*", split=(
        f'validation_data_source {{ tfrecords_path: "{out}/kitti-fold-000*" }}'))
    assert resolve_split(experiment, validation=False).num_frames == 6
    assert resolve_split(experiment, validation=True).num_frames == 2
    with pytest.raises(DataError) as err:
        resolve_split(_spec(f"{out}/nothing*"), validation=False)
    assert str(err.value) == (f"dataset_config.data_sources[0].tfrecords_path "
                              f"'{out}/nothing*' matches no file")


def test_target_class_without_examples(records):
    out, _ = records
    experiment = _spec(f"{out}/kitti*", classes=("car", "pedestrian", "cyclist"),
                       mapping={**MAPPING, "rider": "cyclist"})
    with pytest.raises(DataError) as err:
        build_detection_input(experiment, training=True, batch_size=2)
    assert str(err.value).startswith(
        f"target class 'cyclist' has no examples in {out}/kitti* (all but fold 0): source "
        "classes mapped to it: rider")


def test_training_is_deterministic_per_seed_and_epoch(records):
    out, _ = records
    experiment = _spec(f"{out}/kitti*", augment=True)

    def batches(seed, epoch, n):
        ds = build_detection_input(experiment, training=True, batch_size=4, seed=seed,
                                   epoch=epoch)
        return _all(ds.take(n))

    first = batches(3, 0, 4)
    again = batches(3, 0, 4)
    resumed = batches(3, 1, 2)
    other = batches(4, 0, 1)
    for (xa, ya), (xb, yb) in list(zip(first, again)) + list(zip(first[2:], resumed)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya["output_cov"], yb["output_cov"])
        np.testing.assert_array_equal(ya["output_bbox"], yb["output_bbox"])
    assert not np.array_equal(first[0][0], other[0][0])
    assert not np.array_equal(first[0][0], first[2][0])  # epochs differ


def test_wrong_size_without_auto_resize_names_the_frames(mixed):
    out, _ = mixed
    with pytest.raises(DataError) as err:
        build_detection_input(_spec(f"{out}/kitti*"), training=True, batch_size=2)
    assert str(err.value) == (
        f"2 frame(s) in {out}/kitti* (all but fold 0) do not have the network input size "
        "256x96 (augmentation_config.preprocessing.output_image_width x output_image_height) "
        "and enable_auto_resize is false: 000003 (320x120), 000004 (320x120); set "
        "augmentation_config.preprocessing.enable_auto_resize: true to resize them")


def test_auto_resize_scales_boxes_exactly(mixed):
    out, _ = mixed
    experiment = _spec(f"{out}/kitti*", auto_resize=True)
    batches = _all(build_detection_input(experiment, training=False, batch_size=5,
                                         use_training_set=True))
    (x, y), = batches
    assert x.shape == (5, 3, H, W)
    # 320x120 frames resized by 0.8 give the same boxes, hence the same targets, as native ones.
    for i in range(1, 5):
        np.testing.assert_allclose(y["output_cov"][i], y["output_cov"][0], atol=1e-6)
        np.testing.assert_allclose(y["output_bbox"][i], y["output_bbox"][0], atol=1e-5)
    frames = [b for b in iter_validation_frames(experiment, batch_size=2, use_training_set=True)]
    by_id = {fid: (b, i) for b in frames for i, fid in enumerate(b.frame_ids)}
    assert sorted(by_id) == ["000000", "000001", "000002", "000003", "000004"]
    batch, i = by_id["000004"]
    np.testing.assert_allclose(batch.to_network[i], [0.8, 0.8, 0.0, 0.0], rtol=1e-6)
    assert batch.class_names[i] == ["automobile", "person", "dontcare", "van"]
    assert batch.class_ids[i].tolist() == [0, 1, -1, -1]
    np.testing.assert_allclose(batch.boxes[i][0], [20, 20, 100, 80], atol=0.01)  # source pixels
    np.testing.assert_allclose(batch.to_source(i, [[16, 16, 80, 64]]), [[20, 20, 100, 80]],
                               rtol=1e-6)
    assert batch.images.shape[1:] == (3, H, W)


def test_remote_shards_are_staged(records, s3_bucket, seed_objects, tmp_path):
    out, _ = records
    seed_objects(s3_bucket, {f"tf/{p.name}": p.read_bytes() for p in out.iterdir()
                             if p.name.startswith("kitti") or p.name == "metadata.json"})
    experiment = _spec(f"{s3_bucket}/tf/kitti*")
    split = resolve_split(experiment, validation=True, cache_dir=str(tmp_path))
    assert split.num_frames == 2 and all(f.startswith(str(tmp_path)) for f in split.files)
    ds = build_detection_input(experiment, training=False, batch_size=2, cache_dir=str(tmp_path))
    local = _all(build_detection_input(_spec(f"{out}/kitti*"), training=False, batch_size=2))
    (x, y), = _all(ds)
    np.testing.assert_array_equal(x, local[0][0])


def test_use_training_set_evaluates_training_and_validation_frames(records):
    # the guide: --use_training_set "runs evaluation on training + validation dataset"
    out, _ = records
    experiment = _spec(f"{out}/kitti*")
    both = resolve_evaluation_split(experiment, use_training_set=True)
    assert both.num_frames == 8 and len(both.files) == 4
    assert both.class_counts == {"automobile": 8, "person": 8, "dontcare": 8, "van": 8}
    assert resolve_evaluation_split(experiment).num_frames == 2
    ids = [i for b in iter_validation_frames(experiment, batch_size=3, use_training_set=True)
           for i in b.frame_ids]
    assert sorted(ids) == [f"{i:06d}" for i in range(8)]
    assert sum(len(x) for x, _ in _all(build_detection_input(
        experiment, training=False, batch_size=3, use_training_set=True))) == 8
    # a validation_data_source naming the training shards again: each frame is read once
    again = _spec(f"{out}/kitti*", split=f'validation_data_source {{ tfrecords_path: "{out}/kitti*" }}')
    assert resolve_evaluation_split(again, use_training_set=True).num_frames == 8
    separate = _spec(f"{out}/kitti-fold-001*",
                     split=f'validation_data_source {{ tfrecords_path: "{out}/kitti-fold-000*" }}')
    assert resolve_evaluation_split(separate, use_training_set=True).num_frames == 8


def test_use_training_set_without_validation_shards(records):
    out, _ = records
    experiment = _spec(f"{out}/kitti-fold-001*")  # validation_fold 0, but no fold-0 shard matched
    with pytest.raises(DataError, match="no validation records"):
        resolve_evaluation_split(experiment)
    assert resolve_evaluation_split(experiment, use_training_set=True).num_frames == 6


def test_star_pattern_skips_convert_side_files_and_names_a_stray_file(records, tmp_path):
    """The guide's `tfrecords/kitti_trainval/*` also matches convert's metadata.json/status.json."""
    out, _ = records
    folder = tmp_path / "trainval"
    folder.mkdir()
    for f in out.glob("kitti-fold-*"):
        shutil.copy(f, folder / f.name)
    (folder / "metadata.json").write_text('{"not": "records"}')
    (folder / "status.json").write_text('{"state": "done"}')
    assert resolve_split(_spec(f"{folder}/*"), validation=True).num_frames == 2
    (folder / "notes.txt").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError) as err:
        resolve_split(_spec(f"{folder}/*"), validation=True)
    assert "notes.txt" in str(err.value) and "not a TFRecord" in str(err.value)
