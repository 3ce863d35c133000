"""Backbone model zoo: TLT's ResNet, VGG, AlexNet, GoogLeNet and MobileNet v1/v2 trunks.

`build_backbone(model_config)` builds a functional Keras graph from stock layers with TLT's layer
names, on TLT's channels-first input `input_1` (None, C, H, W). Classification
(`tlt.models.classifier`) and DetectNet_v2 put their heads on `BackboneOutput.features`.

Every tensor after the input is channels-last (see `_layers` for why); heads that must emit TLT's
NCHW outputs transpose back with `to_channels_first`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras

from tlt.errors import SpecError
from tlt.models.backbones._config import (
    DEPTHS,
    FREEZE_BLOCKS,
    SUPPORTED_ARCHS,
    BackboneSpec,
    parse_model_config,
)
from tlt.models.backbones._layers import (
    DATA_FORMAT,
    INPUT_NAME,
    LayerOptions,
    channels_last_input,
    to_channels_first,
)
from tlt.models.backbones.alexnet import build_alexnet
from tlt.models.backbones.googlenet import build_googlenet
from tlt.models.backbones.mobilenet import build_mobilenet_v1, build_mobilenet_v2
from tlt.models.backbones.resnet import build_resnet
from tlt.models.backbones.vgg import build_vgg

__all__ = [
    "SUPPORTED_ARCHS",
    "DEPTHS",
    "FREEZE_BLOCKS",
    "DATA_FORMAT",
    "INPUT_NAME",
    "BackboneSpec",
    "BackboneOutput",
    "parse_model_config",
    "build_backbone",
    "to_channels_first",
]

_FAMILIES = {
    "resnet": build_resnet,
    "vgg": build_vgg,
    "alexnet": build_alexnet,
    "googlenet": build_googlenet,
    "mobilenet_v1": build_mobilenet_v1,
    "mobilenet_v2": build_mobilenet_v2,
}


@dataclass(frozen=True)
class BackboneOutput:
    """A built backbone graph.

    Attributes:
        inputs: the model input `input_1`, shape (None, C, H, W).
        features: the last feature map, shape (None, h, w, c), channels-last.
        name: TLT's name for this configuration, e.g. "resnet18_nopool_bn".
        stride: nominal down-sampling factor of `features` (16 or 32).
        spec: the validated model config it was built from.
    """

    inputs: Any
    features: Any
    name: str
    stride: int
    spec: BackboneSpec

    @property
    def channels(self) -> int:
        """Number of channels of `features`."""
        return int(self.features.shape[-1])

    def model(self) -> keras.Model:
        """The backbone alone as a Keras model (input_1 -> features)."""
        return keras.Model(self.inputs, self.features, name=self.name)


def build_backbone(model_config, input_tensor=None, *, for_detection: bool = False,
                   kernel_regularizer=None, bias_regularizer=None) -> BackboneOutput:
    """Build a backbone from a model config.

    Args:
        model_config: object with `ClassificationModelConfig`'s fields (a proto message or any
            object read by attribute): arch, n_layers, input_image_size ("C,H,W"), use_bias,
            use_batch_norm, all_projections, use_pooling, freeze_blocks, freeze_bn, dropout.
        input_tensor: an existing channels-first Keras input (None, C, H, W) to build on; by
            default a new input `input_1` of the configured size.
        for_detection: build the stride-16 trunk DetectNet_v2 needs (changes ResNet with
            use_pooling and the MobileNets; the other trunks are stride 16 already).
        kernel_regularizer: Keras regularizer for every convolution kernel, or None.
        bias_regularizer: Keras regularizer for every bias, or None.

    Returns:
        The graph's input, last feature map, name and stride.

    Raises:
        SpecError: the model config is invalid, or `input_tensor` does not match
            model_config.input_image_size.
    """
    spec = parse_model_config(model_config)
    if input_tensor is not None and tuple(input_tensor.shape[1:]) != spec.input_shape:
        raise SpecError(
            f"model_config.input_image_size: the model input has shape "
            f"{tuple(input_tensor.shape[1:])} but the config says {spec.input_shape}",
            field="model_config.input_image_size")
    opts = LayerOptions(use_bias=spec.use_bias, use_batch_norm=spec.use_batch_norm,
                        freeze_bn=spec.freeze_bn, kernel_regularizer=kernel_regularizer,
                        bias_regularizer=bias_regularizer)
    inputs, x = channels_last_input(spec.input_shape, input_tensor)
    trunk = _FAMILIES[spec.arch](spec, x, opts, for_detection=for_detection)
    return BackboneOutput(inputs=inputs, features=trunk.features, name=trunk.name,
                          stride=trunk.stride, spec=spec)
