"""Every scoring of one case at once: legacy whole-volume metrics plus the lesion-wise ones.

``legacy`` is the BraTS <= 2021 table (whole-volume Dice, Jaccard, every HD95 definition,
sensitivity, specificity, volumes); ``brats2023`` the 2023 challenge's lesion-wise Dice and
HD95 (:mod:`.lesions`); ``brats2025`` the current evaluator's one-to-one matched scores
(:mod:`.panoptic`). The metric rows carry one set of columns per scoring, named for it, and
the lesion rows one line per lesion, so a table never mixes definitions without saying so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from tumorscope.core.errors import ConfigError, check_choice
from tumorscope.core.scoring.lesions import (
    CHALLENGES,
    MISSED_LESION_HD95_MM,
    Challenge,
    lesion_wise_scores,
)
from tumorscope.core.scoring.masks import check_pair, check_spacing_mm
from tumorscope.core.scoring.metrics import region_metrics

__all__ = [
    "LESION_COLUMNS",
    "LESION_HD95",
    "SCORINGS",
    "SCORING_COLUMNS",
    "SCORING_DOCS",
    "CaseScores",
    "Scoring",
    "check_scorings",
    "score_case",
]

Scoring = Literal["legacy", "brats2023", "brats2025"]
SCORINGS: tuple[str, ...] = get_args(Scoring)

LESION_HD95: dict[str, str] = {"brats2023": "surfel", "brats2025": "pooled"}
"""The HD95 definition (``distances.HD95_DEFINITIONS``) each lesion-wise scoring measures its
lesions with: surface-distance's surfel-weighted one in the BraTS 2023 code, panoptica's
pooled one in the BraTS 2025 evaluator."""

SCORING_DOCS: dict[str, str] = {
    "legacy": "legacy (BraTS <= 2021): whole-volume Dice, HD95 and volumes per region",
    "brats2023": "brats2023: lesion-wise Dice and HD95 as the BraTS 2023 code (many-to-one "
                 "matching after dilation; misses and false positives score Dice 0, HD95 374)",
    "brats2025": "brats2025: lesions matched one-to-one as the brats-evaluation package "
                 "(panoptica): recognition quality F1, segmentation quality Dice and HD95",
}
"""What each scoring is, as the CLI and the app name it."""

SCORING_COLUMNS: dict[str, dict[str, str]] = {
    "brats2023": {
        "brats2023_dice": "BraTS 2023 lesion-wise Dice: sum of lesion Dice / (TP + FN + FP), "
                          "0..1, higher is better; nothing to count: 1",
        "brats2023_hd95_mm": "BraTS 2023 lesion-wise HD95 (surfel-weighted, mm): sum of lesion "
                             "HD95 / (TP + FN + FP), 374 per miss or false positive; lower is "
                             "better; nothing to count: 0",
        "brats2023_tp": "BraTS 2023 ground-truth lesions with a matched prediction",
        "brats2023_fn": "BraTS 2023 ground-truth lesions missed (counted ones only)",
        "brats2023_fp": "BraTS 2023 predicted components matching no lesion",
    },
    "brats2025": {
        "brats2025_rq": "BraTS 2025 recognition quality F1 = TP / (TP + FP/2 + FN/2), 0..1",
        "brats2025_sq_dice": "BraTS 2025 segmentation quality: mean Dice of one-to-one matched "
                             "lesions, 0..1",
        "brats2025_sq_hd95_mm": "BraTS 2025 segmentation quality HD95 (pooled, mm): mean over "
                                "matched lesions",
        "brats2025_tp": "BraTS 2025 matched lesion pairs",
        "brats2025_fn": "BraTS 2025 ground-truth lesions without a one-to-one match",
        "brats2025_fp": "BraTS 2025 predicted lesions without a one-to-one match",
    },
}
"""The metric-table columns each lesion-wise scoring adds, with what they mean."""

LESION_COLUMNS: dict[str, str] = {
    "case_id": "the case",
    "region": "WT, TC or ET",
    "scoring": "brats2023 or brats2025: the matching that made the row",
    "lesion": "id of the lesion (ground-truth lesion, or predicted component for FP)",
    "status": "TP (matched), FN (missed), FP (prediction matching no lesion), or ignored "
              "(ground-truth lesion under the challenge's volume threshold, brats2023)",
    "volume_ml": "volume of the lesion (of the predicted component for FP), mL",
    "centroid_x_mm": "centre of mass, world x in mm (the NIfTI affine of the truth)",
    "centroid_y_mm": "centre of mass, world y in mm",
    "centroid_z_mm": "centre of mass, world z in mm",
    "dice": "Dice of the lesion and its matched prediction (0 for FN and FP)",
    "hd95_mm": "HD95 of the same, in the scoring's definition (brats2023: 374 for FN and FP; "
               "brats2025: empty for FN and FP, which it gives no distance)",
    "matched": "predicted component ids matched to the lesion, space-separated",
}
"""Columns of ``lesions.csv``, one row per lesion, with what they mean."""


@dataclass(frozen=True)
class CaseScores:
    """The scores of one case: one metric row per region and one row per lesion."""

    rows: tuple[dict[str, Any], ...]
    """Per region (WT, TC, ET): the legacy columns and each lesion-wise scoring's columns."""
    lesions: tuple[dict[str, Any], ...]
    """Per lesion and scoring; centroids in voxels (``centroid_vox``) until placed in mm."""


def check_scorings(scorings: Sequence[str]) -> tuple[str, ...]:
    """``scorings`` as a tuple in :data:`SCORINGS` order, ``legacy`` always first.

    Legacy is the table's base (volumes, whole-volume Dice), so it is always computed.

    >>> check_scorings(["brats2025"])
    ('legacy', 'brats2025')
    """
    if isinstance(scorings, str):
        scorings = [scorings]
    for name in scorings:
        check_choice("scoring", name, SCORINGS)
    if not scorings:
        raise ConfigError(f"scoring must name at least one of {list(SCORINGS)}, got none")
    return tuple(s for s in SCORINGS if s == "legacy" or s in scorings)


def _lesion_row(region: str, scoring: str, lesion: int, status: str, *, volume_mm3: float,
                centroid_vox: Any, dice: float, hd95_mm: float | None,
                matched: Sequence[int] = ()) -> dict[str, Any]:
    """One row of lesions.csv (before its centroid is placed in world mm)."""
    return {"region": region, "scoring": scoring, "lesion": lesion, "status": status,
            "volume_ml": volume_mm3 / 1000.0, "centroid_vox": centroid_vox, "dice": dice,
            "hd95_mm": hd95_mm, "matched": " ".join(str(i) for i in matched)}


def _brats2023(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float],
               challenge: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    columns, lesion_rows = [], []
    for score in lesion_wise_scores(pred, truth, spacing_mm=spacing, challenge=challenge):
        columns.append({"brats2023_dice": score.dice, "brats2023_hd95_mm": score.hd95_mm,
                        "brats2023_tp": score.tp, "brats2023_fn": score.fn,
                        "brats2023_fp": score.fp})
        for lesion in score.lesions:
            status = ("TP" if lesion.matched_prediction_ids else "FN") if lesion.counted \
                else "ignored"
            lesion_rows.append(_lesion_row(
                score.region, "brats2023", lesion.label, status, volume_mm3=lesion.volume_mm3,
                centroid_vox=lesion.centroid_vox, dice=lesion.dice, hd95_mm=lesion.hd95_mm,
                matched=lesion.matched_prediction_ids))
        for component in score.false_positives:
            lesion_rows.append(_lesion_row(
                score.region, "brats2023", component.label, "FP",
                volume_mm3=component.volume_mm3, centroid_vox=component.centroid_vox,
                dice=0.0, hd95_mm=MISSED_LESION_HD95_MM))
    return columns, lesion_rows


def _brats2025(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from tumorscope.core.scoring.panoptic import panoptic_scores

    columns, lesion_rows = [], []
    for score in panoptic_scores(pred, truth, spacing_mm=spacing):
        columns.append({"brats2025_rq": score.rq, "brats2025_sq_dice": score.sq_dice,
                        "brats2025_sq_hd95_mm": score.sq_hd95_mm, "brats2025_tp": score.tp,
                        "brats2025_fn": score.fn, "brats2025_fp": score.fp})
        for inst in score.instances:
            lesion_rows.append(_lesion_row(
                score.region, "brats2025",
                inst.prediction_id if inst.status == "FP" else inst.truth_id, inst.status,
                volume_mm3=inst.volume_mm3, centroid_vox=inst.centroid_vox, dice=inst.dice,
                # brats2025 gives an unmatched lesion no distance (infinite): left empty.
                hd95_mm=inst.hd95_mm if math.isfinite(inst.hd95_mm) else None,
                matched=(inst.prediction_id,) if inst.status == "TP" else ()))
    return columns, lesion_rows


def score_case(
    pred_label: np.ndarray,
    truth_label: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    scorings: Sequence[Scoring] = SCORINGS,
    challenge: Challenge = "gli",
) -> CaseScores:
    """Every scoring of ``scorings`` for one case's canonical label maps (0, 1, 2, 4).

    ``challenge`` picks the BraTS 2023 sub-challenge parameters (:data:`.lesions.CHALLENGES`).
    Metric rows are in WT, TC, ET order; lesion rows name their region and scoring.

    >>> truth = np.zeros((30, 30, 30), np.uint8); truth[5:12, 5:12, 5:12] = 2
    >>> pred = truth.copy(); pred[20:22, 20:22, 20:22] = 2  # one small false positive
    >>> s = score_case(pred, truth, spacing_mm=(1, 1, 1), scorings=["brats2023"])
    >>> wt = s.rows[0]
    >>> (wt["region"], round(wt["dice"], 3), wt["brats2023_dice"], wt["brats2023_fp"])
    ('WT', 0.988, 0.5, 1)
    >>> sorted(r["status"] for r in s.lesions if r["region"] == "WT")
    ['FP', 'TP']
    """
    chosen = check_scorings(scorings)
    check_choice("challenge", challenge, tuple(CHALLENGES))
    spacing = check_spacing_mm(spacing_mm)
    pred_label, truth_label = check_pair(pred_label, truth_label, "label maps")
    rows = [dict(r) for r in region_metrics(pred_label, truth_label, spacing_mm=spacing)]
    lesions: list[dict[str, Any]] = []
    if "brats2023" in chosen:
        columns, found = _brats2023(pred_label, truth_label, spacing, challenge)
        for row, extra in zip(rows, columns, strict=True):
            row.update(extra)
        lesions += found
    if "brats2025" in chosen:
        columns, found = _brats2025(pred_label, truth_label, spacing)
        for row, extra in zip(rows, columns, strict=True):
            row.update(extra)
        lesions += found
    return CaseScores(tuple(rows), tuple(lesions))
