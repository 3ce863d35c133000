"""Read and validate a backbone's `model_config`.

The model config is read by attribute (a `ClassificationModelConfig` proto message, or any object
with the same fields), so the builders work before and after the spec loader exists. Every problem
raises `tlt.errors.SpecError` naming the field (`model_config.n_layers`) and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlt.errors import SpecError

__all__ = [
    "SUPPORTED_ARCHS",
    "DEPTHS",
    "FREEZE_BLOCKS",
    "MIN_INPUT_SIZE",
    "BackboneSpec",
    "parse_model_config",
]

SUPPORTED_ARCHS = ("resnet", "vgg", "alexnet", "googlenet", "mobilenet_v1", "mobilenet_v2")

# Depths of the scalable families; the others have one fixed depth and ignore n_layers.
DEPTHS = {"resnet": (10, 18, 34, 50, 101), "vgg": (16, 19)}

# Block indices each family accepts in freeze_blocks, numbered as TLT numbers them (0 is the stem).
FREEZE_BLOCKS = {
    "resnet": range(0, 5),
    "vgg": range(1, 6),
    "alexnet": range(1, 6),
    "googlenet": range(0, 10),
    "mobilenet_v1": range(0, 14),
    "mobilenet_v2": range(0, 19),
}

# Smallest input height/width: below it the stride-16/32 trunks collapse to nothing useful.
MIN_INPUT_SIZE = 16

# TLT's defaults for fields an object does not have at all (a proto message always has them all).
_DEFAULTS = {
    "arch": "resnet",
    "n_layers": 18,
    "input_image_size": "3,224,224",
    "use_bias": True,
    "use_batch_norm": True,
    "all_projections": True,
    "use_pooling": False,
    "freeze_blocks": (),
    "freeze_bn": False,
    "dropout": 0.0,
}


@dataclass(frozen=True)
class BackboneSpec:
    """A validated model config, in plain Python types.

    Attributes:
        arch: family name, one of `SUPPORTED_ARCHS`.
        n_layers: depth for resnet/vgg; 0 for the fixed-depth families.
        channels: input channels C (1 or 3).
        height: input height H.
        width: input width W.
        use_bias: convolutions carry a bias term.
        use_batch_norm: batch normalisation after convolutions.
        all_projections: 1x1 projection shortcut in every residual block.
        use_pooling: down-sample with max pooling instead of strided convolutions.
        freeze_blocks: indices of blocks whose convolution weights are frozen.
        freeze_bn: batch-norm layers are frozen (not trained, inference statistics).
        dropout: dropout rate before the classifier layer.
    """

    arch: str
    n_layers: int
    channels: int
    height: int
    width: int
    use_bias: bool
    use_batch_norm: bool
    all_projections: bool
    use_pooling: bool
    freeze_blocks: frozenset[int]
    freeze_bn: bool
    dropout: float

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The channels-first input shape (C, H, W), as TLT writes it."""
        return (self.channels, self.height, self.width)


def _field(config, name):
    return getattr(config, name, _DEFAULTS[name])


def _parse_size(text) -> tuple[int, int, int]:
    field = "model_config.input_image_size"
    parts = [p.strip() for p in str(text).split(",")]
    try:
        c, h, w = (int(p) for p in parts)
    except ValueError:
        raise SpecError(f'{field}: expected "C,H,W" (for example "3,224,224"), got "{text}"',
                        field=field) from None
    if c not in (1, 3):
        raise SpecError(f"{field}: channels must be 1 or 3, got {c} in \"{text}\"", field=field)
    if h < MIN_INPUT_SIZE or w < MIN_INPUT_SIZE:
        raise SpecError(f"{field}: height and width must be >= {MIN_INPUT_SIZE}, got {h}x{w} "
                        f"in \"{text}\"", field=field)
    return c, h, w


def parse_model_config(model_config) -> BackboneSpec:
    """Validate a model config and return it as a `BackboneSpec`.

    Args:
        model_config: object with the `ClassificationModelConfig` fields (arch, n_layers,
            input_image_size, use_bias, use_batch_norm, all_projections, use_pooling,
            freeze_blocks, freeze_bn, dropout). Missing attributes take TLT's defaults.

    Returns:
        The validated spec.

    Raises:
        SpecError: unknown arch, unsupported depth, malformed or too small input size,
            freeze block out of range, or dropout outside [0, 1).
    """
    arch = str(_field(model_config, "arch")).strip().lower()
    if arch not in SUPPORTED_ARCHS:
        raise SpecError(f"model_config.arch: expected one of {', '.join(SUPPORTED_ARCHS)}; "
                        f'got "{arch}"', field="model_config.arch")
    n_layers = 0
    if arch in DEPTHS:
        n_layers = int(_field(model_config, "n_layers"))
        if n_layers not in DEPTHS[arch]:
            valid = ", ".join(str(d) for d in DEPTHS[arch])
            raise SpecError(f"model_config.n_layers: {arch} supports {valid}; got {n_layers}",
                            field="model_config.n_layers")
    channels, height, width = _parse_size(_field(model_config, "input_image_size"))

    allowed = FREEZE_BLOCKS[arch]
    freeze_blocks = frozenset(int(b) for b in _field(model_config, "freeze_blocks"))
    bad = sorted(b for b in freeze_blocks if b not in allowed)
    if bad:
        raise SpecError(f"model_config.freeze_blocks: {arch} has blocks {allowed.start}-"
                        f"{allowed.stop - 1}; got {', '.join(str(b) for b in bad)}",
                        field="model_config.freeze_blocks")

    dropout = float(_field(model_config, "dropout"))
    if not 0.0 <= dropout < 1.0:
        raise SpecError(f"model_config.dropout must be in [0, 1), got {dropout:g}",
                        field="model_config.dropout")

    return BackboneSpec(
        arch=arch,
        n_layers=n_layers,
        channels=channels,
        height=height,
        width=width,
        use_bias=bool(_field(model_config, "use_bias")),
        use_batch_norm=bool(_field(model_config, "use_batch_norm")),
        all_projections=bool(_field(model_config, "all_projections")),
        use_pooling=bool(_field(model_config, "use_pooling")),
        freeze_blocks=freeze_blocks,
        freeze_bn=bool(_field(model_config, "freeze_bn")),
        dropout=dropout,
    )
