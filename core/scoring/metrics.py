"""Per-case, per-region segmentation metrics: Dice, Jaccard, HD95 (mm), sensitivity, volume (mL)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from tumorscope.core.data.labels import REGIONS, check_labels, labels_to_regions
from tumorscope.core.errors import ConfigError, GeometryError

__all__ = [
    "HD95_DEFINITION",
    "METRIC_COLUMNS",
    "METRIC_DOCS",
    "dice",
    "hd95_mm",
    "image_diagonal_mm",
    "jaccard",
    "region_metrics",
    "sensitivity",
    "specificity",
    "surface",
    "volume_ml",
]

HD95_DEFINITION = "HD95 (MONAI definition, max of directed 95th percentiles, mm)"
"""How :func:`hd95_mm` defines HD95; a metrics table names it because references differ."""

METRIC_COLUMNS: tuple[str, ...] = (
    "region",
    "dice",
    "jaccard",
    "hd95_mm",
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
    "hd95_mm": (
        f"{HD95_DEFINITION}: surface = mask XOR its 6-connected erosion; for each surface voxel "
        "of one mask, the Euclidean distance (voxel spacing applied) to the nearest surface "
        "voxel of the other; the 95th percentile (linear interpolation) of each direction; the "
        "larger of the two. Lower is better. Both masks empty: 0; exactly one empty: the image "
        "diagonal in mm (BraTS convention; 373.13 for 240x240x155 at 1 mm). The official BraTS "
        "evaluator pools both directions instead and can give a smaller value."
    ),
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


def check_spacing_mm(spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    """``spacing_mm`` as 3 positive finite floats, or a :class:`ConfigError` saying so."""
    try:
        values = tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise ConfigError(
            f"spacing_mm must be 3 positive numbers (mm per voxel along x, y, z), "
            f"got {spacing_mm!r}"
        ) from None
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ConfigError(
            f"spacing_mm must be 3 positive numbers (mm per voxel along x, y, z), "
            f"got {spacing_mm!r}"
        )
    return values  # type: ignore[return-value]


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
# surface distance


def image_diagonal_mm(shape: Sequence[int], *, spacing_mm: Sequence[float]) -> float:
    """Diagonal of an image of ``shape`` voxels in mm: the HD95 given when one mask is empty.

    >>> round(image_diagonal_mm((240, 240, 155), spacing_mm=(1.0, 1.0, 1.0)), 2)
    373.13
    """
    spacing = check_spacing_mm(spacing_mm)
    if len(shape) != 3:
        raise GeometryError(f"shape must have 3 dimensions (X, Y, Z), got {tuple(shape)}")
    return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True)))


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Tightest slices around the True voxels of ``mask``; ``None`` when it is empty."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _surface_padded(mask: np.ndarray) -> np.ndarray:
    """Surface of a boolean mask whose outer one-voxel shell is False (see :func:`surface`).

    A voxel is eroded away unless it and its six face neighbours are all foreground; with a
    background shell this is exactly ``scipy.ndimage.binary_erosion`` (cross structuring
    element, ``border_value=0``) of the uncropped volume.
    """
    core = mask[1:-1, 1:-1, 1:-1]
    eroded = (
        core
        & mask[:-2, 1:-1, 1:-1]
        & mask[2:, 1:-1, 1:-1]
        & mask[1:-1, :-2, 1:-1]
        & mask[1:-1, 2:, 1:-1]
        & mask[1:-1, 1:-1, :-2]
        & mask[1:-1, 1:-1, 2:]
    )
    out = np.zeros_like(mask)
    out[1:-1, 1:-1, 1:-1] = core & ~eroded
    return out


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of ``mask`` ``(X, Y, Z)``: the mask XOR its 6-connected binary erosion.

    Voxels outside the image count as background, so a mask touching the border has its
    border voxels on the surface (as in MONAI and the BraTS evaluator).

    >>> m = np.zeros((5, 5, 5), bool); m[1:4, 1:4, 1:4] = True
    >>> int(surface(m).sum())  # a 3x3x3 cube minus its centre voxel
    26
    """
    mask = np.asarray(mask).astype(bool, copy=False)
    _check_3d(mask, "mask")
    return _surface_padded(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]


def _directed_percentile(
    from_points_mm: np.ndarray, to_tree: cKDTree, percentile: float
) -> float:
    """Percentile of the distances from each of ``from_points_mm`` to its nearest tree point."""
    distance, _ = to_tree.query(from_points_mm, k=1)
    return float(np.percentile(distance, percentile))


def _hd95(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: tuple[float, float, float],
    percentile: float,
    diagonal_mm: float,
) -> float:
    """HD of boolean masks, assumed valid; ``diagonal_mm`` is returned when one is empty."""
    box = _bounding_box(pred | truth)
    if box is None:
        return 0.0
    # Crop to the union's box and pad with one background voxel: the surfaces are then exactly
    # those of the full volume (erosion sees background beyond the box, as beyond the image),
    # and every surface voxel lies in the box, so the nearest-surface distances are unchanged.
    pred_box = np.pad(pred[box], 1)
    truth_box = np.pad(truth[box], 1)
    if not pred_box.any() or not truth_box.any():
        return diagonal_mm
    # Surface voxel centres in mm (relative to the box; distances do not care). A k-d tree
    # over one surface answers the nearest-neighbour queries of the other exactly, and on CPU
    # costs a fraction of a distance transform of the box (MONAI >= 1.5 does the same).
    scale = np.asarray(spacing)
    pred_points = np.argwhere(_surface_padded(pred_box)) * scale
    truth_points = np.argwhere(_surface_padded(truth_box)) * scale
    return max(
        _directed_percentile(pred_points, cKDTree(truth_points, leafsize=32), percentile),
        _directed_percentile(truth_points, cKDTree(pred_points, leafsize=32), percentile),
    )


def hd95_mm(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    percentile: float = 95.0,
) -> float:
    """95% Hausdorff distance in mm between two masks ``(X, Y, Z)`` (MONAI's definition).

    Surfaces are each mask XOR its 6-connected erosion. For every surface voxel of one mask
    the Euclidean distance to the nearest surface voxel of the other is measured with
    ``spacing_mm`` applied; the result is the larger of the two directed ``percentile``-th
    percentiles (``np.percentile``'s linear interpolation, as ``torch.quantile`` in
    ``monai.metrics.compute_hausdorff_distance(percentile=95, spacing=...)``).

    Empty masks follow BraTS: both empty gives 0.0; exactly one empty gives the image
    diagonal in mm (:func:`image_diagonal_mm`). MONAI instead gives NaN or infinity there.

    Parameters
    ----------
    pred, truth : (X, Y, Z) ndarray
        Masks on the same grid; nonzero voxels are foreground.
    spacing_mm : 3 positive floats
        Voxel size along X, Y, Z in mm (``tumorscope.core.data.nifti.voxel_spacing_mm``).
    percentile : float
        Percentile in [0, 100]; 100 gives the classic Hausdorff distance.

    >>> truth = np.zeros((20, 20, 20), bool); truth[5:15, 5:15, 5:15] = True
    >>> pred = np.zeros_like(truth); pred[5:15, 5:15, 5:16] = True  # one slice more along Z
    >>> hd95_mm(pred, truth, spacing_mm=(1.0, 1.0, 2.0))
    2.0
    >>> round(hd95_mm(pred, np.zeros_like(truth), spacing_mm=(1.0, 1.0, 1.0)), 2)  # diagonal
    34.64
    """
    spacing = check_spacing_mm(spacing_mm)
    pred, truth = _as_pair(pred, truth)
    _check_3d(pred, "prediction")
    percentile = float(percentile)
    if not 0.0 <= percentile <= 100.0:
        raise ConfigError(f"percentile must be within [0, 100], got {percentile}")
    diagonal = image_diagonal_mm(pred.shape, spacing_mm=spacing)
    return _hd95(pred, truth, spacing, percentile, diagonal)


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
    >>> [(r["region"], r["dice"], r["hd95_mm"], r["volume_truth_ml"]) for r in rows]
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
    box = _bounding_box((pred_label != 0) | (truth_label != 0))
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
        rows.append(
            {
                "region": region,
                "dice": _ratio(2 * tp, 2 * tp + fp + fn, perfect=True),
                "jaccard": _ratio(tp, tp + fp + fn, perfect=True),
                "hd95_mm": _hd95(pred, truth, spacing, 95.0, diagonal),
                "sensitivity": _ratio(tp, tp + fn, perfect=fp == 0),
                "specificity": _ratio(tn, tn + fp, perfect=fn == 0),
                "volume_truth_ml": _volume_ml(tp + fn, spacing),
                "volume_pred_ml": _volume_ml(tp + fp, spacing),
                "volume_diff_ml": _volume_ml(fp - fn, spacing),
            }
        )
    return rows
