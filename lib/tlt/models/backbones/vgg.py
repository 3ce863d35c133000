"""TLT's VGG 16/19 feature extractor.

Five blocks of 3x3 convolutions (64, 128, 256, 512, 512 filters; 2-2-3-3-3 convolutions for
VGG-16, 2-2-4-4-4 for VGG-19) named as TLT's template names them: `block_<b><letter>_conv_1`,
`block_<b><letter>_bn_1`, `block_<b><letter>_relu`. Down-sampling between blocks is a 2x2 max pool
(`block<b>_pool`) with use_pooling, else a stride-2 first convolution. Like TLT's trunk it has no
pool after block 5, so it ends at stride 16 for classification and detection alike.

Without batch norm and with bias, its convolutions are exactly those of keras.applications' VGG16
/ VGG19 without top (14,714,688 / 20,024,384 parameters).
"""

from __future__ import annotations

from tlt.models.backbones._config import BackboneSpec
from tlt.models.backbones._layers import LayerOptions, Trunk, batch_norm, conv2d, max_pool, relu

__all__ = ["build_vgg"]

_WIDTHS = (64, 128, 256, 512, 512)
_REPEATS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def build_vgg(spec: BackboneSpec, x, opts: LayerOptions, *, for_detection: bool) -> Trunk:
    """Build the VGG trunk on a channels-last tensor.

    Args:
        spec: validated model config (arch "vgg").
        x: the (None, H, W, C) input view.
        opts: shared layer options.
        for_detection: accepted for a uniform signature; the trunk is stride 16 either way.

    Returns:
        The trunk's last feature map, model name and stride.
    """
    del for_detection  # VGG's trunk is stride 16 for both tasks.
    for block, (repeat, width) in enumerate(zip(_REPEATS[spec.n_layers], _WIDTHS), 1):
        trainable = block not in spec.freeze_blocks
        for i in range(repeat):
            prefix = f"block_{block}{chr(ord('a') + i)}_"
            stride = 2 if (i == 0 and block > 1 and not spec.use_pooling) else 1
            x = conv2d(x, width, 3, strides=stride, name=f"{prefix}conv_1", opts=opts,
                       trainable=trainable)
            x = batch_norm(x, name=f"{prefix}bn_1", opts=opts)
            x = relu(x, f"{prefix}relu")
        if spec.use_pooling and block < 5:
            x = max_pool(x, 2, 2, name=f"block{block}_pool")

    name = f"vgg{spec.n_layers}"
    if not spec.use_pooling:
        name += "_nopool"
    if spec.use_batch_norm:
        name += "_bn"
    return Trunk(x, name, 16)
