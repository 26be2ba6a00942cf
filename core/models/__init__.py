"""The 3D UNet family (config, blocks, builder); the only place models are defined."""

from tumorscope.core.models.blocks import (
    BottleneckAttention,
    ConvNormAct,
    DoubleConv,
    ResidualBlock,
    Upsample,
    make_act,
    make_norm,
)
from tumorscope.core.models.unet import (
    UNet,
    UNetConfig,
    build_model,
    count_parameters,
    doubling_features,
    logits_to_regions,
)

__all__ = [
    "BottleneckAttention",
    "ConvNormAct",
    "DoubleConv",
    "ResidualBlock",
    "UNet",
    "UNetConfig",
    "Upsample",
    "build_model",
    "count_parameters",
    "doubling_features",
    "logits_to_regions",
    "make_act",
    "make_norm",
]
