"""Failure reasons (core.scoring.failures) on masks drawn to show one failure each, and on 3-D
score rows made by the real lesion-wise scoring."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscope.core.scoring.failures import (
    REASONS,
    Failure,
    FailureRules,
    components,
    lesion_failures,
    mask_failures,
    ordered,
    type_failure,
)
from tumorscope.core.scoring.scorings import score_case

SHAPE = (200, 200)


def disc(centre: tuple[float, float], radius: float, shape: tuple[int, int] = SHAPE
         ) -> np.ndarray:
    rr, cc = np.ogrid[:shape[0], :shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius ** 2


def reasons(found: tuple[Failure, ...]) -> list[str]:
    return [f.reason for f in found]


def test_a_right_prediction_has_no_reason() -> None:
    truth = disc((100, 100), 30)
    assert mask_failures(truth, truth, probability=truth * 0.9) == ()
    # Slightly off, same size: a boundary error, nothing to name.
    assert mask_failures(truth, disc((102, 101), 30)) == ()


@pytest.mark.parametrize(("radius", "pixel_mm2", "expected"), [
    (6, 1.0, "missed_small"),     # 113 mm²: under 300 mm²
    (30, 1.0, "missed"),          # 2827 mm²
    (6, None, "missed_small"),    # 113 px of 40000: under 0.5 % of the image
    (30, None, "missed"),
])
def test_an_empty_prediction_is_missed_small_or_not(radius: float, pixel_mm2: float | None,
                                                    expected: str) -> None:
    truth = disc((100, 100), radius)
    found = mask_failures(truth, np.zeros(SHAPE, bool), pixel_mm2=pixel_mm2)
    assert reasons(found) == [expected]
    assert "nothing predicted" in found[0].detail
    unit = "mm²" if pixel_mm2 else "px"
    assert f"{int(truth.sum())} {unit}" in found[0].detail


def test_a_prediction_overlapping_a_little_is_still_missed() -> None:
    truth = disc((100, 100), 20)
    sliver = truth & (np.arange(SHAPE[1]) > 118)[None, :]  # a few pixels of its edge
    assert 0 < sliver.sum() and reasons(mask_failures(truth, sliver)) == ["missed"]
    half = truth & (np.arange(SHAPE[1]) > 100)[None, :]
    assert "missed" not in reasons(mask_failures(truth, half))


def test_a_blob_away_from_the_tumour_is_a_far_false_positive() -> None:
    truth = disc((50, 50), 15)
    found = mask_failures(truth, truth | disc((150, 150), 10))
    assert reasons(found) == ["false_positive_far"]
    assert found[0].detail.startswith("1 predicted component (")
    # Touching the tumour's rim is a boundary error, not a detection elsewhere.
    touching = truth | disc((50, 76), 10)
    assert 0 < (touching & ~truth).sum() and "false_positive_far" not in reasons(
        mask_failures(truth, touching))
    # A speck below the component size is noise, not a detection.
    speck = truth.copy()
    speck[150:152, 150:152] = True
    assert "false_positive_far" not in reasons(mask_failures(truth, speck))
    assert "false_positive_far" in reasons(
        mask_failures(truth, speck, rules=FailureRules(min_component_px=1)))


def test_a_prediction_on_a_slice_without_tumour_is_a_far_false_positive() -> None:
    found = mask_failures(np.zeros(SHAPE, bool), disc((100, 100), 10))
    assert reasons(found) == ["false_positive_far"]
    assert "no tumour in the truth" in found[0].detail


def test_two_foci_under_one_predicted_blob_are_merged() -> None:
    truth = disc((100, 60), 15) | disc((100, 140), 15)
    assert components(truth)[1] == 2
    bridge = truth | (np.abs(np.arange(SHAPE[0]) - 100) < 6)[:, None] & \
        ((np.arange(SHAPE[1]) > 60) & (np.arange(SHAPE[1]) < 140))[None, :]
    assert components(bridge)[1] == 1
    found = mask_failures(truth, bridge)
    assert "multifocal_merged" in reasons(found)
    merged = next(f for f in found if f.reason == "multifocal_merged")
    assert "2 true foci" in merged.detail and "only 1 predicted component" in merged.detail
    # Each focus found by its own component: not merged.
    assert "multifocal_merged" not in reasons(mask_failures(truth, truth))
    # One focus missed and the other found alone is a miss of a focus, not a merge.
    assert "multifocal_merged" not in reasons(mask_failures(truth, disc((100, 60), 15)))


def test_low_probability_inside_the_truth_is_under_confident() -> None:
    truth = disc((100, 100), 25)
    blur = np.where(truth, 0.35, 0.01)
    found = mask_failures(truth, truth, probability=blur)
    assert reasons(found) == ["under_confident"]
    assert "0.35" in found[0].detail and "0.50" in found[0].detail
    assert reasons(mask_failures(truth, truth, probability=blur,
                                 rules=FailureRules(threshold=0.3))) == []
    assert mask_failures(truth, truth, probability=np.where(truth, 0.8, 0.0)) == ()


def test_size_errors_are_said_only_when_nothing_more_specific_is() -> None:
    truth = disc((100, 100), 30)
    small = disc((100, 100), 18)  # 36 % of the area
    assert reasons(mask_failures(truth, small)) == ["under_segmented"]
    assert reasons(mask_failures(truth, disc((100, 100), 45))) == ["over_segmented"]
    far = small | disc((20, 20), 8)
    assert reasons(mask_failures(truth, far)) == ["false_positive_far"]


def test_type_failure_names_both_types_and_the_confidence() -> None:
    wrong = type_failure("meningioma", "glioma", 0.64)
    assert wrong is not None and wrong.label == "wrong type"
    assert wrong.detail == "meningioma predicted as glioma (confidence 0.64)"
    assert type_failure("glioma", "glioma", 0.9) is None
    assert type_failure(None, "glioma") is None and type_failure("glioma", None) is None
    assert type_failure("glioma", "pituitary", None).detail == "glioma predicted as pituitary"


def test_ordered_keeps_the_most_severe_first_and_each_reason_once() -> None:
    found = ordered([Failure("under_confident", "a"), Failure("wrong_type", "b"),
                     Failure("missed", "c"), Failure("wrong_type", "d")])
    assert [f.reason for f in found] == ["missed", "wrong_type", "under_confident"]
    assert found[1].detail == "b"
    assert list(REASONS)[0] == "missed_small"


def test_mask_failures_refuses_masks_of_two_shapes() -> None:
    with pytest.raises(ValueError, match="differ"):
        mask_failures(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


# --------------------------------------------------------------------------------------------
# 3-D from the real lesion-wise scoring's rows


def ball(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    idx = np.indices(shape)
    return sum((idx[i] - centre[i]) ** 2 for i in range(3)) <= radius ** 2


def scored_rows(case_id: str, pred: np.ndarray, truth: np.ndarray
                ) -> tuple[list[dict], list[dict]]:
    s = score_case(pred.astype(np.uint8) * 2, truth.astype(np.uint8) * 2, spacing_mm=(1, 1, 1),
                   scorings=["brats2023"])
    return ([{**r, "case_id": case_id} for r in s.rows],
            [{**r, "case_id": case_id} for r in s.lesions])


def test_3d_reasons_from_metric_and_lesion_rows() -> None:
    shape = (60, 60, 60)
    big, small = ball(shape, (20, 20, 30), 10), ball(shape, (45, 45, 30), 4)  # ~4 mL, ~0.3 mL
    cases = {
        # The big tumour found, the small one missed, a blob far from both.
        "A": (big | ball(shape, (50, 10, 10), 5), big | small),
        # Two foci covered by one predicted slab.
        "B": (np.pad(np.ones((30, 10, 10), bool), ((15, 15), (25, 25), (25, 25))),
              ball(shape, (20, 30, 30), 4) | ball(shape, (40, 30, 30), 4)),
        # Nothing predicted on a small tumour.
        "C": (np.zeros(shape, bool), small),
        # Right.
        "D": (big, big),
    }
    metrics, lesions = [], []
    for case_id, (pred, truth) in cases.items():
        m, les = scored_rows(case_id, pred, truth)
        metrics += m
        lesions += les
    found = lesion_failures(metrics, lesions)
    assert set(found) == set(cases)
    assert reasons(found["A"]) == ["missed_small", "false_positive_far"]
    assert f"1 small lesion missed ({small.sum() / 1000:.2f} mL)" in found["A"][0].detail
    assert "multifocal_merged" in reasons(found["B"])
    assert "2 true lesions" in next(f for f in found["B"] if f.reason == "multifocal_merged"
                                    ).detail
    assert reasons(found["C"]) == ["missed_small"]
    assert found["D"] == ()
    # Without lesion rows the volumes still tell a whole miss.
    assert reasons(lesion_failures(metrics, [])["C"]) == ["missed_small"]
    assert lesion_failures(metrics, [])["A"] == ()
