"""TLT's MobileNet v1 and v2 feature extractors (width multiplier 1).

Both use explicit symmetric zero padding before 3x3 convolutions (TLT's choice, which TensorRT
fuses into the convolution) and ReLU activations. For classification they end at stride 32; a
detection trunk drops the last stride-2 stage and ends at stride 16, as TLT's DetectNet_v2 does.

v1 (Howard et al. 2017): `conv1` 32x3x3/2, then 13 depthwise-separable blocks `conv_dw_<k>` /
`conv_pw_<k>` (each with `_bn` and a ReLU). v2 (Sandler et al. 2018): `conv1` 32x3x3/2, the 17
inverted-residual blocks `expanded_conv_*`, `block_<k>_expand/_depthwise/_project` (+ `_bn`,
`_add`), then `conv_1` 1280x1x1. With all_projections each identity shortcut of v2 becomes a 1x1
convolution `block_<k>_projected_inputs` (bias-free), so the network can be pruned throughout.

Without bias, with batch norm and all_projections off, the classification trunks have exactly the
weights of keras.applications' MobileNet (3,228,864) and MobileNetV2 (2,257,984) without top.
"""

from __future__ import annotations

import keras

from tlt.models.backbones._config import BackboneSpec
from tlt.models.backbones._layers import (
    LayerOptions,
    Trunk,
    batch_norm,
    conv2d,
    depthwise_conv2d,
    zero_pad,
)

__all__ = ["build_mobilenet_v1", "build_mobilenet_v2"]

# v1 depthwise-separable blocks 1..13 as (pointwise filters, stride).
_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
# A stride-16 (detection) trunk keeps blocks 1..11 (drops 12 and 13).
_V1_STRIDE16_BLOCKS = 11

# v2 inverted-residual blocks 0..16 as (filters, stride, expansion).
_V2_BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
              (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6),
              (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6))
# A stride-16 (detection) trunk keeps blocks 0..12 (drops 13-16 and conv_1).
_V2_STRIDE16_BLOCKS = 13
_V2_LAST_FILTERS = 1280
# TLT's MobileNet v2 batch norm settings (those of the original implementation).
_V2_BN = {"epsilon": 1e-3, "momentum": 0.999}


def _relu(x, name):
    return keras.layers.ReLU(name=name)(x)


def _stem(x, spec: BackboneSpec, opts: LayerOptions, *, bn_name: str, relu_name: str, **bn):
    """The stem both versions share (freeze block 0): symmetric pad, `conv1` 32x3x3/2 (valid),
    batch norm and ReLU; only the names of the last two and the batch-norm settings differ."""
    x = zero_pad(x, 1, name="conv1_pad")
    x = conv2d(x, 32, 3, strides=2, padding="valid", name="conv1", opts=opts,
               trainable=0 not in spec.freeze_blocks)
    x = batch_norm(x, name=bn_name, opts=opts, **bn)
    return _relu(x, relu_name)


def build_mobilenet_v1(spec: BackboneSpec, x, opts: LayerOptions, *,
                       for_detection: bool) -> Trunk:
    """Build the MobileNet v1 trunk on a channels-last tensor.

    Args:
        spec: validated model config (arch "mobilenet_v1").
        x: the (None, H, W, C) input view.
        opts: shared layer options.
        for_detection: end at stride 16 (drop blocks 12 and 13).

    Returns:
        The trunk's last feature map, model name and stride.
    """
    frozen = spec.freeze_blocks
    x = _stem(x, spec, opts, bn_name="conv1_bn", relu_name="conv_block_relu")
    stride = 2
    last = _V1_STRIDE16_BLOCKS if for_detection else len(_V1_BLOCKS)
    for k, (filters, block_stride) in enumerate(_V1_BLOCKS[:last], 1):
        trainable = k not in frozen
        x = zero_pad(x, 1, name=f"conv_pad_{k}")
        x = depthwise_conv2d(x, 3, strides=block_stride, name=f"conv_dw_{k}", opts=opts,
                             trainable=trainable)
        x = batch_norm(x, name=f"conv_dw_{k}_bn", opts=opts)
        x = _relu(x, f"conv_dw_{k}_relu")
        x = conv2d(x, filters, 1, padding="valid", name=f"conv_pw_{k}", opts=opts,
                   trainable=trainable)
        x = batch_norm(x, name=f"conv_pw_{k}_bn", opts=opts)
        x = _relu(x, f"conv_pw_relu_{k}")
        stride *= block_stride
    return Trunk(x, "mobilenet_v1_bn" if spec.use_batch_norm else "mobilenet_v1", stride)


def _inverted_residual(x, block_id, filters, stride, expansion, spec, opts, trainable):
    inputs = x
    in_channels = int(x.shape[-1])
    if block_id:
        prefix = f"block_{block_id}_"
        x = conv2d(x, expansion * in_channels, 1, padding="valid", name=f"{prefix}expand",
                   opts=opts, trainable=trainable)
        x = batch_norm(x, name=f"{prefix}expand_bn", opts=opts, **_V2_BN)
        x = _relu(x, f"re_lu_{block_id + 1}")
    else:
        prefix = "expanded_conv_"
    x = zero_pad(x, 1, name=f"{prefix}depthwise_pad")
    x = depthwise_conv2d(x, 3, strides=stride, name=f"{prefix}depthwise", opts=opts,
                         trainable=trainable)
    x = batch_norm(x, name=f"{prefix}depthwise_bn", opts=opts, **_V2_BN)
    x = _relu(x, f"{prefix}relu")
    x = conv2d(x, filters, 1, padding="valid", name=f"{prefix}project", opts=opts,
               trainable=trainable)
    x = batch_norm(x, name=f"{prefix}project_bn", opts=opts, **_V2_BN)
    if in_channels == filters and stride == 1:
        if spec.all_projections:
            inputs = conv2d(inputs, in_channels, 1, padding="valid", use_bias=False,
                            name=f"{prefix}projected_inputs", opts=opts, trainable=trainable)
        x = keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x


def build_mobilenet_v2(spec: BackboneSpec, x, opts: LayerOptions, *,
                       for_detection: bool) -> Trunk:
    """Build the MobileNet v2 trunk on a channels-last tensor.

    Args:
        spec: validated model config (arch "mobilenet_v2").
        x: the (None, H, W, C) input view.
        opts: shared layer options.
        for_detection: end at stride 16 (drop blocks 13-16 and `conv_1`).

    Returns:
        The trunk's last feature map, model name and stride.
    """
    frozen = spec.freeze_blocks
    x = _stem(x, spec, opts, bn_name="bn_conv1", relu_name="re_lu_0", **_V2_BN)
    stride = 2
    last = _V2_STRIDE16_BLOCKS if for_detection else len(_V2_BLOCKS)
    for block_id, (filters, block_stride, expansion) in enumerate(_V2_BLOCKS[:last]):
        x = _inverted_residual(x, block_id, filters, block_stride, expansion, spec, opts,
                               trainable=(block_id + 1) not in frozen)
        stride *= block_stride
    if not for_detection:
        x = conv2d(x, _V2_LAST_FILTERS, 1, padding="valid", name="conv_1", opts=opts,
                   trainable=18 not in frozen)
        x = batch_norm(x, name="conv_1_bn", opts=opts, **_V2_BN)
        x = _relu(x, "re_lu_head")
    return Trunk(x, "mobilenet_v2_bn" if spec.use_batch_norm else "mobilenet_v2", stride)
