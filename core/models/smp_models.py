"""The segmentation-models-pytorch networks of the family: 2-D UNet / UNet++ on EfficientNet."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from tumorscope.core.errors import ConfigError
from tumorscope.core.models.unet import SMP_ENCODER_DEPTH, ModelOutput, UNetConfig

log = logging.getLogger(__name__)

SMP_ARCHITECTURES: dict[str, str] = {"unet": "Unet", "unetpp": "UnetPlusPlus"}
"""``architecture`` -> the segmentation-models-pytorch class that builds it."""

IMAGENET_CHANNELS = 3
"""Input channels of ImageNet weights (RGB): a stem of this width is adapted on loading."""

# torchvision operators whose fake kernels torchvision registers on import even when its C++
# library failed to load; declared here (schema only) in that case. Kept referenced: a
# torch.library.Library drops its definitions when it is garbage-collected.
_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_torchvision_stand_in: torch.library.Library | None = None


def import_smp() -> ModuleType:
    """``segmentation_models_pytorch``, imported on first use (it imports timm and torchvision,
    seconds of work that importing :mod:`tumorscope.core.models` must not pay).

    A torchvision whose C++ operators cannot load against this torch (PyPI's CUDA build of
    torchvision beside a CPU torch) fails on import, before any model code runs, because
    it registers fake kernels for ``nms`` and ``qnms`` unconditionally. The networks used here
    need none of those operators, so their schemas are declared and the import is retried.
    """
    global _torchvision_stand_in
    try:
        import segmentation_models_pytorch as smp
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"an smp encoder needs the package segmentation-models-pytorch, which is not "
            f"installed ({exc}); pip install 'segmentation-models-pytorch>=0.5,<0.7'"
        ) from None
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or "does not exist" not in str(exc):
            raise
        log.info("torchvision's C++ operators do not load against torch %s (%s); declaring "
                 "nms and qnms so that its model code imports (its detection operators stay "
                 "unavailable)", torch.__version__, exc)
        _torchvision_stand_in = torch.library.Library("torchvision", "DEF")
        for schema in _TORCHVISION_SCHEMAS:
            _torchvision_stand_in.define(schema)
        import segmentation_models_pytorch as smp
    return smp


class SmpUNet(nn.Module):
    """A segmentation-models-pytorch UNet (``architecture="unet"``) or UNet++ (``"unetpp"``)
    on the encoder ``config.encoder``, 2-D: ``(N, in_channels, H, W)`` -> logits
    ``(N, out_channels, H, W)``, H and W multiples of 32.

    Built with ``encoder_weights=None`` (nothing is downloaded); ``config.encoder_weights_path``
    loads a local state dict into the encoder (:func:`load_encoder_weights`). With
    ``config.classes > 0`` smp's auxiliary head (global average pooling, dropout
    ``class_dropout``, linear) gives the class logits, and ``forward`` returns
    ``(segmentation, class_logits)``: the output contract of :class:`~.unet.UNet`.
    No deep supervision. The weights live under ``net.`` (``net.encoder``, ``net.decoder``,
    ``net.segmentation_head``, ``net.classification_head``).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if config.own_encoder:
            raise ConfigError("SmpUNet builds smp encoders only; encoder 'own' is a UNet")
        self.config = config
        smp = import_smp()
        aux = ({"classes": config.classes, "dropout": config.class_dropout}
               if config.classes else None)
        self.net = getattr(smp, SMP_ARCHITECTURES[config.architecture])(
            encoder_name=config.encoder,
            encoder_depth=SMP_ENCODER_DEPTH,
            encoder_weights=None,
            in_channels=config.in_channels,
            classes=config.out_channels,
            aux_params=aux,
        )
        if config.encoder_weights_path is not None:
            load_encoder_weights(self.net.encoder, config.encoder_weights_path,
                                 encoder_name=config.encoder, in_channels=config.in_channels)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ConfigError` unless ``x`` is ``(N, in_channels, H, W)`` with H and W
        multiples of ``config.size_divisor`` (and, in training, more than one value per
        channel at the bottleneck, which batch norm needs)."""
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ConfigError(f"{cfg.encoder} input must be (N, {cfg.in_channels}, H, W), got "
                              f"shape {tuple(x.shape)}")
        bad = [s for s in x.shape[2:] if s % cfg.size_divisor]
        if bad:
            raise ConfigError(f"{cfg.encoder} input spatial size {tuple(x.shape[2:])} must be "
                              f"a multiple of {cfg.size_divisor} along every axis; {bad} is not")
        values = x.shape[0] * math.prod(s // cfg.size_divisor for s in x.shape[2:])
        if self.training and values < 2:
            raise ConfigError(
                f"{cfg.encoder} training input of shape {tuple(x.shape)} leaves one value per "
                f"channel at the bottleneck, which batch norm cannot normalise; use a batch of "
                f"2 or more, or sides of at least {2 * cfg.size_divisor}")

    def forward(self, x: torch.Tensor) -> ModelOutput:
        self.check_input(x)
        out = self.net(x)
        if self.config.classes:
            segmentation, class_logits = out
            return segmentation, class_logits
        return out


def load_encoder_weights(encoder: nn.Module, path: str | Path, *, encoder_name: str = "",
                         in_channels: int | None = None) -> None:
    """Load the state dict in the file ``path`` into ``encoder`` (an smp encoder).

    The file holds ``encoder.state_dict()`` of the same encoder (``torch.save``). A first
    convolution saved for 3 input channels (ImageNet weights) is adapted to ``in_channels``
    as segmentation-models-pytorch adapts its own pretrained weights: summed for one channel,
    else repeated cyclically and scaled by ``3 / in_channels``. Anything else that does not
    fit raises a one-line :class:`ConfigError` naming the file and the first misfit weight.
    """
    from tumorscope.core.models.checkpoints import _first_mismatch  # imports this package

    path = Path(path)
    what = f"model.encoder_weights_path (a state dict of the {encoder_name or 'smp'} encoder)"
    if not path.is_file():
        raise ConfigError(f"{what}: no such file", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{what} cannot be read as a PyTorch state dict ({first})",
                          path=path) from None
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"{what} must hold a mapping of weight name -> tensor, got "
                          f"{type(state).__name__}", path=path)
    state = dict(state)
    if in_channels is not None:
        state = _adapt_stem(encoder, state, in_channels)
    problem = _first_mismatch(encoder, state)
    if problem:
        raise ConfigError(f"{what} does not fit the encoder: {problem}", path=path)
    encoder.load_state_dict(state)


def _adapt_stem(encoder: nn.Module, state: dict[str, torch.Tensor],
                in_channels: int) -> dict[str, torch.Tensor]:
    """``state`` with its first convolution widened or narrowed from 3 input channels."""
    stem = next((name for name, m in encoder.named_modules() if isinstance(m, nn.Conv2d)), None)
    key = f"{stem}.weight"
    weight = state.get(key)
    if stem is None or weight is None or weight.ndim != 4 or in_channels == IMAGENET_CHANNELS:
        return state
    expected = encoder.get_parameter(key).shape
    if weight.shape[1] != IMAGENET_CHANNELS or (weight.shape[0], *weight.shape[2:]) != (
            expected[0], *expected[2:]):
        return state
    if in_channels == 1:
        adapted = weight.sum(1, keepdim=True)
    else:
        index = torch.arange(in_channels) % IMAGENET_CHANNELS
        adapted = weight[:, index] * (IMAGENET_CHANNELS / in_channels)
    return {**state, key: adapted}
