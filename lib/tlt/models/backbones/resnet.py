"""TLT's ResNet 10/18/34/50/101 feature extractor.

Structure and names follow TLT's template: a 7x7/2 `conv1` (+ `bn_conv1`), then four stages of
residual blocks `block_<stage><letter>` whose convolutions are `..._conv_<i>` / `..._bn_<i>`,
shortcut `..._conv_shortcut` / `..._bn_shortcut`, sum `..._add` and output `..._relu`. The stride
of a stage sits on its first block's first convolution and on that block's shortcut.

With all_projections every block has a 1x1 projection shortcut (what makes a ResNet fully
prunable); otherwise only each stage's first block has one, as in the original paper. For
ResNet-18 with all_projections, bias and batch norm that gives 11,548,288 parameters, 11,648 of
them batch-norm moving statistics: the figures in TLT's logs.

Down-sampling: without use_pooling the stem has no max pool and the last stage keeps stride 1
(total stride 16); with use_pooling a 3x3/2 max pool follows the stem, the first stage keeps
stride 1 and the last stage strides 2 (total 32). A detection trunk always ends at stride 16.
"""

from __future__ import annotations

import math

import keras

from tlt.models.backbones._config import BackboneSpec
from tlt.models.backbones._layers import LayerOptions, Trunk, batch_norm, conv2d, max_pool, relu

__all__ = ["build_resnet"]

# Per depth: (block repeats per stage, sub-block layout as (kernel, filters multiplier of width)).
_BASIC = ((3, 1), (3, 1))
_BOTTLENECK = ((1, 1), (3, 1), (1, 4))
_LAYOUTS = {
    10: ((1, 1, 1, 1), _BASIC),
    18: ((2, 2, 2, 2), _BASIC),
    34: ((3, 4, 6, 3), _BASIC),
    50: ((3, 4, 6, 3), _BOTTLENECK),
    101: ((3, 4, 23, 3), _BOTTLENECK),
}
_WIDTHS = (64, 128, 256, 512)


def _block_letter(i: int) -> str:
    # TLT's sub-block ids: a..z, then aa, ab, ... (ResNet-101's 23 blocks stay within a..w).
    letters = ""
    while i >= 0:
        letters = chr(ord("a") + i % 26) + letters
        i = i // 26 - 1
    return letters


def _residual_block(x, prefix: str, subblocks, stride: int, project: bool,
                    opts: LayerOptions, trainable: bool):
    shortcut = x
    for i, (kernel, filters) in enumerate(subblocks, start=1):
        x = conv2d(x, filters, kernel, strides=stride if i == 1 else 1, name=f"{prefix}conv_{i}",
                   opts=opts, trainable=trainable)
        x = batch_norm(x, name=f"{prefix}bn_{i}", opts=opts)
        if i < len(subblocks):
            x = relu(x, f"{prefix}relu_{i}")
    if project:
        shortcut = conv2d(shortcut, subblocks[-1][1], 1, strides=stride, padding="valid",
                          name=f"{prefix}conv_shortcut", opts=opts, trainable=trainable)
        shortcut = batch_norm(shortcut, name=f"{prefix}bn_shortcut", opts=opts)
    x = keras.layers.Add(name=f"{prefix}add")([x, shortcut])
    return relu(x, f"{prefix}relu")


def build_resnet(spec: BackboneSpec, x, opts: LayerOptions, *, for_detection: bool) -> Trunk:
    """Build the ResNet trunk on a channels-last tensor.

    Args:
        spec: validated model config (arch "resnet").
        x: the (None, H, W, C) input view.
        opts: shared layer options.
        for_detection: end at stride 16 whatever use_pooling says.

    Returns:
        The trunk's last feature map, model name and stride.
    """
    repeats, layout = _LAYOUTS[spec.n_layers]
    frozen = spec.freeze_blocks

    x = conv2d(x, 64, 7, strides=2, name="conv1", opts=opts, trainable=0 not in frozen)
    x = batch_norm(x, name="bn_conv1", opts=opts)
    x = relu(x, "conv1_relu")
    if spec.use_pooling:
        x = max_pool(x, 3, 2, name="pool1")
        strides = [1, 2, 2, 1 if for_detection else 2]
    else:
        strides = [2, 2, 2, 1]

    for stage, (repeat, width, first_stride) in enumerate(zip(repeats, _WIDTHS, strides), 1):
        subblocks = [(kernel, width * mult) for kernel, mult in layout]
        for i in range(repeat):
            x = _residual_block(
                x, f"block_{stage}{_block_letter(i)}_", subblocks,
                stride=first_stride if i == 0 else 1,
                project=spec.all_projections or i == 0,
                opts=opts, trainable=stage not in frozen)

    name = f"resnet{spec.n_layers}"
    if not spec.use_pooling:
        name += "_nopool"
    if spec.use_batch_norm:
        name += "_bn"
    # conv1 halves, the optional max pool halves, then each stage's stride.
    return Trunk(x, name, 2 * (2 if spec.use_pooling else 1) * math.prod(strides))
