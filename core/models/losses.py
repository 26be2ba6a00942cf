"""Segmentation losses on region logits: Dice, BCE, weighted BCE, Jaccard, focal, Dice+BCE.

Every loss takes ``logits : (N, C, *spatial)`` (any float dtype; computed in float32) and
``target : (N, C, *spatial)`` with values in {0, 1} (float, bool or integer), and returns a
scalar. Each is a plain function; :class:`Loss` is the one module form, binding a function's
options (``DiceLoss`` and the others only name their function); :func:`make_loss` picks one
by name, :class:`DeepSupervisionLoss` applies one to every head of a deep-supervised UNet.

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
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from tumorscope.core.errors import ConfigError, GeometryError, check_choice

LossName = Literal["dice", "bce", "weighted_bce", "jaccard", "focal", "dice_bce"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)
DEFAULT_LOSS: LossName = "dice_bce"
TargetDownsampling = Literal["maxpool", "nearest"]

DEFAULT_SMOOTH = 1e-5
"""Default ``smooth_nr`` and ``smooth_dr`` (MONAI's and nnU-Net's value)."""


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
    logits: torch.Tensor, target: torch.Tensor, *, max_pos_weight: float | None = None
) -> torch.Tensor:
    """BCE with ``pos_weight`` from the batch: background/foreground ratio per channel.

    Balances each channel's foreground against its background (see
    :func:`foreground_pos_weight`).

    >>> logits = torch.tensor([[[0.0, 0.0, 0.0]]])
    >>> target = torch.tensor([[[1.0, 0.0, 0.0]]])  # pos_weight 2
    >>> round(weighted_bce_loss(logits, target).item(), 4)  # (2 ln 2 + ln 2 + ln 2) / 3
    0.9242
    """
    pos_weight = foreground_pos_weight(target, max_pos_weight=max_pos_weight)
    return bce_loss(logits, target, pos_weight=pos_weight)


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
    """Module form of :func:`weighted_bce_loss`; ``pos_weight`` is recomputed every batch."""

    function = staticmethod(weighted_bce_loss)

    def check(self, options: Mapping[str, object]) -> None:
        cap = options["max_pos_weight"]
        if cap is not None and cap < 1:  # type: ignore[operator]
            raise ConfigError(f"max_pos_weight must be >= 1 or None, got {cap}")


class FocalLoss(Loss):
    """Module form of :func:`focal_loss`."""

    function = staticmethod(focal_loss)
    non_negative = ("gamma",)

    def check(self, options: Mapping[str, object]) -> None:
        alpha = options["alpha"]
        if alpha is not None and not 0.0 <= alpha <= 1.0:  # type: ignore[operator]
            raise ConfigError(f"alpha must be in [0, 1] or None, got {alpha}")


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
    text (YAML reads ``1e-5`` as text) becomes a float.
    """
    args = typing.get_args(hint) or (hint,)
    if value is None and type(None) in args:
        return None
    if bool in args:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{label} must be true or false, got {value!r}")
    if float in args:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            none = " or null" if type(None) in args else ""
            raise ConfigError(f"{label} must be a finite number{none}, got {value!r}")
        return number
    return value


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

    >>> make_loss("focal", gamma=1.0)
    FocalLoss(gamma=1.0, alpha=None)
    >>> make_loss("tversky")
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: loss must be one of ['dice', 'bce', 'weighted_bce', 'jaccard', 'focal', 'dice_bce'], got 'tversky'
    """  # noqa: E501
    cls = _loss_class(name, key="loss")
    return cls(**_checked_options(name, cls, options, prefix=""))


def check_loss_options(name: object, options: object, *, key: str = "loss") -> dict[str, object]:
    """Check a config's loss ``name`` and ``options`` without training anything; return the
    options with numbers as floats. Errors name ``<key>.name`` or ``<key>.options.<option>``.

    >>> check_loss_options("focal", {"gamma": "1e-1"})
    {'gamma': 0.1}
    >>> check_loss_options("focal", {"gamma": -1.0})
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: loss.options.gamma must be >= 0, got -1.0
    """
    cls = _loss_class(name, key=f"{key}.name")
    if not isinstance(options, Mapping):
        raise ConfigError(f"{key}.options must be a mapping of option: value, got {options!r}")
    prefix = f"{key}.options."
    checked = _checked_options(str(name), cls, options, prefix=prefix)
    try:
        cls(**checked)  # the range checks of the class itself
    except ConfigError as exc:
        # Every range message of the loss classes starts with the option's name.
        raise ConfigError(prefix + exc.fault) from None
    return checked


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
