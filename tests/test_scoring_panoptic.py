"""BraTS 2025 lesion-wise scoring: crafted and random cases against the official brats-evaluation.

The reference runs once per module on real NIfTI files in the layout it requires
(``BraTS-GLI-NNNNN-000.nii.gz``, ET written as 3), through the function its command line
calls per case (``evaluate_single_exam`` with the bundled ``gli`` config), and its result
dicts are compared per case and region with :func:`panoptic_scores`. (Its command line
itself cannot write the summary under NumPy >= 2.3: ``np.count_nonzero`` then returns
NumPy integers, which ``json.dump`` refuses.)
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tumorscope.core.data.labels import REGIONS, from_canonical
from tumorscope.core.errors import ConfigError, GeometryError, LabelError
from tumorscope.core.scoring.distances import HD95_DEFINITIONS
from tumorscope.core.scoring.panoptic import (
    PANOPTIC_HD95_DEFINITION,
    UNMATCHED_HD95_MM,
    panoptic_region,
    panoptic_scores,
)

pytest.importorskip("brats_evaluation")
from brats_evaluation import config_path, evaluate_single_exam  # noqa: E402
from panoptica import Panoptica_Evaluator  # noqa: E402

ISO = (1.0, 1.0, 1.0)
SHAPE = (40, 44, 36)  # not cubic, so an axis mix-up cannot pass unnoticed


def _box(label: np.ndarray, value: int, x: tuple[int, int], y: tuple[int, int],
         z: tuple[int, int]) -> None:
    label[x[0]:x[1], y[0]:y[1], z[0]:z[1]] = value


def _lesion(label: np.ndarray, corner: tuple[int, int, int], size: int) -> None:
    """A cube of edema around a core around enhancing tumour (all three regions)."""
    x, y, z = corner
    _box(label, 2, (x, x + size), (y, y + size), (z, z + size))
    _box(label, 1, (x + 1, x + size - 1), (y + 1, y + size - 1), (z + 1, z + size - 1))
    _box(label, 4, (x + 2, x + size - 2), (y + 2, y + size - 2), (z + 2, z + size - 2))


def _ellipsoid(shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1.0


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Several nested lesions; the prediction moves, resizes, drops and adds some."""
    rng = np.random.default_rng(seed)
    shape = (48, 52, 40)
    truth = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        centre = rng.uniform(8, np.array(shape) - 8)
        radii = rng.uniform(2.0, 6.5, size=3)
        fate = rng.random()
        for target, c, r in (
            (truth, centre, radii),
            (pred if fate > 0.2 else None, centre + rng.integers(-2, 3, size=3),
             radii * rng.uniform(0.7, 1.3, size=3)),
        ):
            if target is None:  # a missed lesion
                continue
            target[_ellipsoid(shape, c, r)] = 2
            target[_ellipsoid(shape, c, r * 0.6)] = 1
            target[_ellipsoid(shape, c + rng.uniform(-1, 1, size=3), r * 0.35)] = 4
    for _ in range(int(rng.integers(0, 4))):  # false positives, some of them one voxel
        centre = rng.uniform(3, np.array(shape) - 3)
        value = int(rng.choice([1, 2, 4]))
        pred[_ellipsoid(shape, centre, rng.uniform(0.4, 2.5, size=3))] = value
    return pred, truth


def _crafted_cases() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float, float]]]:
    cases: dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float, float]]] = {}

    # Two truth lesions touching only at a corner are one 26-connected instance.
    truth = np.zeros(SHAPE, np.uint8)
    _lesion(truth, (5, 5, 5), 8)
    _lesion(truth, (13, 13, 13), 8)
    pred = np.zeros(SHAPE, np.uint8)
    _lesion(pred, (5, 5, 5), 8)
    _lesion(pred, (14, 14, 14), 7)
    cases["touching_lesions"] = (pred, truth, ISO)

    # A one-voxel plane cuts the predicted lesion in two: one TP and one FP per region.
    truth = np.zeros(SHAPE, np.uint8)
    _lesion(truth, (6, 8, 4), 14)
    pred = truth.copy()
    pred[6:20, 8:22, 9] = 0
    cases["split_by_one_voxel"] = (pred, truth, ISO)

    # A one-voxel enhancing blob far away is an FP of WT, TC and ET.
    truth = np.zeros(SHAPE, np.uint8)
    _lesion(truth, (4, 4, 4), 10)
    pred = truth.copy()
    pred[32, 36, 30] = 4
    cases["one_voxel_fp"] = (pred, truth, ISO)

    # Two separate predictions on one truth lesion: one-to-one matching keeps the better one.
    truth = np.zeros(SHAPE, np.uint8)
    _box(truth, 2, (5, 25), (5, 15), (5, 15))
    pred = np.zeros(SHAPE, np.uint8)
    _box(pred, 2, (5, 17), (5, 15), (5, 15))
    _box(pred, 2, (19, 25), (6, 14), (6, 14))
    cases["two_predictions_one_truth"] = (pred, truth, ISO)

    # Greedy matching would take the best pair (T1, P1) and stop at one TP; the maximum
    # bipartite matching pairs T1-P2 and T2-P1 instead (Dice 0.533 + 0.533 > 0.545).
    truth = np.zeros(SHAPE, np.uint8)
    _box(truth, 2, (0, 11), (10, 20), (10, 20))
    _box(truth, 2, (12, 16), (10, 20), (10, 20))
    pred = np.zeros(SHAPE, np.uint8)
    _box(pred, 2, (5, 16), (10, 20), (10, 20))
    _box(pred, 2, (0, 4), (10, 20), (10, 20))
    cases["bipartite_beats_greedy"] = (pred, truth, ISO)

    # Lesions that do not overlap at all: no TP, but instances on both sides.
    truth = np.zeros(SHAPE, np.uint8)
    _lesion(truth, (4, 4, 4), 8)
    pred = np.zeros(SHAPE, np.uint8)
    _lesion(pred, (24, 26, 20), 8)
    cases["no_overlap"] = (pred, truth, ISO)

    lesions = np.zeros(SHAPE, np.uint8)
    _lesion(lesions, (4, 6, 5), 9)
    _lesion(lesions, (22, 24, 18), 7)
    empty = np.zeros(SHAPE, np.uint8)
    cases["empty_truth"] = (lesions, empty, ISO)
    cases["empty_prediction"] = (empty, lesions, ISO)
    cases["both_empty"] = (empty, empty.copy(), ISO)

    # Edema only in the truth, an enhancing blob in the prediction: ET has an FP and no
    # truth, TC likewise, WT a TP.
    truth = np.zeros(SHAPE, np.uint8)
    _box(truth, 2, (8, 20), (8, 20), (8, 20))
    pred = truth.copy()
    pred[12:15, 12:15, 12:15] = 4
    cases["region_empty_in_truth_only"] = (pred, truth, ISO)

    # One voxel inside a lesion of 2,000,000 voxels has Dice 2 / 2,000,001 < 1e-6: not
    # matchable. Inside one of 1,999,999 voxels its Dice is exactly 1e-6: matched.
    truth = np.zeros((126, 126, 130), np.uint8)
    truth[1:126, 1:126, 1:129] = 2
    pred = np.zeros_like(truth)
    pred[60, 60, 60] = 2
    cases["dice_below_threshold"] = (pred, truth, ISO)
    truth = truth.copy()
    truth[1, 1, 1] = 0
    cases["dice_at_threshold"] = (pred, truth, ISO)

    pred, truth = _random_case(100)
    cases["anisotropic"] = (pred, truth, (1.0, 1.0, 2.0))
    return cases


CRAFTED = _crafted_cases()
RANDOM = {f"random_{seed}": (*_random_case(seed), (1.0, 1.0, 1.0)) for seed in range(5)}
CASES = {**CRAFTED, **RANDOM}

# The reference reads NIfTI through SimpleITK: its array is (z, y, x) while the spacing it
# takes from the image is (x, y, z), so it applies the spacing reversed. Cases are written
# with their header zooms reversed so that it applies the intended spacing, except this one,
# which keeps the true header to pin the quirk down.
TRUE_HEADER = "anisotropic_true_header"


def _write(path: Path, label: np.ndarray, zooms: tuple[float, float, float]) -> None:
    image = nib.Nifti1Image(from_canonical(label, convention="brats2023"),
                            np.diag([*zooms, 1.0]))
    nib.save(image, path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The official package's result (per region dicts) of every case, by case name."""
    root = tmp_path_factory.mktemp("brats2025")
    (root / "ref").mkdir()
    (root / "pred").mkdir()
    names = {}
    runs = {**{name: (p, t, s[::-1]) for name, (p, t, s) in CASES.items()},
            TRUE_HEADER: CASES["anisotropic"]}
    for i, (name, (pred, truth, zooms)) in enumerate(runs.items()):
        subject = f"BraTS-GLI-{i:05d}-000"
        names[f"{subject}.nii.gz"] = name
        _write(root / "ref" / f"{subject}.nii.gz", truth, zooms)
        _write(root / "pred" / f"{subject}.nii.gz", pred, zooms)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = Panoptica_Evaluator.load_from_config(str(config_path("gli")))
        results = {
            name: evaluate_single_exam(str(root / "pred" / subject), str(root / "ref" / subject),
                                       subject, evaluator)
            for subject, name in names.items()
        }
    for name, result in results.items():
        assert "error" not in result, (name, result)
    return results


def _same(ours: float, theirs: float, tol: float) -> bool:
    if math.isnan(theirs) or math.isinf(theirs):
        return (math.isnan(ours) and math.isnan(theirs)) or ours == theirs
    return abs(ours - theirs) <= tol


def _compare(name: str, ours_all, result: dict) -> None:
    for ours in ours_all:
        theirs = result[ours.region.lower()]
        where = f"{name} {ours.region}"
        assert (ours.tp, ours.fp, ours.fn) == (theirs["tp"], theirs["fp"], theirs["fn"]), where
        assert _same(ours.rq, theirs["rq"], 1e-6), (where, ours.rq, theirs["rq"])
        assert _same(ours.sq_dice, theirs["sq_dsc"], 1e-6), (where, ours.sq_dice,
                                                             theirs["sq_dsc"])
        assert _same(ours.sq_hd95_mm, theirs["sq_hd95"], 1e-3), (where, ours.sq_hd95_mm,
                                                                theirs["sq_hd95"])
        # Per instance: the reference lists matched truth instances, then missed ones.
        rows = theirs.get("reference_instances", [])
        matched = sorted((r["sq_dsc"], r["sq_hd95"], r["volume"]) for r in rows
                         if r["is_matched"])
        ours_matched = sorted((i.dice, i.hd95_mm, i.volume_mm3) for i in ours.instances
                              if i.status == "TP")
        assert len(matched) == len(ours_matched) == ours.tp, where
        np.testing.assert_allclose(np.array(ours_matched).reshape(-1, 3),
                                   np.array(matched).reshape(-1, 3), atol=1e-3, err_msg=where)
        missed = sorted(r["volume"] for r in rows if not r["is_matched"])
        ours_missed = sorted(i.volume_mm3 for i in ours.instances if i.status == "FN")
        if missed or ours.fn:
            np.testing.assert_allclose(ours_missed, missed, err_msg=where)


@pytest.mark.parametrize("name", sorted(CASES))
def test_agrees_with_the_official_package(reference: dict[str, dict], name: str) -> None:
    pred, truth, spacing = CASES[name]
    _compare(name, panoptic_scores(pred, truth, spacing_mm=spacing), reference[name])


def test_the_reference_applies_a_nifti_headers_spacing_reversed(
        reference: dict[str, dict]) -> None:
    pred, truth, spacing = CASES["anisotropic"]
    # With the true (1, 1, 2) header the reference equals our scores at (2, 1, 1) mm...
    _compare(TRUE_HEADER, panoptic_scores(pred, truth, spacing_mm=spacing[::-1]),
             reference[TRUE_HEADER])
    # ...and this case's HD95 does depend on the spacing.
    ours = panoptic_scores(pred, truth, spacing_mm=spacing)
    assert any(abs(o.sq_hd95_mm - reference[TRUE_HEADER][o.region.lower()]["sq_hd95"]) > 0.1
               for o in ours if o.tp)


# ------------------------------------------------------------------------------------------
# known answers, without the reference


def test_crafted_cases_give_the_expected_counts() -> None:
    def counts(name: str) -> list[tuple[int, int, int]]:
        pred, truth, spacing = CASES[name]
        return [(s.tp, s.fp, s.fn) for s in panoptic_scores(pred, truth, spacing_mm=spacing)]

    # WT: the corner-touching lesions are one instance; their cores do not touch.
    assert counts("touching_lesions") == [(1, 1, 0), (2, 0, 0), (2, 0, 0)]
    assert counts("split_by_one_voxel") == [(1, 1, 0)] * 3
    assert counts("one_voxel_fp") == [(1, 1, 0)] * 3
    assert counts("two_predictions_one_truth")[0] == (1, 1, 0)
    assert counts("bipartite_beats_greedy")[0] == (2, 0, 0)
    assert counts("no_overlap") == [(0, 1, 1)] * 3
    assert counts("empty_truth") == [(0, 2, 0)] * 3
    assert counts("empty_prediction") == [(0, 0, 2)] * 3
    assert counts("both_empty") == [(0, 0, 0)] * 3
    assert counts("region_empty_in_truth_only") == [(1, 0, 0), (0, 1, 0), (0, 1, 0)]


def test_empty_rules() -> None:
    pred, truth, _ = CASES["empty_prediction"]
    for s in panoptic_scores(pred, truth, spacing_mm=ISO):
        assert (s.rq, s.sq_dice, s.sq_hd95_mm) == (0.0, 0.0, UNMATCHED_HD95_MM)
        assert [i.status for i in s.instances] == ["FN", "FN"]
    for s in panoptic_scores(truth, truth * 0, spacing_mm=ISO):  # empty truth
        assert (s.rq, s.sq_dice, s.sq_hd95_mm) == (0.0, 0.0, math.inf)
        assert [i.status for i in s.instances] == ["FP", "FP"]
    for s in panoptic_scores(truth * 0, truth * 0, spacing_mm=ISO):
        assert math.isnan(s.rq) and math.isnan(s.sq_dice) and math.isnan(s.sq_hd95_mm)
        assert s.instances == ()


def test_instances_carry_full_image_ids_volumes_and_centroids() -> None:
    pred, truth, _ = CASES["random_3"]
    spacing = (0.5, 1.0, 2.0)
    for score in panoptic_scores(pred, truth, spacing_mm=spacing):
        region = REGIONS.index(score.region)
        t_mask = np.isin(truth, (1, 2, 4) if region == 0 else (1, 4) if region == 1 else (4,))
        p_mask = np.isin(pred, (1, 2, 4) if region == 0 else (1, 4) if region == 1 else (4,))
        t_cc = cc3d.connected_components(t_mask, connectivity=26)
        p_cc = cc3d.connected_components(p_mask, connectivity=26)
        assert len(score.instances) == score.tp + score.fp + score.fn
        truth_rows = [i for i in score.instances if i.status != "FP"]
        assert [i.truth_id for i in truth_rows] == list(range(1, int(t_cc.max()) + 1))
        for row in score.instances:
            labels, ident = (p_cc, row.prediction_id) if row.status == "FP" else (
                t_cc, row.truth_id)
            component = labels == ident
            assert row.volume_mm3 == pytest.approx(component.sum() * 1.0)
            np.testing.assert_allclose(row.centroid_vox, ndimage.center_of_mass(component))
            if row.status == "TP":
                pair = p_cc == row.prediction_id
                dice = 2 * (pair & component).sum() / (pair.sum() + component.sum())
                assert row.dice == pytest.approx(dice)
            else:
                assert (row.dice, row.hd95_mm) == (0.0, math.inf)


def test_hd95_is_the_pooled_definition_in_mm() -> None:
    assert PANOPTIC_HD95_DEFINITION == HD95_DEFINITIONS["pooled"]
    truth = np.zeros((20, 20, 20), bool)
    truth[5:15, 5:15, 5:15] = True
    pred = np.zeros_like(truth)
    pred[5:15, 5:15, 5:16] = True  # one slice more along z
    assert panoptic_region(pred, truth, spacing_mm=(1.0, 1.0, 2.0)).sq_hd95_mm == 2.0
    assert panoptic_region(pred, truth, spacing_mm=(2.0, 1.0, 1.0)).sq_hd95_mm == 1.0


def test_matching_threshold_is_a_dice_of_one_in_a_million() -> None:
    pred, truth, _ = CASES["dice_below_threshold"]
    below = panoptic_region(pred > 0, truth > 0, spacing_mm=ISO)
    assert (below.tp, below.fp, below.fn) == (0, 1, 1)
    pred, truth, _ = CASES["dice_at_threshold"]
    at = panoptic_region(pred > 0, truth > 0, spacing_mm=ISO)
    assert (at.tp, at.fp, at.fn) == (1, 0, 0)
    assert at.instances[0].dice == 1e-6


def test_inputs_are_checked() -> None:
    mask = np.zeros((4, 4, 4), bool)
    with pytest.raises(ConfigError):
        panoptic_region(mask, mask, spacing_mm=(1, 1))
    with pytest.raises(ConfigError):
        panoptic_region(mask, mask, spacing_mm=ISO, region="XX")
    with pytest.raises(GeometryError):
        panoptic_region(mask, mask[:3], spacing_mm=ISO)
    with pytest.raises(LabelError):
        panoptic_scores(np.full((4, 4, 4), 3, np.uint8), mask.astype(np.uint8), spacing_mm=ISO)
