"""Tests of the composed losses: focal+Dice, weighted sums of terms, fixed and dataset
pos_weight, the multi-task loss, deep supervision of UNet++ and the one loss builder."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from tumorscope.core.config import LossConfig, config_from_dict, load_config
from tumorscope.core.errors import ConfigError, GeometryError
from tumorscope.core.models.checks import check_model_and_loss
from tumorscope.core.models.losses import (
    IGNORE_CLASS,
    DatasetPosWeight,
    DeepSupervisionLoss,
    FocalDiceLoss,
    MultiTaskLoss,
    WeightedSumLoss,
    build_loss,
    check_loss_options,
    class_cross_entropy,
    dataset_pos_weight,
    dataset_pos_weight_request,
    make_loss,
    resolve_pos_weight,
    weighted_bce_loss,
)
from tumorscope.core.models.unet import UNetConfig, build_model

# Two voxels of one channel: p = sigmoid(logit) = 0.5 and 0.75; truth 1 and 0.
LOGITS = torch.tensor([[[0.0, math.log(3.0)]]])
TARGET = torch.tensor([[[1.0, 0.0]]])
LN2, LN4 = math.log(2.0), math.log(4.0)
DICE = 1 - 1.0 / 2.25  # I = 0.5, P = 1.25, G = 1, no smoothing
BCE = (LN2 + LN4) / 2
FOCAL_GAMMA2 = (0.25 * LN2 + 0.5625 * LN4) / 2  # (1 - p_t) ** 2 * -log(p_t)
NO_SMOOTH = {"smooth_nr": 0.0, "smooth_dr": 0.0}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def checked(**sections: Any) -> Any:
    """A config built from ``sections`` and checked as training checks it."""
    return check_model_and_loss(config_from_dict(
        {"data": {"patch_size_vox": [16, 16, 16]}, "model": {"features": [4, 8, 16]},
         **sections}, source="bad.yaml"))


def test_focal_dice_is_the_weighted_sum_of_focal_and_dice() -> None:
    value = make_loss("focal_dice", focal_weight=2.0, dice_weight=0.5, **NO_SMOOTH)
    assert type(value) is FocalDiceLoss
    assert value(LOGITS, TARGET).item() == pytest.approx(2.0 * FOCAL_GAMMA2 + 0.5 * DICE)
    plain_bce = make_loss("focal_dice", gamma=0.0, dice_weight=0.0)(LOGITS, TARGET).item()
    assert plain_bce == pytest.approx(BCE)  # gamma 0, no alpha: focal is BCE
    alpha = make_loss("focal_dice", alpha=0.25, dice_weight=0.0)(LOGITS, TARGET).item()
    assert alpha == pytest.approx((0.25 * 0.25 * LN2 + 0.75 * 0.5625 * LN4) / 2)


@pytest.mark.parametrize(("option", "value", "shown"), [
    ("focal_weight", -1, "loss.options.focal_weight must be >= 0, got -1.0"),
    ("alpha", 2, "loss.options.alpha must be in [0, 1] or None, got 2.0"),
    ("gamma", "x", "loss.options.gamma must be a finite number, got 'x'"),
])
def test_focal_dice_options_are_checked_by_name(option: str, value: Any, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        checked(loss={"name": "focal_dice", "options": {option: value}})
    assert shown in str(info.value)


def test_terms_sum_the_named_losses_with_their_options() -> None:
    loss = WeightedSumLoss({"dice": 1.0, "focal": 0.5, "bce": 0.0},
                           {"dice": NO_SMOOTH, "focal": {"gamma": 2}})
    assert loss(LOGITS, TARGET).item() == pytest.approx(DICE + 0.5 * FOCAL_GAMMA2)
    with pytest.raises(ConfigError, match="loss.options.jaccard"):
        WeightedSumLoss({"dice": 1.0}, {"jaccard": {}})


def test_terms_from_a_config_through_build_loss() -> None:
    cfg = check_model_and_loss(load_config("tiny-cpu", overrides=[
        "loss.terms={dice: 1, bce: '0.5'}", "loss.options={dice: {smooth_nr: 0, smooth_dr: 0}}",
        "data.patch_size_vox=16"]))
    assert cfg.loss.terms == {"dice": 1.0, "bce": 0.5}
    assert cfg.loss.options == {"dice": NO_SMOOTH, "bce": {}}
    loss = build_loss(cfg.loss, cfg.model)
    assert loss(LOGITS, TARGET).item() == pytest.approx(DICE + 0.5 * BCE)


@pytest.mark.parametrize(("loss", "shown"), [
    ({"terms": {"dice": 1, "tversky": 1}}, "loss.terms.tversky is not a loss"),
    ({"terms": {"dice": -1}}, "loss.terms.dice must be a finite number >= 0"),
    ({"terms": {"dice": "heavy"}}, "loss.terms.dice must be a finite number >= 0"),
    ({"terms": {"dice": True}}, "loss.terms.dice must be a finite number >= 0"),
    ({"terms": {"dice": 0, "bce": 0}}, "loss.terms must give at least one term a weight > 0"),
    ({"terms": {"dice": 1}, "options": {"focal": {"gamma": 2}}},
     "unknown key(s) ['loss.options.focal']"),
    ({"terms": {"focal": 1}, "options": {"focal": {"gamma": -1}}},
     "loss.options.focal.gamma must be >= 0, got -1.0"),
    ({"terms": {"focal": 1}, "options": {"focal": {"gama": 2}}},
     "unknown key(s) ['loss.options.focal.gama']"),
    ({"terms": {"focal": 1}, "options": {"focal": 3}}, "loss.options.focal must be a mapping"),
    ({"class_weight": -1}, "loss.class_weight must be a number >= 0, got -1"),
])
def test_loss_config_faults_are_one_line_naming_the_key(loss: dict, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        checked(loss=loss)
    message = str(info.value)
    assert "\n" not in message
    assert shown in message, message


def test_weighted_bce_with_a_fixed_pos_weight() -> None:
    logits = torch.zeros(1, 2, 3)
    target = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]])
    # Every element costs ln 2 (p = 0.5), a foreground one times its channel's weight.
    expected = LN2 * ((3.0 + 1 + 1) + (0.5 + 0.5 + 1)) / 6
    per_channel = make_loss("weighted_bce", pos_weight=[3, 0.5])(logits, target)
    assert per_channel.item() == pytest.approx(expected)
    one = weighted_bce_loss(logits, target, pos_weight=2.0).item()
    assert one == pytest.approx(LN2 * ((2.0 + 1 + 1) + (2.0 + 2.0 + 1)) / 6)
    per_batch = weighted_bce_loss(logits, target).item()  # ratios 2 and 0.5 from the batch
    assert per_batch == pytest.approx(LN2 * ((2.0 + 1 + 1) + (0.5 + 0.5 + 1)) / 6)
    with pytest.raises(GeometryError, match="3 values, one per channel, but the logits have 2"):
        weighted_bce_loss(logits, target, pos_weight=(1.0, 2.0, 3.0))


@pytest.mark.parametrize(("value", "shown"), [
    ([0, 1], "loss.options.pos_weight must be > 0"),
    (-2, "loss.options.pos_weight must be > 0"),
    ("lots", "loss.options.pos_weight must be a finite number, a list of them (one per "
             "channel), 'dataset' or null, got 'lots'"),
    ([1, "x"], "loss.options.pos_weight must be a finite number"),
    ([], "loss.options.pos_weight must be a finite number"),
])
def test_pos_weight_values_are_checked_by_name(value: Any, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        checked(loss={"name": "weighted_bce", "options": {"pos_weight": value}})
    assert shown in str(info.value)


def test_dataset_pos_weight_against_a_hand_computation() -> None:
    a = np.zeros((3, 4, 4), dtype=bool)
    a[0, :2, :2] = True  # 1/4 foreground
    a[2] = True  # always foreground
    b = torch.zeros(3, 8, 4)  # another size: each mask counts once
    b[0, :4] = 1.0  # 1/2
    b[1, 0, :4] = 1.0  # 1/8
    b[2] = 1.0
    f0, f1 = (1 / 4 + 1 / 2) / 2, (0 + 1 / 8) / 2
    weights = dataset_pos_weight([a, b], channels=3)
    assert weights == pytest.approx(((1 - f0) / f0, (1 - f1) / f1, 1.0))
    assert dataset_pos_weight([a, b], channels=3, max_pos_weight=10.0) == pytest.approx(
        ((1 - f0) / f0, 10.0, 1.0))
    assert dataset_pos_weight([np.zeros((1, 5))], channels=1) == (1.0,)  # never foreground
    with pytest.raises(GeometryError, match=r"mask 1 must be \(channels=3"):
        dataset_pos_weight([a, np.zeros((2, 4, 4))], channels=3)
    with pytest.raises(ConfigError, match="at least one training mask"):
        dataset_pos_weight([], channels=3)


def test_pos_weight_dataset_is_checked_then_resolved_before_building() -> None:
    options = check_loss_options("weighted_bce", {"pos_weight": "dataset",
                                                  "max_pos_weight": "20"})
    assert options == {"pos_weight": "dataset", "max_pos_weight": 20.0}
    with pytest.raises(ConfigError, match="resolve_pos_weight") as info:
        make_loss("weighted_bce", **options)
    assert "\n" not in str(info.value)

    cfg = checked(loss={"name": "weighted_bce", "options": options})
    request = dataset_pos_weight_request(cfg.loss)
    assert request == DatasetPosWeight(max_pos_weight=20.0)
    assert dataset_pos_weight_request(LossConfig()) is None
    masks = [np.stack([np.eye(4), np.zeros((4, 4)), np.ones((4, 4))])]
    values = dataset_pos_weight(masks, channels=3, max_pos_weight=request.max_pos_weight)
    assert values == pytest.approx((3.0, 1.0, 1.0))
    assert resolve_pos_weight(cfg.loss.options, values) == {"pos_weight": values,
                                                            "max_pos_weight": 20.0}
    logits, target = torch.randn(2, 3, 4, 4), (torch.rand(2, 3, 4, 4) > 0.5).float()
    loss = build_loss(cfg.loss, cfg.model, pos_weight=values)
    torch.testing.assert_close(loss(logits, target),
                               weighted_bce_loss(logits, target, pos_weight=values))
    with pytest.raises(ConfigError, match="dataset_pos_weight"):
        build_loss(cfg.loss, cfg.model)  # not resolved


def test_pos_weight_dataset_in_a_term_is_found_and_resolved() -> None:
    cfg = checked(loss={"terms": {"dice": 1, "weighted_bce": 1},
                        "options": {"weighted_bce": {"pos_weight": "dataset"}}})
    assert dataset_pos_weight_request(cfg.loss) == DatasetPosWeight(None)
    resolved = resolve_pos_weight(cfg.loss.options, [2.0, 4.0, 8.0])
    assert resolved == {"dice": {}, "weighted_bce": {"pos_weight": (2.0, 4.0, 8.0)}}
    logits, target = torch.randn(1, 3, 4, 4), (torch.rand(1, 3, 4, 4) > 0.5).float()
    value = build_loss(cfg.loss, cfg.model, pos_weight=[2.0, 4.0, 8.0])(logits, target)
    expected = (make_loss("dice")(logits, target)
                + weighted_bce_loss(logits, target, pos_weight=(2.0, 4.0, 8.0)))
    torch.testing.assert_close(value, expected)


def test_class_cross_entropy_against_a_hand_computation() -> None:
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 1.0]])
    labels = torch.tensor([0, 1, IGNORE_CLASS])
    expected = (LN2 + math.log(1 + math.exp(2.0))) / 2  # the unknown third is left out
    assert class_cross_entropy(logits, labels).item() == pytest.approx(expected)
    assert class_cross_entropy(logits, torch.full((3,), IGNORE_CLASS)).item() == 0.0
    with pytest.raises(GeometryError, match="one label per sample"):
        class_cross_entropy(logits, torch.tensor([0, 1]))


def test_multitask_loss_adds_the_weighted_cross_entropy() -> None:
    dice = make_loss("dice", **NO_SMOOTH)
    loss = MultiTaskLoss(dice, class_weight=0.25)
    logits = torch.tensor([[0.0, 0.0]])
    value = loss((LOGITS, logits), TARGET, torch.tensor([1])).item()
    assert value == pytest.approx(DICE + 0.25 * LN2)
    assert loss(LOGITS, TARGET).item() == pytest.approx(DICE)  # no head: labels not needed
    low = torch.tensor([[[0.0]]])  # a 1/2-resolution head of a deep-supervised UNet
    value = loss(([LOGITS, low], logits), TARGET, torch.tensor([0])).item()
    low_dice = 1 - 1.0 / 1.5  # target max-pooled to 1 voxel: I = 0.5, P = 0.5, G = 1
    assert value == pytest.approx((2 * DICE + low_dice) / 3 + 0.25 * LN2)
    with pytest.raises(ConfigError, match="model.classes"):
        loss((LOGITS, logits), TARGET)
    with pytest.raises(ConfigError, match="class_weight"):
        MultiTaskLoss(dice, class_weight=-1.0)


def test_deep_supervision_of_full_resolution_unetpp_outputs() -> None:
    target = (torch.rand(2, 3, 8, 8) > 0.5).float()
    outs = [torch.randn(2, 3, 8, 8) for _ in range(3)]  # X0,3, X0,2, X0,1: all full size
    dice = make_loss("dice")
    per_output = [dice(o, target).item() for o in outs]
    halving = DeepSupervisionLoss(dice)(outs, target).item()
    assert halving == pytest.approx((4 * per_output[0] + 2 * per_output[1] + per_output[2]) / 7)
    cfg = UNetConfig(features=(4, 8, 16, 32), architecture="unetpp", deep_supervision=True)
    equal = build_loss(LossConfig(name="dice"), cfg)(outs, target).item()
    assert equal == pytest.approx(sum(per_output) / 3)  # Zhou et al.: the plain average
    unet = UNetConfig(features=(4, 8, 16, 32), deep_supervision=True)
    lower = [outs[0], torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)]
    torch.testing.assert_close(build_loss(LossConfig(name="dice"), unet)(lower, target),
                               DeepSupervisionLoss(dice)(lower, target))


def test_build_loss_trains_a_classifying_model_end_to_end() -> None:
    cfg = checked(model={"features": [4, 8, 16], "spatial_dims": 2, "classes": 2,
                         "architecture": "unetpp", "deep_supervision": True},
                  loss={"name": "focal_dice", "class_weight": 0.5})
    net = build_model(cfg.model).train()
    loss_fn = build_loss(cfg.loss, net.config)
    assert loss_fn.class_weight == 0.5
    assert isinstance(loss_fn.segmentation.loss, FocalDiceLoss)
    image, target = torch.randn(2, 4, 32, 32), (torch.rand(2, 3, 32, 32) > 0.7).float()
    out = net(image)
    value = loss_fn(out, target, torch.tensor([0, 1]))
    seg, logits = out
    expected = (sum(make_loss("focal_dice")(s, target) for s in seg) / len(seg)
                + 0.5 * class_cross_entropy(logits, torch.tensor([0, 1])))
    torch.testing.assert_close(value, expected)
    value.backward()
    assert all(p.grad is not None for p in net.parameters())
