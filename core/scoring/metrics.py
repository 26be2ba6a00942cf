"""Per-case, per-region segmentation metrics: Dice, Jaccard, HD95 (mm), sensitivity, volume (mL)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tumorscope.core.data.labels import REGIONS, check_labels, labels_to_regions
from tumorscope.core.errors import GeometryError
from tumorscope.core.scoring.distances import (
    HD95_DEFINITIONS,
    hd95_all_mm,
    hd95_column,
    image_diagonal_mm,
)
from tumorscope.core.scoring.masks import bounding_box, check_spacing_mm

__all__ = [
    "HD95_COLUMNS",
    "METRIC_COLUMNS",
    "METRIC_DOCS",
    "dice",
    "jaccard",
    "region_metrics",
    "sensitivity",
    "specificity",
    "volume_ml",
]

HD95_COLUMNS: tuple[str, ...] = tuple(hd95_column(d) for d in HD95_DEFINITIONS)
"""One column per HD95 definition (``hd95_monai_mm``, ``hd95_pooled_mm``, ``hd95_surfel_mm``)."""

METRIC_COLUMNS: tuple[str, ...] = (
    "region",
    "dice",
    "jaccard",
    *HD95_COLUMNS,
    "sensitivity",
    "specificity",
    "volume_truth_ml",
    "volume_pred_ml",
    "volume_diff_ml",
)
"""Keys of every dict returned by :func:`region_metrics`, in table order."""

METRIC_DOCS: dict[str, str] = {
    "region": (
        "Nested BraTS region: WT (whole tumour, labels 1+2+4), TC (tumour core, 1+4), "
        "ET (enhancing tumour, 4)."
    ),
    "dice": (
        "Dice = 2|P∩T| / (|P|+|T|), 0..1, higher is better. Both masks empty: 1; "
        "exactly one empty: 0 (BraTS convention)."
    ),
    "jaccard": (
        "Jaccard (IoU) = |P∩T| / |P∪T|, 0..1, higher is better. Both masks empty: 1; "
        "exactly one empty: 0."
    ),
    **{
        hd95_column(definition): (
            f"{name}. Surface distances with the voxel spacing applied; lower is better. "
            "Both masks empty: 0; exactly one empty: the image diagonal in mm (BraTS "
            "convention; 373.13 for 240x240x155 at 1 mm)."
        )
        for definition, name in HD95_DEFINITIONS.items()
    },
    "sensitivity": (
        "Sensitivity (recall, true-positive rate) = |P∩T| / |T|, 0..1. Empty truth: 1 if the "
        "prediction is empty too, else 0."
    ),
    "specificity": (
        "Specificity (true-negative rate) = |~P∩~T| / |~T| over the whole image, 0..1; close to "
        "1 for any brain tumour because background dominates. Truth covering the whole image: "
        "1 if the prediction does too, else 0."
    ),
    "volume_truth_ml": "Volume of the ground-truth region in mL (voxel count x voxel volume).",
    "volume_pred_ml": "Volume of the predicted region in mL (voxel count x voxel volume).",
    "volume_diff_ml": (
        "Predicted minus ground-truth volume in mL: positive means over-segmentation."
    ),
}
"""What each column of :func:`region_metrics` means, with its empty-mask convention."""


# --------------------------------------------------------------------------------------------
# validation


def _as_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as boolean arrays (nonzero = foreground), shapes checked."""
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise GeometryError(
            f"prediction and truth must have the same shape, got {pred.shape} and {truth.shape}"
        )
    return pred.astype(bool, copy=False), truth.astype(bool, copy=False)


def _check_3d(array: np.ndarray, name: str) -> None:
    if array.ndim != 3:
        raise GeometryError(f"{name} must be a 3-D (X, Y, Z) array, got shape {array.shape}")


# --------------------------------------------------------------------------------------------
# overlap metrics


def _ratio(numerator: int, denominator: int, *, perfect: bool) -> float:
    """``numerator / denominator``; an empty denominator gives 1 if ``perfect`` else 0."""
    if denominator == 0:
        return 1.0 if perfect else 0.0
    return numerator / denominator


def _counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, int]:
    """(true positives, false positives, false negatives, total voxels) of boolean masks."""
    n_pred = int(np.count_nonzero(pred))
    n_truth = int(np.count_nonzero(truth))
    tp = int(np.count_nonzero(pred & truth))
    return tp, n_pred - tp, n_truth - tp, pred.size


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient ``2|P∩T| / (|P|+|T|)`` of two masks of the same shape.

    Nonzero voxels are foreground. Both masks empty gives 1.0, exactly one empty gives 0.0
    (BraTS convention).

    >>> dice(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0]))
    0.5
    >>> dice(np.zeros(4), np.zeros(4)), dice(np.ones(4), np.zeros(4))
    (1.0, 0.0)
    """
    pred, truth = _as_pair(pred, truth)
    tp, fp, fn, _ = _counts(pred, truth)
    return _ratio(2 * tp, 2 * tp + fp + fn, perfect=True)


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    """Jaccard index (IoU) ``|P∩T| / |P∪T|`` of two masks of the same shape.

    Nonzero voxels are foreground. Both masks empty gives 1.0, exactly one empty gives 0.0.

    >>> round(jaccard(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0])), 4)
    0.3333
    """
    pred, truth = _as_pair(pred, truth)
    tp, fp, fn, _ = _counts(pred, truth)
    return _ratio(tp, tp + fp + fn, perfect=True)


def sensitivity(pred: np.ndarray, truth: np.ndarray) -> float:
    """True-positive rate ``|P∩T| / |T|``; empty truth gives 1.0 if ``pred`` is empty, else 0.0.

    >>> sensitivity(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0]))
    0.5
    """
    pred, truth = _as_pair(pred, truth)
    tp, fp, fn, _ = _counts(pred, truth)
    return _ratio(tp, tp + fn, perfect=fp == 0)


def specificity(pred: np.ndarray, truth: np.ndarray) -> float:
    """True-negative rate ``|~P∩~T| / |~T|``; truth filling the image gives 1.0 if ``pred`` does
    too, else 0.0.

    >>> specificity(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0]))
    0.5
    """
    pred, truth = _as_pair(pred, truth)
    tp, fp, fn, total = _counts(pred, truth)
    tn = total - tp - fp - fn
    return _ratio(tn, tn + fp, perfect=fn == 0)


def volume_ml(mask: np.ndarray, *, spacing_mm: Sequence[float]) -> float:
    """Volume of the nonzero voxels of ``mask`` ``(X, Y, Z)`` in millilitres (1 mL = 1000 mm³).

    >>> volume_ml(np.ones((10, 10, 10)), spacing_mm=(1.0, 1.0, 2.0))
    2.0
    """
    spacing = check_spacing_mm(spacing_mm)
    mask = np.asarray(mask)
    _check_3d(mask, "mask")
    return _volume_ml(int(np.count_nonzero(mask)), spacing)


def _volume_ml(n_voxels: int, spacing: tuple[float, float, float]) -> float:
    return n_voxels * spacing[0] * spacing[1] * spacing[2] / 1000.0


# --------------------------------------------------------------------------------------------
# per case


def region_metrics(
    pred_label: np.ndarray,
    truth_label: np.ndarray,
    *,
    spacing_mm: Sequence[float],
) -> list[dict[str, float | str]]:
    """Every metric of :data:`METRIC_DOCS` for the regions WT, TC and ET of one case.

    Parameters
    ----------
    pred_label, truth_label : (X, Y, Z) integer ndarray
        Canonical label maps (values 0, 1, 2, 4; see :mod:`tumorscope.core.data.labels`) on the
        same grid.
    spacing_mm : 3 positive floats
        Voxel size along X, Y, Z in mm.

    Returns
    -------
    list of dict
        One dict per region in :data:`~tumorscope.core.data.labels.REGIONS` order, keys
        :data:`METRIC_COLUMNS`. Empty regions follow the conventions in :data:`METRIC_DOCS`.

    >>> truth = np.zeros((8, 8, 8), np.uint8); truth[2:6, 2:6, 2:6] = 2; truth[3:5, 3:5, 3:5] = 4
    >>> rows = region_metrics(truth, truth, spacing_mm=(1.0, 1.0, 1.0))
    >>> [(r["region"], r["dice"], r["hd95_monai_mm"], r["volume_truth_ml"]) for r in rows]
    [('WT', 1.0, 0.0, 0.064), ('TC', 1.0, 0.0, 0.008), ('ET', 1.0, 0.0, 0.008)]
    """
    spacing = check_spacing_mm(spacing_mm)
    pred_label = np.asarray(pred_label)
    truth_label = np.asarray(truth_label)
    if pred_label.shape != truth_label.shape:
        raise GeometryError(
            f"prediction and truth label maps must have the same shape, "
            f"got {pred_label.shape} and {truth_label.shape}"
        )
    _check_3d(pred_label, "prediction label map")
    diagonal = image_diagonal_mm(pred_label.shape, spacing_mm=spacing)
    total = pred_label.size

    # Every region lies inside the nonzero voxels of its map, so one crop serves all regions;
    # outside it both maps are 0, so label checks and counts on the crop are complete.
    box = bounding_box((pred_label != 0) | (truth_label != 0))
    if box is None:
        pred_regions = truth_regions = np.zeros((len(REGIONS), 0, 0, 0), bool)
    else:
        check_labels(pred_label[box])
        check_labels(truth_label[box])
        pred_regions = labels_to_regions(pred_label[box])
        truth_regions = labels_to_regions(truth_label[box])

    rows: list[dict[str, float | str]] = []
    for region, pred, truth in zip(REGIONS, pred_regions, truth_regions, strict=True):
        tp, fp, fn, _ = _counts(pred, truth)
        tn = total - tp - fp - fn
        hd95 = hd95_all_mm(pred, truth, spacing, diagonal_mm=diagonal)
        rows.append(
            {
                "region": region,
                "dice": _ratio(2 * tp, 2 * tp + fp + fn, perfect=True),
                "jaccard": _ratio(tp, tp + fp + fn, perfect=True),
                **{hd95_column(d): value for d, value in hd95.items()},
                "sensitivity": _ratio(tp, tp + fn, perfect=fp == 0),
                "specificity": _ratio(tn, tn + fp, perfect=fn == 0),
                "volume_truth_ml": _volume_ml(tp + fn, spacing),
                "volume_pred_ml": _volume_ml(tp + fp, spacing),
                "volume_diff_ml": _volume_ml(fp - fn, spacing),
            }
        )
    return rows
