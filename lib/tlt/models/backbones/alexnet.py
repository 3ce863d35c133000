"""TLT's AlexNet feature extractor.

Five convolutions with fused ReLU, as TLT's template builds them: `conv1` 96x11x11/4, `pool1`
3x3/2, `conv2` 256x5x5, `pool2` 3x3/2, `conv3` 384x3x3, `conv4` 384x3x3, `conv5` 256x3x3, all
"same"-padded, ending at stride 16. TLT's AlexNet always has biases and no batch norm, so
use_bias, use_batch_norm and freeze_bn do not apply to it. Its 3,747,200 parameters are
hand-computed in the tests (sum of k*k*c_in*c_out + c_out over the five convolutions).
"""

from __future__ import annotations

from tlt.models.backbones._config import BackboneSpec
from tlt.models.backbones._layers import LayerOptions, Trunk, conv2d, max_pool

__all__ = ["build_alexnet"]

# (name, filters, kernel, stride, pool after it)
_CONVS = (
    ("conv1", 96, 11, 4, "pool1"),
    ("conv2", 256, 5, 1, "pool2"),
    ("conv3", 384, 3, 1, None),
    ("conv4", 384, 3, 1, None),
    ("conv5", 256, 3, 1, None),
)


def build_alexnet(spec: BackboneSpec, x, opts: LayerOptions, *, for_detection: bool) -> Trunk:
    """Build the AlexNet trunk on a channels-last tensor.

    Args:
        spec: validated model config (arch "alexnet").
        x: the (None, H, W, C) input view.
        opts: shared layer options (only the regularizers apply).
        for_detection: accepted for a uniform signature; the trunk is stride 16 either way.

    Returns:
        The trunk's last feature map, model name and stride.
    """
    del for_detection  # AlexNet's trunk is stride 16 for both tasks.
    for block, (name, filters, kernel, stride, pool) in enumerate(_CONVS, 1):
        x = conv2d(x, filters, kernel, strides=stride, name=name, opts=opts, use_bias=True,
                   activation="relu", trainable=block not in spec.freeze_blocks)
        if pool:
            x = max_pool(x, 3, 2, name=pool)
    return Trunk(x, "alexnet", 16)
