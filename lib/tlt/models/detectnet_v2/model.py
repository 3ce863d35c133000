"""The DetectNet_v2 network: a stride-16 backbone and TLT's two 1x1 convolution heads.

    input_1 (None, C, H, W) -> backbone (stride 16, channels-last inside)
        -> [dropout] -> output_cov_conv  (1x1, one sigmoid channel per class) -> output_cov
                     -> output_bbox_conv (1x1, 4 linear channels per class)   -> output_bbox

The backbone runs channels-last (TensorFlow's CPU convolutions need NHWC, see
`tlt.models.backbones`), so each head ends in a weightless Permute named after TLT's output blob:
the model outputs are `output_cov` (None, C, H/16, W/16) and `output_bbox` (None, 4C, H/16, W/16),
channels-first as TLT's, so DeepStream configs written for TLT models keep working. For ResNet-18
with 3 classes that is 11,548,288 + (512*3+3) + (512*12+12) = 11,555,983 parameters, 11,648 of
them non-trainable: the guide's figure.

The detection spec names the backbone fields differently from classification (template,
num_layers, dropout_rate); `_backbone_config` adapts them, and errors keep the detection names.
"""

from __future__ import annotations

from types import SimpleNamespace

import keras

from tlt.errors import SpecError
from tlt.models.backbones import DATA_FORMAT, build_backbone

__all__ = ["MIN_INPUT_HEIGHT", "MIN_INPUT_WIDTH", "STRIDE", "build_detectnet_v2"]

# The guide's input constraint: H >= 272, W >= 480, both multiples of 16.
MIN_INPUT_HEIGHT = 272
MIN_INPUT_WIDTH = 480
STRIDE = 16

_PREPROCESSING = "augmentation_config.preprocessing"
# Classification field name -> detection field name, for error messages from the backbone.
_FIELD_NAMES = {"model_config.arch": "model_config.template",
                "model_config.n_layers": "model_config.num_layers",
                "model_config.dropout": "model_config.dropout_rate"}
_MODEL_DEFAULTS = {"num_layers": 18, "use_batch_norm": True, "all_projections": True}


def _optional(config, name: str):
    # Proto3 `optional` fields: unset means the documented default, not 0/false.
    if hasattr(config, "HasField") and not config.HasField(name):
        return _MODEL_DEFAULTS[name]
    return getattr(config, name, _MODEL_DEFAULTS[name])


def _check_input(channels: int, height: int, width: int, allow_small_input: bool) -> None:
    if channels not in (1, 3):
        raise SpecError(f"{_PREPROCESSING}.output_image_channel must be 1 or 3, got {channels}",
                        field=f"{_PREPROCESSING}.output_image_channel")
    for name, value, minimum in (("output_image_height", height, MIN_INPUT_HEIGHT),
                                 ("output_image_width", width, MIN_INPUT_WIDTH)):
        field = f"{_PREPROCESSING}.{name}"
        if value <= 0 or value % STRIDE:
            raise SpecError(f"{field} must be a positive multiple of {STRIDE}, got {value}",
                            field=field)
        if value < minimum and not allow_small_input:
            raise SpecError(f"{field} must be >= {minimum} (DetectNet_v2's smallest input is "
                            f"{MIN_INPUT_WIDTH}x{MIN_INPUT_HEIGHT}), got {value}", field=field)


def _backbone_config(model_config, channels: int, height: int, width: int) -> SimpleNamespace:
    """The detection model_config in the backbone builders' (classification) field names."""
    template = (model_config.template or model_config.arch or "resnet").strip().lower()
    if model_config.template and model_config.arch and \
            model_config.template.strip().lower() != model_config.arch.strip().lower():
        raise SpecError(f'model_config.arch must agree with template ("{model_config.template}"),'
                        f' got "{model_config.arch}"', field="model_config.arch")
    return SimpleNamespace(
        arch=template,
        n_layers=int(_optional(model_config, "num_layers")),
        input_image_size=f"{channels},{height},{width}",
        use_bias=True,
        use_batch_norm=bool(_optional(model_config, "use_batch_norm")),
        all_projections=bool(_optional(model_config, "all_projections")),
        use_pooling=bool(model_config.use_pooling),
        freeze_blocks=list(model_config.freeze_blocks),
        freeze_bn=bool(model_config.freeze_bn),
        dropout=float(model_config.dropout_rate))


def _renamed(error: SpecError) -> SpecError:
    message, field = error.detail, error.field
    for old, new in _FIELD_NAMES.items():
        message = message.replace(old, new)
        if field == old:
            field = new
    return SpecError(message, path=error.path, line=error.line, field=field)


def build_detectnet_v2(model_config, class_names, *, input_height: int, input_width: int,
                       channels: int = 3, allow_small_input: bool = False,
                       kernel_regularizer=None, bias_regularizer=None) -> keras.Model:
    """Build a DetectNet_v2 model.

    Args:
        model_config: `DetectionModelConfig` message (template/arch, num_layers, use_pooling,
            use_batch_norm, dropout_rate, freeze_blocks, freeze_bn, all_projections).
        class_names: the classes, in output channel order.
        input_height: augmentation_config.preprocessing.output_image_height.
        input_width: augmentation_config.preprocessing.output_image_width.
        channels: augmentation_config.preprocessing.output_image_channel (1 or 3).
        allow_small_input: accept inputs below the guide's 272x480 minimum (tests, demos); the
            multiple-of-16 rule still holds.
        kernel_regularizer: Keras regularizer for every convolution kernel, or None.
        bias_regularizer: Keras regularizer for every bias, or None.

    Returns:
        A functional Keras model from `input_1` (None, C, H, W) to
        [`output_cov` (None, K, H/16, W/16), `output_bbox` (None, 4K, H/16, W/16)] for K classes.

    Raises:
        SpecError: no classes, an invalid input size or an invalid model config (the message
            names the detection spec field).
    """
    names = list(class_names)
    if not names:
        raise SpecError("cost_function_config.target_classes: DetectNet_v2 needs at least one "
                        "class", field="cost_function_config.target_classes")
    if len(set(names)) != len(names):
        raise SpecError(f"class names must be unique, got {', '.join(names)}")
    _check_input(int(channels), int(input_height), int(input_width), allow_small_input)
    config = _backbone_config(model_config, int(channels), int(input_height), int(input_width))
    try:
        backbone = build_backbone(config, for_detection=True,
                                  kernel_regularizer=kernel_regularizer,
                                  bias_regularizer=bias_regularizer)
    except SpecError as error:
        raise _renamed(error) from None
    if backbone.stride != STRIDE:
        raise SpecError(f'model_config.template: "{config.arch}" does not give a stride-{STRIDE} '
                        f"feature map for detection (stride {backbone.stride})",
                        field="model_config.template")

    x = backbone.features
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    k = len(names)
    heads = []
    for name, filters, activation in (("output_cov", k, "sigmoid"),
                                      ("output_bbox", 4 * k, "linear")):
        # The heads compute in float32 whatever the global dtype policy: under mixed precision
        # (training_precision FLOAT16) a float16 sigmoid saturates and the losses lose precision.
        y = keras.layers.Conv2D(filters, 1, padding="same", data_format=DATA_FORMAT,
                                activation=activation, kernel_regularizer=kernel_regularizer,
                                bias_regularizer=bias_regularizer, name=f"{name}_conv",
                                dtype="float32")(x)
        heads.append(keras.layers.Permute((3, 1, 2), name=name, dtype="float32")(y))
    return keras.Model(backbone.inputs, heads, name=f"{backbone.name}_detectnet_v2")
