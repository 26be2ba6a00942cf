"""The configurable 3D UNet: :class:`UNetConfig` (checkpoint-storable options) and :class:`UNet`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tumorscope.core.data.labels import REGIONS
from tumorscope.core.errors import ConfigError, check_choice
from tumorscope.core.models.blocks import (
    ACTIVATIONS,
    NORMS,
    UPSAMPLINGS,
    ActKind,
    BottleneckAttention,
    DoubleConv,
    NormKind,
    ResidualBlock,
    Upsample,
    UpsampleKind,
)


def doubling_features(base: int, *, depth: int, cap: int | None = None) -> tuple[int, ...]:
    """Feature counts that double at each of ``depth`` levels, optionally capped at ``cap``.

    >>> doubling_features(64, depth=5)
    (64, 128, 256, 512, 1024)
    >>> doubling_features(32, depth=6, cap=320)
    (32, 64, 128, 256, 320, 320)
    """
    if base < 1 or depth < 1:
        raise ConfigError(f"base and depth must be positive, got base={base}, depth={depth}")
    out = tuple(base * 2**i for i in range(depth))
    return out if cap is None else tuple(min(f, cap) for f in out)


@dataclass(frozen=True, kw_only=True)
class UNetConfig:
    """Every architecture option of :class:`UNet`; stored in checkpoints via :meth:`to_dict`.

    Attributes:
        in_channels: input modalities (BraTS: T1, T1ce, T2, FLAIR -> 4).
        out_channels: output logit channels (the regions WT, TC, ET -> 3).
        features: feature maps per resolution level, finest first; its length is the
            ``depth``. Level ``i`` works at ``1 / 2**i`` of the input size; the last level
            is the bottleneck.
        norm: ``"instance"`` (nnU-Net), ``"group"`` (``num_groups`` groups) or ``"batch"``.
        act: ``"leakyrelu"`` (slope 0.01), ``"relu"`` or ``"gelu"``.
        dropout: probability in [0, 1) of channel dropout after the first conv of every
            stage (and of dropout inside the attention layer).
        upsample: ``"transpose"`` (learned 2x2x2 stride-2) or ``"trilinear"`` (1x1x1 conv +
            interpolation).
        residual: use :class:`ResidualBlock` stages instead of plain double convolutions.
            They take ``norm`` and ``act`` from this config; the classic residual recipe is
            ``residual=True, norm="group", act="gelu"``.
        attention: add a :class:`BottleneckAttention` layer (multi-head self-attention over
            the bottleneck voxels) after the last encoder stage.
        attention_heads: heads of that layer; must divide ``features[-1]``.
        num_groups: groups of GroupNorm; must divide every feature count when ``norm="group"``.
        deep_supervision: add 1x1x1 logit heads at lower decoder levels; in training mode
            ``forward`` then returns ``[full-res, 1/2, 1/4, ...]``.
        deep_supervision_heads: how many lower heads (levels 1 .. this number); ``None``
            means every decoder level above the bottleneck (``depth - 2`` heads).

    >>> cfg = UNetConfig(features=(8, 16, 32))
    >>> cfg.depth, cfg.size_divisor
    (3, 4)
    >>> UNetConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> UNetConfig(act="tanh")
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: act must be one of ['leakyrelu', 'relu', 'gelu'], got 'tanh'
    """

    in_channels: int = 4
    out_channels: int = len(REGIONS)
    features: tuple[int, ...] = (32, 64, 128, 256, 320)
    norm: NormKind = "instance"
    act: ActKind = "leakyrelu"
    dropout: float = 0.0
    upsample: UpsampleKind = "transpose"
    residual: bool = False
    attention: bool = False
    attention_heads: int = 4
    num_groups: int = 8
    deep_supervision: bool = False
    deep_supervision_heads: int | None = None

    def __post_init__(self) -> None:
        # Every message below starts with the option's name: from_dict(key="model") turns
        # it into the config key (model.features) by prefixing.
        if isinstance(self.features, (str, bytes)) or not isinstance(self.features, (tuple, list)):
            raise ConfigError(f"features must be a sequence of ints, got {self.features!r}")
        object.__setattr__(self, "features", tuple(self.features))
        for name in ("in_channels", "out_channels", "attention_heads", "num_groups"):
            _check_positive_int(name, getattr(self, name))
        if len(self.features) < 2:
            raise ConfigError(
                f"features must name at least 2 levels (one down-sampling), got {self.features}"
            )
        for f in self.features:
            _check_positive_int("features", f, whole=self.features)
        check_choice("norm", self.norm, NORMS)
        check_choice("act", self.act, ACTIVATIONS)
        check_choice("upsample", self.upsample, UPSAMPLINGS)
        for name in ("residual", "attention", "deep_supervision"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ConfigError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:  # NaN fails too
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm == "group":
            bad = [f for f in self.features if f % self.num_groups]
            if bad:
                raise ConfigError(
                    f"num_groups={self.num_groups} must divide every feature count for "
                    f"norm='group', got features {bad} in {self.features}"
                )
        if self.attention and self.features[-1] % self.attention_heads:
            raise ConfigError(
                f"attention_heads must divide the bottleneck width {self.features[-1]}, "
                f"got {self.attention_heads}"
            )
        if self.deep_supervision_heads is not None:
            _check_positive_int("deep_supervision_heads", self.deep_supervision_heads)
            if self.deep_supervision_heads > self.depth - 2:
                raise ConfigError(
                    f"deep_supervision_heads must be at most depth - 2 = {self.depth - 2} "
                    f"for features {self.features}, got {self.deep_supervision_heads}"
                )
        if self.deep_supervision and self.depth < 3:
            raise ConfigError(
                f"deep_supervision needs at least 3 levels (a decoder level between the "
                f"bottleneck and full resolution), got features {self.features}"
            )

    @property
    def depth(self) -> int:
        """Number of resolution levels (``len(features)``), bottleneck included."""
        return len(self.features)

    @property
    def size_divisor(self) -> int:
        """Every spatial input size must be a multiple of this (``2 ** (depth - 1)``)."""
        return 2 ** (self.depth - 1)

    @property
    def num_lower_heads(self) -> int:
        """Deep-supervision heads below full resolution (0 without deep supervision)."""
        if not self.deep_supervision:
            return 0
        if self.deep_supervision_heads is None:
            return self.depth - 2
        return self.deep_supervision_heads

    @classmethod
    def from_dict(cls, options: Mapping[str, Any], *, key: str | None = None) -> UNetConfig:
        """Build from a plain mapping (YAML, a checkpoint); unknown keys raise ConfigError.

        With ``key`` (the config section, ``"model"``) every error names the option as
        ``model.<option>``; numeric text (YAML reads ``1e-1`` as text) is a number.

        >>> UNetConfig.from_dict({"features": [8, 16, 32], "norm": "group"}).features
        (8, 16, 32)
        >>> UNetConfig.from_dict({"features": [8, 0]}, key="model")
        Traceback (most recent call last):
        ...
        tumorscope.core.errors.ConfigError: model.features must be positive integers, got 0 in (8, 0)
        """  # noqa: E501
        prefix = f"{key}." if key else ""
        if not isinstance(options, Mapping):
            raise ConfigError(f"{key or 'model config'} must be a mapping of UNet options, "
                              f"got {options!r}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in set(options) - set(allowed))
        if unknown:
            if key:
                raise ConfigError(f"unknown key(s) {[prefix + k for k in unknown]}; "
                                  f"{key} takes {allowed}")
            raise ConfigError(f"unknown UNet option(s) {unknown}; allowed: {allowed}")
        options = dict(options)
        for f in fields(cls):
            value = options.get(f.name)
            if f.type == "float" and isinstance(value, str):
                try:
                    options[f.name] = float(value)
                except ValueError:
                    pass  # refused below, by name
        try:
            return cls(**options)
        except ConfigError as exc:
            if not key:
                raise
            # Every message of __post_init__ starts with the option's name.
            raise ConfigError(prefix + exc.fault) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-serialisable dict (``features`` as a list) for checkpoints."""
        out = dataclasses.asdict(self)
        out["features"] = list(self.features)
        return out

    @classmethod
    def tiny(cls, **options: Any) -> UNetConfig:
        """Three levels (8, 16, 32): a CPU-sized net for tests and demos (~86 k parameters)."""
        return cls(**{"features": (8, 16, 32), **options})

    @classmethod
    def classic(cls, **options: Any) -> UNetConfig:
        """Five levels (64 .. 1024): the original UNet widths in 3D (~90 M parameters)."""
        return cls(**{"features": doubling_features(64, depth=5), **options})


def _check_positive_int(name: str, value: object, *, whole: object = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        if whole is not None:
            raise ConfigError(f"{name} must be positive integers, got {value!r} in {whole!r}")
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


class UNet(nn.Module):
    """3D UNet for nested-region segmentation: ``(N, 4, X, Y, Z)`` -> logits ``(N, 3, X, Y, Z)``.

    Encoder: one stage per level (double conv or residual block), 2x max-pooling between
    levels; optional self-attention at the bottleneck. Decoder: up-sample, concatenate the
    skip connection, one stage. A 1x1x1 head gives one logit per region (WT, TC, ET in
    :data:`~tumorscope.core.data.labels.REGIONS` order); sigmoid is left to the loss or to
    :func:`logits_to_regions`.

    Every spatial size must be a multiple of ``config.size_divisor``. In training mode with
    ``deep_supervision`` the forward returns a list ``[full-res, 1/2-res, 1/4-res, ...]``; in
    eval mode, always the full-resolution tensor.

    >>> net = UNet(UNetConfig.tiny())
    >>> tuple(net(torch.zeros(1, 4, 16, 16, 8)).shape)
    (1, 3, 16, 16, 8)
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = UNetConfig() if config is None else config
        feats = config.features

        def stage(cin: int, cout: int) -> nn.Module:
            block = ResidualBlock if config.residual else DoubleConv
            return block(
                cin,
                cout,
                norm=config.norm,
                act=config.act,
                dropout=config.dropout,
                num_groups=config.num_groups,
            )

        self.encoders = nn.ModuleList(
            stage(cin, cout)
            for cin, cout in zip((config.in_channels, *feats[:-1]), feats, strict=True)
        )
        self.attention = (
            BottleneckAttention(feats[-1], num_heads=config.attention_heads, dropout=config.dropout)
            if config.attention
            else None
        )
        # Decoder modules in execution order: coarsest level (depth - 2) first, level 0 last.
        levels = range(config.depth - 2, -1, -1)
        self.ups = nn.ModuleList(
            Upsample(feats[i + 1], feats[i], mode=config.upsample) for i in levels
        )
        self.decoders = nn.ModuleList(stage(2 * feats[i], feats[i]) for i in levels)
        self.head = nn.Conv3d(feats[0], config.out_channels, kernel_size=1)
        # lower_heads[i - 1] reads decoder level i (1 / 2**i resolution).
        self.lower_heads = nn.ModuleList(
            nn.Conv3d(feats[i], config.out_channels, kernel_size=1)
            for i in range(1, config.num_lower_heads + 1)
        )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ConfigError` unless ``x`` is ``(N, in_channels, X, Y, Z)`` with
        every spatial size a multiple of ``config.size_divisor`` (and, for instance norm,
        more than one voxel left at the bottleneck)."""
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ConfigError(
                f"UNet input must be (N, {cfg.in_channels}, X, Y, Z), got shape {tuple(x.shape)}"
            )
        bad = [s for s in x.shape[2:] if s % cfg.size_divisor]
        if bad:
            raise ConfigError(
                f"UNet input spatial size {tuple(x.shape[2:])} must be a multiple of "
                f"{cfg.size_divisor} (2 ** (depth - 1), depth={cfg.depth}) along every axis; "
                f"{bad} is not"
            )
        bottleneck_voxels = math.prod(s // cfg.size_divisor for s in x.shape[2:])
        if cfg.norm == "instance" and bottleneck_voxels < 2:
            raise ConfigError(
                f"UNet input spatial size {tuple(x.shape[2:])} leaves a single bottleneck "
                f"voxel, which instance norm cannot normalise; make one axis at least "
                f"{2 * cfg.size_divisor}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.check_input(x)
        skips: list[torch.Tensor] = []
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                x = F.max_pool3d(x, kernel_size=2, stride=2)
            x = encoder(x)
            skips.append(x)
        if self.attention is not None:
            x = self.attention(x)

        supervise = self.training and self.config.deep_supervision
        lower: list[torch.Tensor] = []
        for level, up, decoder in zip(
            range(self.config.depth - 2, -1, -1), self.ups, self.decoders, strict=True
        ):
            x = decoder(torch.cat([up(x), skips[level]], dim=1))
            if supervise and 1 <= level <= len(self.lower_heads):
                lower.append(self.lower_heads[level - 1](x))
        out = self.head(x)
        if supervise:
            return [out, *reversed(lower)]
        return out


def build_model(config: UNetConfig | Mapping[str, Any] | None = None) -> UNet:
    """Build a :class:`UNet` from a config or its :meth:`UNetConfig.to_dict` form.

    >>> net = build_model({"features": [8, 16, 32]})
    >>> net.config.depth
    3
    """
    if config is None or isinstance(config, UNetConfig):
        return UNet(config)
    if not isinstance(config, Mapping):
        raise ConfigError(f"model config must be a UNetConfig or a mapping, got {type(config)}")
    return UNet(UNetConfig.from_dict(config))


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model`` (only those with ``requires_grad`` if asked).

    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def logits_to_regions(logits: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """Region logits ``(N, 3, X, Y, Z)`` -> boolean masks of the same shape (sigmoid > threshold).

    Channels stay independent: nesting (ET in TC in WT) is imposed later, when regions become
    labels (:func:`tumorscope.core.data.labels.regions_to_labels`).

    >>> logits_to_regions(torch.tensor([-1.0, 0.0, 2.0])).tolist()
    [False, False, True]
    """
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must be in (0, 1), got {threshold}")
    return torch.sigmoid(logits) > threshold
