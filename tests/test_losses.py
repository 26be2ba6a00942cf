"""Tests of the losses: hand-computed values, MONAI agreement, options, deep supervision."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
from monai.losses import DiceLoss as MonaiDiceLoss
from monai.losses import FocalLoss as MonaiFocalLoss
from torch.nn import functional as F

from tumorscope.core.errors import ConfigError, GeometryError
from tumorscope.core.models import losses
from tumorscope.core.models.losses import (
    LOSS_NAMES,
    BCELoss,
    DeepSupervisionLoss,
    DiceBCELoss,
    DiceLoss,
    FocalDiceLoss,
    FocalLoss,
    JaccardLoss,
    WeightedBCELoss,
    bce_loss,
    dice_bce_loss,
    dice_loss,
    downsample_target,
    focal_loss,
    foreground_pos_weight,
    jaccard_loss,
    make_loss,
    weighted_bce_loss,
)

# Two voxels of one channel: p = sigmoid(logit) = 0.5 and 0.75; truth 1 and 0.
LN3 = math.log(3.0)
LOGITS = torch.tensor([[[0.0, LN3]]])
TARGET = torch.tensor([[[1.0, 0.0]]])
NO_SMOOTH = {"smooth_nr": 0.0, "smooth_dr": 0.0}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def random_batch(shape: tuple[int, ...] = (2, 3, 6, 5, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and {0, 1} targets, with sample 1's ET channel empty (a real BraTS case)."""
    logits = 2.0 * torch.randn(shape)
    target = (torch.rand(shape) < 0.3).float()
    target[1, 2] = 0.0
    return logits, target


def test_hand_computed_dice() -> None:
    # I = 0.5, P = 1.25, G = 1
    assert dice_loss(LOGITS, TARGET, **NO_SMOOTH).item() == pytest.approx(1 - 1.0 / 2.25)
    # squared: P = 0.25 + 0.5625
    squared = dice_loss(LOGITS, TARGET, squared_denominator=True, **NO_SMOOTH).item()
    assert squared == pytest.approx(1 - 1.0 / (0.8125 + 1.0))
    # smoothing: (2 I + 1) / (P + G + 2)
    smoothed = dice_loss(LOGITS, TARGET, smooth_nr=1.0, smooth_dr=2.0).item()
    assert smoothed == pytest.approx(1 - 2.0 / 4.25)


def test_hand_computed_dice_per_sample_and_batch() -> None:
    logits = torch.tensor([[[0.0, LN3]], [[LN3, LN3]]])  # p: (0.5, 0.75), (0.75, 0.75)
    target = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])
    per_sample = [1 - 1.0 / 2.25, 1 - 3.0 / 3.5]
    assert dice_loss(logits, target, **NO_SMOOTH).item() == pytest.approx(sum(per_sample) / 2)
    batch = 1 - 2 * (0.5 + 1.5) / (2.75 + 3.0)
    assert dice_loss(logits, target, batch_dice=True, **NO_SMOOTH).item() == pytest.approx(batch)


def test_hand_computed_jaccard() -> None:
    assert jaccard_loss(LOGITS, TARGET, **NO_SMOOTH).item() == pytest.approx(1 - 0.5 / 1.75)


def test_hand_computed_bce_and_weighted_bce() -> None:
    expected = (math.log(2) + math.log(4)) / 2
    assert bce_loss(LOGITS, TARGET).item() == pytest.approx(expected)
    # one foreground voxel in three: pos_weight = 2 doubles its term
    logits, target = torch.zeros(1, 1, 3), torch.tensor([[[1.0, 0.0, 0.0]]])
    assert foreground_pos_weight(target).tolist() == [2.0]
    expected = (2 * math.log(2) + math.log(2) + math.log(2)) / 3
    assert weighted_bce_loss(logits, target).item() == pytest.approx(expected)
    # a cap limits the weight
    assert weighted_bce_loss(logits, target, max_pos_weight=1.0).item() == pytest.approx(
        math.log(2)
    )


def test_pos_weight_is_per_channel_and_safe_on_empty_channels() -> None:
    target = torch.zeros(2, 3, 4)
    target[0, 0, :2] = 1  # WT: 2 of 8 -> 3
    target[:, 1, 0] = 1  # TC: 2 of 8 -> 3
    target[0, 1, 1] = 1  # TC: 3 of 8 -> 5/3
    # ET: empty -> 1
    torch.testing.assert_close(foreground_pos_weight(target), torch.tensor([3.0, 5 / 3, 1.0]))
    pos_weight = foreground_pos_weight(target)
    logits = torch.randn(2, 3, 4)
    expected = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight[:, None])
    torch.testing.assert_close(weighted_bce_loss(logits, target), expected)


def test_hand_computed_focal() -> None:
    # (1 - p_t) = 0.5 and 0.75; -log(p_t) = ln 2 and ln 4
    expected = (0.25 * math.log(2) + 0.5625 * math.log(4)) / 2
    assert focal_loss(LOGITS, TARGET, gamma=2.0).item() == pytest.approx(expected)
    alpha = (0.25 * 0.25 * math.log(2) + 0.75 * 0.5625 * math.log(4)) / 2
    assert focal_loss(LOGITS, TARGET, gamma=2.0, alpha=0.25).item() == pytest.approx(alpha)
    assert focal_loss(LOGITS, TARGET, gamma=0.0).item() == pytest.approx(
        bce_loss(LOGITS, TARGET).item()
    )


def test_hand_computed_dice_bce() -> None:
    expected = 0.5 * (1 - 1.0 / 2.25) + 2.0 * (math.log(2) + math.log(4)) / 2
    value = dice_bce_loss(LOGITS, TARGET, dice_weight=0.5, bce_weight=2.0, **NO_SMOOTH)
    assert value.item() == pytest.approx(expected)


@pytest.mark.parametrize("name", ["dice", "jaccard", "dice_bce", "bce", "focal", "weighted_bce"])
def test_perfect_prediction_is_near_zero(name: str) -> None:
    _, target = random_batch()  # includes an empty channel
    logits = 30.0 * (2.0 * target - 1.0)
    assert make_loss(name)(logits, target).item() < 1e-6


def test_empty_channel_documented_behaviour() -> None:
    target = torch.zeros(1, 1, 4, 4, 4)
    empty_pred = torch.full_like(target, -30.0)
    full_pred = torch.full_like(target, 30.0)
    assert dice_loss(empty_pred, target).item() < 1e-6  # smooth_nr == smooth_dr: empty is right
    assert dice_loss(full_pred, target).item() == pytest.approx(1.0, abs=1e-6)
    # smooth_nr = 0: an empty channel always costs 1
    assert dice_loss(empty_pred, target, smooth_nr=0.0).item() == pytest.approx(1.0)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("smooth", [1e-5, 1.0])
def test_dice_matches_monai(squared: bool, batch: bool, smooth: float) -> None:
    logits, target = random_batch()
    ours = dice_loss(
        logits,
        target,
        smooth_nr=smooth,
        smooth_dr=smooth,
        squared_denominator=squared,
        batch_dice=batch,
    )
    monai = MonaiDiceLoss(
        sigmoid=True, squared_pred=squared, batch=batch, smooth_nr=smooth, smooth_dr=smooth
    )(logits, target)
    assert abs(ours.item() - monai.item()) < 1e-5


@pytest.mark.parametrize("batch", [False, True])
def test_jaccard_matches_monai_with_doubled_smoothing(batch: bool) -> None:
    logits, target = random_batch()
    ours = jaccard_loss(logits, target, smooth_nr=1e-3, smooth_dr=1e-3, batch_dice=batch)
    monai = MonaiDiceLoss(sigmoid=True, jaccard=True, batch=batch, smooth_nr=2e-3, smooth_dr=2e-3)(
        logits, target
    )
    assert abs(ours.item() - monai.item()) < 1e-5


@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, None), (0.5, None), (2.0, 0.25), (0.0, 0.6)])
def test_focal_matches_monai(gamma: float, alpha: float | None) -> None:
    logits, target = random_batch()
    ours = focal_loss(logits, target, gamma=gamma, alpha=alpha)
    monai = MonaiFocalLoss(use_softmax=False, gamma=gamma, alpha=alpha)(logits, target)
    assert abs(ours.item() - monai.item()) < 1e-6


def test_focal_gradient_is_finite_for_small_gamma_at_certainty() -> None:
    logits = torch.tensor([[[40.0, -40.0]]], requires_grad=True)
    focal_loss(logits, torch.tensor([[[1.0, 0.0]]]), gamma=0.5).backward()
    assert torch.isfinite(logits.grad).all()


def test_losses_accept_bool_targets_and_low_precision_logits() -> None:
    logits, target = random_batch()
    reference = dice_bce_loss(logits, target)
    value = dice_bce_loss(logits.to(torch.bfloat16), target.bool())
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(reference.item(), abs=2e-2)


def test_gradients_flow_through_every_loss() -> None:
    _, target = random_batch()
    for name in LOSS_NAMES:
        logits = torch.randn(target.shape, requires_grad=True)
        make_loss(name)(logits, target).backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all(), name
        assert logits.grad.abs().sum() > 0, name


def test_shape_mismatch_raises_geometry_error() -> None:
    with pytest.raises(GeometryError, match=r"\(1, 3, 4\) and \(1, 2, 4\)"):
        dice_loss(torch.zeros(1, 3, 4), torch.zeros(1, 2, 4))
    with pytest.raises(GeometryError, match="spatial"):
        bce_loss(torch.zeros(2, 3), torch.zeros(2, 3))


def test_make_loss_builds_each_name_with_options() -> None:
    expected = {
        "dice": DiceLoss,
        "bce": BCELoss,
        "weighted_bce": WeightedBCELoss,
        "jaccard": JaccardLoss,
        "focal": FocalLoss,
        "dice_bce": DiceBCELoss,
        "focal_dice": FocalDiceLoss,
    }
    assert set(expected) == set(LOSS_NAMES)
    for name, cls in expected.items():
        assert type(make_loss(name)) is cls
    assert type(make_loss()) is DiceBCELoss  # the default
    assert make_loss("dice", squared_denominator=True, batch_dice=True).squared_denominator
    assert make_loss("focal", gamma=1.5).gamma == 1.5
    logits, target = random_batch()
    torch.testing.assert_close(
        make_loss("dice", batch_dice=True)(logits, target),
        dice_loss(logits, target, batch_dice=True),
    )


def test_make_loss_unknown_name_lists_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        make_loss("tversky")  # type: ignore[arg-type]
    message = str(info.value)
    assert "'tversky'" in message
    assert all(name in message for name in LOSS_NAMES)


def test_make_loss_unknown_option_names_it() -> None:
    with pytest.raises(ConfigError, match="gama"):
        make_loss("focal", gama=2.0)
    with pytest.raises(ConfigError, match="smooth_nr"):
        make_loss("bce", smooth_nr=1.0)


@pytest.mark.parametrize(
    ("name", "options", "bad"),
    [
        ("focal", {"gamma": -1.0}, "-1.0"),
        ("focal", {"alpha": 1.5}, "1.5"),
        ("dice", {"smooth_nr": -1e-5}, "-1e-05"),
        ("dice_bce", {"bce_weight": -1.0}, "-1.0"),
        ("weighted_bce", {"max_pos_weight": 0.5}, "0.5"),
    ],
)
def test_invalid_loss_options_raise_config_error(name: str, options: dict, bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_loss(name, **options)  # type: ignore[arg-type]
    assert bad in str(info.value)


def test_downsample_target_modes() -> None:
    target = torch.zeros(1, 3, 8, 8, 4)
    target[0, 2, 3, 5, 1] = 1.0  # one enhancing voxel off the even grid
    pooled = downsample_target(target, (4, 4, 2))
    assert pooled.shape == (1, 3, 4, 4, 2)
    assert pooled[0, 2, 1, 2, 0] == 1 and pooled.sum() == 1
    nearest = downsample_target(target, (4, 4, 2), mode="nearest")
    assert nearest.shape == (1, 3, 4, 4, 2) and nearest.sum() == 0
    assert downsample_target(target, (8, 8, 4)) is target
    with pytest.raises(ConfigError, match="'area'"):
        downsample_target(target, (4, 4, 2), mode="area")  # type: ignore[arg-type]


def test_deep_supervision_weights_halve_and_normalise() -> None:
    ds = DeepSupervisionLoss(BCELoss())
    torch.testing.assert_close(ds.head_weights(3), torch.tensor([4.0, 2.0, 1.0]) / 7)
    custom = DeepSupervisionLoss(BCELoss(), weights=[2.0, 2.0])
    torch.testing.assert_close(custom.head_weights(2), torch.tensor([0.5, 0.5]))
    with pytest.raises(ConfigError, match="3 outputs but 2 weights"):
        custom.head_weights(3)
    with pytest.raises(ConfigError, match="-1.0"):
        DeepSupervisionLoss(BCELoss(), weights=[1.0, -1.0])


def test_deep_supervision_loss_matches_manual_sum() -> None:
    target = (torch.rand(2, 3, 16, 16, 16) < 0.2).float()
    outputs = [torch.randn(2, 3, 16 // 2**i, 16 // 2**i, 16 // 2**i) for i in range(3)]
    base = DiceBCELoss()
    manual = sum(
        w * base(out, F.adaptive_max_pool3d(target, out.shape[2:]))
        for w, out in zip([4 / 7, 2 / 7, 1 / 7], outputs, strict=True)
    )
    ds = DeepSupervisionLoss(base)
    torch.testing.assert_close(ds(outputs, target), manual)
    # eval output (one tensor) goes straight to the wrapped loss
    torch.testing.assert_close(ds(outputs[0], target), base(outputs[0], target))


def test_docstring_examples() -> None:
    result = doctest.testmod(losses)
    assert result.attempted > 0
    assert result.failed == 0
