"""TLT's GoogLeNet (Inception v1) feature extractor.

Stem `conv1` 7x7/2, `pool1` 2x2/2, `conv2_reduce` 1x1, `conv2` 3x3, `pool2` 2x2/2 (each convolution
with `bn_<name>` when batch norm is on), then the nine inception modules of the paper (Szegedy et
al. 2015, table 1) with `pool3` after 3b. Like TLT's trunk it has no `pool4` (TLT adds it only with
its ImageNet head), so it ends at stride 16 for classification and detection alike.

Module names follow TLT: `inception_<id>_1x1`, `_3x3_reduce`, `_3x3`, `_5x5_reduce`, `_5x5`,
`_pool` (3x3/1 max pool), `_pool_proj`, each convolution with a `_bn` batch norm, joined by
`inception_<id>_output`. Without batch norm its 5,973,552 parameters are those of the paper's
table (summed by hand in the tests).
"""

from __future__ import annotations

import keras

from tlt.models.backbones._config import BackboneSpec
from tlt.models.backbones._layers import LayerOptions, Trunk, batch_norm, conv2d, max_pool, relu

__all__ = ["build_googlenet", "INCEPTION_MODULES"]

# (id, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj): the paper's table 1. Module k
# (1-based) is freeze block k; block 0 is the stem.
INCEPTION_MODULES = (
    ("3a", 64, 96, 128, 16, 32, 32),
    ("3b", 128, 128, 192, 32, 96, 64),
    ("4a", 192, 96, 208, 16, 48, 64),
    ("4b", 160, 112, 224, 24, 64, 64),
    ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64),
    ("4e", 256, 160, 320, 32, 128, 128),
    ("5a", 256, 160, 320, 32, 128, 128),
    ("5b", 384, 192, 384, 48, 128, 128),
)


def _conv_bn_relu(x, filters, kernel, name, bn_name, opts, trainable, strides=1):
    x = conv2d(x, filters, kernel, strides=strides, name=name, opts=opts, trainable=trainable)
    x = batch_norm(x, name=bn_name, opts=opts)
    return relu(x, f"{name}_relu")


def _inception(x, module, opts: LayerOptions, trainable: bool):
    ident, n1x1, n3x3r, n3x3, n5x5r, n5x5, npool = module
    p = f"inception_{ident}"

    def unit(t, filters, kernel, suffix):
        return _conv_bn_relu(t, filters, kernel, f"{p}_{suffix}", f"{p}_{suffix}_bn", opts,
                             trainable)

    b1 = unit(x, n1x1, 1, "1x1")
    b2 = unit(unit(x, n3x3r, 1, "3x3_reduce"), n3x3, 3, "3x3")
    b3 = unit(unit(x, n5x5r, 1, "5x5_reduce"), n5x5, 5, "5x5")
    b4 = unit(max_pool(x, 3, 1, name=f"{p}_pool"), npool, 1, "pool_proj")
    return keras.layers.Concatenate(axis=-1, name=f"{p}_output")([b1, b2, b3, b4])


def build_googlenet(spec: BackboneSpec, x, opts: LayerOptions, *, for_detection: bool) -> Trunk:
    """Build the GoogLeNet trunk on a channels-last tensor.

    Args:
        spec: validated model config (arch "googlenet").
        x: the (None, H, W, C) input view.
        opts: shared layer options.
        for_detection: accepted for a uniform signature; the trunk is stride 16 either way.

    Returns:
        The trunk's last feature map, model name and stride.
    """
    del for_detection  # TLT's GoogLeNet trunk is stride 16 for both tasks.
    stem = 0 not in spec.freeze_blocks
    x = _conv_bn_relu(x, 64, 7, "conv1", "bn_conv1", opts, stem, strides=2)
    x = max_pool(x, 2, 2, name="pool1")
    x = _conv_bn_relu(x, 64, 1, "conv2_reduce", "bn_conv2_reduce", opts, stem)
    x = _conv_bn_relu(x, 192, 3, "conv2", "bn_conv2", opts, stem)
    x = max_pool(x, 2, 2, name="pool2")
    for block, module in enumerate(INCEPTION_MODULES, 1):
        x = _inception(x, module, opts, block not in spec.freeze_blocks)
        if module[0] == "3b":
            x = max_pool(x, 2, 2, name="pool3")
    return Trunk(x, "googlenet_bn" if spec.use_batch_norm else "googlenet", 16)
