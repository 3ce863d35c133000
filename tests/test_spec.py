"""tlt.spec: the example specs load with their values, formats round-trip, defaults are applied."""

import re
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor

from tlt import spec
from tlt.errors import SpecError
from tlt.proto.classification_config_pb2 import ClassificationExperiment
from tlt.proto.detection_config_pb2 import EvaluationConfig, RegularizerConfig
from tlt.spec.defaults import DEFAULTS, SECTION

SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"
PROTO_DIR = Path(spec.__file__).parents[1] / "proto"


def kind_of(name: str) -> str:
    for prefix, kind in (("dataset_export", "dataset_export"), ("classification", "classification"),
                         ("detection", "detection"), ("cluster_params", "cluster_params")):
        if name.startswith(prefix):
            return kind
    raise AssertionError(f"no kind for {name}")


def value_at(message, dotted: str):
    """Follow "a.b[0].c" or 'a.m["car"].c' through a message."""
    for part in re.findall(r'[A-Za-z_]\w*|\[[^\]]+\]', dotted):
        if part.startswith("["):
            key = part[1:-1]
            if key in ("true", "false"):
                message = message[key == "true"]
            else:
                message = message[int(key)] if key.lstrip("-").isdigit() else message[key.strip('"')]
        else:
            message = getattr(message, part)
    return message


EXPECTED = {
    "dataset_export_kitti.txt": {
        "kitti_config.root_directory_path": "/workspace/tlt-experiments/data/kitti/training",
        "kitti_config.image_dir_name": "image_2", "kitti_config.partition_mode": "random",
        "kitti_config.num_shards": 10, "kitti_config.val_split": 14.0},
    "dataset_export_kitti_sequence.txt": {
        "kitti_config.partition_mode": "sequence", "kitti_config.num_partitions": 4,
        "kitti_config.kitti_sequence_to_frames_file": "kitti_seq_to_frames.json"},
    "classification_resnet18.txt": {
        "model_config.arch": "resnet", "model_config.n_layers": 18,
        "model_config.input_image_size": "3,224,224", "train_config.batch_size_per_gpu": 64,
        "train_config.n_epochs": 80, "train_config.n_workers": 16,
        "train_config.reg_config.type": "L2", "train_config.reg_config.scope": "Conv2D, Dense",
        "train_config.lr_config.step_size": 10, "train_config.pretrained_model_path": "/workspace/resnet18.tlt"},
    "classification_l1.txt": {
        "train_config.reg_config.type": "L1",
        "train_config.pretrained_model_path": "/workspace/resnet18.tlt"},
    "classification_retrain.txt": {
        "train_config.reg_config.type": "L1",
        "train_config.pretrained_model_path": "/workspace/cls_pruned.tlt"},
    "detection_retrain.txt": {
        "model_config.pretrained_model_file": "/workspace/det_pruned.tlt"},
    "classification_tiny.txt": {
        "model_config.input_image_size": "3,32,32", "model_config.n_layers": 10,
        "train_config.n_epochs": 2, "train_config.optimizer_config.sgd.nesterov": True,
        "eval_config.top_k": 2, "random_seed": 7},
    "detection_resnet18.txt": {
        "random_seed": 42, "model_config.template": "resnet", "model_config.num_layers": 18,
        "model_config.objective_set.bbox.scale": 35.0,
        'bbox_rasterizer_config.target_class_config["cyclist"].cov_radius_x': 1.0,
        'postprocessing_config.target_class_config["car"].clustering_config.minimum_bounding_box_height': 20,
        "cost_function_config.target_classes[1].objectives[1].weight_target": 1.0,
        "cost_function_config.target_classes[2].name": "pedestrian",
        "training_config.regularizer.type": RegularizerConfig.L1,
        "augmentation_config.preprocessing.output_image_width": 960,
        'dataset_config.target_class_mapping["rider"]': "cyclist", "dataset_config.validation_fold": 0,
        'evaluation_config.evaluation_bucket_config["mdrt"].truncation.maximum': 0.3,
        "evaluation_config.importance_weights.weight_height[2].weight": 5.0,
        "evaluation_config.importance_weights.weight_occlusion[0]": 3.0,
        "evaluation_config.first_validation_epoch": 40},
    "detection_tiny.txt": {
        "augmentation_config.preprocessing.output_image_width": 240,
        "augmentation_config.preprocessing.output_image_height": 128,
        "training_config.num_epochs": 2, "training_config.checkpoint_interval": 1,
        "evaluation_config.evaluation_mode": EvaluationConfig.VOC},
    "detection_section_model_config.txt": {"model_config.use_batch_norm": True},
    "detection_section_bbox_rasterizer_config.txt": {
        'bbox_rasterizer_config.target_class_config["pedestrian"].cov_radius_y': 0.4},
    "detection_section_postprocessing_config.txt": {
        'postprocessing_config.target_class_config["car"].clustering_config.dbscan_eps': 0.15},
    "detection_section_cost_function_config.txt": {"cost_function_config.max_objective_weight": 0.9999},
    "detection_section_training_config.txt": {
        "training_config.learning_rate.soft_start_annealing_schedule.annealing": 0.7},
    "detection_section_augmentation_config.txt": {
        "augmentation_config.color_augmentation.hue_rotation_max": 25.0},
    "detection_section_evaluation_config.txt": {
        'evaluation_config.minimum_detection_ground_truth_overlap["car"]': 0.7,
        "evaluation_config.importance_weights.weight_cvip[true]": 10.0},
    "detection_section_dataset_config.txt": {
        'dataset_config.target_class_mapping["heavy_truck"]': "car", "dataset_config.image_extension": "jpg"},
    "detection_section_validation_data_source.txt": {
        "dataset_config.validation_data_source.image_directory_path": "/workspace/tlt-experiments/data/validation"},
    "cluster_params.json": {
        'dbscan_eps["car"]': 0.25, 'min_obj_height["default"]': 2.0, 'output_map["cyclist"]': "cyclist",
        "image_width": 1240, "target_classes[2]": "pedestrian"},
}


def test_every_example_has_expectations():
    assert sorted(p.name for p in SPECS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_loads_with_its_values(name):
    message = spec.load(SPECS / name, kind_of(name))
    for dotted, expected in EXPECTED[name].items():
        value = value_at(message, dotted)
        assert value == pytest.approx(expected) if isinstance(expected, float) else value == expected, dotted


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.endswith(".txt")))
@pytest.mark.parametrize("fmt", ["yaml", "json", "text"])
def test_round_trip_through_every_format(name, fmt):
    original = spec.load(SPECS / name, kind_of(name))
    text = spec.to_text(original, fmt)
    again = spec.loads(text, kind_of(name), path=f"copy.{'txt' if fmt == 'text' else fmt}")
    assert again == original


def test_yaml_written_by_hand_maps_onto_the_schema(tmp_path):
    path = tmp_path / "detection.yaml"
    path.write_text(
        "model_config:\n  arch: vgg\n  num_layers: 16\n  objective_set:\n    cov:\n    bbox: {scale: 35}\n"
        "training_config:\n  optimizer:\n    adam: {epsilon: 1e-08}\n"
        "evaluation_config:\n  importance_weights:\n    weight_cvip: {true: 10.0, false: 0}\n"
        "    weight_occlusion: {-1: 0.5}\n"
        "  evaluation_mode: KITTI\n")
    message = spec.load(path, "detection")
    assert message.model_config.template == "vgg"          # arch is an alias of template
    assert message.training_config.optimizer.adam.epsilon == pytest.approx(1e-8)
    assert dict(message.evaluation_config.importance_weights.weight_cvip) == {True: 10.0, False: 0.0}
    assert dict(message.evaluation_config.importance_weights.weight_occlusion) == {-1: 0.5}
    assert message.evaluation_config.evaluation_mode == EvaluationConfig.KITTI
    assert message.model_config.objective_set.HasField("cov")


def test_defaults_fill_an_empty_classification_spec():
    message = spec.loads("", "classification")
    assert message.random_seed == 42
    assert (message.model_config.arch, message.model_config.n_layers) == ("resnet", 18)
    assert message.model_config.input_image_size == "3,224,224"
    assert message.model_config.use_bias and message.model_config.all_projections
    assert not message.model_config.use_pooling
    assert message.train_config.batch_size_per_gpu == 32
    assert message.train_config.optimizer == "sgd"
    assert message.train_config.optimizer_config.sgd.momentum == pytest.approx(0.9)
    assert message.train_config.optimizer_config.adam.beta2 == pytest.approx(0.999)
    assert message.train_config.lr_config.learning_rate == pytest.approx(0.006)
    assert list(message.train_config.lr_config.annealing_points) == pytest.approx([0.3, 0.6, 0.8])
    assert message.train_config.reg_config.scope == "Conv2D,Dense"
    assert message.eval_config.top_k == 5


def test_defaults_fill_detection_sections_and_map_entries():
    message = spec.loads('postprocessing_config { target_class_config { key: "car" value {} } }\n'
                         'evaluation_config { evaluation_bucket_config { key: "easy" value {} } }',
                         "detection")
    clustering = message.postprocessing_config.target_class_config["car"].clustering_config
    assert clustering.dbscan_eps == pytest.approx(0.15)
    assert clustering.minimum_bounding_box_height == 20
    bucket = message.evaluation_config.evaluation_bucket_config["easy"]
    assert (bucket.maximum_height, bucket.maximum_occlusion, bucket.truncation.maximum) == (9999, 3, 1.0)
    assert message.training_config.learning_rate.soft_start_annealing_schedule.max_learning_rate \
        == pytest.approx(5e-4)
    assert message.training_config.optimizer.adam.epsilon == pytest.approx(1e-8)
    assert message.augmentation_config.preprocessing.output_image_height == 544
    assert message.augmentation_config.spatial_augmentation.hflip_probability == pytest.approx(0.5)
    assert message.model_config.objective_set.bbox.offset == pytest.approx(0.5)
    assert message.cost_function_config.enable_autoweighting is True


def test_explicit_zero_and_false_are_kept_not_defaulted():
    message = spec.loads("augmentation_config { spatial_augmentation { hflip_probability: 0 } }\n"
                         "model_config { use_batch_norm: false }\n"
                         "cost_function_config { enable_autoweighting: false }", "detection")
    assert message.augmentation_config.spatial_augmentation.hflip_probability == 0.0
    assert message.model_config.use_batch_norm is False
    assert message.cost_function_config.enable_autoweighting is False


def test_dataset_export_defaults():
    message = spec.loads('kitti_config { root_directory_path: "/data" }', "dataset_export")
    kitti = message.kitti_config
    assert (kitti.image_dir_name, kitti.label_dir_name, kitti.image_extension) == ("images", "labels", ".png")
    assert (kitti.num_partitions, kitti.num_shards, kitti.partition_mode) == (2, 10, "random")
    assert kitti.val_split == pytest.approx(10.0)


def test_cluster_params_lookups_and_derived_defaults(tmp_path):
    params = spec.load_cluster_params(SPECS / "cluster_params.json")
    assert spec.cluster_value(params, "dbscan_eps", "car") == pytest.approx(0.25)
    assert spec.cluster_value(params, "dbscan_min_samples", "cyclist") == pytest.approx(0.05)
    path = tmp_path / "clusters.json"
    path.write_text('{"target_classes": ["car", "truck"], "dbscan_eps": {"default": 0.2},'
                    ' "dbscan_min_samples": {"default": 0.05}, "min_cov_to_cluster": {"default": 0.01},'
                    ' "min_obj_height": {"car": 4, "default": 2}, "image_height": 128, "image_width": 240}')
    params = spec.load_cluster_params(path)
    assert spec.cluster_value(params, "dbscan_eps", "truck") == pytest.approx(0.2)
    assert spec.cluster_value(params, "min_obj_height", "car") == 4.0
    assert spec.cluster_value(params, "confidence_th", "truck") == 0.0
    assert list(params.postproc_classes) == ["car", "truck"]
    assert dict(params.output_map) == {"car": "car", "truck": "truck"}
    with pytest.raises(SpecError, match=r'^color has no entry for "car" and no "default"$'):
        spec.cluster_value(params, "color", "car")


def test_format_can_be_forced_and_kinds_are_checked(tmp_path):
    path = tmp_path / "spec.cfg"
    path.write_text('{"random_seed": 3}')
    assert spec.load(path, "classification", fmt="json").random_seed == 3
    assert spec.load(path.with_name("spec.cfg"), ClassificationExperiment, fmt="json").random_seed == 3
    with pytest.raises(SpecError, match=r"unknown spec kind 'segmentation' \(expected one of: "
                                        r"dataset_export, classification, detection, cluster_params\)"):
        spec.load(path, "segmentation")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(SpecError) as info:
        spec.load(tmp_path / "absent.txt", "detection")
    assert str(info.value) == f"{tmp_path / 'absent.txt'}: cannot read spec file: No such file or directory"


def _proto_fields():
    """(file, field name, comment above it) for every field line of every .proto."""
    field_re = re.compile(r"^\s*(?:optional |repeated )?[\w.<>, ]+ (\w+) = \d+;")
    for proto in sorted(PROTO_DIR.glob("*.proto")):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            m = field_re.match(line)
            if m and not line.strip().startswith(("//", "enum", "message")) and "{" not in line:
                j, comment = i - 1, []
                while j >= 0 and lines[j].strip().startswith("//"):
                    comment.insert(0, lines[j].strip()[2:].strip())
                    j -= 1
                yield proto.name, m.group(1), " ".join(comment)


def test_every_proto_field_is_commented():
    fields = list(_proto_fields())
    assert len(fields) > 150
    missing = [f"{name}:{field}" for name, field, comment in fields if not comment]
    assert missing == []


@pytest.mark.parametrize("message_name,table", sorted(DEFAULTS.items()))
def test_defaults_table_matches_schema(message_name, table):
    desc = descriptor_pool.Default().FindMessageTypeByName(message_name)
    for field, default in table.items():
        fd = desc.fields_by_name[field]
        if default is SECTION:
            assert fd.message_type is not None and not fd.is_repeated, field
        else:
            assert fd.message_type is None, field
    # Every proto3 `optional` scalar exists to carry a non-zero default, so it must have one.
    optional = [fd.name for fd in desc.fields
                if fd.containing_oneof is not None and fd.containing_oneof.name == f"_{fd.name}"
                and fd.type != FieldDescriptor.TYPE_MESSAGE]
    assert sorted(set(optional) - set(table)) == []
