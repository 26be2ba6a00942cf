"""Losses on region logits (Dice, BCE, weighted BCE, Jaccard, focal, sums) and their builder.

Every loss takes ``logits : (N, C, *spatial)`` (any float dtype; computed in float32) and
``target : (N, C, *spatial)`` with values in {0, 1} (float, bool or integer), and returns a
scalar. Each is a plain function; :class:`Loss` is the one module form, binding a function's
options (``DiceLoss`` and the others only name their function); :func:`make_loss` picks one
by name, :class:`WeightedSumLoss` adds named ones (``loss.terms``),
:class:`DeepSupervisionLoss` applies one to every head of a deep-supervised UNet and
:class:`MultiTaskLoss` adds the cross-entropy of a classification head. :func:`build_loss`
composes all of it from a config's ``loss`` section for the model it trains.

Smoothing of the overlap losses (Dice, Jaccard), as in MONAI::

    dice = 1 - (2 * I + smooth_nr) / (P + G + smooth_dr)

with ``I = sum(p * g)``, ``P = sum(p)`` (``sum(p**2)`` with ``squared_denominator``),
``G = sum(g)`` over the spatial axes of one sample and channel (and over the batch too with
``batch_dice``). With ``smooth_nr == smooth_dr`` an empty channel predicted empty costs 0 and
anything predicted on an empty channel costs close to 1; ``smooth_nr = 0`` instead gives an
empty channel the loss 1 whatever is predicted (no gradient towards "empty").
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tumorscope.core.config import LossConfig
from tumorscope.core.errors import ConfigError, GeometryError, check_choice
from tumorscope.core.models.unet import ModelOutput, UNetConfig, split_output

LossName = Literal["dice", "bce", "weighted_bce", "jaccard", "focal", "dice_bce", "focal_dice"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)
DEFAULT_LOSS: LossName = "dice_bce"
TargetDownsampling = Literal["maxpool", "nearest"]

DEFAULT_SMOOTH = 1e-5
"""Default ``smooth_nr`` and ``smooth_dr`` (MONAI's and nnU-Net's value)."""

DATASET = "dataset"
"""``pos_weight: dataset``: computed once over the training masks (:func:`dataset_pos_weight`)
by the training loop, then put in with :func:`resolve_pos_weight`."""
IGNORE_CLASS = -1
"""Class label of a sample whose class is unknown: left out of the cross-entropy."""


def _prepare(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.shape != target.shape:
        raise GeometryError(
            f"logits and target must have the same shape (N, C, *spatial), got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}"
        )
    if logits.ndim < 3:
        raise GeometryError(
            f"logits must be (N, C, *spatial) with at least one spatial axis, "
            f"got shape {tuple(logits.shape)}"
        )
    logits = logits.float()
    return logits, target.to(dtype=logits.dtype)


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")


def _overlap_terms(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    squared_denominator: bool,
    batch_dice: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Intersection, prediction sum and target sum per (sample, channel) or per channel."""
    logits, target = _prepare(logits, target)
    prob = torch.sigmoid(logits)
    axes = list(range(2, logits.ndim))
    if batch_dice:
        axes = [0, *axes]
    intersection = (prob * target).sum(axes)
    pred = (prob * prob if squared_denominator else prob).sum(axes)
    truth = (target * target if squared_denominator else target).sum(axes)
    return intersection, pred, truth


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    smooth_nr: float = DEFAULT_SMOOTH,
    smooth_dr: float = DEFAULT_SMOOTH,
    squared_denominator: bool = False,
    batch_dice: bool = False,
) -> torch.Tensor:
    """Soft Dice loss on ``sigmoid(logits)``, averaged over samples and channels.

    ``1 - (2 * I + smooth_nr) / (P + G + smooth_dr)`` per sample and channel (see the module
    docstring); ``squared_denominator`` squares ``p`` and ``g`` in ``P`` and ``G`` (V-Net);
    ``batch_dice`` sums over the batch before dividing, one Dice per channel (nnU-Net).

    >>> logits = torch.tensor([[[0.0, 1.0986123]]])  # p = 0.5, 0.75
    >>> target = torch.tensor([[[1.0, 0.0]]])
    >>> round(dice_loss(logits, target, smooth_nr=0, smooth_dr=0).item(), 4)  # 1 - 1 / 2.25
    0.5556
    """
    _check_non_negative(smooth_nr=smooth_nr, smooth_dr=smooth_dr)
    inter, pred, truth = _overlap_terms(
        logits, target, squared_denominator=squared_denominator, batch_dice=batch_dice
    )
    return (1.0 - (2.0 * inter + smooth_nr) / (pred + truth + smooth_dr)).mean()


def jaccard_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    smooth_nr: float = DEFAULT_SMOOTH,
    smooth_dr: float = DEFAULT_SMOOTH,
    batch_dice: bool = False,
) -> torch.Tensor:
    """Soft Jaccard (IoU) loss ``1 - (I + smooth_nr) / (P + G - I + smooth_dr)``, averaged.

    Sums as in :func:`dice_loss` (plain, not squared). Equal to MONAI's
    ``DiceLoss(jaccard=True)`` with both smooth terms doubled there.

    >>> logits = torch.tensor([[[0.0, 1.0986123]]])  # p = 0.5, 0.75
    >>> target = torch.tensor([[[1.0, 0.0]]])
    >>> round(jaccard_loss(logits, target, smooth_nr=0, smooth_dr=0).item(), 4)  # 1 - .5/1.75
    0.7143
    """
    _check_non_negative(smooth_nr=smooth_nr, smooth_dr=smooth_dr)
    inter, pred, truth = _overlap_terms(
        logits, target, squared_denominator=False, batch_dice=batch_dice
    )
    return (1.0 - (inter + smooth_nr) / (pred + truth - inter + smooth_dr)).mean()


def bce_loss(
    logits: torch.Tensor, target: torch.Tensor, *, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy on logits, mean over every element.

    ``pos_weight`` (optional, shape ``(C,)``) multiplies the foreground term per channel.

    >>> logits = torch.tensor([[[0.0, 1.0986123]]])  # p = 0.5, 0.75
    >>> target = torch.tensor([[[1.0, 0.0]]])
    >>> round(bce_loss(logits, target).item(), 4)  # (ln 2 + ln 4) / 2
    1.0397
    """
    logits, target = _prepare(logits, target)
    if pos_weight is not None:
        pos_weight = pos_weight.to(logits).reshape(-1, *([1] * (logits.ndim - 2)))
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)


def foreground_pos_weight(
    target: torch.Tensor, *, max_pos_weight: float | None = None
) -> torch.Tensor:
    """Per-channel ``background / foreground`` voxel ratio of a batch, shape ``(C,)``.

    A channel without foreground gets 1 (its weight multiplies nothing). ``max_pos_weight``
    caps the ratio for tiny structures.

    >>> foreground_pos_weight(torch.tensor([[[1.0, 0.0, 0.0, 0.0]], [[1.0, 1.0, 0.0, 0.0]]]))
    tensor([1.6667])
    """
    with torch.no_grad():
        axes = [0, *range(2, target.ndim)]
        fg = (target > 0.5).sum(axes).float()
        total = target.numel() // target.shape[1]
        ratio = torch.where(fg > 0, (total - fg) / fg.clamp(min=1.0), torch.ones_like(fg))
        if max_pos_weight is not None:
            ratio = ratio.clamp(max=max_pos_weight)
    return ratio


def weighted_bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    max_pos_weight: float | None = None,
    pos_weight: float | tuple[float, ...] | Literal["dataset"] | None = None,
) -> torch.Tensor:
    """BCE with a weight on each channel's foreground term.

    ``pos_weight``: ``None`` (default) takes the background/foreground ratio per channel of
    each batch (:func:`foreground_pos_weight`, capped at ``max_pos_weight``); a number is a
    fixed weight for every channel, a tuple one fixed weight per channel. ``"dataset"`` is
    refused here: the training loop replaces it by :func:`dataset_pos_weight` first.

    >>> logits = torch.tensor([[[0.0, 0.0, 0.0]]])
    >>> target = torch.tensor([[[1.0, 0.0, 0.0]]])  # pos_weight 2
    >>> round(weighted_bce_loss(logits, target).item(), 4)  # (2 ln 2 + ln 2 + ln 2) / 3
    0.9242
    >>> round(weighted_bce_loss(logits, target, pos_weight=2.0).item(), 4)  # fixed, the same
    0.9242
    """
    if pos_weight is None:
        weight = foreground_pos_weight(target, max_pos_weight=max_pos_weight)
    else:
        weight = _fixed_pos_weight(pos_weight, channels=logits.shape[1])
    return bce_loss(logits, target, pos_weight=weight)


def _fixed_pos_weight(pos_weight: object, *, channels: int) -> torch.Tensor:
    if pos_weight == DATASET:
        raise ConfigError(_UNRESOLVED_DATASET)
    values = [pos_weight] if isinstance(pos_weight, int | float) else list(pos_weight)  # type: ignore[call-overload]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise GeometryError(f"pos_weight has {len(values)} values, one per channel, but the "
                            f"logits have {channels} channels")
    return torch.tensor(values, dtype=torch.float32)


_UNRESOLVED_DATASET = (
    "pos_weight is 'dataset' but was not computed: compute it over the training masks "
    "(dataset_pos_weight) and put the numbers in (resolve_pos_weight, or "
    "build_loss(..., pos_weight=...)) before building the loss")


def dataset_pos_weight(
    masks: Iterable[Any], *, channels: int, max_pos_weight: float | None = None
) -> tuple[float, ...]:
    """Fixed per-channel ``pos_weight`` from training masks: ``(1 - f) / f`` with ``f`` a
    channel's foreground fraction averaged over the masks (each mask counts once, whatever
    its size).

    ``masks``: arrays or tensors ``(channels, *spatial)`` with values in {0, 1}. A channel
    never (or always) foreground gets 1; ``max_pos_weight`` caps the ratio.

    >>> dataset_pos_weight([[[1, 0, 0, 0]], [[1, 1, 0, 0]]], channels=1)  # f = (1/4 + 1/2) / 2
    (1.6666666666666667,)
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"channels must be a positive integer, got {channels!r}")
    _check_cap(max_pos_weight)
    total, count = np.zeros(channels), 0
    for index, mask in enumerate(masks):
        m = np.asarray(mask)
        if m.ndim < 2 or m.shape[0] != channels:
            raise GeometryError(f"mask {index} must be (channels={channels}, *spatial), got "
                                f"shape {m.shape}")
        total += (m.reshape(channels, -1) > 0.5).mean(axis=1)
        count += 1
    if count == 0:
        raise ConfigError("pos_weight 'dataset' needs at least one training mask, got none")
    fraction = total / count
    inside = (fraction > 0) & (fraction < 1)
    ratio = np.where(inside, (1 - fraction) / np.where(inside, fraction, 1.0), 1.0)
    if max_pos_weight is not None:
        ratio = np.minimum(ratio, max_pos_weight)
    return tuple(float(r) for r in ratio)


def resolve_pos_weight(options: Mapping[str, Any], values: Sequence[float]) -> dict[str, Any]:
    """``options`` with ``pos_weight: dataset`` replaced by ``values`` (one per channel).

    Works on one loss's options and, one level down, on the per-term options of
    ``loss.terms`` (``{weighted_bce: {pos_weight: dataset}}``); other options are kept.

    >>> resolve_pos_weight({"pos_weight": "dataset", "max_pos_weight": 50.0}, [3.0, 9.0])
    {'pos_weight': (3.0, 9.0), 'max_pos_weight': 50.0}
    """
    numbers = tuple(float(v) for v in values)
    if not numbers or not all(math.isfinite(v) and v > 0 for v in numbers):
        raise ConfigError(f"pos_weight values must be finite numbers > 0, got {list(values)}")

    def resolved(opts: Mapping[str, Any]) -> dict[str, Any]:
        return {k: numbers if k == "pos_weight" and v == DATASET else v for k, v in opts.items()}

    return {k: resolved(v) if isinstance(v, Mapping) else v
            for k, v in resolved(options).items()}


@dataclass(frozen=True)
class DatasetPosWeight:
    """A loss config asks for ``pos_weight: dataset``: compute it with this cap."""

    max_pos_weight: float | None = None


def dataset_pos_weight_request(loss_cfg: LossConfig) -> DatasetPosWeight | None:
    """What :func:`dataset_pos_weight` must be called with for ``loss_cfg`` (its options or,
    with ``terms``, a term's options say ``pos_weight: dataset``); ``None`` when nothing is
    asked.

    >>> dataset_pos_weight_request(LossConfig(name="weighted_bce",
    ...                                       options={"pos_weight": "dataset"}))
    DatasetPosWeight(max_pos_weight=None)
    """
    groups = loss_cfg.options.values() if loss_cfg.terms else [loss_cfg.options]
    for options in groups:
        if isinstance(options, Mapping) and options.get("pos_weight") == DATASET:
            cap = options.get("max_pos_weight")
            return DatasetPosWeight(None if cap is None else float(cap))
    return None


def _check_cap(cap: object) -> None:
    if cap is not None and cap < 1:  # type: ignore[operator]
        raise ConfigError(f"max_pos_weight must be >= 1 or None, got {cap}")


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
) -> torch.Tensor:
    """Sigmoid focal loss ``-alpha_t * (1 - p_t) ** gamma * log(p_t)``, mean over elements.

    ``p_t`` is ``p`` on foreground and ``1 - p`` on background; ``alpha_t`` is ``alpha`` on
    foreground and ``1 - alpha`` on background (no weighting when ``alpha`` is None).
    ``gamma = 0`` without alpha is plain BCE. Same as MONAI's ``FocalLoss(use_softmax=False)``.

    >>> logits = torch.tensor([[[0.0, 1.0986123]]])  # p = 0.5, 0.75
    >>> target = torch.tensor([[[1.0, 0.0]]])
    >>> round(focal_loss(logits, target, gamma=2).item(), 4)  # (.25 ln 2 + .5625 ln 4) / 2
    0.4765
    """
    _check_non_negative(gamma=gamma)
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1] or None, got {alpha}")
    logits, target = _prepare(logits, target)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    # log(1 - p_t) = logsigmoid(-x) on foreground, logsigmoid(x) on background: stable, and
    # no 0 ** gamma with an infinite gradient when gamma < 1.
    log_one_minus_pt = F.logsigmoid(-logits * (2.0 * target - 1.0))
    loss = torch.exp(gamma * log_one_minus_pt) * bce
    if alpha is not None:
        loss = (target * alpha + (1.0 - target) * (1.0 - alpha)) * loss
    return loss.mean()


def dice_bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    smooth_nr: float = DEFAULT_SMOOTH,
    smooth_dr: float = DEFAULT_SMOOTH,
    squared_denominator: bool = False,
    batch_dice: bool = False,
) -> torch.Tensor:
    """``dice_weight * dice_loss + bce_weight * bce_loss``: the default training loss.

    >>> logits = torch.tensor([[[0.0, 1.0986123]]])
    >>> target = torch.tensor([[[1.0, 0.0]]])
    >>> round(dice_bce_loss(logits, target, smooth_nr=0, smooth_dr=0).item(), 4)
    1.5953
    """
    _check_non_negative(dice_weight=dice_weight, bce_weight=bce_weight)
    dice = dice_loss(
        logits,
        target,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        squared_denominator=squared_denominator,
        batch_dice=batch_dice,
    )
    return dice_weight * dice + bce_weight * bce_loss(logits, target)


def focal_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    focal_weight: float = 1.0,
    dice_weight: float = 1.0,
    gamma: float = 2.0,
    alpha: float | None = None,
    smooth_nr: float = DEFAULT_SMOOTH,
    smooth_dr: float = DEFAULT_SMOOTH,
    squared_denominator: bool = False,
    batch_dice: bool = False,
) -> torch.Tensor:
    """``focal_weight * focal_loss + dice_weight * dice_loss`` (options as theirs).

    >>> logits = torch.tensor([[[0.0, 1.0986123]]])
    >>> target = torch.tensor([[[1.0, 0.0]]])
    >>> round(focal_dice_loss(logits, target, smooth_nr=0, smooth_dr=0).item(), 4)  # .4765 + .5556
    1.0321
    """
    _check_non_negative(focal_weight=focal_weight, dice_weight=dice_weight)
    dice = dice_loss(
        logits,
        target,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        squared_denominator=squared_denominator,
        batch_dice=batch_dice,
    )
    return focal_weight * focal_loss(logits, target, gamma=gamma, alpha=alpha) + dice_weight * dice


class Loss(nn.Module):
    """A functional loss with its options bound: the one module form of every loss here.

    A subclass names its function (``function``) and which options must be >= 0
    (``non_negative``); options are the function's keyword-only parameters, checked and
    stored once, and readable as attributes.

    >>> DiceLoss(batch_dice=True)(torch.zeros(2, 3, 4, 4, 4), torch.zeros(2, 3, 4, 4, 4)).shape
    torch.Size([])
    >>> DiceLoss(batch_dice=True).batch_dice
    True
    """

    function: typing.ClassVar[typing.Callable[..., torch.Tensor]]
    non_negative: typing.ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: object) -> None:
        super().__init__()
        params = _keyword_options(type(self).function)
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected option(s) {unknown}")
        bound = {k: options.get(k, p.default) for k, p in params.items()}
        _check_non_negative(**{k: bound[k] for k in self.non_negative})  # type: ignore[arg-type]
        self.check(bound)
        self.options = bound

    def check(self, options: Mapping[str, object]) -> None:
        """Option checks beyond ``non_negative``; raise :class:`ConfigError`."""

    def __getattr__(self, name: str) -> object:
        options = self.__dict__.get("options")
        if options is not None and name in options:
            return options[name]
        return super().__getattr__(name)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return type(self).function(logits, target, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


def _keyword_options(function: typing.Callable[..., object]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(function).parameters
    return {k: p for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


class DiceLoss(Loss):
    """Module form of :func:`dice_loss`."""

    function = staticmethod(dice_loss)
    non_negative = ("smooth_nr", "smooth_dr")


class JaccardLoss(Loss):
    """Module form of :func:`jaccard_loss`."""

    function = staticmethod(jaccard_loss)
    non_negative = ("smooth_nr", "smooth_dr")


class BCELoss(Loss):
    """Module form of :func:`bce_loss` (takes logits, like ``torch.nn.BCEWithLogitsLoss``)."""

    function = staticmethod(bce_loss)


class WeightedBCELoss(Loss):
    """Module form of :func:`weighted_bce_loss`: ``pos_weight`` from every batch (default) or
    fixed (a number, one per channel; ``"dataset"`` once resolved to numbers)."""

    function = staticmethod(weighted_bce_loss)

    def check(self, options: Mapping[str, object]) -> None:
        _check_cap(options["max_pos_weight"])
        weight = options["pos_weight"]
        if weight is None or weight == DATASET:
            return
        values = [weight] if isinstance(weight, int | float) else weight
        if not values or not all(v > 0 for v in values):  # type: ignore[union-attr, operator]
            raise ConfigError(f"pos_weight must be > 0 (one number, or one per channel), "
                              f"got {weight!r}")


class FocalLoss(Loss):
    """Module form of :func:`focal_loss`."""

    function = staticmethod(focal_loss)
    non_negative = ("gamma",)

    def check(self, options: Mapping[str, object]) -> None:
        alpha = options["alpha"]
        if alpha is not None and not 0.0 <= alpha <= 1.0:  # type: ignore[operator]
            raise ConfigError(f"alpha must be in [0, 1] or None, got {alpha}")


class FocalDiceLoss(FocalLoss):
    """Module form of :func:`focal_dice_loss`."""

    function = staticmethod(focal_dice_loss)
    non_negative = ("focal_weight", "dice_weight", "gamma", "smooth_nr", "smooth_dr")


class DiceBCELoss(Loss):
    """Module form of :func:`dice_bce_loss`: the default loss."""

    function = staticmethod(dice_bce_loss)
    non_negative = ("dice_weight", "bce_weight", "smooth_nr", "smooth_dr")


LOSSES: dict[str, type[Loss]] = {
    "dice": DiceLoss,
    "bce": BCELoss,
    "weighted_bce": WeightedBCELoss,
    "jaccard": JaccardLoss,
    "focal": FocalLoss,
    "dice_bce": DiceBCELoss,
    "focal_dice": FocalDiceLoss,
}


def _loss_class(name: object, *, key: str) -> type[Loss]:
    if not isinstance(name, str) or name not in LOSS_NAMES:
        raise ConfigError(f"{key} must be one of {list(LOSS_NAMES)}, got {name!r}")
    return LOSSES[name]


def _option_hints(cls: type[Loss]) -> dict[str, object]:
    """The keyword-only options of a loss (its function's) with their annotations."""
    hints = typing.get_type_hints(cls.function)
    return {p: hints.get(p) for p in _keyword_options(cls.function)}


def _option_value(label: str, value: object, hint: object) -> object:
    """``value`` checked against the option's annotation (float, bool, float | None).

    Booleans are not numbers, numbers not booleans, NaN and infinity are refused; numeric
    text (YAML reads ``1e-5`` as text) becomes a float. A ``tuple[float, ...]`` in the
    annotation takes a list of numbers (one per channel), a ``Literal`` its words.
    """
    args = typing.get_args(hint) or (hint,)
    words = [w for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a)]
    several = any(typing.get_origin(a) is tuple for a in args)
    if value is None and type(None) in args:
        return None
    if isinstance(value, str) and value in words:
        return value
    if bool in args:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{label} must be true or false, got {value!r}")
    if float in args:
        if several and isinstance(value, list | tuple):
            numbers = [_finite_number(v) for v in value]
            if numbers and None not in numbers:
                return tuple(numbers)
        elif (number := _finite_number(value)) is not None:
            return number
        allowed = "a finite number"
        if several:
            allowed += ", a list of them (one per channel)"
        if words:
            allowed += ", " + " or ".join(repr(w) for w in words)
        if type(None) in args:
            allowed += " or null"
        raise ConfigError(f"{label} must be {allowed}, got {value!r}")
    return value


def _finite_number(value: object) -> float | None:
    """``value`` as a finite float (numbers and numeric text, not booleans), else None."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    return number if number is not None and math.isfinite(number) else None


def _checked_options(name: str, cls: type[Loss], options: Mapping[str, object], *,
                     prefix: str) -> dict[str, object]:
    hints = _option_hints(cls)
    allowed = list(hints)
    unknown = sorted(str(k) for k in set(options) - set(allowed))
    if unknown:
        if prefix:
            raise ConfigError(f"unknown key(s) {[prefix + k for k in unknown]}; loss {name!r} "
                              f"takes {allowed or 'no options'}")
        raise ConfigError(
            f"loss {name!r} does not take option(s) {unknown}; it takes {allowed or 'none'}"
        )
    return {k: _option_value(prefix + k, v, hints[k]) for k, v in options.items()}


def make_loss(name: LossName = DEFAULT_LOSS, **options: object) -> nn.Module:
    """The loss called ``name``, built with ``options`` (keyword options of its class).

    ``pos_weight: "dataset"`` is refused: resolve it first (:func:`resolve_pos_weight`).

    >>> make_loss("focal", gamma=1.0)
    FocalLoss(gamma=1.0, alpha=None)
    >>> make_loss("tversky")
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: loss must be one of ['dice', 'bce', 'weighted_bce', 'jaccard', 'focal', 'dice_bce', 'focal_dice'], got 'tversky'
    """  # noqa: E501
    cls = _loss_class(name, key="loss")
    checked = _checked_options(name, cls, options, prefix="")
    if checked.get("pos_weight") == DATASET:
        raise ConfigError(_UNRESOLVED_DATASET)
    return cls(**checked)


def check_loss_options(name: object, options: object, *, key: str = "loss") -> dict[str, object]:
    """Check a config's loss ``name`` and ``options`` without training anything; return the
    options with numbers as floats. Errors name ``<key>.name`` or ``<key>.options.<option>``.
    ``pos_weight: dataset`` passes (the training loop computes it; see :data:`DATASET`).

    >>> check_loss_options("focal", {"gamma": "1e-1"})
    {'gamma': 0.1}
    >>> check_loss_options("focal", {"gamma": -1.0})
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: loss.options.gamma must be >= 0, got -1.0
    """
    cls = _loss_class(name, key=f"{key}.name")
    return _checked_loss_options(str(name), cls, options, label=f"{key}.options")


def _checked_loss_options(name: str, cls: type[Loss], options: object, *,
                          label: str) -> dict[str, object]:
    if not isinstance(options, Mapping):
        raise ConfigError(f"{label} must be a mapping of option: value, got {options!r}")
    prefix = f"{label}."
    checked = _checked_options(name, cls, options, prefix=prefix)
    try:
        cls(**checked)  # the range checks of the class itself
    except ConfigError as exc:
        # Every range message of the loss classes starts with the option's name.
        raise ConfigError(prefix + exc.fault) from None
    return checked


def check_loss_terms(
    terms: object, options: object, *, key: str = "loss"
) -> tuple[dict[str, float], dict[str, dict[str, object]]]:
    """Check ``loss.terms`` (loss name: weight) and the per-term ``loss.options`` (term:
    {option: value}); return both normalised. Errors name ``<key>.terms.<name>`` or
    ``<key>.options.<term>.<option>``.

    >>> check_loss_terms({"dice": 1, "focal": "0.5"}, {"focal": {"gamma": 1}})
    ({'dice': 1.0, 'focal': 0.5}, {'dice': {}, 'focal': {'gamma': 1.0}})
    >>> check_loss_terms({"dice": 1, "tversky": 1}, {})
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: loss.terms.tversky is not a loss; terms are named by losses: ['dice', 'bce', 'weighted_bce', 'jaccard', 'focal', 'dice_bce', 'focal_dice']
    """  # noqa: E501
    if not isinstance(terms, Mapping) or not terms:
        raise ConfigError(f"{key}.terms must be a mapping of loss name: weight, e.g. "
                          f"{{dice: 1, focal: 0.5}}, got {terms!r}")
    weights: dict[str, float] = {}
    for name, weight in terms.items():
        if name not in LOSS_NAMES:
            raise ConfigError(f"{key}.terms.{name} is not a loss; terms are named by losses: "
                              f"{list(LOSS_NAMES)}")
        number = _finite_number(weight)
        if number is None or number < 0:
            raise ConfigError(f"{key}.terms.{name} must be a finite number >= 0 (the term's "
                              f"weight), got {weight!r}")
        weights[str(name)] = number
    if not any(weights.values()):
        raise ConfigError(f"{key}.terms must give at least one term a weight > 0, got "
                          f"{dict(terms)!r}")
    if not isinstance(options, Mapping):
        raise ConfigError(f"{key}.options must be a mapping of term: {{option: value}} when "
                          f"{key}.terms is given, got {options!r}")
    unknown = sorted(str(k) for k in set(options) - set(weights))
    if unknown:
        raise ConfigError(f"unknown key(s) {[f'{key}.options.{k}' for k in unknown]}; with "
                          f"{key}.terms, {key}.options maps each term {list(weights)} to its "
                          f"options, e.g. {{focal: {{gamma: 2}}}}")
    checked = {name: _checked_loss_options(name, LOSSES[name], options.get(name) or {},
                                           label=f"{key}.options.{name}")
               for name in weights}
    return weights, checked


class WeightedSumLoss(nn.Module):
    """``sum(weight * loss(logits, target))`` over named losses: ``loss.terms``.

    ``terms`` maps loss names to weights (>= 0); ``options`` maps a term to its options.

    >>> loss = WeightedSumLoss({"dice": 1.0, "focal": 0.5}, {"focal": {"gamma": 1.0}})
    >>> loss.weights, loss.terms["focal"].gamma
    ({'dice': 1.0, 'focal': 0.5}, 1.0)
    """

    def __init__(self, terms: Mapping[str, float],
                 options: Mapping[str, Mapping[str, object]] | None = None) -> None:
        super().__init__()
        weights, checked = check_loss_terms(terms, options or {})
        self.weights = weights
        self.terms = nn.ModuleDict({name: make_loss(name, **checked[name])  # type: ignore[arg-type]
                                    for name in weights})

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for name, loss in self.terms.items():
            if self.weights[name]:
                total = total + self.weights[name] * loss(logits, target)
        return total

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


def downsample_target(
    target: torch.Tensor,
    size: Sequence[int],
    *,
    mode: TargetDownsampling = "maxpool",
) -> torch.Tensor:
    """Shrink a {0, 1} target ``(N, C, *spatial)`` to spatial ``size`` for a low-res head.

    ``"maxpool"``: a coarse voxel is foreground if any voxel it covers is (small structures
    such as enhancing tumour survive). ``"nearest"``: nearest-neighbour sampling (nnU-Net).

    >>> t = torch.zeros(1, 1, 4, 4, 4); t[0, 0, 1, 1, 1] = 1
    >>> downsample_target(t, (2, 2, 2)).sum().item(), downsample_target(t, (2, 2, 2), mode="nearest").sum().item()
    (1.0, 0.0)
    """  # noqa: E501
    check_choice("target_downsampling", mode, get_args(TargetDownsampling))
    size = tuple(int(s) for s in size)
    if tuple(target.shape[2:]) == size:
        return target
    if len(size) != target.ndim - 2:
        raise GeometryError(
            f"cannot resize target of shape {tuple(target.shape)} to spatial size {size}"
        )
    if mode == "nearest":
        return F.interpolate(target.float(), size=size, mode="nearest").to(target.dtype)
    pools = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}
    if len(size) not in pools:
        raise GeometryError(f"maxpool target downsampling supports 1 to 3 spatial axes, got {size}")
    return pools[len(size)](target.float(), size).to(target.dtype)


class DeepSupervisionLoss(nn.Module):
    """Apply ``loss`` to each head of a deep-supervised output and weight the results.

    ``outputs`` is the UNet's training output ``[full-res, 1/2, 1/4, ...]`` (a single tensor,
    as in eval mode, is passed straight to ``loss``). The full-resolution target is shrunk to
    each head's size with :func:`downsample_target`. Default ``weights``: ``1, 1/2, 1/4, ...``;
    weights are normalised to sum to 1.

    >>> ds = DeepSupervisionLoss(DiceLoss())
    >>> outs = [torch.zeros(1, 3, 8, 8, 8), torch.zeros(1, 3, 4, 4, 4)]
    >>> [round(w, 4) for w in ds.head_weights(3).tolist()]
    [0.5714, 0.2857, 0.1429]
    >>> ds(outs, torch.zeros(1, 3, 8, 8, 8)).shape
    torch.Size([])
    """

    def __init__(
        self,
        loss: nn.Module,
        weights: Sequence[float] | None = None,
        *,
        target_downsampling: TargetDownsampling = "maxpool",
    ) -> None:
        super().__init__()
        check_choice("target_downsampling", target_downsampling, get_args(TargetDownsampling))
        if weights is not None:
            weights = [float(w) for w in weights]
            if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ConfigError(
                    f"deep supervision weights must be >= 0 with a positive sum, got {weights}"
                )
        self.loss = loss
        self.weights = weights
        self.target_downsampling = target_downsampling

    def head_weights(self, num_heads: int) -> torch.Tensor:
        """Normalised weights of ``num_heads`` outputs, full resolution first."""
        if self.weights is None:
            raw = [0.5**i for i in range(num_heads)]
        elif len(self.weights) != num_heads:
            raise ConfigError(
                f"deep supervision got {num_heads} outputs but {len(self.weights)} weights "
                f"{self.weights}"
            )
        else:
            raw = self.weights
        w = torch.tensor(raw, dtype=torch.float32)
        return w / w.sum()

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        weights = self.head_weights(len(outputs))
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for w, out in zip(weights.tolist(), outputs, strict=True):
            if w == 0:
                continue
            t = downsample_target(target, out.shape[2:], mode=self.target_downsampling)
            total = total + w * self.loss(out, t)
        return total


def class_cross_entropy(class_logits: torch.Tensor, class_target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``(N, classes)`` logits against ``(N,)`` integer labels, over
    the samples whose label is known (:data:`IGNORE_CLASS` ones are left out; none known: 0).

    >>> logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    >>> round(class_cross_entropy(logits, torch.tensor([0, -1])).item(), 4)  # ln 2
    0.6931
    """
    target = class_target.reshape(-1).long()
    if class_logits.ndim != 2 or target.shape[0] != class_logits.shape[0]:
        raise GeometryError(f"class logits must be (N, classes) with one label per sample, got "
                            f"logits {tuple(class_logits.shape)} and labels "
                            f"{tuple(class_target.shape)}")
    known = (target != IGNORE_CLASS).sum()
    total = F.cross_entropy(class_logits.float(), target.to(class_logits.device),
                            ignore_index=IGNORE_CLASS, reduction="sum")
    return total / known.clamp(min=1)


class MultiTaskLoss(nn.Module):
    """Segmentation loss plus ``class_weight`` times the cross-entropy of the class logits.

    ``forward(output, target, class_target=None)`` takes a model's output as it comes (see
    :class:`~tumorscope.core.models.unet.UNet`: a tensor, a deep-supervision list, or
    ``(segmentation, class_logits)``). The segmentation goes through ``segmentation_loss``,
    wrapped in :class:`DeepSupervisionLoss` unless it is one (a tensor passes straight
    through it, a list is weighted head by head). With class logits, ``class_target``
    ``(N,)`` integer labels are required (:data:`IGNORE_CLASS` for an unknown one); without,
    ``class_target`` is not used.

    >>> loss = MultiTaskLoss(DiceLoss(), class_weight=0.5)
    >>> seg, labels = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    >>> loss((seg, torch.zeros(2, 2)), labels, torch.tensor([0, 1])).shape
    torch.Size([])
    """

    def __init__(self, segmentation_loss: nn.Module, class_weight: float = 1.0) -> None:
        super().__init__()
        if isinstance(class_weight, bool) or _finite_number(class_weight) is None \
                or class_weight < 0:
            raise ConfigError(f"class_weight must be a finite number >= 0, got {class_weight!r}")
        if not isinstance(segmentation_loss, DeepSupervisionLoss):
            segmentation_loss = DeepSupervisionLoss(segmentation_loss)
        self.segmentation = segmentation_loss
        self.class_weight = float(class_weight)

    def forward(self, output: ModelOutput, target: torch.Tensor,
                class_target: torch.Tensor | None = None) -> torch.Tensor:
        segmentation, class_logits = split_output(output)
        loss = self.segmentation(segmentation, target)
        if class_logits is None or self.class_weight == 0:
            return loss
        if class_target is None:
            raise ConfigError("the model has a classification head (model.classes > 0) but "
                              "the batch carries no class labels (class_target)")
        return loss + self.class_weight * class_cross_entropy(class_logits, class_target)

    def extra_repr(self) -> str:
        return f"class_weight={self.class_weight}"


def build_loss(
    loss_cfg: LossConfig,
    model_config: UNetConfig | Mapping[str, Any] | None = None,
    *,
    pos_weight: Sequence[float] | None = None,
) -> MultiTaskLoss:
    """The training loss of a config's ``loss`` section for the model of ``model_config``:
    the one builder the training loop calls; its forward is
    ``(output, target, class_target=None)`` (:class:`MultiTaskLoss`).

    ``loss.terms`` (when non-empty) gives a :class:`WeightedSumLoss`, else ``loss.name`` with
    ``loss.options`` (:func:`make_loss`). Deep supervision is handled whatever the model:
    UNet heads weighted ``1, 1/2, 1/4, ...``; UNet++ top-row outputs weighted equally (Zhou
    et al. average them). With ``model.classes > 0`` the cross-entropy is added with weight
    ``loss.class_weight``. ``pos_weight`` (from :func:`dataset_pos_weight`) replaces
    ``pos_weight: dataset`` in the options.

    >>> build_loss(LossConfig(terms={"dice": 1.0, "focal": 0.5}), {"deep_supervision": True})
    MultiTaskLoss(
      class_weight=1.0
      (segmentation): DeepSupervisionLoss(
        (loss): WeightedSumLoss(
          weights={'dice': 1.0, 'focal': 0.5}
          (terms): ModuleDict(
            (dice): DiceLoss(smooth_nr=1e-05, smooth_dr=1e-05, squared_denominator=False, batch_dice=False)
            (focal): FocalLoss(gamma=2.0, alpha=None)
          )
        )
      )
    )
    """  # noqa: E501
    options: Mapping[str, Any] = loss_cfg.options
    if pos_weight is not None:
        options = resolve_pos_weight(options, pos_weight)
    if loss_cfg.terms:
        base: nn.Module = WeightedSumLoss(loss_cfg.terms, options)
    else:
        base = make_loss(loss_cfg.name, **options)  # type: ignore[arg-type]
    if model_config is None or isinstance(model_config, Mapping):
        model_config = UNetConfig.from_dict(model_config or {}, key="model")
    weights = None
    if model_config.architecture == "unetpp" and model_config.deep_supervision:
        weights = [1.0] * model_config.num_outputs
    return MultiTaskLoss(DeepSupervisionLoss(base, weights), class_weight=loss_cfg.class_weight)
