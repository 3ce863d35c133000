"""tlt.spec errors: every kind names the file, the 1-based line and the dotted field path."""

import pytest

from tlt import spec
from tlt.errors import SpecError

TRAIN_FIELDS = ("train_dataset_path, val_dataset_path, pretrained_model_path, optimizer, optimizer_config, "
                "batch_size_per_gpu, n_epochs, n_workers, reg_config, lr_config, label_smoothing, "
                "checkpoint_interval, augmentation_config")
TOP_FIELDS = "model_config, train_config, eval_config, random_seed"


def error_of(text, kind, path):
    with pytest.raises(SpecError) as info:
        spec.loads(text, kind, path=path)
    return info.value


PARSE_ERRORS = [
    # unknown field, with a close match
    ('model_config {\n  arch: "resnet"\n}\ntrain_config {\n  batchsize: 3\n}\n', "classification",
     "spec.txt", "train_config.batchsize",
     f'spec.txt:5: unknown field "batchsize" in train_config; did you mean "batch_size_per_gpu"? '
     f"(expected one of: {TRAIN_FIELDS})"),
    # the guide's print glitch: a space inside a field name
    ('model config {\n  arch: "resnet"\n}\n', "classification", "spec.txt", "model",
     'spec.txt:1: unknown field "model" in the top level of ClassificationExperiment; field names '
     f'have no spaces: write "model_config" (expected one of: {TOP_FIELDS})'),
    # the guide's other glitch: a missing closing brace
    ('model_config {\n  arch: "resnet"\ntrain_config {\n  n_epochs: 3\n}\n', "classification", "spec.txt",
     "model_config.train_config",
     'spec.txt:3: unknown field "train_config" in model_config; "train_config" belongs to the top '
     'level: is the "}" closing model_config (opened on line 1) missing? (expected one of: arch, '
     "n_layers, input_image_size, use_bias, use_batch_norm, all_projections, use_pooling, "
     "freeze_blocks, freeze_bn, dropout)"),
    # wrong scalar types
    ('model_config {\n  arch: "resnet"\n\n\n  n_layers: eighteen\n}\n', "classification", "spec.txt",
     "model_config.n_layers", 'spec.txt:5: model_config.n_layers: expected an integer, got "eighteen"'),
    ("model_config {\n  n_layers: -1\n}\n", "classification", "spec.txt", "model_config.n_layers",
     'spec.txt:2: model_config.n_layers: expected an integer in [0, 4294967295], got "-1"'),
    ("model_config {\n  arch: resnet\n}\n", "classification", "spec.txt", "model_config.arch",
     'spec.txt:2: model_config.arch: expected a quoted string, got "resnet"'),
    ("model_config {\n  use_bias: maybe\n}\n", "classification", "spec.txt", "model_config.use_bias",
     'spec.txt:2: model_config.use_bias: expected true or false, got "maybe"'),
    ("model_config {\n training_precision {\n  backend_floatx: FLOAT64 } }", "detection", "d.txt",
     "model_config.training_precision.backend_floatx",
     'd.txt:3: model_config.training_precision.backend_floatx: expected one of: FLOAT32, FLOAT16, '
     'got "FLOAT64"'),
    ("model_config {\n freeze_blocks: [0, 1,\n x] }", "detection", "d.txt", "model_config.freeze_blocks[2]",
     'd.txt:3: model_config.freeze_blocks[2]: expected an integer, got "x"'),
    # structure
    ("model_config {\n  n_layers: 18\n  n_layers: 18\n}", "classification", "spec.txt",
     "model_config.n_layers", "spec.txt:3: model_config.n_layers is given more than once"),
    ("model_config {\n  n_layers: 3\n", "classification", "spec.txt", "model_config",
     'spec.txt:1: the "{" of model_config on line 1 is never closed'),
    ("dataset_config {\n validation_fold: 0\n validation_data_source {} }", "detection", "d.txt",
     "dataset_config.validation_data_source",
     "d.txt:3: dataset_config.validation_data_source cannot be given together with validation_fold "
     "(only one of the dataset_split_type fields may be set)"),
    ("model_config {\n  n_layers: 3 :\n}", "classification", "spec.txt", "model_config",
     "spec.txt:2: syntax error in model_config: Expected identifier or number, got :."),
    # YAML and JSON
    ("train_config:\n  n_epochs: 3\n  batchsize: 0\n", "classification", "c.yaml", "train_config.batchsize",
     f'c.yaml:3: unknown field "batchsize" in train_config; did you mean "batch_size_per_gpu"? '
     f"(expected one of: {TRAIN_FIELDS})"),
    ("model_config:\n  arch: resnet\n  n_layers: eighteen\n", "classification", "c.yaml",
     "model_config.n_layers", 'c.yaml:3: model_config.n_layers: expected an integer, got "eighteen"'),
    ("model_config:\n  freeze_blocks: 3\n", "classification", "c.yaml", "model_config.freeze_blocks",
     "c.yaml:2: model_config.freeze_blocks: expected a list, got 3"),
    ('{\n "model_config": {\n  "n_layers": 18,\n  "dropout": true}}', "classification", "c.json",
     "model_config.dropout", "c.json:4: model_config.dropout: expected a number, got true"),
    ('{\n "model_config": {\n  "n_layers": 18,\n  "n_layers": 19}}', "classification", "c.json",
     "model_config", 'c.json:4: duplicate key "n_layers" in model_config (first on line 3)'),
    ('{\n "model_config": {"n_layers": 18,,}}', "classification", "c.json", None,
     "c.json:2: invalid JSON: Expecting property name enclosed in double quotes (column 34)"),
    ("model_config: [1\n", "classification", "c.yaml", None,
     "c.yaml:2: invalid YAML: expected ',' or ']', but got '<stream end>'"),
]


@pytest.mark.parametrize("text,kind,path,field,message", PARSE_ERRORS)
def test_parse_errors(text, kind, path, field, message):
    err = error_of(text, kind, path)
    assert str(err) == message
    assert err.field == field
    assert err.path == path


RANGE_ERRORS = [
    ('kitti_config {\n  root_directory_path: "/d"\n  val_split: 120\n}\n', "dataset_export",
     "e.txt:3: kitti_config.val_split must be in [0, 100], got 120"),
    ('kitti_config {\n  root_directory_path: "/d"\n  num_shards: 0\n}\n', "dataset_export",
     "e.txt:3: kitti_config.num_shards must be in [1, 1024], got 0"),
    ('kitti_config {\n  root_directory_path: "/d"\n  partition_mode: "seq"\n}\n', "dataset_export",
     'e.txt:3: kitti_config.partition_mode must be one of: random, sequence; got "seq"'),
    ('kitti_config {\n  root_directory_path: "/d"\n  partition_mode: "sequence"\n}\n', "dataset_export",
     'e.txt:1: kitti_config.kitti_sequence_to_frames_file is required when partition_mode is "sequence"'),
    ('image_directory_path: "/x"\n', "dataset_export", "e.txt: kitti_config is required"),
    ("random_seed: 1\ntrain_config {\n  batch_size_per_gpu: 0\n}\n", "classification",
     "e.txt:3: train_config.batch_size_per_gpu must be in [1, 4096], got 0"),
    ("train_config {\n  n_epochs: 0\n}\n", "classification", "e.txt:2: train_config.n_epochs must be in [1, 10000], got 0"),
    ("train_config {\n  lr_config {\n    learning_rate: 0\n  }\n}\n", "classification",
     "e.txt:3: train_config.lr_config.learning_rate must be > 0, got 0"),
    ('model_config {\n  arch: "resnet18"\n}\n', "classification",
     'e.txt:2: model_config.arch must be one of: resnet, vgg, alexnet, googlenet, mobilenet_v1, '
     'mobilenet_v2; got "resnet18"'),
    ('model_config {\n  arch: "vgg"\n  n_layers: 18\n}\n', "classification",
     "e.txt:3: model_config.n_layers must be one of 16, 19 for vgg, got 18"),
    ('model_config {\n  input_image_size: "224,224"\n}\n', "classification",
     'e.txt:2: model_config.input_image_size must be "C,H,W" with C in {1, 3} and H, W in [1, 16384], got "224,224"'),
    ('model_config {\n  input_image_size: "4,224,224"\n}\n', "classification",
     'e.txt:2: model_config.input_image_size must be "C,H,W" with C in {1, 3} and H, W in [1, 16384], got "4,224,224"'),
    ('train_config {\n  optimizer: "adagrad"\n}\n', "classification",
     'e.txt:2: train_config.optimizer must be one of: sgd, adam, rmsprop; got "adagrad"'),
    ("training_config {\n batch_size_per_gpu: 0\n}", "detection",
     "e.txt:2: training_config.batch_size_per_gpu must be in [1, 4096], got 0"),
    ("training_config {\n learning_rate {\n  soft_start_annealing_schedule {\n   max_learning_rate: 0\n  }\n }\n}",
     "detection",
     "e.txt:4: training_config.learning_rate.soft_start_annealing_schedule.max_learning_rate must be > 0, got 0"),
    ("augmentation_config {\n spatial_augmentation {\n  hflip_probability: 1.5\n }\n}", "detection",
     "e.txt:3: augmentation_config.spatial_augmentation.hflip_probability must be in [0, 1], got 1.5"),
    # zoom_max is left at its default (1.0): the error points at zoom_min's line.
    ("augmentation_config {\n spatial_augmentation {\n  zoom_min: 2.0\n }\n}", "detection",
     "e.txt:3: augmentation_config.spatial_augmentation.zoom_min must be <= zoom_max (1), got 2"),
    ("cost_function_config {\n min_objective_weight: 0.5\n max_objective_weight: 0.4\n}", "detection",
     "e.txt:2: cost_function_config.min_objective_weight must be <= max_objective_weight (0.4), got 0.5"),
    ('cost_function_config {\n target_classes {\n  name: "car"\n  objectives { name: "cov" }\n  objectives {\n'
     '   name: "bbox"\n   initial_weight: -1 }\n }\n}', "detection",
     "e.txt:7: cost_function_config.target_classes[0].objectives[1].initial_weight must be >= 0, got -1"),
    ('evaluation_config {\n minimum_detection_ground_truth_overlap {\n  key: "car"\n  value: 0.7\n }\n'
     ' minimum_detection_ground_truth_overlap {\n  key: "ped"\n  value: 1.5\n }\n}', "detection",
     'e.txt:8: evaluation_config.minimum_detection_ground_truth_overlap["ped"] must be in (0, 1], got 1.5'),
    ('postprocessing_config {\n target_class_config {\n  key: "car"\n  value {\n   clustering_config {\n'
     '    dbscan_eps: 0\n   }\n  }\n }\n}', "detection",
     'e.txt:6: postprocessing_config.target_class_config["car"].clustering_config.dbscan_eps '
     "must be in (0, 1], got 0"),
    ('model_config {\n template: "resnet"\n arch: "vgg"\n}', "detection",
     'e.txt:3: model_config.arch must agree with template ("resnet"), got "vgg"'),
    ('cost_function_config {\n target_classes { name: "car" }\n}\nbbox_rasterizer_config {\n'
     ' target_class_config { key: "truck" value {} }\n}', "detection",
     "e.txt:5: bbox_rasterizer_config.target_class_config has classes truck but "
     "cost_function_config.target_classes has car"),
    ("augmentation_config {\n preprocessing {\n  output_image_width: 250\n }\n}", "detection",
     "e.txt:3: augmentation_config.preprocessing.output_image_width must be a multiple of 16 "
     "(the output stride) in [16, 16384], got 250"),
]


@pytest.mark.parametrize("text,kind,message", RANGE_ERRORS)
def test_range_errors_in_text_format(text, kind, message):
    assert str(error_of(text, kind, "e.txt")) == message


def test_range_error_in_yaml_points_at_its_line():
    text = "training_config:\n  num_epochs: 3\n  batch_size_per_gpu: 0\n"
    err = error_of(text, "detection", "d.yaml")
    assert str(err) == "d.yaml:3: training_config.batch_size_per_gpu must be in [1, 4096], got 0"
    assert (err.line, err.field) == (3, "training_config.batch_size_per_gpu")


def test_range_error_in_yaml_map_entry():
    text = ("postprocessing_config:\n  target_class_config:\n    car:\n      clustering_config:\n"
            "        dbscan_eps: 0.1\n    pedestrian:\n      clustering_config:\n        dbscan_eps: 2\n")
    assert str(error_of(text, "detection", "d.yml")) == (
        'd.yml:8: postprocessing_config.target_class_config["pedestrian"].clustering_config.dbscan_eps '
        "must be in (0, 1], got 2")


def test_guide_cluster_params_duplicate_key_is_reported(tmp_path):
    path = tmp_path / "clusters.json"
    path.write_text('{\n  "target_classes": ["car", "cyclist", "pedestrian"],\n  "output_map": {\n'
                    '    "pedestrian" : "pedestrian",\n    "car" : "car",\n    "car" : "cyclist"\n  }\n}\n')
    with pytest.raises(SpecError) as info:
        spec.load_cluster_params(path)
    assert str(info.value) == f'{path}:6: duplicate key "car" in output_map (first on line 5)'


def test_cluster_params_range_and_membership_errors():
    base = ('{"target_classes": ["car"], "dbscan_eps": {"default": 0.2}, "dbscan_min_samples": {"default": 0},'
            ' "min_cov_to_cluster": {"default": 0.01}, "min_obj_height": {"default": 2},\n')
    cases = [
        (base + '"image_height": 0, "image_width": 240}', "c.json:2: image_height must be in [1, 16384], got 0"),
        (base + '"confidence_th": {\n"truck": 0.3}, "image_height": 8, "image_width": 8}',
         'c.json:3: confidence_th["truck"] is not one of target_classes (car) or "default"'),
        (base + '"postproc_classes": ["car",\n "bus"], "image_height": 8, "image_width": 8}',
         'c.json:3: postproc_classes[1] "bus" is not one of target_classes (car)'),
        (base.replace('"dbscan_eps": {"default": 0.2}', '"dbscan_eps": {"car": 0}')
         + '"image_height": 8, "image_width": 8}',
         'c.json:1: dbscan_eps["car"] must be in (0, 1], got 0'),
        (base.replace('"min_obj_height": {"default": 2}', '"min_obj_height": {}')
         + '"image_height": 8, "image_width": 8}',
         'c.json:1: min_obj_height has no entry for car and no "default"'),
    ]
    for text, message in cases:
        assert str(error_of(text, "cluster_params", "c.json")) == message


def test_validate_checks_a_message_built_in_code():
    message = spec.loads("", "detection")
    message.training_config.num_epochs = 0
    with pytest.raises(SpecError) as info:
        spec.validate(message, path="built.txt")
    assert str(info.value) == "built.txt: training_config.num_epochs must be in [1, 10000], got 0"
    assert info.value.field == "training_config.num_epochs"
