"""Layer helpers shared by the backbone families.

Every layer gets an explicit, deterministic name (TLT's where TLT names it), so two builds give the
same graph, pretrained weights load by name, and export keeps the blob names. Only stock Keras
layers are used (no Lambda, no subclassed blocks): pruning rewrites the graph layer by layer.

TensorFlow's CPU kernels for Conv2D, DepthwiseConv2D and pooling accept only NHWC
(keras-team/keras#20414, #23650), so the model keeps TLT's channels-first input `input_1`
(None, C, H, W) and transposes once, right after it, to channels-last; every other layer runs
channels-last on CPU and GPU alike. The transpose has no weights, so parameter counts are TLT's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import keras

__all__ = [
    "DATA_FORMAT",
    "INPUT_NAME",
    "LayerOptions",
    "Trunk",
    "channels_last_input",
    "to_channels_first",
    "conv2d",
    "depthwise_conv2d",
    "batch_norm",
    "relu",
    "max_pool",
    "zero_pad",
]

# Layout of every tensor after the input transpose.
DATA_FORMAT = "channels_last"
# TLT's input blob name, kept so exported models and DeepStream configs line up.
INPUT_NAME = "input_1"
# Name of the single NCHW -> NHWC transpose after the input.
_TO_NHWC_NAME = "input_to_nhwc"


@dataclass(frozen=True)
class LayerOptions:
    """Settings applied to every layer a family builds.

    Attributes:
        use_bias: convolutions carry a bias term.
        use_batch_norm: `batch_norm` adds a BatchNormalization layer (else it is a no-op).
        freeze_bn: batch-norm layers are built with trainable=False.
        kernel_regularizer: Keras regularizer for convolution and dense kernels, or None.
        bias_regularizer: Keras regularizer for biases, or None.
    """

    use_bias: bool = True
    use_batch_norm: bool = True
    freeze_bn: bool = False
    kernel_regularizer: Any = None
    bias_regularizer: Any = None


class Trunk(NamedTuple):
    """What a family builder returns.

    Attributes:
        features: the last feature map, (None, h, w, c) channels-last.
        name: the model name TLT gives this configuration (e.g. "resnet18_nopool_bn").
        stride: nominal down-sampling factor of `features` against the input.
    """

    features: Any
    name: str
    stride: int


def channels_last_input(input_shape: tuple[int, int, int], input_tensor=None):
    """Make (or adopt) the channels-first model input and its channels-last view.

    Args:
        input_shape: (C, H, W).
        input_tensor: an existing Keras input of shape (None, C, H, W), or None to create
            `input_1`.

    Returns:
        (inputs, x): the channels-first input tensor and the transposed (None, H, W, C) tensor.
    """
    if input_tensor is None:
        inputs = keras.Input(shape=tuple(input_shape), name=INPUT_NAME)
    else:
        inputs = input_tensor
    x = keras.layers.Permute((2, 3, 1), name=_TO_NHWC_NAME)(inputs)
    return inputs, x


def to_channels_first(x, name: str):
    """Transpose a channels-last feature map back to TLT's NCHW layout (for model outputs).

    Args:
        x: (None, H, W, C) tensor.
        name: layer name.

    Returns:
        The (None, C, H, W) tensor.
    """
    return keras.layers.Permute((3, 1, 2), name=name)(x)


def conv2d(x, filters: int, kernel, *, name: str, opts: LayerOptions, strides=1,
           padding: str = "same", trainable: bool = True, use_bias: bool | None = None,
           activation=None):
    """Apply a Conv2D layer.

    Args:
        x: input tensor.
        filters: output channels.
        kernel: kernel size (int or pair).
        name: layer name.
        opts: shared options (bias default, regularizers).
        strides: stride (int or pair).
        padding: "same" or "valid".
        trainable: False for a frozen block.
        use_bias: overrides `opts.use_bias` where a family fixes it.
        activation: fused activation (AlexNet fuses ReLU as TLT does), or None.

    Returns:
        The output tensor.
    """
    bias = opts.use_bias if use_bias is None else use_bias
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, data_format=DATA_FORMAT,
        use_bias=bias, activation=activation, kernel_regularizer=opts.kernel_regularizer,
        bias_regularizer=opts.bias_regularizer if bias else None, trainable=trainable,
        name=name)(x)


def depthwise_conv2d(x, kernel, *, name: str, opts: LayerOptions, strides=1,
                     padding: str = "valid", trainable: bool = True):
    """Apply a DepthwiseConv2D layer (depth multiplier 1).

    Args:
        x: input tensor.
        kernel: kernel size.
        name: layer name.
        opts: shared options.
        strides: stride.
        padding: "same" or "valid".
        trainable: False for a frozen block.

    Returns:
        The output tensor.
    """
    return keras.layers.DepthwiseConv2D(
        kernel, strides=strides, padding=padding, data_format=DATA_FORMAT,
        use_bias=opts.use_bias, depthwise_regularizer=opts.kernel_regularizer,
        bias_regularizer=opts.bias_regularizer if opts.use_bias else None,
        trainable=trainable, name=name)(x)


def batch_norm(x, *, name: str, opts: LayerOptions, epsilon: float = 1e-3,
               momentum: float = 0.99):
    """Apply BatchNormalization over the channel axis when the options ask for it.

    Args:
        x: input tensor.
        name: layer name.
        opts: shared options (`use_batch_norm`, `freeze_bn`).
        epsilon: variance epsilon.
        momentum: moving-average momentum.

    Returns:
        The normalised tensor, or `x` unchanged when batch norm is off.
    """
    if not opts.use_batch_norm:
        return x
    # A Keras 3 BatchNormalization with trainable=False also runs in inference mode, which is
    # what TLT's freeze_bn (training=False) meant.
    return keras.layers.BatchNormalization(axis=-1, epsilon=epsilon, momentum=momentum,
                                           trainable=not opts.freeze_bn, name=name)(x)


def relu(x, name: str):
    """Apply a ReLU activation layer.

    Args:
        x: input tensor.
        name: layer name.

    Returns:
        The activated tensor.
    """
    return keras.layers.Activation("relu", name=name)(x)


def max_pool(x, pool, strides, *, name: str, padding: str = "same"):
    """Apply MaxPooling2D.

    Args:
        x: input tensor.
        pool: pool size.
        strides: stride.
        name: layer name.
        padding: "same" or "valid".

    Returns:
        The pooled tensor.
    """
    return keras.layers.MaxPooling2D(pool, strides=strides, padding=padding,
                                     data_format=DATA_FORMAT, name=name)(x)


def zero_pad(x, pad, *, name: str):
    """Apply ZeroPadding2D (explicit symmetric padding, as TLT's MobileNets use).

    Args:
        x: input tensor.
        pad: padding (int or pair).
        name: layer name.

    Returns:
        The padded tensor.
    """
    return keras.layers.ZeroPadding2D(pad, data_format=DATA_FORMAT, name=name)(x)
