"""The UNet family in 2-D and 3-D (UNet, UNet++, attention gates, class head) and its builder."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

import torch
from torch import nn

from tumorscope.core.data.labels import REGIONS
from tumorscope.core.errors import ConfigError, check_choice
from tumorscope.core.models.blocks import (
    ACTIVATIONS,
    NORMS,
    SPATIAL_DIMS,
    UPSAMPLINGS,
    ActKind,
    AttentionGate,
    BottleneckAttention,
    ClassificationHead,
    DoubleConv,
    Layers,
    NormKind,
    ResidualBlock,
    SpatialDims,
    Upsample,
    UpsampleKind,
    max_pool,
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


ArchitectureKind = Literal["unet", "unetpp"]
ARCHITECTURES: tuple[str, ...] = get_args(ArchitectureKind)
EncoderKind = Literal["own", "efficientnet-b0"]
ENCODERS: tuple[str, ...] = get_args(EncoderKind)
OWN_ENCODER = "own"
"""``encoder`` value of the project's own blocks; every other one is a
segmentation-models-pytorch encoder (:mod:`tumorscope.core.models.smp_models`)."""
SMP_ENCODER_DEPTH = 5
"""Down-sampling steps of the segmentation-models-pytorch encoders (its ``encoder_depth``)."""

OWN_ONLY_OPTIONS: tuple[str, ...] = (
    "features", "norm", "act", "dropout", "upsample", "residual", "attention",
    "attention_heads", "num_groups", "deep_supervision", "deep_supervision_heads",
    "attention_gates", "prune_level", "class_hidden",
)
"""Options of the project's own blocks; an smp encoder brings its own layers and refuses
them (other than at their defaults)."""

Segmentation = torch.Tensor | list[torch.Tensor]
"""A segmentation output: one logit tensor, or the list of deep supervision (training)."""
ModelOutput = Segmentation | tuple[Segmentation, torch.Tensor]
"""What a model of :func:`build_model` returns: see :class:`UNet`."""


@dataclass(frozen=True, kw_only=True)
class UNetConfig:
    """Every architecture option of the model family; stored in checkpoints via :meth:`to_dict`.

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
            interpolation; bilinear in 2-D).
        residual: use :class:`ResidualBlock` stages instead of plain double convolutions.
            They take ``norm`` and ``act`` from this config; the classic residual recipe is
            ``residual=True, norm="group", act="gelu"``.
        attention: add a :class:`BottleneckAttention` layer (multi-head self-attention over
            the bottleneck voxels) after the last encoder stage.
        attention_heads: heads of that layer; must divide ``features[-1]``.
        num_groups: groups of GroupNorm; must divide every feature count when ``norm="group"``.
        deep_supervision: ``"unet"``: add 1x1x1 logit heads at lower decoder levels; in
            training mode ``forward`` then returns ``[full-res, 1/2, 1/4, ...]``.
            ``"unetpp"``: supervise every top-row node; training returns the full-resolution
            outputs ``[X0,depth-1, ..., X0,1]`` (deepest first).
        deep_supervision_heads: ``"unet"`` only: how many lower heads (levels 1 .. this
            number); ``None`` means every decoder level above the bottleneck (``depth - 2``).
        spatial_dims: 3 (volumes ``(N, C, X, Y, Z)``) or 2 (slices ``(N, C, H, W)``): the
            same network with 2-D layers (MONAI's ``spatial_dims``).
        architecture: ``"unet"`` or ``"unetpp"`` (UNet++, Zhou et al. 2018: nested dense
            skip pathways ``X[i, j] = stage([X[i, 0..j-1], up(X[i+1, j-1])])``).
        attention_gates: gate every skip connection with an :class:`AttentionGate` driven by
            the decoder's coarser features (Attention U-Net, Oktay et al. 2018); in UNet++ one
            gate per node, on the node's concatenated same-level inputs.
        prune_level: UNet++ only: which top-row node ``X[0, prune_level]`` (1 .. depth - 1)
            gives the output in eval mode; only the nodes it needs are computed (the pruned
            sub-network). ``None``: the deepest. Below ``depth - 1`` it needs
            ``deep_supervision`` (only then is that output trained).
        classes: 0 (no classification head), else the number of classes of an image-level
            head (global average pooling of the bottleneck -> MLP); see :class:`UNet` for
            the output then.
        class_hidden: hidden width of that MLP (``None``: the bottleneck width).
        class_dropout: dropout probability in [0, 1) inside that MLP (before its last layer).
        encoder: ``"own"`` (the blocks above), or a segmentation-models-pytorch encoder
            (``"efficientnet-b0"``), 2-D only, which brings its own layers: the options of
            :data:`OWN_ONLY_OPTIONS` stay at their defaults there.
        encoder_weights_path: smp encoders only: a local file holding a state dict of the
            encoder (``model.encoder.state_dict()``; no download is possible) loaded when the
            model is built. Initial weights are not part of the architecture:
            :meth:`to_dict` records ``None``, so a checkpoint never reads the file again.

    >>> cfg = UNetConfig(features=(8, 16, 32))
    >>> cfg.depth, cfg.size_divisor
    (3, 4)
    >>> UNetConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> UNetConfig(act="tanh")
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: act must be one of ['leakyrelu', 'relu', 'gelu'], got 'tanh'
    >>> UNetConfig(encoder="efficientnet-b0")
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: spatial_dims must be 2 for encoder 'efficientnet-b0' (segmentation-models-pytorch builds 2-D networks only), got 3
    """  # noqa: E501

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
    spatial_dims: SpatialDims = 3
    architecture: ArchitectureKind = "unet"
    attention_gates: bool = False
    prune_level: int | None = None
    classes: int = 0
    class_hidden: int | None = None
    class_dropout: float = 0.0
    encoder: EncoderKind = "own"
    encoder_weights_path: str | None = None

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
        for name in ("residual", "attention", "deep_supervision", "attention_gates"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _check_probability("dropout", self.dropout)
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
        if type(self.spatial_dims) is not int or self.spatial_dims not in SPATIAL_DIMS:
            raise ConfigError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_choice("encoder", self.encoder, ENCODERS)
        if self.deep_supervision_heads is not None:
            if self.architecture != "unet":
                raise ConfigError(
                    f"deep_supervision_heads applies to architecture 'unet' only (UNet++ "
                    f"supervises every top-row node), got {self.deep_supervision_heads!r}"
                )
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
        self._check_prune_level()
        self._check_classes()
        self._check_encoder()

    def _check_prune_level(self) -> None:
        level = self.prune_level
        if level is None:
            return
        if self.architecture != "unetpp":
            raise ConfigError(f"prune_level applies to architecture 'unetpp' only, got "
                              f"{level!r} with architecture {self.architecture!r}")
        _check_positive_int("prune_level", level)
        if level > self.depth - 1:
            raise ConfigError(f"prune_level must be at most depth - 1 = {self.depth - 1} for "
                              f"features {self.features}, got {level}")
        if level < self.depth - 1 and not self.deep_supervision:
            raise ConfigError(f"prune_level {level} needs deep_supervision: true (only then is "
                              f"the output of UNet++ node X[0, {level}] trained)")

    def _check_classes(self) -> None:
        if type(self.classes) is not int or self.classes < 0 or self.classes == 1:
            raise ConfigError(f"classes must be 0 (no classification head) or an integer >= 2, "
                              f"got {self.classes!r}")
        if self.class_hidden is not None:
            _check_positive_int("class_hidden", self.class_hidden)
        _check_probability("class_dropout", self.class_dropout)

    def _check_encoder(self) -> None:
        path = self.encoder_weights_path
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise ConfigError(f"encoder_weights_path must be the path of a file, or null, "
                              f"got {path!r}")
        if self.own_encoder:
            if path is not None:
                raise ConfigError(
                    f"encoder_weights_path applies to an smp encoder "
                    f"({[e for e in ENCODERS if e != OWN_ENCODER]}), not to encoder 'own', "
                    f"got {path!r}")
            return
        if self.spatial_dims != 2:
            raise ConfigError(
                f"spatial_dims must be 2 for encoder {self.encoder!r} "
                f"(segmentation-models-pytorch builds 2-D networks only), got {self.spatial_dims}"
            )
        defaults = {f.name: f.default for f in fields(self)}
        for name in OWN_ONLY_OPTIONS:
            if getattr(self, name) != defaults[name]:
                raise ConfigError(
                    f"{name} applies to encoder 'own' only ({self.encoder!r} brings its own "
                    f"layers), got {getattr(self, name)!r}"
                )

    @property
    def own_encoder(self) -> bool:
        """Whether the network is built from this project's blocks (``encoder: own``)."""
        return self.encoder == OWN_ENCODER

    @property
    def depth(self) -> int:
        """Number of resolution levels, bottleneck included (``len(features)``; an smp
        encoder has ``SMP_ENCODER_DEPTH + 1``)."""
        if not self.own_encoder:
            return SMP_ENCODER_DEPTH + 1
        return len(self.features)

    @property
    def size_divisor(self) -> int:
        """Every spatial input size must be a multiple of this (``2 ** (depth - 1)``)."""
        return 2 ** (self.depth - 1)

    @property
    def num_lower_heads(self) -> int:
        """Deep-supervision heads below full resolution (0 without deep supervision and for
        UNet++, whose supervised outputs are all at full resolution)."""
        if not self.deep_supervision or self.architecture != "unet":
            return 0
        if self.deep_supervision_heads is None:
            return self.depth - 2
        return self.deep_supervision_heads

    @property
    def num_outputs(self) -> int:
        """Segmentation outputs of the training-mode forward (1: a tensor, more: a list).

        >>> UNetConfig.tiny(architecture="unetpp", deep_supervision=True).num_outputs
        2
        """
        if self.architecture == "unetpp" and self.deep_supervision:
            return self.depth - 1
        return 1 + self.num_lower_heads

    @property
    def inference_level(self) -> int:
        """UNet++: the top-row node ``X[0, level]`` whose output eval mode returns."""
        return self.depth - 1 if self.prune_level is None else self.prune_level

    @classmethod
    def from_dict(cls, options: Mapping[str, Any], *, key: str | None = None) -> UNetConfig:
        """Build from a plain mapping (YAML, a checkpoint); unknown keys raise ConfigError.

        With ``key`` (the config section, ``"model"``) every error names the option as
        ``model.<option>``; numeric text (YAML reads ``1e-1`` as text) is a number. Keys
        missing take their defaults, so a checkpoint written before an option existed
        rebuilds the network it describes (``spatial_dims`` 3, ``architecture`` unet, ...).

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
        """Plain, YAML/JSON-serialisable dict (``features`` as a list) for checkpoints.

        ``encoder_weights_path`` is recorded as ``None``: the file gave initial weights
        only, which a checkpoint's own weights replace, and it may be gone when the
        checkpoint is loaded elsewhere.
        """
        out = dataclasses.asdict(self)
        out["features"] = list(self.features)
        out["encoder_weights_path"] = None
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


def _check_probability(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")
    if not 0.0 <= value < 1.0:  # NaN fails too
        raise ConfigError(f"{name} must be in [0, 1), got {value}")


def _layers(module: nn.Module) -> list[nn.Module]:
    """``module``'s leaf layers in call order where it is a plain chain (nested
    ``nn.Sequential``), else ``[module]``."""
    if type(module) is nn.Sequential or (isinstance(module, nn.Sequential)
                                          and type(module).forward is nn.Sequential.forward):
        return [leaf for child in module for leaf in _layers(child)]
    return [module]


def _run_stage(stage: nn.Module, box: list[torch.Tensor], *, eager: bool) -> torch.Tensor:
    """``stage(box.pop())``, layer by layer when ``eager`` (:func:`_eager_inference`). The
    input comes in a one-item list, emptied here, so no frame keeps a reference to it (on
    any Python) and each layer's input is freed once its output exists: a module call holds
    its input to the end, and the full-resolution decoder's input (skip and up-sampled
    features together) is 0.5 GB at the default preset's 128^3 window. The same operations
    in the same order: the output is bit-identical."""
    x = box.pop()
    if not eager:
        return stage(x)
    for layer in _layers(stage):
        x = layer(x)
    return x


def _eager_inference(x: torch.Tensor) -> bool:
    """No autograd, no autocast, not being traced or compiled (exports keep torch.cat)."""
    compiling = getattr(torch.compiler, "is_compiling", lambda: False)()  # torch >= 2.3
    if torch.is_grad_enabled() or torch.jit.is_tracing() or compiling:
        return False
    try:
        autocast = torch.is_autocast_enabled(x.device.type)
    except TypeError:  # torch < 2.4 takes no device type
        autocast = torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()
    return not autocast


def _first_conv(module: nn.Module) -> nn.Module:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Conv3d))


def _empty_join(skip: torch.Tensor, up_channels: int, weight: torch.Tensor) -> torch.Tensor:
    """An uninitialised ``(N, up_channels + C, *spatial)`` tensor for ``cat([up, skip])`` in
    ``skip``'s dtype and device, laid out as the next convolution's ``weight`` is: a
    channels-last convolution given a contiguous input first copies all of it (instance norm
    hands contiguous tensors on), 0.5 GB here at the default preset's 128^3 window."""
    n, c, *spatial = skip.shape
    channels_last = (weight.dim() == 5 and not weight.is_contiguous()
                     and weight.is_contiguous(memory_format=torch.channels_last_3d))
    return torch.empty((n, up_channels + c, *spatial), dtype=skip.dtype, device=skip.device,
                       memory_format=torch.channels_last_3d if channels_last
                       else torch.contiguous_format)


def _node(i: int, j: int) -> str:
    """Module key of UNet++ node ``X[i, j]`` (level ``i``, column ``j``)."""
    return f"x{i}_{j}"


class UNet(nn.Module):
    """UNet family for nested-region segmentation: ``(N, 4, X, Y, Z)`` -> logits
    ``(N, 3, X, Y, Z)`` in 3-D, ``(N, C, H, W)`` -> ``(N, 3, H, W)`` with ``spatial_dims=2``.

    Encoder: one stage per level (double conv or residual block), 2x max-pooling between
    levels; optional self-attention at the bottleneck. Decoder (``architecture="unet"``):
    up-sample, concatenate the skip connection (optionally weighted by an
    :class:`AttentionGate`), one stage. ``architecture="unetpp"`` (UNet++): nested dense skip
    nodes ``X[i, j]`` with one 1x1 head per top-row node; in eval mode the output of
    ``X[0, config.inference_level]`` (pruning). A 1x1(x1) head gives one logit per region (WT,
    TC, ET in :data:`~tumorscope.core.data.labels.REGIONS` order); sigmoid is left to the loss
    or to :func:`logits_to_regions`.

    Output contract (what ``forward`` returns; :func:`split_output` takes it apart):

    * ``config.classes == 0``: the segmentation: a tensor ``(N, out_channels, *spatial)``;
      in training mode with ``deep_supervision`` a list instead, main output first
      (``"unet"``: ``[full-res, 1/2-res, 1/4-res, ...]``; ``"unetpp"``: the full-resolution
      outputs of ``X[0, depth-1], ..., X[0, 1]``). Eval mode always gives the tensor.
    * ``config.classes > 0``: a tuple ``(segmentation, class_logits)``: the segmentation
      exactly as above, and ``class_logits (N, classes)`` from global average pooling of the
      bottleneck and an MLP (:class:`ClassificationHead`).

    Every spatial size must be a multiple of ``config.size_divisor``.

    >>> net = UNet(UNetConfig.tiny())
    >>> tuple(net(torch.zeros(1, 4, 16, 16, 8)).shape)
    (1, 3, 16, 16, 8)
    >>> net = UNet(UNetConfig.tiny(spatial_dims=2, architecture="unetpp", classes=2)).eval()
    >>> seg, logits = net(torch.zeros(2, 4, 16, 16))
    >>> tuple(seg.shape), tuple(logits.shape)
    ((2, 3, 16, 16), (2, 2))
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = UNetConfig() if config is None else config
        if not config.own_encoder:
            raise ConfigError(f"encoder {config.encoder!r} is built by build_model "
                              f"(segmentation-models-pytorch), not by UNet")
        feats, dims = config.features, config.spatial_dims

        def stage(cin: int, cout: int) -> nn.Module:
            block = ResidualBlock if config.residual else DoubleConv
            return block(
                cin,
                cout,
                norm=config.norm,
                act=config.act,
                dropout=config.dropout,
                num_groups=config.num_groups,
                spatial_dims=dims,
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
        self.gates: nn.ModuleList | nn.ModuleDict | None = None
        if config.architecture == "unetpp":
            self._build_nested(stage)
        else:
            self._build_plain(stage)
        self.classifier = (
            ClassificationHead(feats[-1], config.classes, hidden=config.class_hidden,
                               dropout=config.class_dropout, act=config.act)
            if config.classes
            else None
        )

    def _build_plain(self, stage: Callable[[int, int], nn.Module]) -> None:
        config, feats = self.config, self.config.features
        dims, conv = config.spatial_dims, Layers.of(config.spatial_dims).conv
        # Decoder modules in execution order: coarsest level (depth - 2) first, level 0 last.
        levels = range(config.depth - 2, -1, -1)
        self.ups = nn.ModuleList(
            Upsample(feats[i + 1], feats[i], mode=config.upsample, spatial_dims=dims)
            for i in levels
        )
        self.decoders = nn.ModuleList(stage(2 * feats[i], feats[i]) for i in levels)
        self.head = conv(feats[0], config.out_channels, kernel_size=1)
        # lower_heads[i - 1] reads decoder level i (1 / 2**i resolution).
        self.lower_heads = nn.ModuleList(
            conv(feats[i], config.out_channels, kernel_size=1)
            for i in range(1, config.num_lower_heads + 1)
        )
        if config.attention_gates:  # built last: the other modules initialise as before
            self.gates = nn.ModuleList(
                AttentionGate(feats[i], feats[i + 1], spatial_dims=dims) for i in levels
            )

    def _build_nested(self, stage: Callable[[int, int], nn.Module]) -> None:
        config, feats, depth = self.config, self.config.features, self.config.depth
        dims, conv = config.spatial_dims, Layers.of(config.spatial_dims).conv
        nodes = [(i, j) for j in range(1, depth) for i in range(depth - j)]
        self.ups = nn.ModuleDict({
            _node(i, j): Upsample(feats[i + 1], feats[i], mode=config.upsample, spatial_dims=dims)
            for i, j in nodes
        })
        # X[i, j] reads X[i, 0 .. j-1] and the up-sampled X[i+1, j-1]: (j + 1) * feats[i].
        self.decoders = nn.ModuleDict({
            _node(i, j): stage((j + 1) * feats[i], feats[i]) for i, j in nodes
        })
        columns = range(1, depth) if config.deep_supervision else (depth - 1,)
        self.heads = nn.ModuleDict({
            str(j): conv(feats[0], config.out_channels, kernel_size=1) for j in columns
        })
        if config.attention_gates:
            self.gates = nn.ModuleDict({
                _node(i, j): AttentionGate(j * feats[i], feats[i + 1],
                                           inter_channels=max(1, feats[i] // 2),
                                           spatial_dims=dims)
                for i, j in nodes
            })

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ConfigError` unless ``x`` is ``(N, in_channels, X, Y, Z)`` (2-D:
        ``(N, in_channels, H, W)``) with every spatial size a multiple of
        ``config.size_divisor`` (and, for instance norm, more than one voxel left at the
        bottleneck)."""
        cfg = self.config
        axes = "X, Y, Z" if cfg.spatial_dims == 3 else "H, W"
        if x.ndim != 2 + cfg.spatial_dims or x.shape[1] != cfg.in_channels:
            raise ConfigError(
                f"UNet input must be (N, {cfg.in_channels}, {axes}), got shape {tuple(x.shape)}"
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

    def forward(self, x: torch.Tensor) -> ModelOutput:
        self.check_input(x)
        if self.config.architecture == "unetpp":
            segmentation, bottleneck = self._forward_nested(x)
        else:
            segmentation, bottleneck = self._forward_plain(x)
        if self.classifier is None:
            return segmentation
        return segmentation, self.classifier(bottleneck)

    def _forward_plain(self, x: torch.Tensor) -> tuple[Segmentation, torch.Tensor]:
        skips: list[torch.Tensor] = []
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                x = max_pool(x)
            x = encoder(x)
            skips.append(x)
        if self.attention is not None:
            x = self.attention(x)
        bottleneck = x

        supervise = self.training and self.config.deep_supervision
        lower: list[torch.Tensor] = []
        skips.pop()  # the bottleneck's own features (x, or what attention read)
        eager = _eager_inference(x)
        for step, (level, up, decoder) in enumerate(zip(
            range(self.config.depth - 2, -1, -1), self.ups, self.decoders, strict=True
        )):
            # Popped, so each skip is freed once it is joined (at inference; training keeps
            # it for the backward pass anyway).
            skip = skips.pop()
            if self.gates is not None:
                skip = self.gates[step](skip, x)  # gated by the coarser decoder features
            if not eager:
                joined = torch.cat([up(x), skip], dim=1)
                del skip
            else:
                # torch.cat would hold the skip, the up-sampled features and their join at
                # once (1.1 GB at the default preset's 128^3 window): the skip is copied in
                # and freed before the up-sampling runs. The same values as cat.
                c_up = up.conv.out_channels
                joined = _empty_join(skip, c_up, _first_conv(decoder).weight)
                joined[:, c_up:] = skip
                del skip
                joined[:, :c_up] = up(x)
            # Handed over with no name left here, so _run_stage can free it early.
            box = [joined]
            del joined
            x = _run_stage(decoder, box, eager=eager)
            if supervise and 1 <= level <= len(self.lower_heads):
                lower.append(self.lower_heads[level - 1](x))
        out = self.head(x)
        if supervise:
            return [out, *reversed(lower)], bottleneck
        return out, bottleneck

    def _forward_nested(self, x: torch.Tensor) -> tuple[Segmentation, torch.Tensor | None]:
        cfg, depth = self.config, self.config.depth
        level = depth - 1 if self.training else cfg.inference_level
        # A pruned network computes only the nodes X[i, j] with i + j <= level; the
        # classification head still needs the bottleneck, so the encoder then runs in full.
        rows = depth if self.classifier is not None else level + 1
        nodes: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(rows):
            x = self.encoders[i](max_pool(x) if i else x)
            if i == depth - 1 and self.attention is not None:
                x = self.attention(x)
            nodes[i, 0] = x
        for j in range(1, level + 1):
            for i in range(level + 1 - j):
                key, gating = _node(i, j), nodes[i + 1, j - 1]
                skip = torch.cat([nodes[i, k] for k in range(j)], dim=1)
                if self.gates is not None:
                    skip = self.gates[key](skip, gating)
                nodes[i, j] = self.decoders[key](torch.cat([skip, self.ups[key](gating)], dim=1))
        bottleneck = nodes.get((depth - 1, 0))
        if self.training and cfg.deep_supervision:
            return [self.heads[str(j)](nodes[0, j]) for j in range(depth - 1, 0, -1)], bottleneck
        return self.heads[str(level)](nodes[0, level]), bottleneck


def split_output(output: ModelOutput) -> tuple[Segmentation, torch.Tensor | None]:
    """A model's output as ``(segmentation, class_logits or None)`` (see :class:`UNet`).

    >>> seg, logits = split_output(torch.zeros(1, 3, 4, 4))
    >>> tuple(seg.shape), logits is None
    ((1, 3, 4, 4), True)
    >>> split_output((torch.zeros(1, 3, 4, 4), torch.zeros(1, 2)))[1].shape
    torch.Size([1, 2])
    """
    if isinstance(output, tuple):
        if len(output) != 2:
            raise TypeError(f"a model output tuple is (segmentation, class_logits), got "
                            f"{len(output)} items")
        return output[0], output[1]
    return output, None


def run_format(spatial_dims: int, device: torch.device, *,
               channels_last: bool) -> torch.memory_format | None:
    """The memory format a network and its inputs run in (``None``: contiguous, as built).

    ``channels_last`` (``train.channels_last``) is honoured where it was measured faster:
    on CUDA, and for 3-D networks on the CPU too (``benchmarks/bench_train.py``, the demo
    network on 2 cores: training 1.49x in fp32, 1.21x under bf16 autocast; no-grad
    inference 1.30x / 1.20x). 2-D networks on the CPU were not measured, so stay as built.

    >>> run_format(3, torch.device("cpu"), channels_last=True) == torch.channels_last_3d
    True
    >>> run_format(2, torch.device("cpu"), channels_last=True) is None
    True
    """
    if not channels_last or (device.type != "cuda" and spatial_dims != 3):
        return None
    return torch.channels_last_3d if spatial_dims == 3 else torch.channels_last


def build_model(config: UNetConfig | Mapping[str, Any] | None = None) -> nn.Module:
    """The one model factory: a :class:`UNet`, or with an smp ``encoder`` the
    segmentation-models-pytorch network of :mod:`tumorscope.core.models.smp_models`; from a
    config or its :meth:`UNetConfig.to_dict` form. Every model has ``.config``.

    >>> net = build_model({"features": [8, 16, 32]})
    >>> net.config.depth
    3
    """
    if config is not None and not isinstance(config, UNetConfig):
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"model config must be a UNetConfig or a mapping, got {type(config)}")
        config = UNetConfig.from_dict(config)
    if config is None or config.own_encoder:
        return UNet(config)
    # Imported here: segmentation-models-pytorch (with timm and torchvision) takes seconds.
    from tumorscope.core.models.smp_models import SmpUNet

    return SmpUNet(config)


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
