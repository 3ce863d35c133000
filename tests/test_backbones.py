"""Backbone model zoo: TLT's structures, parameter counts, names, freezing and CPU execution."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from model_helpers import cfg, counts
from tlt.errors import SpecError
from tlt.models.backbones import build_backbone, parse_model_config, to_channels_first

# TLT's figures (user guide logs; design.md "TLT's ResNet-18").
RESNET18_BACKBONE_PARAMS = 11_548_288
RESNET18_NON_TRAINABLE = 11_648
DETECTNET_RESNET18_3CLASS_PARAMS = 11_555_983


def build_detectnet_reference(num_classes: int, input_image_size: str = "3,544,960"):
    """DetectNet_v2's graph on ResNet-18: stride-16 trunk + TLT's two 1x1 heads (NCHW outputs)."""
    backbone = build_backbone(cfg(arch="resnet", n_layers=18, input_image_size=input_image_size),
                              for_detection=True)
    cov = keras.layers.Conv2D(num_classes, 1, activation="sigmoid", name="output_cov")(
        backbone.features)
    bbox = keras.layers.Conv2D(4 * num_classes, 1, name="output_bbox")(backbone.features)
    outputs = [to_channels_first(cov, "output_cov_nchw"),
               to_channels_first(bbox, "output_bbox_nchw")]
    return backbone, keras.Model(backbone.inputs, outputs, name="resnet18_detectnet_v2")


# ---------------------------------------------------------------- TLT's ResNet-18, exactly


def test_resnet18_backbone_has_tlt_parameter_count():
    backbone = build_backbone(cfg(arch="resnet", n_layers=18, input_image_size="3,224,224",
                                  use_bias=True, use_batch_norm=True, all_projections=True))
    total, trainable, frozen = counts(backbone.model())
    assert (total, trainable, frozen) == (RESNET18_BACKBONE_PARAMS,
                                          RESNET18_BACKBONE_PARAMS - RESNET18_NON_TRAINABLE,
                                          RESNET18_NON_TRAINABLE)
    assert backbone.name == "resnet18_nopool_bn"
    assert backbone.stride == 16
    assert tuple(backbone.inputs.shape) == (None, 3, 224, 224)
    assert tuple(backbone.features.shape) == (None, 14, 14, 512)


def test_detectnet_v2_resnet18_three_classes_matches_tlt_log():
    backbone, model = build_detectnet_reference(3)
    assert counts(model) == (DETECTNET_RESNET18_3CLASS_PARAMS, 11_544_335, RESNET18_NON_TRAINABLE)
    assert backbone.stride == 16
    # 544x960 at stride 16 -> 34x60 grid, TLT's NCHW output layout.
    assert [tuple(o.shape) for o in model.outputs] == [(None, 3, 34, 60), (None, 12, 34, 60)]
    assert model.get_layer("input_1").output.shape == (None, 3, 544, 960)


def test_resnet_layer_names_follow_tlt():
    backbone = build_backbone(cfg(arch="resnet", n_layers=10, input_image_size="3,32,32"))
    names = [layer.name for layer in backbone.model().layers]
    assert names[:5] == ["input_1", "input_to_nhwc", "conv1", "bn_conv1", "conv1_relu"]
    block = ["block_1a_conv_1", "block_1a_bn_1", "block_1a_relu_1", "block_1a_conv_2",
             "block_1a_conv_shortcut", "block_1a_bn_2", "block_1a_bn_shortcut", "block_1a_add",
             "block_1a_relu"]
    assert names[5:14] == block
    for stage in (2, 3, 4):
        assert [n.replace(f"block_{stage}a", "block_1a") for n in names if
                n.startswith(f"block_{stage}a_")] == block
    assert names[-1] == "block_4a_relu"
    assert len(names) == 5 + 4 * len(block)


def test_resnet_all_projections_off_keeps_shortcut_only_in_first_block_of_each_stage():
    model = build_backbone(cfg(arch="resnet", n_layers=18, input_image_size="3,32,32",
                               all_projections=False)).model()
    shortcuts = sorted(layer.name for layer in model.layers if layer.name.endswith("conv_shortcut"))
    assert shortcuts == [f"block_{s}a_conv_shortcut" for s in (1, 2, 3, 4)]
    # The 1b/2b/3b/4b projections (1x1 conv + bias + 4 BN vectors) are gone.
    removed = sum(c * c + c + 4 * c for c in (64, 128, 256, 512))
    assert counts(model)[0] == RESNET18_BACKBONE_PARAMS - removed == 11_195_328


def test_resnet_pooling_and_detection_strides():
    def build(use_pooling, for_detection):
        return build_backbone(cfg(arch="resnet", n_layers=18, input_image_size="3,64,64",
                                  use_pooling=use_pooling), for_detection=for_detection)

    pooled = build(True, False)
    assert pooled.stride == 32 and tuple(pooled.features.shape) == (None, 2, 2, 512)
    assert isinstance(pooled.model().get_layer("pool1"), keras.layers.MaxPooling2D)
    assert pooled.model().get_layer("block_1a_conv_1").strides == (1, 1)
    assert pooled.name == "resnet18_bn"
    pooled_det = build(True, True)
    assert pooled_det.stride == 16 and tuple(pooled_det.features.shape) == (None, 4, 4, 512)
    strided = build(False, False)
    assert strided.stride == 16 and tuple(strided.features.shape) == (None, 4, 4, 512)
    assert strided.model().get_layer("block_1a_conv_1").strides == (2, 2)
    assert strided.model().get_layer("block_4a_conv_1").strides == (1, 1)
    assert "pool1" not in [layer.name for layer in strided.model().layers]


def test_resnet101_block_structure():
    model = build_backbone(cfg(arch="resnet", n_layers=101, input_image_size="3,32,32",
                               all_projections=False)).model()
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    # conv1 + 33 bottlenecks of three convolutions + one projection per stage.
    assert len(convs) == 1 + 3 * (3 + 4 + 23 + 3) + 4
    assert "block_3w_conv_3" in convs and "block_3x_conv_1" not in convs


# ---------------------------------------------------------------- other families' references


@pytest.mark.parametrize("fields, reference", [
    (dict(arch="vgg", n_layers=16, use_batch_norm=False, use_pooling=True), "VGG16"),
    (dict(arch="vgg", n_layers=19, use_batch_norm=False, use_pooling=True), "VGG19"),
    (dict(arch="mobilenet_v1", use_bias=False), "MobileNet"),
    (dict(arch="mobilenet_v2", use_bias=False, all_projections=False), "MobileNetV2"),
    (dict(arch="resnet", n_layers=50, all_projections=False, use_pooling=True), "ResNet50"),
])
def test_parameter_counts_match_keras_applications(fields, reference):
    ours = build_backbone(cfg(input_image_size="3,32,32", **fields)).model()
    theirs = getattr(keras.applications, reference)(weights=None, include_top=False,
                                                    input_shape=(32, 32, 3))
    assert counts(ours) == counts(theirs)


def test_alexnet_parameter_count_is_hand_computed_sum():
    convs = [(11, 3, 96), (5, 96, 256), (3, 256, 384), (3, 384, 384), (3, 384, 256)]
    expected = sum(k * k * cin * cout + cout for k, cin, cout in convs)
    model = build_backbone(cfg(arch="alexnet", input_image_size="3,32,32")).model()
    assert counts(model) == (expected, expected, 0) == (3_747_200, 3_747_200, 0)


@pytest.mark.parametrize("use_batch_norm", [False, True])
def test_googlenet_parameter_count_is_hand_computed_from_paper_table(use_batch_norm):
    def conv(k, cin, cout):
        return k * k * cin * cout + cout + (4 * cout if use_batch_norm else 0)

    expected = conv(7, 3, 64) + conv(1, 64, 64) + conv(3, 64, 192)
    cin = 192
    table = [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), (192, 96, 208, 16, 48, 64),
             (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64), (112, 144, 288, 32, 64, 64),
             (256, 160, 320, 32, 128, 128), (256, 160, 320, 32, 128, 128),
             (384, 192, 384, 48, 128, 128)]
    for n1, n3r, n3, n5r, n5, npool in table:
        expected += (conv(1, cin, n1) + conv(1, cin, n3r) + conv(3, n3r, n3) + conv(1, cin, n5r)
                     + conv(5, n5r, n5) + conv(1, cin, npool))
        cin = n1 + n3 + n5 + npool
    model = build_backbone(cfg(arch="googlenet", input_image_size="3,32,32",
                               use_batch_norm=use_batch_norm)).model()
    assert counts(model)[0] == expected
    assert expected == (6_002_672 if use_batch_norm else 5_973_552)
    assert model.output.shape[-1] == cin == 1024


def test_mobilenet_v2_all_projections_adds_bias_free_1x1_on_each_identity_shortcut():
    def build(all_projections):
        return build_backbone(cfg(arch="mobilenet_v2", input_image_size="3,32,32", use_bias=False,
                                  all_projections=all_projections)).model()

    plain, projected = build(False), build(True)
    extra = [layer for layer in projected.layers if layer.name.endswith("projected_inputs")]
    # Identity shortcuts: blocks 2, 4-5, 7-9, 11-12, 14-15 (same width, stride 1).
    assert sorted(int(layer.name.split("_")[1]) for layer in extra) == [2, 4, 5, 7, 8, 9, 11, 12,
                                                                          14, 15]
    widths = {2: 24, 4: 32, 5: 32, 7: 64, 8: 64, 9: 64, 11: 96, 12: 96, 14: 160, 15: 160}
    assert counts(projected)[0] - counts(plain)[0] == sum(c * c for c in widths.values())


@pytest.mark.parametrize("arch, cls_last, det_last", [
    ("mobilenet_v1", "conv_pw_relu_13", "conv_pw_relu_11"),
    ("mobilenet_v2", "re_lu_head", "block_12_add"),
])
def test_mobilenet_detection_trunk_is_stride_16(arch, cls_last, det_last):
    cls = build_backbone(cfg(arch=arch, input_image_size="3,64,64"))
    det = build_backbone(cfg(arch=arch, input_image_size="3,64,64"), for_detection=True)
    assert cls.stride == 32 and tuple(cls.features.shape[1:3]) == (2, 2)
    assert det.stride == 16 and tuple(det.features.shape[1:3]) == (4, 4)
    assert cls.model().layers[-1].name == cls_last
    assert det.model().layers[-1].name == det_last


def test_vgg_downsamples_by_pooling_or_strided_convolution():
    pooled = build_backbone(cfg(arch="vgg", n_layers=16, input_image_size="3,64,64",
                                use_pooling=True)).model()
    strided = build_backbone(cfg(arch="vgg", n_layers=16, input_image_size="3,64,64",
                                 use_pooling=False)).model()
    pools = [layer.name for layer in pooled.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert pools == ["block1_pool", "block2_pool", "block3_pool", "block4_pool"]
    assert all(layer.strides == (1, 1) for layer in pooled.layers
               if isinstance(layer, keras.layers.Conv2D))
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in strided.layers)
    assert [layer.name for layer in strided.layers if getattr(layer, "strides", None) == (2, 2)] \
        == ["block_2a_conv_1", "block_3a_conv_1", "block_4a_conv_1", "block_5a_conv_1"]
    assert pooled.output.shape == strided.output.shape == (None, 4, 4, 512)
    assert counts(pooled) == counts(strided)


# ---------------------------------------------------------------- every family runs on CPU

FAMILIES = [
    dict(arch="resnet", n_layers=10),
    dict(arch="resnet", n_layers=18),
    dict(arch="resnet", n_layers=34),
    dict(arch="resnet", n_layers=50),
    dict(arch="vgg", n_layers=16),
    dict(arch="vgg", n_layers=19),
    dict(arch="alexnet"),
    dict(arch="googlenet"),
    dict(arch="mobilenet_v1"),
    dict(arch="mobilenet_v2"),
]


def _family_id(fields):
    return f"{fields['arch']}{fields.get('n_layers', '')}"


# Every depth at 32x32; one of each family again at 64x64 (stride 16 and 32 maps of 4 and 2).
FORWARD_CASES = [(f, 32) for f in FAMILIES] + [
    (f, 64) for f in FAMILIES if f.get("n_layers") in (None, 18, 16)]


@pytest.mark.parametrize("fields, size", FORWARD_CASES,
                         ids=[f"{_family_id(f)}-{s}" for f, s in FORWARD_CASES])
def test_every_family_runs_forward_on_cpu(fields, size):
    backbone = build_backbone(cfg(input_image_size=f"3,{size},{size}", **fields))
    model = backbone.model()
    assert model.input.shape == (None, 3, size, size)
    images = np.random.default_rng(0).uniform(0, 1, (2, 3, size, size)).astype("float32")
    features = model(images, training=False).numpy()
    side = size // backbone.stride
    assert features.shape == (2, side, side, backbone.channels)
    assert np.isfinite(features).all()
    # Distinct images give distinct features (the graph actually uses its input); relative
    # test because untrained deep trunks produce tiny activations.
    assert np.abs(features).max() > 0
    assert not np.allclose(features[0], features[1], rtol=1e-3, atol=0)


@pytest.mark.parametrize("fields", [dict(arch="resnet", n_layers=10), dict(arch="mobilenet_v2"),
                                    dict(arch="googlenet")], ids=lambda f: f["arch"])
def test_gradients_flow_to_every_trainable_weight_on_cpu(fields):
    model = build_backbone(cfg(input_image_size="1,40,56", **fields)).model()
    images = tf.random.uniform((2, 1, 40, 56), seed=1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(images, training=True)))
    grads = tape.gradient(loss, model.trainable_weights)
    assert len(grads) == len(model.trainable_weights) > 0
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0


# ---------------------------------------------------------------- names are stable, no Lambda


@pytest.mark.parametrize("fields", [f for f in FAMILIES if f.get("n_layers") in (None, 18, 16)],
                         ids=_family_id)
def test_layer_names_are_stable_unique_and_lambda_free(fields):
    config = cfg(input_image_size="3,32,32", **fields)
    first = [layer.name for layer in build_backbone(config).model().layers]
    second_model = build_backbone(config).model()
    assert [layer.name for layer in second_model.layers] == first
    assert len(set(first)) == len(first)
    assert first[:2] == ["input_1", "input_to_nhwc"]
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in second_model.layers)


# ---------------------------------------------------------------- freezing


def test_freeze_blocks_freezes_those_blocks_convolutions_only():
    model = build_backbone(cfg(arch="resnet", n_layers=18, input_image_size="3,32,32",
                               freeze_blocks=[0, 2])).model()
    convs = {layer.name: layer.trainable for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D)}
    assert convs["conv1"] is False
    assert {n for n, t in convs.items() if not t} == {"conv1"} | {
        f"block_2{b}_conv_{c}" for b in "ab" for c in ("1", "2", "shortcut")}
    assert model.get_layer("bn_conv1").trainable is True  # BN follows freeze_bn, as in TLT.
    frozen_weights = 7 * 7 * 3 * 64 + 64 + sum(
        9 * cin * 128 + 128 + 9 * 128 * 128 + 128 + cin * 128 + 128 for cin in (64, 128))
    assert counts(model)[2] == RESNET18_NON_TRAINABLE + frozen_weights


def test_freeze_bn_freezes_every_batch_norm():
    model = build_backbone(cfg(arch="resnet", n_layers=18, input_image_size="3,32,32",
                               freeze_bn=True)).model()
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 1 + 8 * 3 and not any(layer.trainable for layer in bns)
    assert counts(model)[2] == 2 * RESNET18_NON_TRAINABLE  # gamma/beta join the moving stats.


@pytest.mark.parametrize("arch, block, layer_name", [
    ("vgg", 5, "block_5c_conv_1"), ("alexnet", 3, "conv3"), ("googlenet", 9, "inception_5b_5x5"),
    ("mobilenet_v1", 13, "conv_dw_13"), ("mobilenet_v2", 18, "conv_1"),
    ("mobilenet_v2", 1, "expanded_conv_depthwise"),
])
def test_freeze_block_numbering_per_family(arch, block, layer_name):
    model = build_backbone(cfg(arch=arch, n_layers=16, input_image_size="3,32,32",
                               freeze_blocks=[block])).model()
    assert model.get_layer(layer_name).trainable is False
    frozen = [layer.name for layer in model.layers if layer.weights and not layer.trainable]
    assert layer_name in frozen and len(frozen) < len([lay for lay in model.layers if lay.weights])


# ---------------------------------------------------------------- config errors


@pytest.mark.parametrize("fields, message", [
    (dict(arch="resnet", n_layers=20),
     "model_config.n_layers: resnet supports 10, 18, 34, 50, 101; got 20"),
    (dict(arch="vgg", n_layers=11), "model_config.n_layers: vgg supports 16, 19; got 11"),
    (dict(arch="inception"),
     'model_config.arch: expected one of resnet, vgg, alexnet, googlenet, mobilenet_v1, '
     'mobilenet_v2; got "inception"'),
    (dict(input_image_size="3,15,224"),
     'model_config.input_image_size: height and width must be >= 16, got 15x224 in "3,15,224"'),
    (dict(input_image_size="224,224"),
     'model_config.input_image_size: expected "C,H,W" (for example "3,224,224"), got "224,224"'),
    (dict(input_image_size="2,64,64"),
     'model_config.input_image_size: channels must be 1 or 3, got 2 in "2,64,64"'),
    (dict(arch="resnet", freeze_blocks=[1, 5, 7]),
     "model_config.freeze_blocks: resnet has blocks 0-4; got 5, 7"),
    (dict(dropout=1.0), "model_config.dropout must be in [0, 1), got 1"),
])
def test_invalid_model_config_raises_spec_error(fields, message):
    with pytest.raises(SpecError) as err:
        build_backbone(cfg(**fields))
    assert str(err.value) == message
    assert err.value.field == message.split(":")[0].split(" ")[0]


def test_fixed_depth_families_ignore_n_layers_and_odd_sizes_build():
    spec = parse_model_config(cfg(arch="googlenet", n_layers=20, input_image_size=" 3, 17 ,23"))
    assert (spec.n_layers, spec.input_shape) == (0, (3, 17, 23))
    backbone = build_backbone(cfg(arch="mobilenet_v1", n_layers=99, input_image_size="3,17,23"))
    assert backbone.model()(np.zeros((1, 3, 17, 23), "float32")).shape[0] == 1


def test_input_tensor_is_reused_and_checked():
    inputs = keras.Input((3, 32, 48), name="input_1")
    backbone = build_backbone(cfg(arch="alexnet", input_image_size="3,32,48"), inputs)
    assert backbone.inputs is inputs
    with pytest.raises(SpecError, match=r"the model input has shape \(3, 32, 48\) but the config "
                                        r"says \(3, 64, 64\)"):
        build_backbone(cfg(arch="alexnet", input_image_size="3,64,64"), inputs)


def test_proto_model_config_is_accepted():
    pb2 = pytest.importorskip("tlt.proto.classification_config_pb2")
    config = pb2.ClassificationModelConfig(arch="resnet", n_layers=18,
                                           input_image_size="3,224,224", use_bias=True,
                                           use_batch_norm=True, all_projections=True)
    config.freeze_blocks.extend([0])
    backbone = build_backbone(config)
    assert counts(backbone.model())[0] == RESNET18_BACKBONE_PARAMS
    assert backbone.model().get_layer("conv1").trainable is False
