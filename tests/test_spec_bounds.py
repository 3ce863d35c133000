"""Huge counts and sizes fail when the spec loads, naming file:line, the field and the allowed range;
a spec file that is not UTF-8 is one error naming the byte, its offset and its line."""

import json

import pytest

from tlt import spec
from tlt.cli import dataset_convert
from tlt.errors import SpecError

BIG = 2147483647

HUGE_VALUES = [
    # the values that hung a stage or flooded the disk, and every other count a typo can blow up
    (f'kitti_config {{\n  root_directory_path: "/d"\n  num_shards: {BIG}\n}}\n', "dataset_export",
     f"e.txt:3: kitti_config.num_shards must be in [1, 1024], got {BIG}"),
    ('kitti_config {\n  root_directory_path: "/d"\n  num_partitions: 5000\n}\n', "dataset_export",
     "e.txt:3: kitti_config.num_partitions must be in [1, 100], got 5000"),
    ("train_config {\n  batch_size_per_gpu: 2000000000\n}\n", "classification",
     "e.txt:2: train_config.batch_size_per_gpu must be in [1, 4096], got 2000000000"),
    ("train_config {\n  n_epochs: 1000000\n}\n", "classification",
     "e.txt:2: train_config.n_epochs must be in [1, 10000], got 1000000"),
    ("train_config {\n  n_workers: 100000\n}\n", "classification",
     "e.txt:2: train_config.n_workers must be in [1, 256], got 100000"),
    ("train_config {\n  checkpoint_interval: 4000000000\n}\n", "classification",
     "e.txt:2: train_config.checkpoint_interval must be in [1, 10000], got 4000000000"),
    ("train_config {\n  lr_config {\n    step_size: 99999999\n  }\n}\n", "classification",
     "e.txt:3: train_config.lr_config.step_size must be in [1, 10000], got 99999999"),
    ('model_config {\n  input_image_size: "3,224,2000000000"\n}\n', "classification",
     'e.txt:2: model_config.input_image_size must be "C,H,W" with C in {1, 3} and H, W in [1, 16384], '
     'got "3,224,2000000000"'),
    ("eval_config {\n  top_k: 100000\n}\n", "classification",
     "e.txt:2: eval_config.top_k must be in [1, 1000], got 100000"),
    ("eval_config {\n  top_k: 0\n}\n", "classification",
     "e.txt:2: eval_config.top_k must be in [1, 1000], got 0"),
    ("training_config {\n  batch_size_per_gpu: 2000000000\n}\n", "detection",
     "e.txt:2: training_config.batch_size_per_gpu must be in [1, 4096], got 2000000000"),
    ("training_config {\n  num_epochs: 50000\n}\n", "detection",
     "e.txt:2: training_config.num_epochs must be in [1, 10000], got 50000"),
    ("augmentation_config {\n  preprocessing {\n    output_image_height: 65536\n  }\n}\n", "detection",
     "e.txt:3: augmentation_config.preprocessing.output_image_height must be a multiple of 16 "
     "(the output stride) in [16, 16384], got 65536"),
    ("augmentation_config {\n  preprocessing {\n    crop_right: 2000000000\n  }\n}\n", "detection",
     "e.txt:3: augmentation_config.preprocessing.crop_right must be <= 65535 (pixels of the source "
     "image), got 2000000000"),
    ("augmentation_config {\n  spatial_augmentation {\n    translate_max_x: 1e9\n  }\n}\n", "detection",
     "e.txt:3: augmentation_config.spatial_augmentation.translate_max_x must be in [0, 16384], got 1e+09"),
    ("evaluation_config {\n  validation_period_during_training: 4294967295\n}\n", "detection",
     "e.txt:2: evaluation_config.validation_period_during_training must be in [1, 10000], got 4294967295"),
    ("evaluation_config {\n  num_recall_points: 1000000\n}\n", "detection",
     "e.txt:2: evaluation_config.num_recall_points must be in [2, 1000], got 1000000"),
    ("training_config {\n  cost_scaling {\n    initial_exponent: 4000\n  }\n}\n", "detection",
     "e.txt:3: training_config.cost_scaling.initial_exponent must be in [0, 64], got 4000"),
    ('postprocessing_config {\n  target_class_config {\n    key: "car"\n    value {\n      clustering_config {\n'
     '        minimum_bounding_box_height: 100000\n      }\n    }\n  }\n}\n', "detection",
     'e.txt:6: postprocessing_config.target_class_config["car"].clustering_config.'
     "minimum_bounding_box_height must be in [0, 16384], got 100000"),
]


@pytest.mark.parametrize("text,kind,message", HUGE_VALUES)
def test_huge_values_fail_at_load_time_with_line_field_and_range(text, kind, message):
    with pytest.raises(SpecError) as info:
        spec.loads(text, kind, path="e.txt")
    assert str(info.value) == message


def test_bounds_themselves_are_accepted():
    kitti = spec.loads('kitti_config {\n root_directory_path: "/d"\n num_shards: 1024\n num_partitions: 100\n}',
                       "dataset_export").kitti_config
    assert (kitti.num_shards, kitti.num_partitions) == (1024, 100)
    det = spec.loads("training_config { batch_size_per_gpu: 4096 num_epochs: 10000 }\n"
                     "augmentation_config { preprocessing { output_image_width: 16384 "
                     "output_image_height: 16 } }", "detection")
    assert det.training_config.batch_size_per_gpu == 4096
    assert det.augmentation_config.preprocessing.output_image_width == 16384
    cls = spec.loads('model_config { input_image_size: "3,16384,1" }', "classification")
    assert cls.model_config.input_image_size == "3,16384,1"


def test_too_many_detection_classes_is_one_error():
    classes = "".join(f' target_classes {{ name: "c{i}" }}' for i in range(1001))
    with pytest.raises(SpecError) as info:
        spec.loads(f"cost_function_config {{{classes} }}", "detection", path="e.txt")
    assert str(info.value) == ("e.txt:1: cost_function_config.target_classes must name at most 1000 "
                               "classes, got 1001")


def test_huge_value_in_yaml_and_cluster_json_points_at_its_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("kitti_config:\n  root_directory_path: /d\n  num_shards: 2147483647\n")
    with pytest.raises(SpecError) as info:
        spec.load(path, "dataset_export")
    assert str(info.value) == f"{path}:3: kitti_config.num_shards must be in [1, 1024], got 2147483647"
    cluster = tmp_path / "c.json"
    cluster.write_text(json.dumps({"target_classes": ["car"], "dbscan_eps": {"default": 0.1},
                                   "dbscan_min_samples": {"default": 0.1},
                                   "min_cov_to_cluster": {"default": 0.1},
                                   "min_obj_height": {"default": 4},
                                   "image_height": 128, "image_width": 100000}, indent=1))
    with pytest.raises(SpecError) as info:
        spec.load_cluster_params(cluster)
    assert str(info.value).endswith("image_width must be in [1, 16384], got 100000")
    assert info.value.field == "image_width" and info.value.line is not None


def test_convert_with_huge_num_shards_stops_before_writing_anything(tmp_path, capsys):
    spec_file = tmp_path / "convert.txt"
    spec_file.write_text(f'kitti_config {{\n  root_directory_path: "{tmp_path}/kitti"\n'
                         f"  num_shards: {BIG}\n}}\n")
    out = tmp_path / "out"
    code = dataset_convert.main(["-d", str(spec_file), "-o", str(out / "kitti")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"tlt-dataset-convert: error: {spec_file}:3: kitti_config.num_shards must be in "
                   f"[1, 1024], got {BIG}"]
    assert not out.exists()


# -- encoding ------------------------------------------------------------------------------------

def test_spec_that_is_not_utf8_names_file_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes('kitti_config {\n  root_directory_path: "/d"\n  image_dir_name: "caf\u00e9"\n}\n'
                     .encode("latin-1"))
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(SpecError) as info:
        spec.load(path, "dataset_export")
    assert str(info.value) == (f"{path}:3: is not UTF-8 text: byte 0xe9 at offset {offset} "
                               "(invalid continuation byte); save the file as UTF-8")
    assert (info.value.path, info.value.line) == (str(path), 3)


@pytest.mark.parametrize("data,line", [
    (b"\xff\xfek\x00i\x00", 1),                                  # UTF-16 with a byte-order mark
    (b"training_config {\n\n  num_epochs: 3 # \x80\n}\n", 3),   # a stray byte in a comment
])
def test_binary_or_utf16_spec_is_one_error(tmp_path, data, line):
    offset = next(i for i, byte in enumerate(data) if byte >= 0x80)  # the first non-ASCII byte
    path = tmp_path / "s.txt"
    path.write_bytes(data)
    with pytest.raises(SpecError) as info:
        spec.load(path, "detection")
    assert str(info.value).startswith(f"{path}:{line}: is not UTF-8 text: byte 0x{data[offset]:02x} "
                                      f"at offset {offset} (")


def test_cli_reports_a_non_utf8_spec_in_one_line(tmp_path, capsys):
    spec_file = tmp_path / "convert.txt"
    spec_file.write_bytes(b'kitti_config {\n  root_directory_path: "/d\xff"\n}\n')
    offset = spec_file.read_bytes().index(b"\xff")
    code = dataset_convert.main(["-d", str(spec_file), "-o", str(tmp_path / "out" / "kitti")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"tlt-dataset-convert: error: {spec_file}:2: is not UTF-8 text: byte 0xff at "
                   f"offset {offset} (invalid start byte); save the file as UTF-8"]
