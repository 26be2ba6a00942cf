"""BraTS 2023 lesion-wise scoring: hand-built known answers and the official code's numbers."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import surface_distance

from tumorscope.core.errors import ConfigError, GeometryError, LabelError
from tumorscope.core.scoring import lesions
from tumorscope.core.scoring.distances import robust_hausdorff_mm
from tumorscope.core.scoring.lesions import (
    CHALLENGES,
    MISSED_LESION_HD95_MM,
    lesion_wise_region,
    lesion_wise_scores,
)

ISO = (1.0, 1.0, 1.0)


def box_mask(shape: tuple[int, int, int], *boxes: tuple[slice, ...]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for box in boxes:
        mask[box] = True
    return mask


def cube(x: int, y: int, z: int, n: int) -> tuple[slice, slice, slice]:
    return (slice(x, x + n), slice(y, y + n), slice(z, z + n))


# ------------------------------------------------------------------------------------------
# robust Hausdorff (DeepMind definition)


def test_doctests() -> None:
    result = doctest.testmod(lesions, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0


def test_robust_hausdorff_of_a_shifted_cube_is_the_shift_in_mm() -> None:
    truth = box_mask((24, 24, 24), cube(6, 6, 6, 8))
    along_z = np.roll(truth, 1, axis=2)
    along_x = np.roll(truth, 1, axis=0)
    assert robust_hausdorff_mm(along_z, truth, spacing_mm=ISO) == 1.0
    assert robust_hausdorff_mm(along_z, truth, spacing_mm=(1.0, 1.0, 3.0)) == 3.0
    assert robust_hausdorff_mm(along_x, truth, spacing_mm=(1.0, 1.0, 3.0)) == 1.0
    assert robust_hausdorff_mm(truth, truth, spacing_mm=(0.7, 1.1, 2.0)) == 0.0


def test_robust_hausdorff_of_empty_masks_is_infinite() -> None:
    truth = box_mask((10, 10, 10), cube(2, 2, 2, 3))
    empty = np.zeros_like(truth)
    assert robust_hausdorff_mm(empty, truth, spacing_mm=ISO) == np.inf
    assert robust_hausdorff_mm(truth, empty, spacing_mm=ISO) == np.inf
    assert robust_hausdorff_mm(empty, empty, spacing_mm=ISO) == np.inf


@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")
@pytest.mark.parametrize("seed", range(4))
def test_robust_hausdorff_agrees_with_surface_distance(seed: int) -> None:
    """Against DeepMind's package itself (PyPI ``surface-distance``) on irregular masks."""
    rng = np.random.default_rng(seed)
    shape = (30, 26, 22)
    truth = rng.random(shape) < 0.5
    truth[:3] = False
    pred = np.roll(truth, (1, 0, -1), axis=(0, 1, 2)) & (rng.random(shape) < 0.8)
    spacing = tuple(rng.uniform(0.5, 2.0, 3))
    for percentile in (95.0, 50.0, 100.0):
        reference = surface_distance.compute_robust_hausdorff(
            surface_distance.compute_surface_distances(truth, pred, spacing), percentile
        )
        ours = robust_hausdorff_mm(pred, truth, spacing_mm=spacing, percentile=percentile)
        assert ours == pytest.approx(reference, abs=1e-9)


# ------------------------------------------------------------------------------------------
# lesion-wise scoring, hand-built cases


def test_hit_miss_and_far_false_positive_score_a_third_each() -> None:
    shape = (50, 50, 50)
    hit, missed, false_positive = cube(5, 5, 5, 6), cube(30, 5, 5, 6), cube(40, 40, 40, 4)
    truth = box_mask(shape, hit, missed)
    hit_pred = np.roll(box_mask(shape, hit), 1, axis=0)  # the hit lesion, one voxel off
    pred = hit_pred | box_mask(shape, false_positive)
    d1 = 2 * 5 * 36 / (216 + 216)  # 5 of 6 slices overlap
    h1 = robust_hausdorff_mm(hit_pred, box_mask(shape, hit), spacing_mm=ISO)
    assert h1 == 1.0

    score = lesion_wise_region(pred, truth, spacing_mm=ISO, challenge="gli")
    assert (score.tp, score.fn, score.fp) == (1, 1, 1)
    assert score.dice == pytest.approx((d1 + 0 + 0) / 3, abs=1e-12)
    assert score.hd95_mm == pytest.approx((h1 + 374 + 374) / 3, abs=1e-12)
    miss, hit_lesion = sorted(score.lesions, key=lambda lesion: lesion.dice)
    assert (miss.dice, miss.matched_prediction_ids, miss.hd95_mm) == (0.0, (), 374.0)
    assert hit_lesion.dice == pytest.approx(d1) and hit_lesion.hd95_mm == h1
    assert len(hit_lesion.matched_prediction_ids) == 1
    assert len(score.false_positive_ids) == 1
    assert all(lesion.volume_mm3 == 216.0 and lesion.counted for lesion in score.lesions)


def test_several_predicted_components_match_one_lesion() -> None:
    shape = (40, 40, 40)
    truth = box_mask(shape, (slice(5, 25), slice(5, 10), slice(5, 10)))
    pred = box_mask(shape, (slice(5, 12), slice(5, 10), slice(5, 10)),
                    (slice(16, 25), slice(5, 10), slice(5, 10)))
    score = lesion_wise_region(pred, truth, spacing_mm=ISO, challenge="gli")
    (lesion,) = score.lesions
    assert len(lesion.matched_prediction_ids) == 2
    assert (score.tp, score.fn, score.fp) == (1, 0, 0)
    assert score.dice == pytest.approx(2 * 16 / (20 + 16))


@pytest.mark.parametrize(("gap", "challenge", "n_lesions"),
                         [(6, "gli", 1), (7, "gli", 2), (2, "men", 1), (3, "men", 2),
                          (6, "ssa", 1), (6, "ped", 1), (2, "met", 1), (3, "met", 2)])
def test_truth_blobs_within_the_dilation_are_one_lesion(
    gap: int, challenge: str, n_lesions: int
) -> None:
    """Blobs ``gap`` voxels apart touch after dilation when gap <= 2 x iterations."""
    shape = (40, 30, 30)
    first = cube(5, 10, 10, 6)
    second = cube(11 + gap, 10, 10, 6)
    truth = box_mask(shape, first, second)
    pred = box_mask(shape, first)  # only the first blob predicted
    score = lesion_wise_region(pred, truth, spacing_mm=ISO, challenge=challenge)  # type: ignore[arg-type]
    assert len(score.lesions) == n_lesions
    if n_lesions == 1:
        assert (score.tp, score.fn, score.fp) == (1, 0, 0)
        assert score.lesions[0].volume_mm3 == 432.0
        assert score.dice == pytest.approx(2 * 216 / (432 + 216))
    else:
        assert (score.tp, score.fn, score.fp) == (1, 1, 0)
        assert score.dice == pytest.approx(0.5)
        assert score.hd95_mm == pytest.approx(MISSED_LESION_HD95_MM / 2)


@pytest.mark.parametrize(("gap", "n_lesions"), [(4, 1), (5, 2)])
def test_dilation_is_18_connected(gap: int, n_lesions: int) -> None:
    """Cubes ``gap`` voxels apart along each axis (corner to corner): 3 dilations of the
    18-connected element bridge 4, those of the 26-connected one would bridge 6."""
    shape = (40, 40, 40)
    truth = box_mask(shape, cube(5, 5, 5, 6), cube(11 + gap, 11 + gap, 11 + gap, 6))
    score = lesion_wise_region(truth, truth, spacing_mm=ISO, challenge="gli")
    assert len(score.lesions) == n_lesions


def test_predicted_components_are_26_connected() -> None:
    """Two cubes touching at one corner are one false positive, not two."""
    shape = (30, 30, 30)
    pred = box_mask(shape, cube(5, 5, 5, 4), cube(9, 9, 9, 4))
    score = lesion_wise_region(pred, np.zeros(shape, bool), spacing_mm=ISO, challenge="met")
    assert (score.fp, score.dice, score.hd95_mm) == (1, 0.0, 374.0)


def test_small_truth_lesion_is_left_out_and_its_match_is_no_false_positive() -> None:
    shape = (40, 40, 40)
    big, small, small_matched = cube(5, 5, 5, 6), cube(30, 30, 30, 3), cube(30, 5, 30, 3)
    truth = box_mask(shape, big, small, small_matched)  # 27-voxel lesions: below 50
    pred = box_mask(shape, big, small_matched)
    gli = lesion_wise_region(pred, truth, spacing_mm=ISO, challenge="gli")
    assert (gli.tp, gli.fn, gli.fp) == (1, 0, 0)
    assert (gli.dice, gli.hd95_mm) == (1.0, 0.0)
    assert sorted(lesion.counted for lesion in gli.lesions) == [False, False, True]
    # MET leaves out only lesions of at most 2 mm³: the small ones count there.
    met = lesion_wise_region(pred, truth, spacing_mm=ISO, challenge="met")
    assert (met.tp, met.fn, met.fp) == (2, 1, 0)
    assert met.dice == pytest.approx(2 / 3)


def test_volume_threshold_is_at_most_50_mm3_not_voxels() -> None:
    shape = (30, 30, 30)
    lesion = (slice(5, 10), slice(5, 10), slice(5, 7))  # 50 voxels
    truth = box_mask(shape, lesion)
    pred = np.zeros(shape, bool)
    at_1mm = lesion_wise_region(pred, truth, spacing_mm=ISO, challenge="gli")
    assert (at_1mm.tp, at_1mm.fn, at_1mm.fp, at_1mm.dice) == (0, 0, 0, 1.0)  # 50 <= 50: out
    at_2mm = lesion_wise_region(pred, truth, spacing_mm=(1.0, 1.0, 2.0), challenge="gli")
    assert at_2mm.lesions[0].volume_mm3 == 100.0
    assert (at_2mm.tp, at_2mm.fn, at_2mm.fp, at_2mm.dice) == (0, 1, 0, 0.0)
    assert at_2mm.hd95_mm == MISSED_LESION_HD95_MM


def test_empty_cases_follow_the_2023_code() -> None:
    shape = (20, 20, 20)
    empty = np.zeros(shape, bool)
    blob = box_mask(shape, cube(5, 5, 5, 5))
    both = lesion_wise_region(empty, empty, spacing_mm=ISO, challenge="gli")
    assert (both.dice, both.hd95_mm, both.tp, both.fn, both.fp, both.lesions) == (
        1.0, 0.0, 0, 0, 0, ())
    only_pred = lesion_wise_region(blob, empty, spacing_mm=ISO, challenge="gli")
    assert (only_pred.dice, only_pred.hd95_mm, only_pred.fp) == (0.0, 374.0, 1)
    only_truth = lesion_wise_region(empty, blob, spacing_mm=ISO, challenge="gli")
    assert (only_truth.dice, only_truth.hd95_mm, only_truth.fn) == (0.0, 374.0, 1)


def test_anisotropic_spacing_changes_lesion_hd95_in_mm() -> None:
    shape = (30, 30, 30)
    truth = box_mask(shape, cube(8, 8, 8, 8))
    pred = np.roll(truth, 1, axis=2)
    iso = lesion_wise_region(pred, truth, spacing_mm=ISO, challenge="gli")
    thick = lesion_wise_region(pred, truth, spacing_mm=(1.0, 1.0, 2.5), challenge="gli")
    assert iso.dice == thick.dice == pytest.approx(7 / 8)
    assert (iso.hd95_mm, thick.hd95_mm) == (1.0, 2.5)


def test_regions_of_a_label_map() -> None:
    shape = (30, 30, 30)
    truth = np.zeros(shape, np.uint8)
    truth[5:15, 5:15, 5:15] = 2
    truth[7:13, 7:13, 7:13] = 1
    truth[8:12, 8:12, 8:12] = 4  # 64 voxels of ET
    pred = truth.copy()
    pred[pred == 4] = 1  # ET missed entirely
    wt, tc, et = lesion_wise_scores(pred, truth, spacing_mm=ISO, challenge="gli")
    assert (wt.region, tc.region, et.region) == ("WT", "TC", "ET")
    assert (wt.dice, tc.dice, et.dice) == (1.0, 1.0, 0.0)
    assert (et.tp, et.fn, et.fp) == (0, 1, 0)


def test_bad_options_and_shapes_are_refused() -> None:
    mask = np.zeros((5, 5, 5), bool)
    with pytest.raises(ConfigError, match="challenge must be one of .*'brats'"):
        lesion_wise_region(mask, mask, spacing_mm=ISO, challenge="brats")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="spacing_mm must be 3 positive numbers.*-1"):
        lesion_wise_region(mask, mask, spacing_mm=(1, 1, -1), challenge="gli")
    with pytest.raises(ConfigError, match="percentile must be within"):
        robust_hausdorff_mm(mask, mask, spacing_mm=ISO, percentile=101)
    with pytest.raises(GeometryError, match=r"\(5, 5, 5\) and \(5, 5, 4\)"):
        lesion_wise_region(mask, mask[..., :4], spacing_mm=ISO, challenge="gli")
    with pytest.raises(GeometryError, match="3-D"):
        robust_hausdorff_mm(mask[0], mask[0], spacing_mm=ISO)
    with pytest.raises(LabelError):
        lesion_wise_scores(np.full((5, 5, 5), 3, np.uint8), np.zeros((5, 5, 5), np.uint8),
                           spacing_mm=ISO, challenge="gli")


def test_challenge_parameters_are_the_2023_codes() -> None:
    assert {k: (p.dilation_iterations, p.ignored_volume_mm3) for k, p in CHALLENGES.items()} == {
        "gli": (3, 50.0), "ssa": (3, 50.0), "ped": (3, 50.0), "men": (1, 50.0), "met": (1, 2.0)}


# ------------------------------------------------------------------------------------------
# the official code's numbers, frozen


def ellipsoid(shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3)) <= 1.0


def random_case(seed: int, shape: tuple[int, int, int] = (64, 60, 48)):
    """Tumours (edema, core, enhancing), small satellites; the prediction shifted, partly
    erased, with false-positive blobs added. Canonical labels (ET = 4)."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(1, 4)):
        centre = rng.integers(8, np.array(shape) - 8)
        radii = rng.uniform(2.0, 7.0) * rng.uniform(0.6, 1.4, 3)
        truth[ellipsoid(shape, centre, radii)] = 2
        truth[ellipsoid(shape, centre + rng.integers(-1, 2, 3), radii * 0.6)] = 1
        truth[ellipsoid(shape, centre + rng.integers(-1, 2, 3), radii * 0.35)] = 4
    for _ in range(rng.integers(0, 4)):
        centre = rng.integers(3, np.array(shape) - 3)
        truth[ellipsoid(shape, centre, rng.uniform(0.8, 2.6, 3))] = rng.choice([1, 2, 4])
    pred = np.roll(truth, tuple(rng.integers(-2, 3, 3)), axis=(0, 1, 2))
    if rng.random() < 0.5:
        c = rng.integers(0, np.array(shape))
        lo = np.maximum(c - 10, 0)
        pred[lo[0]:c[0] + 10, lo[1]:c[1] + 10, lo[2]:c[2] + 10] = 0
    for _ in range(rng.integers(0, 4)):
        centre = rng.integers(2, np.array(shape) - 2)
        pred[ellipsoid(shape, centre, rng.uniform(0.5, 3.5, 3))] = rng.choice([1, 2, 4])
    return pred, truth


# ``get_LesionWiseResults`` of rachitsaluja/BraTS-2023-Metrics (commit 43c9052, with the two
# pandas-2 fixes and ``np.Inf = np.inf``) on these cases written as NIfTI (ET = 3, the spacing
# in the header zooms): seed, challenge, spacing, region, Dice, HD95, (TP, FN, FP).
OFFICIAL_2023 = [
    (2, "gli", (0.8, 1.0, 2.0), "WT", 0.814664637711426, 1.6666666666666667, (3, 0, 0)),
    (2, "gli", (0.8, 1.0, 2.0), "TC", 0.7373225152129818, 1.0, (2, 0, 0)),
    (2, "gli", (0.8, 1.0, 2.0), "ET", 0.717948717948718, 2.0, (1, 0, 0)),
    (4, "met", (1.0, 1.0, 1.0), "WT", 0.4662480995650546, 63.81305252958515, (5, 1, 0)),
    (4, "met", (1.0, 1.0, 1.0), "TC", 0.4231390700555978, 76.28284271247462, (4, 1, 0)),
    (4, "met", (1.0, 1.0, 1.0), "ET", 0.26417761602204265, 94.85355339059328, (3, 1, 0)),
    (5, "ped", (1.25, 1.0, 1.5), "WT", 0.3054314765906538, 3.775865656378954, (3, 0, 0)),
    (5, "ped", (1.25, 1.0, 1.5), "TC", 0.058995528035775714, 126.63138150742789, (2, 0, 1)),
    (5, "ped", (1.25, 1.0, 1.5), "ET", 1.0, 0.0, (0, 0, 0)),
    (7, "met", (0.5, 0.5, 1.0), "WT", 0.15105599133589204, 107.7403612987137, (5, 0, 2)),
    (7, "met", (0.5, 0.5, 1.0), "TC", 0.13439265481819743, 1.192078882155695, (4, 0, 0)),
    (7, "met", (0.5, 0.5, 1.0), "ET", 0.05369843527738265, 94.33852549156242, (3, 0, 1)),
    (9, "men", (1.0, 1.5, 1.0), "WT", 0.09886458554739427, 162.26784385249783, (4, 0, 3)),
    (9, "men", (1.0, 1.5, 1.0), "TC", 0.07357426001493798, 188.75971369618821, (3, 0, 3)),
    (9, "men", (1.0, 1.5, 1.0), "ET", 0.010857899359641519, 215.2833306819354, (3, 0, 4)),
]


@pytest.mark.parametrize(("seed", "challenge", "spacing"),
                         sorted({row[:3] for row in OFFICIAL_2023}))
def test_agrees_with_the_official_2023_code(seed: int, challenge: str, spacing: tuple) -> None:
    pred, truth = random_case(seed)
    spacing32 = tuple(float(np.float32(s)) for s in spacing)  # as read from a NIfTI header
    ours = {
        s.region: s
        for s in lesion_wise_scores(pred, truth, spacing_mm=spacing32, challenge=challenge)  # type: ignore[arg-type]
    }
    rows = [row for row in OFFICIAL_2023 if row[:3] == (seed, challenge, spacing)]
    assert len(rows) == 3
    for _, _, _, region, dice, hd95, counts in rows:
        assert ours[region].dice == pytest.approx(dice, abs=1e-6)
        assert ours[region].hd95_mm == pytest.approx(hd95, abs=1e-6)
        assert (ours[region].tp, ours[region].fn, ours[region].fp) == counts
