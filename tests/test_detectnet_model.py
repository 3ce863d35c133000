"""DetectNet_v2 network: TLT's parameter count, heads, input rules, and a tiny training run."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from google.protobuf import text_format

from tlt.errors import SpecError
from tlt.models.detectnet_v2.autoweight import AutoWeighting
from tlt.models.detectnet_v2.loss import build_detectnet_loss, cost_log_key, pack_targets
from tlt.models.detectnet_v2.model import build_detectnet_v2
from tlt.models.detectnet_v2.rasterizer import build_rasterizer
from tlt.proto.detection_config_pb2 import DetectionExperiment

CLASSES = ["car", "cyclist", "pedestrian"]
SPEC = """
model_config { template: "resnet" num_layers: 18 use_pooling: false use_batch_norm: true
  dropout_rate: 0.0 objective_set { cov {} bbox { scale: 35.0 offset: 0.5 } } }
bbox_rasterizer_config {
  target_class_config { key: "car" value { cov_center_x: 0.5 cov_center_y: 0.5
    cov_radius_x: 0.4 cov_radius_y: 0.4 bbox_min_radius: 1.0 } }
  target_class_config { key: "cyclist" value { cov_radius_x: 1.0 cov_radius_y: 1.0 } }
  target_class_config { key: "pedestrian" value { } }
  deadzone_radius: 0.67 }
cost_function_config {
  target_classes { name: "car" class_weight: 1.0 coverage_foreground_weight: 0.05
    objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 }
    objectives { name: "bbox" initial_weight: 10.0 weight_target: 10.0 } }
  target_classes { name: "cyclist" class_weight: 1.0 coverage_foreground_weight: 0.05
    objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 }
    objectives { name: "bbox" initial_weight: 10.0 weight_target: 1.0 } }
  target_classes { name: "pedestrian" class_weight: 1.0 coverage_foreground_weight: 0.05
    objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 }
    objectives { name: "bbox" initial_weight: 10.0 weight_target: 10.0 } }
  enable_autoweighting: true max_objective_weight: 0.9999 min_objective_weight: 0.0001 }
"""


def spec(extra_model: str = "") -> DetectionExperiment:
    message = text_format.Parse(SPEC, DetectionExperiment())
    if extra_model:
        text_format.Merge(f"model_config {{ {extra_model} }}", message)
    return message


def counts(model) -> tuple[int, int]:
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return model.count_params(), frozen


def test_resnet18_three_classes_matches_the_guide():
    model = build_detectnet_v2(spec().model_config, CLASSES, input_height=544, input_width=960)
    # The guide's training log: "Total params: 11,555,983", 11,648 non-trainable.
    assert counts(model) == (11_555_983, 11_648)
    assert model.input.shape == (None, 3, 544, 960) and model.layers[0].name == "input_1"
    assert model.output_names == ["output_cov", "output_bbox"]
    assert [tuple(o.shape) for o in model.outputs] == [(None, 3, 34, 60), (None, 12, 34, 60)]
    assert model.get_layer("output_cov_conv").count_params() == 512 * 3 + 3
    assert model.get_layer("output_bbox_conv").count_params() == 512 * 12 + 12
    assert model.get_layer("output_cov_conv").activation.__name__ == "sigmoid"
    assert model.get_layer("output_bbox_conv").activation.__name__ == "linear"
    assert model.name == "resnet18_nopool_bn_detectnet_v2"


@pytest.mark.parametrize("size, message", [
    ((544, 500), "augmentation_config.preprocessing.output_image_width must be a positive "
                 "multiple of 16, got 500"),
    ((256, 960), "augmentation_config.preprocessing.output_image_height must be >= 272 "
                 r"\(DetectNet_v2's smallest input is 480x272\), got 256"),
    ((544, 464), "augmentation_config.preprocessing.output_image_width must be >= 480"),
])
def test_input_size_rules_name_the_preprocessing_field(size, message):
    with pytest.raises(SpecError, match=message) as info:
        build_detectnet_v2(spec().model_config, CLASSES, input_height=size[0],
                           input_width=size[1])
    assert info.value.field.startswith("augmentation_config.preprocessing.output_image_")


def test_small_inputs_only_when_allowed_and_still_multiples_of_16():
    model = build_detectnet_v2(spec().model_config, ["car"], input_height=64, input_width=128,
                               channels=1, allow_small_input=True)
    assert model.input.shape == (None, 1, 64, 128)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 1, 4, 8), (None, 4, 4, 8)]
    with pytest.raises(SpecError, match="output_image_height must be a positive multiple of "
                                        "16, got 72"):
        build_detectnet_v2(spec().model_config, ["car"], input_height=72, input_width=128,
                           allow_small_input=True)


def test_backbone_errors_use_detection_field_names():
    with pytest.raises(SpecError, match=r"model_config.num_layers: resnet supports 10, 18, 34, "
                                        r"50, 101; got 19") as info:
        build_detectnet_v2(spec("num_layers: 19").model_config, CLASSES, input_height=64,
                           input_width=128, allow_small_input=True)
    assert info.value.field == "model_config.num_layers"
    with pytest.raises(SpecError, match=r'model_config.template: expected one of .*got "lenet"'):
        build_detectnet_v2(spec('template: "lenet"').model_config, CLASSES, input_height=64,
                           input_width=128, allow_small_input=True)


def test_pooling_dropout_and_frozen_blocks_pass_through():
    config = spec("use_pooling: true dropout_rate: 0.25 freeze_blocks: 0 freeze_blocks: 1 "
                  "num_layers: 10").model_config
    model = build_detectnet_v2(config, CLASSES, input_height=64, input_width=128,
                               allow_small_input=True)
    # Pooling stems still end at stride 16 for detection.
    assert tuple(model.outputs[0].shape) == (None, 3, 4, 8)
    assert model.get_layer("pool1") is not None
    assert model.get_layer("dropout").rate == 0.25
    assert not model.get_layer("conv1").trainable
    assert not model.get_layer("block_1a_conv_1").trainable
    assert model.get_layer("block_2a_conv_1").trainable
    no_bn = build_detectnet_v2(spec("use_batch_norm: false num_layers: 10").model_config,
                               CLASSES, input_height=64, input_width=128, allow_small_input=True)
    assert not [layer for layer in no_bn.layers if "bn" in layer.name]


def test_tiny_model_trains_with_rasterized_targets_and_autoweighting():
    keras.utils.set_random_seed(7)
    experiment = spec("num_layers: 10")
    model = build_detectnet_v2(experiment.model_config, CLASSES, input_height=64,
                               input_width=128, allow_small_input=True)
    loss = build_detectnet_loss(experiment.cost_function_config, CLASSES)
    rasterizer = build_rasterizer(experiment.bbox_rasterizer_config, CLASSES, input_height=64,
                                  input_width=128)
    labels = [([[8, 4, 60, 52], [70, 10, 124, 60]], [0, 2]),
              ([[20, 20, 90, 62], [0, 0, 30, 30]], [1, -1])]
    maps = [rasterizer.rasterize(boxes, ids) for boxes, ids in labels]
    y = {k: v.numpy() for k, v in pack_targets(*[np.stack(m) for m in zip(*maps)]).items()}
    x = np.random.default_rng(1).uniform(size=(2, 3, 64, 128)).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False,
                  **loss.compile_args())
    callback = AutoWeighting(loss)
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[callback]).history

    assert all(math.isfinite(v) for v in history["loss"])
    for epoch in range(2):
        used = callback.history[epoch]["used"]
        costs = {name: {o: history[cost_log_key(name, o)][epoch] for o in ("cov", "bbox")}
                 for name in CLASSES}
        # The total is the class- and objective-weighted sum of the logged mean costs, with
        # the weights of that epoch: the variables are read live, no recompilation.
        total = sum(used[n][o] * costs[n][o] for n in CLASSES for o in ("cov", "bbox")) / 3
        assert history["loss"][epoch] == pytest.approx(total, rel=1e-4)
    # Epoch 1 ran with the normalised initial weights; epoch 2 with weight_target / mean cost.
    assert callback.history[0]["used"]["car"] == pytest.approx({"cov": 1 / 11, "bbox": 10 / 11})
    for name, targets in (("car", (1.0, 10.0)), ("cyclist", (1.0, 1.0)),
                          ("pedestrian", (1.0, 10.0))):
        cov = targets[0] / history[cost_log_key(name, "cov")][0]
        bbox = targets[1] / history[cost_log_key(name, "bbox")][0]
        expected = {"cov": min(max(cov / (cov + bbox), 0.0001), 0.9999),
                    "bbox": min(max(bbox / (cov + bbox), 0.0001), 0.9999)}
        assert callback.history[1]["used"][name] == pytest.approx(expected, rel=1e-5)
        assert history[f"objective_weight_{name}_cov"][1] == pytest.approx(expected["cov"],
                                                                           rel=1e-5)
