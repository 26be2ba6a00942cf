"""BraTS 2023 lesion-wise Dice and HD95 per region, as the 2023 challenge code computes them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import cc3d
import numpy as np
from scipy import ndimage

from tumorscope.core.data.labels import REGIONS, check_labels, labels_to_regions
from tumorscope.core.errors import check_choice
from tumorscope.core.scoring.distances import HD95_DEFINITIONS, surfel_hd
from tumorscope.core.scoring.masks import bounding_box, check_pair, check_spacing_mm

__all__ = [
    "CHALLENGES",
    "LESION_HD95_DEFINITION",
    "MISSED_LESION_HD95_MM",
    "Challenge",
    "ChallengeParameters",
    "Component",
    "Lesion",
    "RegionLesionScores",
    "lesion_wise_region",
    "lesion_wise_scores",
]

Challenge = Literal["gli", "men", "met", "ped", "ssa"]
"""BraTS 2023 sub-challenge: glioma, meningioma, metastases, paediatric, sub-Saharan Africa."""


@dataclass(frozen=True)
class ChallengeParameters:
    """The lesion-matching parameters one sub-challenge uses (``get_LesionWiseResults``)."""

    dilation_iterations: int
    """Iterations of the 18-connected structuring element used to merge and match lesions."""
    ignored_volume_mm3: float
    """Ground-truth lesions whose volume is at most this (mm³, ``<=``) are left out."""


CHALLENGES: dict[str, ChallengeParameters] = {
    "gli": ChallengeParameters(dilation_iterations=3, ignored_volume_mm3=50.0),
    "ssa": ChallengeParameters(dilation_iterations=3, ignored_volume_mm3=50.0),
    "ped": ChallengeParameters(dilation_iterations=3, ignored_volume_mm3=50.0),
    "men": ChallengeParameters(dilation_iterations=1, ignored_volume_mm3=50.0),
    "met": ChallengeParameters(dilation_iterations=1, ignored_volume_mm3=2.0),
}
"""Parameters per sub-challenge, as in ``rachitsaluja/BraTS-2023-Metrics`` ``metrics.py``."""

MISSED_LESION_HD95_MM = 374.0
"""HD95 the 2023 code gives a missed lesion (its infinite HD95) and every false positive."""

LESION_HD95_DEFINITION = HD95_DEFINITIONS["surfel"]
"""The HD95 the 2023 code uses per lesion (``distances.robust_hausdorff_mm``)."""

_DILATION = ndimage.generate_binary_structure(3, 2)  # 18-connected, as the 2023 code


@dataclass(frozen=True)
class Component:
    """One predicted component that matches no lesion (a false positive)."""

    label: int
    """Its 26-connected component id in the prediction (``cc3d``)."""
    volume_mm3: float
    centroid_vox: tuple[float, float, float]
    """Centre of mass in voxel coordinates (x, y, z) of the full image."""


@dataclass(frozen=True)
class Lesion:
    """One ground-truth lesion (components merged by dilation) of one region."""

    label: int
    """Id of the lesion: its component of the dilated truth (26-connected, ``cc3d``)."""
    volume_mm3: float
    centroid_vox: tuple[float, float, float]
    """Centre of mass in voxel coordinates (x, y, z) of the full image."""
    matched_prediction_ids: tuple[int, ...]
    """Predicted components (26-connected ids) overlapping the lesion's dilation."""
    dice: float
    """Dice between the lesion and the union of its matched components; 0 when missed."""
    hd95_mm: float
    """:data:`LESION_HD95_DEFINITION` between the same; :data:`MISSED_LESION_HD95_MM` if missed."""
    counted: bool
    """False when the lesion is at most the challenge's ignored volume (left out of the score)."""


@dataclass(frozen=True)
class RegionLesionScores:
    """Lesion-wise scores of one region of one case: ``Σ lesion score / (TP + FN + FP)``."""

    region: str
    challenge: str
    dice: float
    hd95_mm: float
    tp: int
    fn: int
    fp: int
    lesions: tuple[Lesion, ...]
    """Every ground-truth lesion, counted or not, in id order."""
    false_positives: tuple[Component, ...]
    """Predicted components that overlap no lesion's dilation."""

    @property
    def false_positive_ids(self) -> tuple[int, ...]:
        return tuple(c.label for c in self.false_positives)


# --------------------------------------------------------------------------------------------
# lesion-wise scoring


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))
    return 2.0 * int(np.count_nonzero(pred & truth)) / total


def _centroid(mask: np.ndarray, inner: tuple[slice, ...], outer: tuple[slice, ...]
              ) -> tuple[float, float, float]:
    """Centre of mass of ``mask`` (cut at ``inner`` of a crop cut at ``outer``) in voxel
    coordinates of the full image."""
    centre = np.argwhere(mask).mean(axis=0)
    return tuple(float(c + i.start + o.start)  # type: ignore[return-value]
                 for c, i, o in zip(centre, inner, outer, strict=True))


def _score_region(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: tuple[float, float, float],
    region: str,
    challenge: str,
) -> RegionLesionScores:
    """Lesion-wise scores of boolean masks assumed valid (same 3-D shape)."""
    params = CHALLENGES[challenge]
    iterations = params.dilation_iterations
    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]
    # Everything (dilated truth included) lies within `iterations` voxels of the union, so a
    # crop grown by that margin and clipped to the image gives the full-image result.
    box = bounding_box(pred | truth, margin=iterations)
    if box is None:
        return RegionLesionScores(region, challenge, 1.0, 0.0, 0, 0, 0, (), ())
    pred, truth = np.ascontiguousarray(pred[box]), np.ascontiguousarray(truth[box])

    pred_cc = cc3d.connected_components(pred, connectivity=26)
    truth_cc = cc3d.connected_components(truth, connectivity=26)
    dilated = ndimage.binary_dilation(truth, structure=_DILATION, iterations=iterations)
    # A lesion is a component of the dilated truth, restricted to the truth's voxels: truth
    # components that touch once dilated become one lesion.
    lesion_map = np.where(truth_cc > 0, cc3d.connected_components(dilated, connectivity=26), 0)

    lesions: list[Lesion] = []
    matched_any: set[int] = set()
    for label, lesion_box in enumerate(ndimage.find_objects(lesion_map), start=1):
        if lesion_box is None:  # cannot happen: every dilated component holds truth voxels
            continue
        grown = tuple(
            slice(max(s.start - iterations, 0), min(s.stop + iterations, n))
            for s, n in zip(lesion_box, lesion_map.shape, strict=True)
        )
        lesion_grown = lesion_map[grown] == label
        reach = ndimage.binary_dilation(lesion_grown, structure=_DILATION, iterations=iterations)
        hits = np.unique(pred_cc[grown][reach])
        matched = tuple(int(h) for h in hits if h != 0)
        matched_any.update(matched)
        volume_mm3 = int(np.count_nonzero(lesion_grown)) * voxel_mm3
        if matched:
            both = bounding_box((lesion_map == label) | np.isin(pred_cc, matched))
            assert both is not None
            lesion_mask = lesion_map[both] == label
            pred_mask = np.isin(pred_cc[both], matched)
            dice = _dice(pred_mask, lesion_mask)
            hd95 = surfel_hd(pred_mask, lesion_mask, spacing, 95.0)
            if math.isinf(hd95):
                hd95 = MISSED_LESION_HD95_MM
        else:
            dice, hd95 = 0.0, MISSED_LESION_HD95_MM
        lesions.append(
            Lesion(
                label=label,
                volume_mm3=volume_mm3,
                centroid_vox=_centroid(lesion_grown, grown, box),
                matched_prediction_ids=matched,
                dice=dice,
                hd95_mm=hd95,
                counted=volume_mm3 > params.ignored_volume_mm3,
            )
        )

    false_positives = tuple(
        Component(label=c, volume_mm3=int(np.count_nonzero(pred_cc[fp_box] == c)) * voxel_mm3,
                  centroid_vox=_centroid(pred_cc[fp_box] == c, fp_box, box))
        for c, fp_box in enumerate(ndimage.find_objects(pred_cc), start=1)
        if fp_box is not None and c not in matched_any
    )
    counted = [lesion for lesion in lesions if lesion.counted]
    tp = sum(1 for lesion in counted if lesion.matched_prediction_ids)
    fn = len(counted) - tp
    fp = len(false_positives)
    n = tp + fn + fp
    if n == 0:  # no counted lesion and no false positive: 0/0, which the 2023 code scores 1 / 0
        dice_score, hd95_score = 1.0, 0.0
    else:
        dice_score = sum(lesion.dice for lesion in counted) / n
        hd95_score = (sum(lesion.hd95_mm for lesion in counted) + fp * MISSED_LESION_HD95_MM) / n
    return RegionLesionScores(
        region=region,
        challenge=challenge,
        dice=dice_score,
        hd95_mm=hd95_score,
        tp=tp,
        fn=fn,
        fp=fp,
        lesions=tuple(lesions),
        false_positives=false_positives,
    )


def lesion_wise_region(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    challenge: Challenge,
    region: str = "WT",
) -> RegionLesionScores:
    """BraTS 2023 lesion-wise Dice and HD95 of one binary region (``get_LesionWiseScores``).

    Both masks are split into 26-connected components. Truth components that touch after
    ``dilation_iterations`` of the 18-connected structuring element (:data:`CHALLENGES`) are
    one lesion. A predicted component matches a lesion when it overlaps the lesion's own
    dilation (a component may match several lesions). Each lesion scores the Dice and
    ``distances.robust_hausdorff_mm`` between it and the union of its matches; a missed lesion (FN)
    scores Dice 0 and HD95 374, and so does every unmatched predicted component (FP). Lesions
    of at most ``ignored_volume_mm3`` are left out of the sums and counts (their matches are
    still not false positives). The score is the sum over lesions divided by TP + FN + FP;
    with nothing to count (no counted lesion, no FP) it is Dice 1 and HD95 0, as in the 2023
    code. ``region`` only labels the result.

    >>> truth = np.zeros((30, 30, 30), bool); truth[5:10, 5:10, 5:10] = True
    >>> pred = truth.copy(); pred[20:25, 20:25, 20:25] = True  # hit, plus one false positive
    >>> s = lesion_wise_region(pred, truth, spacing_mm=(1, 1, 1), challenge="gli")
    >>> (s.dice, s.hd95_mm, s.tp, s.fn, s.fp)
    (0.5, 187.0, 1, 0, 1)
    """
    check_choice("challenge", challenge, get_args(Challenge))
    spacing = check_spacing_mm(spacing_mm)
    pred, truth = check_pair(pred, truth, "masks")
    return _score_region(pred.astype(bool), truth.astype(bool), spacing, region, challenge)


def lesion_wise_scores(
    pred_label: np.ndarray,
    truth_label: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    challenge: Challenge,
) -> tuple[RegionLesionScores, ...]:
    """:func:`lesion_wise_region` for WT, TC and ET of canonical label maps (0, 1, 2, 4).

    Returns one result per region in :data:`~tumorscope.core.data.labels.REGIONS` order. The
    2023 code reads ET as label 3; Tumorscope label maps are canonical (ET = 4) on the way in.
    """
    check_choice("challenge", challenge, get_args(Challenge))
    spacing = check_spacing_mm(spacing_mm)
    pred_label, truth_label = check_pair(pred_label, truth_label, "label maps")
    check_labels(pred_label)
    check_labels(truth_label)
    pred_regions = labels_to_regions(pred_label)
    truth_regions = labels_to_regions(truth_label)
    return tuple(
        _score_region(p, t, spacing, region, challenge)
        for region, p, t in zip(REGIONS, pred_regions, truth_regions, strict=True)
    )
