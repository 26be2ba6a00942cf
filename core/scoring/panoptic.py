"""BraTS 2025 lesion-wise scores per region, as the official brats-evaluation package computes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cc3d
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tumorscope.core.data.labels import REGIONS, check_labels, labels_to_regions
from tumorscope.core.errors import check_choice
from tumorscope.core.scoring.distances import HD95_DEFINITIONS, hd95_all_mm
from tumorscope.core.scoring.masks import bounding_box, check_pair, check_spacing_mm

__all__ = [
    "CONNECTIVITY",
    "MATCHING_THRESHOLD_DICE",
    "PANOPTIC_HD95_DEFINITION",
    "UNMATCHED_HD95_MM",
    "Instance",
    "RegionPanopticScores",
    "panoptic_region",
    "panoptic_scores",
]

CONNECTIVITY = 26
"""Instances are the connected components of a region (``cc3d``'s default, as panoptica)."""

MATCHING_THRESHOLD_DICE = 1e-6
"""A truth and a predicted instance can be matched when their Dice is at least this
(``MaxBipartiteMatching(matching_metric=DSC, matching_threshold=0.000001)``, not strict)."""

PANOPTIC_HD95_DEFINITION = HD95_DEFINITIONS["pooled"]
"""The HD95 of a matched pair: panoptica's ``_hd95_from_pair``, the 95th percentile
(linear interpolation) of both directions' surface-voxel distances pooled together."""

UNMATCHED_HD95_MM = math.inf
"""``sq_hd95_mm`` of a region with no matched pair (unless both masks are empty), as the
``gli`` config's edge-case handler gives it; also the ``hd95_mm`` of every FN and FP row."""

_UNMATCHED_COST = 1.0 + 1e-6  # panoptica's cost of a pair that cannot be matched


@dataclass(frozen=True)
class Instance:
    """One row of the lesion table of one region: a matched pair, a miss or a false positive."""

    status: str
    """``"TP"`` (matched pair), ``"FN"`` (unmatched truth instance) or ``"FP"`` (unmatched
    predicted instance)."""
    truth_id: int | None
    """Id of the truth instance (its 26-connected component of the region, ``cc3d`` raster
    order, the same ids as on the full image); None for an FP."""
    prediction_id: int | None
    """Id of the predicted instance (same numbering); None for an FN."""
    volume_mm3: float
    """Volume of the truth instance for TP and FN, of the predicted one for FP."""
    centroid_vox: tuple[float, float, float]
    """Centre of mass of that same instance, in full-image voxel coordinates (x, y, z)."""
    dice: float
    """Dice of the pair; 0 for FN and FP."""
    hd95_mm: float
    """:data:`PANOPTIC_HD95_DEFINITION` of the pair in mm; :data:`UNMATCHED_HD95_MM` for FN
    and FP (the reference gives those rows no HD95 and leaves them out of ``sq_hd95``)."""


@dataclass(frozen=True)
class RegionPanopticScores:
    """BraTS 2025 lesion-wise scores of one region of one case (panoptica's result keys)."""

    region: str
    tp: int
    """Matched pairs (``tp``)."""
    fp: int
    """Predicted instances left unmatched (``fp``)."""
    fn: int
    """Truth instances left unmatched (``fn``)."""
    rq: float
    """Recognition quality, the instance F1 ``TP / (TP + FP/2 + FN/2)`` (``rq``)."""
    sq_dice: float
    """Segmentation quality: mean Dice over matched pairs (``sq_dsc``)."""
    sq_hd95_mm: float
    """Mean :data:`PANOPTIC_HD95_DEFINITION` over matched pairs, mm (``sq_hd95``)."""
    instances: tuple[Instance, ...]
    """Every truth instance (TP or FN) in id order, then every FP in id order."""


# --------------------------------------------------------------------------------------------
# matching


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labels, n = cc3d.connected_components(np.ascontiguousarray(mask), connectivity=CONNECTIVITY,
                                          return_N=True)
    return labels, int(n)


def _match(pair_truth: np.ndarray, pair_pred: np.ndarray, dice: np.ndarray,
           n_truth: int, n_pred: int) -> dict[int, int]:
    """Truth id -> predicted id of panoptica's maximum bipartite matching.

    Panoptica solves ``linear_sum_assignment`` over every truth x predicted instance, with
    cost ``1 - Dice`` for matchable pairs and ``1 + 1e-6`` elsewhere, and keeps the pairs
    costing less than 1. That is a maximum-weight matching with weights ``Dice + 1e-6`` on
    the matchable pairs, so it splits over the connected components of the graph of those
    pairs: each component is solved alone, with the same costs.
    """
    if pair_truth.size == 0:
        return {}
    nodes = n_truth + n_pred
    graph = coo_matrix((np.ones(pair_truth.size), (pair_truth - 1, n_truth + pair_pred - 1)),
                       shape=(nodes, nodes))
    _, node_component = connected_components(graph, directed=False)
    edge_component = node_component[pair_truth - 1]
    matches: dict[int, int] = {}
    order = np.argsort(edge_component, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(edge_component[order]) != 0])
    for edges in np.split(order, starts[1:]):
        if edges.size == 1:
            matches[int(pair_truth[edges[0]])] = int(pair_pred[edges[0]])
            continue
        rows = np.unique(pair_truth[edges])
        cols = np.unique(pair_pred[edges])
        cost = np.full((rows.size, cols.size), _UNMATCHED_COST)
        cost[np.searchsorted(rows, pair_truth[edges]),
             np.searchsorted(cols, pair_pred[edges])] = 1.0 - dice[edges]
        for i, j in zip(*linear_sum_assignment(cost), strict=True):
            if cost[i, j] < 1.0:
                matches[int(rows[i])] = int(cols[j])
    return matches


# --------------------------------------------------------------------------------------------
# scoring


def _union(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(s.start, t.start), max(s.stop, t.stop))
                 for s, t in zip(a, b, strict=True))


def _empty(region: str) -> RegionPanopticScores:
    """No instance at all: panoptica's "no instances" edge case."""
    return RegionPanopticScores(region, 0, 0, 0, math.nan, math.nan, math.nan, ())


def _score_region(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float],
                  region: str, origin: Sequence[int] = (0, 0, 0)) -> RegionPanopticScores:
    """Lesion-wise scores of boolean masks assumed valid (same 3-D shape); ``origin`` is
    where the masks' first voxel lies in the full image (they may be a crop of it)."""
    box = bounding_box(pred | truth)
    if box is None:
        return _empty(region)
    # Components of the union box are those of the full image, numbered in the same
    # raster order (cropping keeps the voxels' order).
    offset = np.array([s.start + o for s, o in zip(box, origin, strict=True)], dtype=float)
    truth, pred = truth[box], pred[box]
    truth_cc, n_truth = _components(truth)
    pred_cc, n_pred = _components(pred)
    truth_stats = cc3d.statistics(truth_cc)
    pred_stats = cc3d.statistics(pred_cc)
    truth_voxels = np.asarray(truth_stats["voxel_counts"], dtype=np.int64)
    pred_voxels = np.asarray(pred_stats["voxel_counts"], dtype=np.int64)

    # Overlap table of every (truth, prediction) pair sharing a voxel, and its Dice.
    both = truth & pred
    codes, overlap = np.unique(truth_cc[both].astype(np.int64) * (n_pred + 1)
                               + pred_cc[both].astype(np.int64), return_counts=True)
    pair_truth, pair_pred = np.divmod(codes, n_pred + 1)
    pair_dice = 2.0 * overlap.astype(np.float64) / (
        truth_voxels[pair_truth] + pred_voxels[pair_pred]).astype(np.float64)
    matchable = pair_dice >= MATCHING_THRESHOLD_DICE
    pair_truth, pair_pred = pair_truth[matchable], pair_pred[matchable]
    pair_dice = pair_dice[matchable]
    matches = _match(pair_truth, pair_pred, pair_dice, n_truth, n_pred)
    dice_of = {(int(t), int(p)): float(d)
               for t, p, d in zip(pair_truth, pair_pred, pair_dice, strict=True)}

    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]

    def centroid(stats: dict, label: int) -> tuple[float, float, float]:
        c = np.asarray(stats["centroids"][label], dtype=float) + offset
        return (float(c[0]), float(c[1]), float(c[2]))

    instances: list[Instance] = []
    for t in range(1, n_truth + 1):
        volume = float(truth_voxels[t]) * voxel_mm3
        p = matches.get(t)
        if p is None:
            instances.append(Instance("FN", t, None, volume, centroid(truth_stats, t), 0.0,
                                      UNMATCHED_HD95_MM))
            continue
        pair_box = _union(truth_stats["bounding_boxes"][t], pred_stats["bounding_boxes"][p])
        hd95 = hd95_all_mm(pred_cc[pair_box] == p, truth_cc[pair_box] == t, spacing,
                           diagonal_mm=math.inf, definitions=("pooled",))["pooled"]
        instances.append(Instance("TP", t, p, volume, centroid(truth_stats, t),
                                  dice_of[(t, p)], hd95))
    matched_pred = set(matches.values())
    for p in range(1, n_pred + 1):
        if p not in matched_pred:
            instances.append(Instance("FP", None, p, float(pred_voxels[p]) * voxel_mm3,
                                      centroid(pred_stats, p), 0.0, UNMATCHED_HD95_MM))

    tp = len(matches)
    fp = n_pred - tp
    fn = n_truth - tp
    if tp == 0:  # panoptica's zero-TP edge cases (at least one instance exists here)
        rq, sq_dice, sq_hd95 = 0.0, 0.0, UNMATCHED_HD95_MM
    else:
        pairs = [i for i in instances if i.status == "TP"]
        rq = tp / (tp + 0.5 * fp + 0.5 * fn)
        sq_dice = float(np.mean([i.dice for i in pairs]))
        sq_hd95 = float(np.mean([i.hd95_mm for i in pairs]))
    return RegionPanopticScores(region, tp, fp, fn, rq, sq_dice, sq_hd95, tuple(instances))


# --------------------------------------------------------------------------------------------
# public


def panoptic_region(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    region: str = "WT",
) -> RegionPanopticScores:
    """BraTS 2025 lesion-wise scores of one binary region, as ``brats-evaluation``'s ``gli``.

    Instances are the 26-connected components of each mask. A truth and a predicted
    instance are matchable when their Dice is at least :data:`MATCHING_THRESHOLD_DICE`;
    the matching is one-to-one and maximises the summed Dice (panoptica's
    ``MaxBipartiteMatching``: ``linear_sum_assignment`` on ``1 - Dice``), so a second
    prediction on one lesion is an FP. Matched pairs are TP; unmatched truth instances FN,
    unmatched predicted ones FP. ``rq`` is ``TP / (TP + FP/2 + FN/2)``; ``sq_dice`` and
    ``sq_hd95_mm`` are means over the TP pairs only (FN and FP never enter them), the HD95
    being :data:`PANOPTIC_HD95_DEFINITION` with ``spacing_mm`` along (x, y, z).

    Empty cases, exactly as the reference: both masks empty gives TP = FP = FN = 0 and NaN
    for ``rq``, ``sq_dice`` and ``sq_hd95_mm``; any other case without a TP (empty truth,
    empty prediction, or nothing overlapping) gives ``rq`` 0, ``sq_dice`` 0 and
    ``sq_hd95_mm`` :data:`UNMATCHED_HD95_MM` (infinite: the package's CSV parser keeps it
    so; it writes 373 only for the global HD95 and for missing cases).

    Spacing: the reference reads NIfTI files through SimpleITK, whose arrays are (z, y, x)
    while the spacing it takes is (x, y, z), so on anisotropic files it applies the spacing
    reversed; here ``spacing_mm`` is applied along the axes it names. Ties between matchings
    of equal total Dice may be broken differently (the reference numbers components in
    (z, y, x) order). ``region`` names the result.

    >>> truth = np.zeros((30, 30, 30), bool); truth[5:10, 5:10, 5:10] = True
    >>> pred = truth.copy(); pred[20:25, 20:25, 20:25] = True  # hit, plus one false positive
    >>> s = panoptic_region(pred, truth, spacing_mm=(1, 1, 1))
    >>> (s.tp, s.fp, s.fn, round(s.rq, 4), s.sq_dice, s.sq_hd95_mm)
    (1, 1, 0, 0.6667, 1.0, 0.0)
    >>> [(i.status, i.volume_mm3, i.centroid_vox) for i in s.instances]
    [('TP', 125.0, (7.0, 7.0, 7.0)), ('FP', 125.0, (22.0, 22.0, 22.0))]
    >>> empty = np.zeros_like(truth)
    >>> s = panoptic_region(empty, truth, spacing_mm=(1, 1, 1))
    >>> (s.tp, s.fp, s.fn, s.rq, s.sq_dice, s.sq_hd95_mm)
    (0, 0, 1, 0.0, 0.0, inf)
    >>> s = panoptic_region(empty, empty, spacing_mm=(1, 1, 1))
    >>> (s.tp, s.fp, s.fn, s.rq, s.sq_dice, s.sq_hd95_mm)
    (0, 0, 0, nan, nan, nan)
    """
    check_choice("region", region, REGIONS)
    spacing = check_spacing_mm(spacing_mm)
    pred, truth = check_pair(pred, truth, "masks")
    return _score_region(pred.astype(bool), truth.astype(bool), spacing, region)


def panoptic_scores(
    pred_label: np.ndarray,
    truth_label: np.ndarray,
    *,
    spacing_mm: Sequence[float],
) -> tuple[RegionPanopticScores, ...]:
    """:func:`panoptic_region` for WT, TC and ET of canonical label maps (0, 1, 2, 4).

    Returns one result per region in :data:`~tumorscope.core.data.labels.REGIONS` order.
    The reference's ``gli`` groups are ``wt`` = {1, 2, 3}, ``tc`` = {1, 3}, ``et`` = {3}
    with BraTS 2023 labels (ET = 3; its label 4 is resection cavity, in no region), the
    same regions as canonical WT, TC, ET here.

    >>> truth = np.zeros((20, 20, 20), np.uint8); truth[4:12, 4:12, 4:12] = 2
    >>> truth[6:10, 6:10, 6:10] = 4
    >>> [(s.region, s.tp, s.fp, s.fn) for s in panoptic_scores(truth, truth, spacing_mm=(1, 1, 1))]
    [('WT', 1, 0, 0), ('TC', 1, 0, 0), ('ET', 1, 0, 0)]
    """
    spacing = check_spacing_mm(spacing_mm)
    pred_label, truth_label = check_pair(pred_label, truth_label, "label maps")
    check_labels(pred_label)
    check_labels(truth_label)
    # Every region lies within the tumour, so the regions are split from the crop to it.
    box = bounding_box((pred_label != 0) | (truth_label != 0))
    if box is None:
        return tuple(_empty(region) for region in REGIONS)
    origin = tuple(s.start for s in box)
    pred_regions = labels_to_regions(pred_label[box])
    truth_regions = labels_to_regions(truth_label[box])
    return tuple(
        _score_region(p, t, spacing, region, origin)
        for region, p, t in zip(REGIONS, pred_regions, truth_regions, strict=True)
    )
