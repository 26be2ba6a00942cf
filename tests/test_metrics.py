"""Metrics: cross-checked against MONAI, empty-mask conventions, nested regions, cropping."""

from __future__ import annotations

import doctest
import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from tumorscope.core.data.labels import REGIONS
from tumorscope.core.errors import ConfigError, GeometryError, LabelError
from tumorscope.core.scoring import distances, metrics
from tumorscope.core.scoring.distances import (
    HD95_DEFINITIONS,
    hd95_mm,
    image_diagonal_mm,
    surface,
)
from tumorscope.core.scoring.metrics import (
    HD95_COLUMNS,
    METRIC_COLUMNS,
    METRIC_DOCS,
    dice,
    jaccard,
    region_metrics,
    sensitivity,
    specificity,
    volume_ml,
)

BRATS_SHAPE = (240, 240, 155)
ANISOTROPIC = (1.0, 1.2, 2.0)


# ------------------------------------------------------------------------------------------
# helpers


def blob(shape: tuple[int, int, int], *, seed: int, sigma: float = 2.5, level: float = 0.6):
    """Irregular, possibly multi-component mask from smoothed noise (may touch the border)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field > level * field.std()


def ellipsoid(
    shape: tuple[int, int, int], centre: tuple[float, ...], radii: tuple[float, ...]
) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    return r2 <= 1.0


def irregular_tumour(shape: tuple[int, int, int], *, seed: int) -> np.ndarray:
    """An ellipsoid with a bumpy border, tumour-sized inside a BraTS-sized volume."""
    rng = np.random.default_rng(seed)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    centre, radii = (120, 110, 70), (38, 30, 22)
    r = np.sqrt(sum(((g - c) / a) ** 2 for g, c, a in zip(grids, centre, radii, strict=True)))
    box = tuple(
        slice(c - int(1.6 * a), c + int(1.6 * a)) for c, a in zip(centre, radii, strict=True)
    )
    bumps = np.zeros(shape, np.float32)
    sub_shape = tuple(s.stop - s.start for s in box)
    bumps[box] = ndimage.gaussian_filter(rng.standard_normal(sub_shape), 4) * 6
    return (r + bumps) < 1.0


def monai_hd(pred: np.ndarray, truth: np.ndarray, spacing, percentile: float = 95.0) -> float:
    monai_metrics = pytest.importorskip("monai.metrics")
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = monai_metrics.compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None],
            torch.from_numpy(truth)[None, None],
            include_background=True,
            percentile=percentile,
            spacing=list(spacing),
        )
    return float(value[0, 0])


def monai_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    monai_metrics = pytest.importorskip("monai.metrics")
    torch = pytest.importorskip("torch")
    value = monai_metrics.compute_dice(
        torch.from_numpy(pred.astype(np.float32))[None, None],
        torch.from_numpy(truth.astype(np.float32))[None, None],
        include_background=True,
    )
    return float(value[0, 0])


def reference_hd(pred: np.ndarray, truth: np.ndarray, spacing, percentile: float = 95.0):
    """Straight from the definition on the full volume: scipy erosion + distance transform."""
    surfaces = [m ^ ndimage.binary_erosion(m) for m in (pred, truth)]
    distance_to = [ndimage.distance_transform_edt(~s, sampling=spacing) for s in surfaces]
    return max(
        np.percentile(distance_to[1][surfaces[0]], percentile),
        np.percentile(distance_to[0][surfaces[1]], percentile),
    )


# ------------------------------------------------------------------------------------------
# documentation


def test_doctests_pass() -> None:
    for module in (metrics, distances):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0


def test_every_column_is_documented() -> None:
    assert set(METRIC_DOCS) == set(METRIC_COLUMNS)
    assert HD95_COLUMNS == ("hd95_monai_mm", "hd95_pooled_mm", "hd95_surfel_mm")
    for definition, name in HD95_DEFINITIONS.items():
        assert METRIC_DOCS[f"hd95_{definition}_mm"].startswith(name)
        assert "diagonal" in METRIC_DOCS[f"hd95_{definition}_mm"]
    assert "MONAI" in HD95_DEFINITIONS["monai"]
    for column in ("dice", "jaccard", *HD95_COLUMNS, "sensitivity"):
        assert "empty" in METRIC_DOCS[column]
    assert "whole image" in METRIC_DOCS["specificity"]


# ------------------------------------------------------------------------------------------
# against MONAI


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), ANISOTROPIC, (0.7, 0.9, 3.0)])
def test_random_blobs_match_monai(seed: int, spacing: tuple[float, float, float]) -> None:
    shape = (36, 40, 28)
    truth = blob(shape, seed=seed)
    pred = blob(shape, seed=seed + 100) | (truth & blob(shape, seed=seed + 200, level=-0.5))
    assert truth.any() and pred.any()
    assert hd95_mm(pred, truth, spacing_mm=spacing) == pytest.approx(
        monai_hd(pred, truth, spacing), abs=1e-3
    )
    assert dice(pred, truth) == pytest.approx(monai_dice(pred, truth), abs=1e-6)


@pytest.mark.parametrize("percentile", [50.0, 99.0, 100.0])  # MONAI reads 0 as "no percentile"
def test_other_percentiles_match_monai(percentile: float) -> None:
    truth = blob((30, 30, 30), seed=7)
    pred = blob((30, 30, 30), seed=8)
    ours = hd95_mm(pred, truth, spacing_mm=ANISOTROPIC, percentile=percentile)
    assert ours == pytest.approx(monai_hd(pred, truth, ANISOTROPIC, percentile), abs=1e-3)


def test_brats_sized_ellipsoid_and_dilated_copy_match_monai() -> None:
    truth = ellipsoid(BRATS_SHAPE, (120, 120, 77), (40, 30, 20))
    pred = ndimage.binary_dilation(truth)  # one voxel, 6-connected
    expected = monai_hd(pred, truth, ANISOTROPIC)
    assert hd95_mm(pred, truth, spacing_mm=ANISOTROPIC) == pytest.approx(expected, abs=1e-3)
    assert hd95_mm(truth, pred, spacing_mm=ANISOTROPIC) == pytest.approx(expected, abs=1e-3)
    assert dice(pred, truth) == pytest.approx(monai_dice(pred, truth), abs=1e-6)
    # isotropic 1 mm: nearly every surface voxel moves by one face step, so HD95 is 1 mm
    iso = hd95_mm(pred, truth, spacing_mm=(1.0, 1.0, 1.0))
    assert iso == pytest.approx(1.0)
    assert iso == pytest.approx(monai_hd(pred, truth, (1.0, 1.0, 1.0)), abs=1e-3)


def test_brats_sized_irregular_tumour_matches_monai() -> None:
    truth = irregular_tumour(BRATS_SHAPE, seed=1)
    pred = irregular_tumour(BRATS_SHAPE, seed=2) | ndimage.binary_erosion(truth, iterations=3)
    ours = hd95_mm(pred, truth, spacing_mm=ANISOTROPIC)
    assert ours > 2.0
    assert ours == pytest.approx(monai_hd(pred, truth, ANISOTROPIC), abs=1e-3)
    assert dice(pred, truth) == pytest.approx(monai_dice(pred, truth), abs=1e-6)


# ------------------------------------------------------------------------------------------
# cropping does not change the answer


def test_mask_touching_the_border_matches_full_volume_reference() -> None:
    shape = (30, 26, 22)
    truth = np.zeros(shape, bool)
    truth[0:12, 5:20, 0:22] = True  # touches x = 0 and both z faces
    pred = np.zeros(shape, bool)
    pred[0:14, 7:26, 3:22] = True  # touches x = 0, y = end, z = end
    pred[25:30, 0:3, 0:2] = True  # a far false positive in a corner
    for spacing in ((1.0, 1.0, 1.0), ANISOTROPIC):
        expected = reference_hd(pred, truth, spacing)
        assert hd95_mm(pred, truth, spacing_mm=spacing) == pytest.approx(expected, abs=1e-9)
        assert hd95_mm(pred, truth, spacing_mm=spacing, percentile=100) == pytest.approx(
            reference_hd(pred, truth, spacing, 100), abs=1e-9
        )
        assert hd95_mm(pred, truth, spacing_mm=spacing) == pytest.approx(
            monai_hd(pred, truth, spacing), abs=1e-3
        )


@pytest.mark.parametrize("seed", range(4))
def test_random_blobs_match_full_volume_reference(seed: int) -> None:
    truth = blob((24, 30, 20), seed=seed, sigma=2.0)
    pred = blob((24, 30, 20), seed=seed + 50, sigma=2.0)
    assert hd95_mm(pred, truth, spacing_mm=ANISOTROPIC) == pytest.approx(
        reference_hd(pred, truth, ANISOTROPIC), abs=1e-9
    )


def test_surface_is_mask_xor_cross_erosion_with_background_beyond_the_border() -> None:
    mask = blob((20, 22, 18), seed=3)
    mask[0] |= True  # a whole face on the border
    cross = ndimage.generate_binary_structure(3, 1)
    expected = mask ^ ndimage.binary_erosion(mask, structure=cross)
    np.testing.assert_array_equal(surface(mask), expected)
    full = np.ones((4, 4, 4), bool)
    assert surface(full).sum() == 4**3 - 2**3


def test_translation_does_not_change_hd95() -> None:
    truth = ellipsoid((40, 40, 40), (12, 12, 12), (6, 5, 4))
    pred = ellipsoid((40, 40, 40), (13, 12, 12), (6, 6, 4))
    moved = np.roll(np.roll(truth, 20, axis=0), 20, axis=1), np.roll(
        np.roll(pred, 20, axis=0), 20, axis=1
    )
    assert hd95_mm(pred, truth, spacing_mm=ANISOTROPIC) == pytest.approx(
        hd95_mm(moved[1], moved[0], spacing_mm=ANISOTROPIC), abs=1e-12
    )


# ------------------------------------------------------------------------------------------
# empty masks


def test_both_empty() -> None:
    empty = np.zeros((10, 12, 14), bool)
    assert dice(empty, empty) == 1.0
    assert jaccard(empty, empty) == 1.0
    assert sensitivity(empty, empty) == 1.0
    assert specificity(empty, empty) == 1.0
    assert hd95_mm(empty, empty, spacing_mm=ANISOTROPIC) == 0.0


@pytest.mark.parametrize("which", ["pred", "truth"])
def test_one_empty_gives_dice_zero_and_the_image_diagonal(which: str) -> None:
    shape = (10, 12, 14)
    mask = np.zeros(shape, bool)
    mask[3:6, 4:8, 5:9] = True
    empty = np.zeros(shape, bool)
    pred, truth = (empty, mask) if which == "pred" else (mask, empty)
    diagonal = math.sqrt(10**2 + (12 * 1.2) ** 2 + (14 * 2.0) ** 2)
    assert image_diagonal_mm(shape, spacing_mm=ANISOTROPIC) == pytest.approx(diagonal)
    assert hd95_mm(pred, truth, spacing_mm=ANISOTROPIC) == pytest.approx(diagonal)
    assert dice(pred, truth) == 0.0
    assert jaccard(pred, truth) == 0.0
    assert sensitivity(pred, truth) == 0.0
    expected_specificity = 1.0 if which == "pred" else 1 - mask.sum() / mask.size
    assert specificity(pred, truth) == pytest.approx(expected_specificity)


def test_brats_diagonal_is_373() -> None:
    assert image_diagonal_mm(BRATS_SHAPE, spacing_mm=(1, 1, 1)) == pytest.approx(373.1287, abs=1e-4)


def test_truth_filling_the_image_specificity() -> None:
    full = np.ones((3, 3, 3), bool)
    partial = full.copy()
    partial[0, 0, 0] = False
    assert specificity(full, full) == 1.0
    assert specificity(partial, full) == 0.0


# ------------------------------------------------------------------------------------------
# hand-computed counts and volumes


def small_pair() -> tuple[np.ndarray, np.ndarray]:
    """120 voxels; truth 10, prediction 8, overlap 6 -> tp 6, fp 2, fn 4, tn 108."""
    shape = (4, 5, 6)
    truth = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)
    truth.reshape(-1)[:10] = True
    pred.reshape(-1)[4:12] = True
    return pred, truth


def test_overlap_metrics_by_hand() -> None:
    pred, truth = small_pair()
    assert dice(pred, truth) == pytest.approx(12 / 18)
    assert jaccard(pred, truth) == pytest.approx(6 / 12)
    assert sensitivity(pred, truth) == pytest.approx(6 / 10)
    assert specificity(pred, truth) == pytest.approx(108 / 110)
    # integer masks: nonzero is foreground
    assert dice(pred.astype(np.uint8) * 7, truth.astype(np.int16)) == pytest.approx(12 / 18)


def test_volumes_by_hand() -> None:
    pred, truth = small_pair()
    spacing = (1.0, 2.0, 3.0)  # 6 mm^3 per voxel
    assert volume_ml(truth, spacing_mm=spacing) == pytest.approx(0.060)
    assert volume_ml(pred, spacing_mm=spacing) == pytest.approx(0.048)


def test_region_metrics_by_hand() -> None:
    pred, truth = small_pair()
    truth_label = truth.astype(np.uint8) * 2  # edema only: WT, no TC, no ET
    pred_label = pred.astype(np.uint8) * 2
    rows = region_metrics(pred_label, truth_label, spacing_mm=(1.0, 2.0, 3.0))
    assert [row["region"] for row in rows] == list(REGIONS)
    assert all(tuple(row) == METRIC_COLUMNS for row in rows)
    wt, tc, et = rows
    assert wt["dice"] == pytest.approx(12 / 18)
    assert wt["jaccard"] == pytest.approx(0.5)
    assert wt["sensitivity"] == pytest.approx(0.6)
    assert wt["specificity"] == pytest.approx(108 / 110)
    assert wt["volume_truth_ml"] == pytest.approx(0.060)
    assert wt["volume_pred_ml"] == pytest.approx(0.048)
    assert wt["volume_diff_ml"] == pytest.approx(-0.012)
    assert wt["hd95_monai_mm"] == pytest.approx(hd95_mm(pred, truth, spacing_mm=(1.0, 2.0, 3.0)))
    for row in (tc, et):  # empty in both
        assert (row["dice"], row["jaccard"], row["hd95_monai_mm"]) == (1.0, 1.0, 0.0)
        assert (row["sensitivity"], row["specificity"]) == (1.0, 1.0)
        assert (row["volume_truth_ml"], row["volume_pred_ml"], row["volume_diff_ml"]) == (0, 0, 0)


# ------------------------------------------------------------------------------------------
# nested regions from label maps


def nested_label(shape=(40, 44, 36), *, centre=(20, 22, 18), scale: float = 1.0) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[ellipsoid(shape, centre, (12 * scale, 13 * scale, 10 * scale))] = 2
    label[ellipsoid(shape, centre, (7, 8, 6))] = 4
    label[ellipsoid(shape, centre, (4, 4, 3))] = 1
    return label


def test_nested_regions_from_label_maps() -> None:
    truth = nested_label()
    pred = nested_label(scale=1.2)  # larger edema, identical core and enhancing rim
    rows = {row["region"]: row for row in region_metrics(pred, truth, spacing_mm=ANISOTROPIC)}
    assert rows["TC"]["dice"] == rows["ET"]["dice"] == 1.0
    assert rows["TC"]["hd95_monai_mm"] == rows["ET"]["hd95_monai_mm"] == 0.0
    assert 0.0 < rows["WT"]["dice"] < 1.0
    assert rows["WT"]["sensitivity"] == 1.0  # prediction contains the truth
    assert rows["WT"]["volume_diff_ml"] > 0
    for row in (rows["WT"], rows["TC"], rows["ET"]):
        difference = row["volume_pred_ml"] - row["volume_truth_ml"]
        assert row["volume_diff_ml"] == pytest.approx(difference)
    voxel_ml = 1.0 * 1.2 * 2.0 / 1000
    assert rows["WT"]["volume_truth_ml"] == pytest.approx(np.count_nonzero(truth) * voxel_ml)
    assert rows["TC"]["volume_truth_ml"] == pytest.approx(
        np.count_nonzero(np.isin(truth, (1, 4))) * voxel_ml
    )
    assert rows["ET"]["volume_truth_ml"] == pytest.approx(np.count_nonzero(truth == 4) * voxel_ml)
    volumes = [rows[region]["volume_truth_ml"] for region in REGIONS]
    assert volumes == sorted(volumes, reverse=True) and len(set(volumes)) == 3
    # region masks go through the same functions as plain masks
    wt_hd = hd95_mm(pred > 0, truth > 0, spacing_mm=ANISOTROPIC)
    assert rows["WT"]["hd95_monai_mm"] == pytest.approx(wt_hd)
    expected = monai_hd(pred > 0, truth > 0, ANISOTROPIC)
    assert rows["WT"]["hd95_monai_mm"] == pytest.approx(expected, abs=1e-3)


def test_missing_enhancing_tumour_gets_the_brats_penalty() -> None:
    truth = nested_label()
    pred = truth.copy()
    pred[pred == 4] = 1  # the model calls the enhancing rim necrotic
    rows = {row["region"]: row for row in region_metrics(pred, truth, spacing_mm=ANISOTROPIC)}
    assert rows["WT"]["dice"] == rows["TC"]["dice"] == 1.0
    assert rows["ET"]["dice"] == 0.0
    assert rows["ET"]["sensitivity"] == 0.0
    assert rows["ET"]["volume_pred_ml"] == 0.0
    diagonal = image_diagonal_mm(truth.shape, spacing_mm=ANISOTROPIC)
    assert rows["ET"]["hd95_monai_mm"] == pytest.approx(diagonal)


def test_region_metrics_of_two_empty_label_maps() -> None:
    empty = np.zeros((5, 6, 7), np.uint8)
    for row in region_metrics(empty, empty, spacing_mm=(1, 1, 1)):
        assert (row["dice"], row["hd95_monai_mm"], row["volume_truth_ml"]) == (1.0, 0.0, 0.0)


def test_region_metrics_on_a_brats_sized_case_is_fast_and_matches_monai() -> None:
    import time

    truth_wt = irregular_tumour(BRATS_SHAPE, seed=3)
    core = ellipsoid(BRATS_SHAPE, (120, 110, 70), (20, 16, 12))
    truth = np.where(truth_wt, 2, 0).astype(np.uint8)
    truth[truth_wt & core] = 4
    pred = np.where(irregular_tumour(BRATS_SHAPE, seed=4), 2, 0).astype(np.uint8)
    pred[ndimage.binary_dilation(truth == 4)] = 4
    start = time.perf_counter()
    rows = {r["region"]: r for r in region_metrics(pred, truth, spacing_mm=ANISOTROPIC)}
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0  # ~0.1 s on 2 cores; generous for a loaded machine
    et = monai_hd(pred == 4, truth == 4, ANISOTROPIC)
    assert rows["ET"]["hd95_monai_mm"] == pytest.approx(et, abs=1e-3)
    assert rows["WT"]["dice"] == pytest.approx(monai_dice(pred > 0, truth > 0), abs=1e-6)


# ------------------------------------------------------------------------------------------
# validation


def test_shape_mismatch_names_both_shapes() -> None:
    a, b = np.zeros((4, 5, 6), bool), np.zeros((4, 5, 7), bool)
    for call in (
        lambda: dice(a, b),
        lambda: jaccard(a, b),
        lambda: hd95_mm(a, b, spacing_mm=(1, 1, 1)),
        lambda: region_metrics(a.astype(np.uint8), b.astype(np.uint8), spacing_mm=(1, 1, 1)),
    ):
        with pytest.raises(GeometryError, match=r"\(4, 5, 6\).*\(4, 5, 7\)"):
            call()
    assert issubclass(GeometryError, ValueError)


def test_non_3d_masks_are_refused_for_distances() -> None:
    flat = np.ones((4, 5), bool)
    with pytest.raises(GeometryError, match=r"3-D.*\(4, 5\)"):
        hd95_mm(flat, flat, spacing_mm=(1, 1, 1))
    assert dice(flat, flat) == 1.0  # overlap metrics do not care about dimensionality


@pytest.mark.parametrize(
    "spacing", [(1.0, 1.0), (1.0, 1.0, 1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -2.0, 1.0),
                (1.0, float("nan"), 1.0), ("a", 1, 1), 1.0]
)
def test_bad_spacing_is_refused_naming_the_value(spacing) -> None:
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(ConfigError, match="spacing_mm") as info:
        hd95_mm(mask, mask, spacing_mm=spacing)
    assert repr(spacing) in str(info.value)
    with pytest.raises(ValueError, match="spacing_mm"):
        region_metrics(mask.astype(np.uint8), mask.astype(np.uint8), spacing_mm=spacing)


@pytest.mark.parametrize("percentile", [-1.0, 100.5])
def test_bad_percentile_is_refused(percentile: float) -> None:
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(ConfigError, match=str(percentile)):
        hd95_mm(mask, mask, spacing_mm=(1, 1, 1), percentile=percentile)


def test_non_canonical_labels_are_refused() -> None:
    label = np.zeros((4, 4, 4), np.uint8)
    label[1, 1, 1] = 3  # BraTS 2023 enhancing, not converted
    with pytest.raises(LabelError, match=r"\[3\]"):
        region_metrics(label, np.zeros_like(label), spacing_mm=(1, 1, 1))


# ------------------------------------------------------------------------------------------
# the other HD95 definitions, each against an independent computation of its reference


def _edt_surface_distances(pred: np.ndarray, truth: np.ndarray, spacing) -> tuple:
    """Both directions' surface-voxel distances by scipy's EDT over the whole image (the way
    panoptica computes them), independent of our k-d tree on the cropped box."""
    def border(mask):
        return mask ^ ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(
            3, 1), border_value=0)
    sp, st = border(pred), border(truth)
    to_truth = ndimage.distance_transform_edt(~st, sampling=spacing)[sp]
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)[st]
    return to_truth, to_pred


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), ANISOTROPIC])
def test_pooled_and_surfel_definitions_match_their_references(seed: int, spacing) -> None:
    from surface_distance import compute_robust_hausdorff, compute_surface_distances

    shape = (36, 40, 28)
    truth = blob(shape, seed=seed)
    pred = blob(shape, seed=seed + 100) | (truth & blob(shape, seed=seed + 200, level=-0.5))
    to_truth, to_pred = _edt_surface_distances(pred, truth, spacing)
    pooled = float(np.percentile(np.concatenate([to_truth, to_pred]), 95))
    assert hd95_mm(pred, truth, spacing_mm=spacing, definition="pooled") == pytest.approx(
        pooled, abs=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        surfel = compute_robust_hausdorff(compute_surface_distances(truth, pred, spacing), 95)
    assert hd95_mm(pred, truth, spacing_mm=spacing, definition="surfel") == pytest.approx(
        surfel, abs=1e-3)
    # region_metrics fills one column per definition with the same numbers.
    label_truth, label_pred = truth.astype(np.uint8) * 2, pred.astype(np.uint8) * 2
    wt = region_metrics(label_pred, label_truth, spacing_mm=spacing)[0]
    assert wt["hd95_pooled_mm"] == pytest.approx(pooled, abs=1e-3)
    assert wt["hd95_surfel_mm"] == pytest.approx(surfel, abs=1e-3)
    assert wt["hd95_monai_mm"] == pytest.approx(monai_hd(pred, truth, spacing), abs=1e-3)


def test_the_definitions_differ_where_the_references_do() -> None:
    """A hit plus a distant false-positive blob (about 1 in 9 of the predicted surface): it
    sets MONAI's pred-to-truth percentile, and the surfel one; pooled with the other
    direction's zeros it drops below the 95th percentile. A table that did not name its
    definition would report 24 mm or 0 mm for the same case."""
    truth = np.zeros((60, 40, 40), bool)
    truth[5:25, 10:30, 10:30] = True
    pred = truth.copy()
    pred[45:52, 15:22, 15:22] = True
    values = {d: hd95_mm(pred, truth, spacing_mm=(1, 1, 1), definition=d)
              for d in HD95_DEFINITIONS}
    assert values == {"monai": 24.0, "pooled": 0.0, "surfel": 24.0}


def test_unknown_definition_is_refused_by_name() -> None:
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(ConfigError, match="definition must be one of"):
        hd95_mm(mask, mask, spacing_mm=(1, 1, 1), definition="hausdorff")  # type: ignore[arg-type]
