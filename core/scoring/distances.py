"""Surface distances between two masks in mm: each HD95 definition the references use, named.

The references disagree on purpose (``../shared/FACTS.md``): MONAI takes the larger of the
two directed 95th percentiles, panoptica (the BraTS 2025 evaluator) the 95th percentile of
both directions pooled, and DeepMind's ``surface-distance`` (the BraTS 2023 lesion-wise code)
weights marching-cubes surface elements by their area. A table names the one it shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Literal, get_args

import numpy as np
from scipy.spatial import cKDTree

from tumorscope.core.errors import ConfigError, GeometryError, check_choice
from tumorscope.core.scoring.masks import (
    bounding_box,
    check_pair,
    check_percentile,
    check_spacing_mm,
)

__all__ = [
    "HD95_DEFINITIONS",
    "HD95Definition",
    "hd95_column",
    "hd95_mm",
    "hd95_all_mm",
    "image_diagonal_mm",
    "robust_hausdorff_mm",
    "surface",
    "surfel_hd",
]

HD95Definition = Literal["monai", "pooled", "surfel"]
"""Which HD95: ``monai``, ``pooled`` (panoptica / BraTS 2025) or ``surfel`` (surface-distance)."""

HD95_DEFINITIONS: dict[str, str] = {
    "monai": "HD95 (MONAI: larger of the two directed 95th percentiles, mm)",
    "pooled": "HD95 (pooled: 95th percentile of both directions together, as panoptica and "
              "the BraTS 2025 evaluator, mm)",
    "surfel": "HD95 (DeepMind surface-distance: surfel-area weighted, as the BraTS 2023 "
              "lesion-wise code, mm)",
}
"""The name of each definition, as tables, CSV documentation and plots show it."""


def hd95_column(definition: str) -> str:
    """The metrics-table column of one HD95 definition.

    >>> hd95_column("pooled")
    'hd95_pooled_mm'
    """
    check_choice("HD95 definition", definition, get_args(HD95Definition))
    return f"hd95_{definition}_mm"


def image_diagonal_mm(shape: Sequence[int], *, spacing_mm: Sequence[float]) -> float:
    """Diagonal of an image of ``shape`` voxels in mm: the HD95 given when one mask is empty.

    >>> round(image_diagonal_mm((240, 240, 155), spacing_mm=(1.0, 1.0, 1.0)), 2)
    373.13
    """
    spacing = check_spacing_mm(spacing_mm)
    if len(shape) != 3:
        raise GeometryError(f"shape must have 3 dimensions (X, Y, Z), got {tuple(shape)}")
    return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True)))


# --------------------------------------------------------------------------------------------
# surface voxels (MONAI, panoptica)


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
    if mask.ndim != 3:
        raise GeometryError(f"mask must be a 3-D (X, Y, Z) array, got shape {mask.shape}")
    return _surface_padded(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]


def _voxel_distances(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``pred`` to ``truth``'s surface and back.

    Both masks are non-empty crops padded with one background voxel: the surfaces are then
    exactly those of the full volume and every surface voxel lies in the crop. A k-d tree
    over one surface answers the other's nearest-neighbour queries exactly, and on CPU costs
    a fraction of a distance transform of the box (MONAI >= 1.5 does the same).
    """
    scale = np.asarray(spacing)
    pred_points = np.argwhere(_surface_padded(pred)) * scale
    truth_points = np.argwhere(_surface_padded(truth)) * scale
    to_truth, _ = cKDTree(truth_points, leafsize=32).query(pred_points, k=1)
    to_pred, _ = cKDTree(pred_points, leafsize=32).query(truth_points, k=1)
    return to_truth, to_pred


# --------------------------------------------------------------------------------------------
# surface elements (DeepMind surface-distance)


@lru_cache(maxsize=16)
def _surfel_areas(spacing: tuple[float, float, float]) -> np.ndarray:
    """Area in mm² of the marching-cubes surface element of each 2x2x2 neighbour code."""
    from surface_distance.lookup_tables import create_table_neighbour_code_to_surface_area

    return np.asarray(create_table_neighbour_code_to_surface_area(spacing), dtype=float)


def _neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """8-bit code of every voxel corner: which of the 8 voxels around it are foreground.

    The corner grid has one more point than voxels along each axis; voxels outside ``mask``
    count as background. Bit weights follow surface-distance's
    ``ENCODE_NEIGHBOURHOOD_3D_KERNEL`` (128 for the lower corner voxel, 1 for the upper).
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    nx, ny, nz = (n + 1 for n in mask.shape)
    code = np.zeros((nx, ny, nz), np.uint8)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                bit = np.uint8(1 << (7 - 4 * i - 2 * j - k))
                code |= padded[i : i + nx, j : j + ny, k : k + nz] * bit
    return code


def _weighted_percentile(distances: np.ndarray, areas: np.ndarray, percentile: float) -> float:
    """Area-weighted percentile: the first sorted distance whose cumulative area share
    reaches ``percentile`` (as ``compute_robust_hausdorff``)."""
    if distances.size == 0:
        return math.inf
    order = np.lexsort((areas, distances))
    distances = distances[order]
    areas = areas[order]
    share = np.cumsum(areas) / np.sum(areas)
    index = int(np.searchsorted(share, percentile / 100.0))
    return float(distances[min(index, distances.size - 1)])


def surfel_hd(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float],
              percentile: float) -> float:
    """:func:`robust_hausdorff_mm` of boolean masks of one shape, inputs assumed checked."""
    box = bounding_box(pred | truth)
    if box is None:
        return math.inf
    pred, truth = pred[box], truth[box]
    if not pred.any() or not truth.any():
        return math.inf
    table = _surfel_areas(spacing)
    code_pred = _neighbour_codes(pred)
    code_truth = _neighbour_codes(truth)
    corners_pred = np.argwhere((code_pred != 0) & (code_pred != 255))
    corners_truth = np.argwhere((code_truth != 0) & (code_truth != 255))
    # surface-distance takes, for each surface corner, the exact Euclidean distance to the
    # nearest surface corner of the other mask (a distance transform of the corner grid); a
    # k-d tree over the other mask's corners gives the same distances without transforming
    # the whole box.
    scale = np.asarray(spacing)
    points_pred, points_truth = corners_pred * scale, corners_truth * scale
    to_pred, _ = cKDTree(points_pred, leafsize=32).query(points_truth, k=1)
    to_truth, _ = cKDTree(points_truth, leafsize=32).query(points_pred, k=1)
    areas_truth = table[code_truth[tuple(corners_truth.T)]]
    areas_pred = table[code_pred[tuple(corners_pred.T)]]
    return max(_weighted_percentile(to_pred, areas_truth, percentile),
               _weighted_percentile(to_truth, areas_pred, percentile))


# --------------------------------------------------------------------------------------------
# public


def hd95_all_mm(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    diagonal_mm: float,
    definitions: Iterable[str] = get_args(HD95Definition),
    percentile: float = 95.0,
) -> dict[str, float]:
    """Every asked HD95 definition of two boolean masks at once (their surfaces computed once).

    Inputs are assumed checked (same 3-D shape, boolean, ``spacing`` from
    :func:`check_spacing_mm`). Empty masks follow BraTS for every definition: both empty
    gives 0.0, exactly one empty gives ``diagonal_mm``.
    """
    wanted = tuple(definitions)
    box = bounding_box(pred | truth)
    if box is None:
        return dict.fromkeys(wanted, 0.0)
    pred_box = np.pad(pred[box], 1)
    truth_box = np.pad(truth[box], 1)
    if not pred_box.any() or not truth_box.any():
        return dict.fromkeys(wanted, diagonal_mm)
    out: dict[str, float] = {}
    if "monai" in wanted or "pooled" in wanted:
        to_truth, to_pred = _voxel_distances(pred_box, truth_box, spacing)
        if "monai" in wanted:
            out["monai"] = max(float(np.percentile(to_truth, percentile)),
                               float(np.percentile(to_pred, percentile)))
        if "pooled" in wanted:
            out["pooled"] = float(np.percentile(np.concatenate([to_truth, to_pred]),
                                                percentile))
    if "surfel" in wanted:
        out["surfel"] = surfel_hd(pred_box, truth_box, spacing, percentile)
    return {d: out[d] for d in wanted}


def hd95_mm(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    percentile: float = 95.0,
    definition: HD95Definition = "monai",
) -> float:
    """95% Hausdorff distance in mm between two masks ``(X, Y, Z)``, by a named definition.

    ``monai`` (default): surfaces are each mask XOR its 6-connected erosion; for every surface
    voxel of one mask the Euclidean distance to the nearest surface voxel of the other is
    measured with ``spacing_mm`` applied; the result is the larger of the two directed
    ``percentile``-th percentiles (``np.percentile``'s linear interpolation, as
    ``monai.metrics.compute_hausdorff_distance(percentile=95, spacing=...)``).
    ``pooled``: the same distances, both directions in one set, one percentile (panoptica,
    the BraTS 2025 evaluator). ``surfel``: DeepMind surface-distance's robust Hausdorff
    (:func:`robust_hausdorff_mm`).

    Empty masks follow BraTS for every definition: both empty gives 0.0; exactly one empty
    gives the image diagonal in mm (:func:`image_diagonal_mm`). MONAI instead gives NaN or
    infinity there, surface-distance infinity.

    >>> truth = np.zeros((20, 20, 20), bool); truth[5:15, 5:15, 5:15] = True
    >>> pred = np.zeros_like(truth); pred[5:15, 5:15, 5:16] = True  # one slice more along Z
    >>> hd95_mm(pred, truth, spacing_mm=(1.0, 1.0, 2.0))
    2.0
    >>> hd95_mm(pred, truth, spacing_mm=(1.0, 1.0, 2.0), definition="pooled")
    2.0
    >>> round(hd95_mm(pred, np.zeros_like(truth), spacing_mm=(1.0, 1.0, 1.0)), 2)  # diagonal
    34.64
    """
    check_choice("definition", definition, get_args(HD95Definition))
    spacing = check_spacing_mm(spacing_mm)
    percentile = check_percentile(percentile)
    pred, truth = check_pair(pred, truth)
    diagonal = image_diagonal_mm(pred.shape, spacing_mm=spacing)
    return hd95_all_mm(pred.astype(bool, copy=False), truth.astype(bool, copy=False), spacing,
                       diagonal_mm=diagonal, definitions=(definition,),
                       percentile=percentile)[definition]


def robust_hausdorff_mm(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    percentile: float = 95.0,
) -> float:
    """HD95 in mm as DeepMind ``surface-distance`` defines it, with its empty-mask rule.

    Surfaces are marching-cubes surface elements ("surfels") on the voxel-corner grid, each
    weighted by its area in mm² (``spacing_mm`` applied). For each surfel of one mask the
    Euclidean distance to the nearest surfel corner of the other is taken; each direction's
    ``percentile`` is the smallest distance whose cumulative area share reaches it (no
    interpolation); the result is the larger of the two directions
    (``compute_robust_hausdorff(compute_surface_distances(truth, pred, spacing_mm), 95)``).
    Either mask empty gives ``inf`` (as surface-distance; both empty too); :func:`hd95_mm`
    with ``definition="surfel"`` applies the BraTS empty-mask rule instead.

    >>> truth = np.zeros((20, 20, 20), bool); truth[5:15, 5:15, 5:15] = True
    >>> pred = np.zeros_like(truth); pred[5:15, 5:15, 5:16] = True  # one slice more along Z
    >>> robust_hausdorff_mm(pred, truth, spacing_mm=(1.0, 1.0, 2.0))
    2.0
    """
    spacing = check_spacing_mm(spacing_mm)
    percentile = check_percentile(percentile)
    pred, truth = check_pair(pred, truth)
    return surfel_hd(pred.astype(bool), truth.astype(bool), spacing, percentile)


def hd95_slice_mm(pred: np.ndarray, truth: np.ndarray, *,
                  spacing_mm: Sequence[float] = (1.0, 1.0), percentile: float = 95.0) -> float:
    """The ``monai`` HD95 of two 2-D masks ``(H, W)``: outlines are each mask XOR its
    4-connected erosion (pixels outside the image are background), distances in mm with
    ``spacing_mm`` (row, column), the larger directed percentile. Empty masks as in 3-D:
    both empty 0.0, exactly one empty the image diagonal.

    >>> truth = np.zeros((20, 20), bool); truth[5:15, 5:15] = True
    >>> pred = np.zeros_like(truth); pred[5:15, 5:17] = True  # two columns more
    >>> hd95_slice_mm(pred, truth, spacing_mm=(1.0, 0.5))
    1.0
    """
    from scipy.ndimage import binary_erosion

    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.ndim != 2 or pred.shape != truth.shape:
        raise GeometryError(f"prediction and truth masks must be 2-D (H, W) arrays of one "
                            f"shape, got {pred.shape} and {truth.shape}")
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 2 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ConfigError(f"spacing_mm must be 2 positive numbers (mm per row, column), got "
                          f"{spacing_mm!r}")
    percentile = check_percentile(percentile)
    p, t = pred.astype(bool), truth.astype(bool)
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return float(math.hypot(p.shape[0] * spacing[0], p.shape[1] * spacing[1]))
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    scale = np.asarray(spacing)
    points = [np.argwhere(m & ~binary_erosion(m, cross, border_value=0)) * scale for m in (p, t)]
    to_truth, _ = cKDTree(points[1]).query(points[0], k=1)
    to_pred, _ = cKDTree(points[0]).query(points[1], k=1)
    return float(max(np.percentile(to_truth, percentile), np.percentile(to_pred, percentile)))
