"""Small 3D building blocks of the UNet family: conv-norm-act, residual, up-sampling, attention."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from tumorscope.core.errors import ConfigError, check_choice

NormKind = Literal["instance", "group", "batch"]
ActKind = Literal["leakyrelu", "relu", "gelu"]
UpsampleKind = Literal["transpose", "trilinear"]

NORMS: tuple[str, ...] = get_args(NormKind)
ACTIVATIONS: tuple[str, ...] = get_args(ActKind)
UPSAMPLINGS: tuple[str, ...] = get_args(UpsampleKind)

LEAKY_RELU_SLOPE = 0.01
"""Negative slope of ``"leakyrelu"`` (nnU-Net's value)."""


def make_norm(kind: NormKind, channels: int, *, num_groups: int = 8) -> nn.Module:
    """Normalisation layer over ``channels`` feature maps of a ``(N, C, X, Y, Z)`` tensor.

    ``"instance"`` and ``"batch"`` have learnable affine parameters; ``"group"`` splits the
    channels into ``num_groups`` groups, which must divide ``channels``.

    >>> norm = make_norm("group", 16, num_groups=4)
    >>> type(norm).__name__, norm.num_groups
    ('GroupNorm', 4)
    """
    check_choice("norm", kind, NORMS)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if num_groups < 1 or channels % num_groups:
        raise ConfigError(
            f"num_groups must be a positive divisor of every feature count, "
            f"got num_groups={num_groups} for {channels} channels"
        )
    return nn.GroupNorm(num_groups, channels)


def make_act(kind: ActKind) -> nn.Module:
    """Activation layer by name.

    >>> make_act("leakyrelu").negative_slope
    0.01
    """
    check_choice("act", kind, ACTIVATIONS)
    if kind == "leakyrelu":
        return nn.LeakyReLU(LEAKY_RELU_SLOPE)
    if kind == "relu":
        return nn.ReLU()
    return nn.GELU()


class ConvNormAct(nn.Sequential):
    """3x3x3 convolution (no bias, the norm follows), normalisation, activation, dropout.

    Spatial size is kept (padding 1). Shapes: ``(N, in_channels, X, Y, Z)`` ->
    ``(N, out_channels, X, Y, Z)``.

    >>> block = ConvNormAct(4, 8, norm="instance", act="relu")
    >>> tuple(block(torch.zeros(1, 4, 6, 6, 6)).shape)
    (1, 8, 6, 6, 6)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm: NormKind = "instance",
        act: ActKind = "leakyrelu",
        dropout: float = 0.0,
        num_groups: int = 8,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            make_norm(norm, out_channels, num_groups=num_groups),
            make_act(act),
        ]
        if dropout > 0:
            layers.append(nn.Dropout3d(dropout))
        super().__init__(*layers)


class DoubleConv(nn.Sequential):
    """Two :class:`ConvNormAct` in a row: the plain UNet stage (Ronneberger / nnU-Net).

    Dropout, when asked for, follows the first convolution only.

    >>> block = DoubleConv(4, 8, norm="group", act="gelu", num_groups=4)
    >>> tuple(block(torch.zeros(1, 4, 6, 6, 6)).shape)
    (1, 8, 6, 6, 6)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm: NormKind = "instance",
        act: ActKind = "leakyrelu",
        dropout: float = 0.0,
        num_groups: int = 8,
    ) -> None:
        kwargs = {"norm": norm, "act": act, "num_groups": num_groups}
        super().__init__(
            ConvNormAct(in_channels, out_channels, dropout=dropout, **kwargs),
            ConvNormAct(out_channels, out_channels, **kwargs),
        )


class ResidualBlock(nn.Module):
    """Two 3x3x3 convolutions with a residual connection (ResNet "basic block").

    ``y = act(norm(conv(act(norm(conv(x))))) + skip(x))`` where ``skip`` is the identity when
    the channel counts agree and a 1x1x1 convolution plus norm otherwise. The defaults are
    GroupNorm and GELU; the UNet passes its own ``norm`` and ``act``.

    >>> block = ResidualBlock(4, 8, num_groups=4)
    >>> tuple(block(torch.zeros(2, 4, 6, 6, 6)).shape)
    (2, 8, 6, 6, 6)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm: NormKind = "group",
        act: ActKind = "gelu",
        dropout: float = 0.0,
        num_groups: int = 8,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm1 = make_norm(norm, out_channels, num_groups=num_groups)
        self.act1 = make_act(act)
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels, num_groups=num_groups)
        self.act2 = make_act(act)
        if in_channels == out_channels:
            self.skip: nn.Module = nn.Identity()
        else:
            self.skip = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, kernel_size=1, bias=False),
                make_norm(norm, out_channels, num_groups=num_groups),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.act1(self.norm1(self.conv1(x))))
        y = self.norm2(self.conv2(y))
        return self.act2(y + self.skip(x))


class Upsample(nn.Module):
    """Double the spatial size and map ``in_channels`` to ``out_channels``.

    ``"transpose"``: a learned 2x2x2 transposed convolution with stride 2.
    ``"trilinear"``: a 1x1x1 convolution, then trilinear interpolation (no learned kernel).

    >>> up = Upsample(16, 8, mode="trilinear")
    >>> tuple(up(torch.zeros(1, 16, 3, 4, 5)).shape)
    (1, 8, 6, 8, 10)
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, mode: UpsampleKind = "transpose"
    ) -> None:
        super().__init__()
        check_choice("upsample", mode, UPSAMPLINGS)
        self.mode = mode
        if mode == "transpose":
            self.conv: nn.Module = nn.ConvTranspose3d(
                in_channels, out_channels, kernel_size=2, stride=2
            )
        else:
            self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.mode == "trilinear":
            x = F.interpolate(x, scale_factor=2.0, mode="trilinear", align_corners=False)
        return x


class BottleneckAttention(nn.Module):
    """Transformer layer over the bottleneck voxels: every voxel is one token.

    ``x = x + MHSA(LayerNorm(x))`` then ``x = x + FFN(LayerNorm(x))`` with a GELU
    feed-forward of width ``mlp_ratio * channels``. No positional encoding is added: the
    convolutions before it (with their zero padding) already make the features position-aware.
    Cost grows with the square of the token count, so keep it at the coarsest level.

    Shapes: ``(N, C, X, Y, Z)`` -> ``(N, C, X, Y, Z)``; ``channels`` must be a multiple of
    ``num_heads``.

    >>> attn = BottleneckAttention(16, num_heads=4)
    >>> tuple(attn(torch.zeros(2, 16, 2, 3, 4)).shape)
    (2, 16, 2, 3, 4)
    """

    def __init__(
        self, channels: int, *, num_heads: int = 4, mlp_ratio: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ConfigError(
                f"attention_heads must be a positive divisor of the bottleneck width "
                f"{channels}, got {num_heads}"
            )
        self.norm1 = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(channels)
        self.ffn = nn.Sequential(
            nn.Linear(channels, mlp_ratio * channels),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_ratio * channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, *spatial = x.shape
        # (N, C, X, Y, Z) -> (N, L, C); reshape/transpose copy when needed, so any memory
        # format (channels_last_3d included) is fine.
        tokens = x.flatten(2).transpose(1, 2)
        h = self.norm1(tokens)
        tokens = tokens + self.attn(h, h, h, need_weights=False)[0]
        tokens = tokens + self.ffn(self.norm2(tokens))
        return tokens.transpose(1, 2).reshape(n, c, *spatial)
