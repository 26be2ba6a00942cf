"""Small 2-D / 3-D blocks of the UNet family: convs, residual, up-sampling, attention, heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from tumorscope.core.errors import ConfigError, check_choice

NormKind = Literal["instance", "group", "batch"]
ActKind = Literal["leakyrelu", "relu", "gelu"]
UpsampleKind = Literal["transpose", "trilinear"]
SpatialDims = Literal[2, 3]

NORMS: tuple[str, ...] = get_args(NormKind)
ACTIVATIONS: tuple[str, ...] = get_args(ActKind)
UPSAMPLINGS: tuple[str, ...] = get_args(UpsampleKind)
SPATIAL_DIMS: tuple[int, ...] = get_args(SpatialDims)

LEAKY_RELU_SLOPE = 0.01
"""Negative slope of ``"leakyrelu"`` (nnU-Net's value)."""


@dataclass(frozen=True)
class Layers:
    """The layer types of one dimensionality: what a block builds in 2-D or in 3-D.

    >>> Layers.of(2).conv.__name__, Layers.of(3).interpolation
    ('Conv2d', 'trilinear')
    """

    conv: type[nn.Module]
    conv_transpose: type[nn.Module]
    instance_norm: type[nn.Module]
    batch_norm: type[nn.Module]
    dropout: type[nn.Module]
    interpolation: str

    @staticmethod
    def of(spatial_dims: SpatialDims) -> Layers:
        """The layers of ``spatial_dims`` (2 or 3); anything else raises ConfigError."""
        if type(spatial_dims) is not int or spatial_dims not in SPATIAL_DIMS:
            raise ConfigError(f"spatial_dims must be one of {list(SPATIAL_DIMS)}, "
                              f"got {spatial_dims!r}")
        if spatial_dims == 2:
            return Layers(nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.BatchNorm2d,
                          nn.Dropout2d, "bilinear")
        return Layers(nn.Conv3d, nn.ConvTranspose3d, nn.InstanceNorm3d, nn.BatchNorm3d,
                      nn.Dropout3d, "trilinear")


def max_pool(x: torch.Tensor) -> torch.Tensor:
    """Halve every spatial axis of ``(N, C, *spatial)`` (2 or 3 axes) by 2x max-pooling."""
    if x.ndim == 4:
        return F.max_pool2d(x, kernel_size=2, stride=2)
    return F.max_pool3d(x, kernel_size=2, stride=2)


def make_norm(
    kind: NormKind, channels: int, *, num_groups: int = 8, spatial_dims: SpatialDims = 3
) -> nn.Module:
    """Normalisation layer over ``channels`` feature maps of a ``(N, C, *spatial)`` tensor.

    ``"instance"`` and ``"batch"`` have learnable affine parameters; ``"group"`` splits the
    channels into ``num_groups`` groups, which must divide ``channels``.

    >>> norm = make_norm("group", 16, num_groups=4)
    >>> type(norm).__name__, norm.num_groups
    ('GroupNorm', 4)
    >>> type(make_norm("instance", 8, spatial_dims=2)).__name__
    'InstanceNorm2d'
    """
    check_choice("norm", kind, NORMS)
    layers = Layers.of(spatial_dims)
    if kind == "instance":
        return layers.instance_norm(channels, affine=True)
    if kind == "batch":
        return layers.batch_norm(channels)
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
    """3x3(x3) convolution (no bias, the norm follows), normalisation, activation, dropout.

    Spatial size is kept (padding 1). Shapes: ``(N, in_channels, *spatial)`` ->
    ``(N, out_channels, *spatial)`` with 3 spatial axes, or 2 with ``spatial_dims=2``.

    >>> block = ConvNormAct(4, 8, norm="instance", act="relu")
    >>> tuple(block(torch.zeros(1, 4, 6, 6, 6)).shape)
    (1, 8, 6, 6, 6)
    >>> tuple(ConvNormAct(4, 8, spatial_dims=2)(torch.zeros(1, 4, 6, 6)).shape)
    (1, 8, 6, 6)
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
        spatial_dims: SpatialDims = 3,
    ) -> None:
        nd = Layers.of(spatial_dims)
        layers: list[nn.Module] = [
            nd.conv(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            make_norm(norm, out_channels, num_groups=num_groups, spatial_dims=spatial_dims),
            make_act(act),
        ]
        if dropout > 0:
            layers.append(nd.dropout(dropout))
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
        spatial_dims: SpatialDims = 3,
    ) -> None:
        kwargs = {"norm": norm, "act": act, "num_groups": num_groups,
                  "spatial_dims": spatial_dims}
        super().__init__(
            ConvNormAct(in_channels, out_channels, dropout=dropout, **kwargs),
            ConvNormAct(out_channels, out_channels, **kwargs),
        )


class ResidualBlock(nn.Module):
    """Two 3x3(x3) convolutions with a residual connection (ResNet "basic block").

    ``y = act(norm(conv(act(norm(conv(x))))) + skip(x))`` where ``skip`` is the identity when
    the channel counts agree and a 1x1(x1) convolution plus norm otherwise. The defaults are
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
        spatial_dims: SpatialDims = 3,
    ) -> None:
        super().__init__()
        nd = Layers.of(spatial_dims)
        norm_options = {"num_groups": num_groups, "spatial_dims": spatial_dims}
        self.conv1 = nd.conv(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm1 = make_norm(norm, out_channels, **norm_options)
        self.act1 = make_act(act)
        self.dropout = nd.dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nd.conv(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels, **norm_options)
        self.act2 = make_act(act)
        if in_channels == out_channels:
            self.skip: nn.Module = nn.Identity()
        else:
            self.skip = nn.Sequential(
                nd.conv(in_channels, out_channels, kernel_size=1, bias=False),
                make_norm(norm, out_channels, **norm_options),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.act1(self.norm1(self.conv1(x))))
        y = self.norm2(self.conv2(y))
        return self.act2(y + self.skip(x))


class Upsample(nn.Module):
    """Double the spatial size and map ``in_channels`` to ``out_channels``.

    ``"transpose"``: a learned 2x2(x2) transposed convolution with stride 2.
    ``"trilinear"``: a 1x1(x1) convolution, then linear interpolation (no learned kernel):
    trilinear in 3-D, bilinear with ``spatial_dims=2``.

    >>> up = Upsample(16, 8, mode="trilinear")
    >>> tuple(up(torch.zeros(1, 16, 3, 4, 5)).shape)
    (1, 8, 6, 8, 10)
    >>> tuple(Upsample(16, 8, spatial_dims=2)(torch.zeros(1, 16, 3, 4)).shape)
    (1, 8, 6, 8)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        mode: UpsampleKind = "transpose",
        spatial_dims: SpatialDims = 3,
    ) -> None:
        super().__init__()
        check_choice("upsample", mode, UPSAMPLINGS)
        nd = Layers.of(spatial_dims)
        self.mode = mode
        self.interpolation = nd.interpolation
        if mode == "transpose":
            self.conv: nn.Module = nd.conv_transpose(
                in_channels, out_channels, kernel_size=2, stride=2
            )
        else:
            self.conv = nd.conv(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.mode == "trilinear":
            x = F.interpolate(x, scale_factor=2.0, mode=self.interpolation, align_corners=False)
        return x


class BottleneckAttention(nn.Module):
    """Transformer layer over the bottleneck voxels: every voxel is one token.

    ``x = x + MHSA(LayerNorm(x))`` then ``x = x + FFN(LayerNorm(x))`` with a GELU
    feed-forward of width ``mlp_ratio * channels``. No positional encoding is added: the
    convolutions before it (with their zero padding) already make the features position-aware.
    Cost grows with the square of the token count, so keep it at the coarsest level.

    Shapes: ``(N, C, *spatial)`` -> the same (2 or 3 spatial axes); ``channels`` must be a
    multiple of ``num_heads``.

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


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Attention U-Net, Oktay et al. 2018).

    The skip ``x`` (fine grid) is weighted by ``alpha`` in (0, 1) per voxel, computed from
    ``x`` and the decoder's gating signal ``g`` (the coarser features, half the size)::

        alpha = sigmoid(psi(relu(W_x(x) + W_g(g))))   on the coarse grid,

    with ``W_x`` a 2x2(x2) stride-2 convolution (to ``g``'s grid), ``W_g`` and ``psi``
    1x1(x1) convolutions; ``alpha`` is interpolated back to the skip's size. No norm inside,
    as in the paper's gate, so it works with every ``norm`` and any channel count.

    Shapes: ``x (N, skip_channels, *S)``, ``g (N, gate_channels, *S / 2)`` ->
    ``(N, skip_channels, *S)``.

    >>> gate = AttentionGate(8, 16, spatial_dims=2)
    >>> tuple(gate(torch.zeros(1, 8, 8, 6), torch.zeros(1, 16, 4, 3)).shape)
    (1, 8, 8, 6)
    """

    def __init__(
        self,
        skip_channels: int,
        gate_channels: int,
        *,
        inter_channels: int | None = None,
        spatial_dims: SpatialDims = 3,
    ) -> None:
        super().__init__()
        nd = Layers.of(spatial_dims)
        inter = inter_channels or max(1, skip_channels // 2)
        self.interpolation = nd.interpolation
        self.skip_proj = nd.conv(skip_channels, inter, kernel_size=2, stride=2, bias=False)
        self.gate_proj = nd.conv(gate_channels, inter, kernel_size=1)
        self.psi = nd.conv(inter, 1, kernel_size=1)

    def attention(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The weights ``alpha`` ``(N, 1, *S)`` the skip ``x`` is multiplied by."""
        alpha = torch.sigmoid(self.psi(F.relu(self.skip_proj(x) + self.gate_proj(g))))
        return F.interpolate(alpha, size=x.shape[2:], mode=self.interpolation,
                             align_corners=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x, g)


class ClassificationHead(nn.Module):
    """Global average pooling of feature maps, then a small MLP: one logit per class.

    ``Linear(in, hidden) -> act -> Dropout -> Linear(hidden, classes)``; ``hidden`` defaults
    to ``in_channels``. Shapes: ``(N, in_channels, *spatial)`` -> ``(N, classes)``.

    >>> head = ClassificationHead(16, 3, hidden=8, dropout=0.2)
    >>> tuple(head(torch.zeros(2, 16, 4, 4)).shape)
    (2, 3)
    """

    def __init__(
        self,
        in_channels: int,
        classes: int,
        *,
        hidden: int | None = None,
        dropout: float = 0.0,
        act: ActKind = "leakyrelu",
    ) -> None:
        super().__init__()
        hidden = hidden or in_channels
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden),
            make_act(act),
            nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.flatten(2).mean(-1))
