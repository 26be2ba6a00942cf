"""Why a case failed, in words: missed, merged foci, under-confident, wrong type, stray detections.

Pure functions over masks and score rows, no torch: :func:`mask_failures` reads one region of
a 2-D slice (any dimension works), :func:`type_failure` its tumour type, and
:func:`lesion_failures` a 3-D run's ``metrics.csv`` and ``lesions.csv`` rows. Every reason is
a :class:`Failure` with a key of :data:`REASONS` and a sentence naming the numbers behind it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from tumorscope.core.scoring.metrics import dice as dice_of

REASONS: dict[str, str] = {
    "missed_small": "missed small tumour",
    "missed": "missed tumour",
    "wrong_type": "wrong type",
    "false_positive_far": "false positive away from the tumour",
    "multifocal_merged": "multifocal merged",
    "under_confident": "under-confident",
    "under_segmented": "under-segmented",
    "over_segmented": "over-segmented",
}
"""Reason keys, most severe first (the order :func:`mask_failures` lists them in), and what a
page calls them."""


@dataclass(frozen=True)
class Failure:
    """One reason a case scored badly: ``reason`` a key of :data:`REASONS`, ``detail`` the
    numbers behind it in one sentence."""

    reason: str
    detail: str

    @property
    def label(self) -> str:
        return REASONS[self.reason]


@dataclass(frozen=True)
class FailureRules:
    """The thresholds the reasons are judged by.

    ``missed_dice``: Dice at or below this is a miss. A tumour is small below
    ``small_area_mm2`` (2-D, pixel size known), ``small_fraction`` of the image (2-D, no pixel
    size) or ``small_volume_ml`` (3-D). Components smaller than ``min_component_px`` pixels are
    specks, not foci or detections. ``threshold`` is the probability a pixel counts as
    tumour at. A prediction below ``under_ratio`` or above ``over_ratio`` times the true size
    is under- or over-segmented (said only when nothing more specific is).
    """

    missed_dice: float = 0.1
    small_area_mm2: float = 300.0  # about a 2 cm disc: what a reader calls a small tumour
    small_fraction: float = 0.005  # the same on figshare's 512 x 512, 0.49 mm pixels
    small_volume_ml: float = 1.0
    min_component_px: int = 5
    threshold: float = 0.5
    under_ratio: float = 0.6
    over_ratio: float = 1.6


DEFAULT_RULES = FailureRules()


def components(mask: np.ndarray, *, min_size: int = 1) -> tuple[np.ndarray, int]:
    """(label map, count) of the connected components of ``mask`` with at least ``min_size``
    pixels; 8-connected in 2-D, 26 in 3-D (as the lesion-wise scorings count lesions).

    >>> m = np.zeros((6, 6), bool); m[0:2, 0:2] = True; m[5, 5] = True
    >>> components(m)[1], components(m, min_size=2)[1]
    (2, 1)
    """
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    if n == 0 or min_size <= 1:
        return labels, int(n)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    relabel = np.zeros(n + 1, np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1)
    return relabel[labels], int(keep.sum())


def _size_text(pixels: int, pixel_mm2: float | None) -> str:
    return f"{pixels * pixel_mm2:.0f} mm²" if pixel_mm2 else f"{pixels} px"


def _is_small(pixels: int, total: int, pixel_mm2: float | None, rules: FailureRules) -> bool:
    if pixel_mm2:
        return pixels * pixel_mm2 < rules.small_area_mm2
    return pixels < rules.small_fraction * total


def mask_failures(truth: np.ndarray, prediction: np.ndarray, *,
                  probability: np.ndarray | None = None, pixel_mm2: float | None = None,
                  rules: FailureRules = DEFAULT_RULES) -> tuple[Failure, ...]:
    """The reasons a predicted region fails against its true region (boolean masks of one
    shape), most severe first; ``probability`` is the model's probability map of the region
    (same shape), ``pixel_mm2`` one pixel's area where known.

    >>> truth = np.zeros((40, 40), bool); truth[5:10, 5:10] = True
    >>> far = np.zeros((40, 40), bool); far[30:35, 30:35] = True
    >>> [f.reason for f in mask_failures(truth, far, pixel_mm2=1.0)]
    ['missed_small', 'false_positive_far']
    >>> mask_failures(truth, truth)
    ()
    """
    truth = np.asarray(truth, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ")
    out: list[Failure] = []
    n_truth, n_pred = int(truth.sum()), int(prediction.sum())
    score = dice_of(prediction, truth)
    missed = n_truth > 0 and score <= rules.missed_dice
    if missed:
        small = _is_small(n_truth, truth.size, pixel_mm2, rules)
        out.append(Failure("missed_small" if small else "missed",
                           f"Dice {score:.2f} on a {'small ' if small else ''}tumour of "
                           f"{_size_text(n_truth, pixel_mm2)}"
                           + (" (nothing predicted)" if n_pred == 0 else "")))
    out += _far_detections(truth, prediction, pixel_mm2, rules)
    merged = _merged(truth, prediction, rules)
    if merged is not None:
        out.append(merged)
    if probability is not None and n_truth > 0:
        inside = float(np.asarray(probability, dtype=np.float64)[truth].mean())
        if inside < rules.threshold:
            out.append(Failure("under_confident",
                               f"mean probability {inside:.2f} inside the true tumour, below "
                               f"the threshold {rules.threshold:.2f}"))
    if not out and n_truth > 0 and score < 1.0:
        ratio = n_pred / n_truth
        if ratio < rules.under_ratio:
            out.append(Failure("under_segmented", f"predicted {ratio:.0%} of the true size "
                                                  f"({_size_text(n_pred, pixel_mm2)} of "
                                                  f"{_size_text(n_truth, pixel_mm2)})"))
        elif ratio > rules.over_ratio:
            out.append(Failure("over_segmented", f"predicted {ratio:.0%} of the true size "
                                                 f"({_size_text(n_pred, pixel_mm2)} of "
                                                 f"{_size_text(n_truth, pixel_mm2)})"))
    return tuple(out)


def _far_detections(truth: np.ndarray, prediction: np.ndarray, pixel_mm2: float | None,
                    rules: FailureRules) -> list[Failure]:
    """Predicted components that do not touch the truth (nor its 1-pixel rim)."""
    pred_cc, n = components(prediction, min_size=rules.min_component_px)
    if n == 0:
        return []
    # Touching counts as near: a component that only borders the tumour is a boundary
    # error, not a detection elsewhere.
    near = ndimage.binary_dilation(truth, structure=np.ones((3,) * truth.ndim, bool))
    hit = np.unique(pred_cc[near & (pred_cc > 0)])
    far = [c for c in range(1, n + 1) if c not in set(hit.tolist())]
    if not far:
        return []
    pixels = int(np.isin(pred_cc, far).sum())
    where = "with no tumour in the truth" if not truth.any() else "not touching the tumour"
    return [Failure("false_positive_far",
                    f"{len(far)} predicted component{'s' if len(far) > 1 else ''} "
                    f"({_size_text(pixels, pixel_mm2)}) {where}")]


def _merged(truth: np.ndarray, prediction: np.ndarray, rules: FailureRules) -> Failure | None:
    """Two or more true foci overlapped by fewer predicted components: one blob over several."""
    truth_cc, n_truth = components(truth, min_size=rules.min_component_px)
    if n_truth < 2:
        return None
    pred_cc, _ = components(prediction, min_size=1)
    both = (truth_cc > 0) & (pred_cc > 0)
    pairs = {(int(t), int(p)) for t, p in zip(truth_cc[both], pred_cc[both], strict=True)}
    foci = {t for t, _ in pairs}
    preds = {p for _, p in pairs}
    spanning = [p for p in preds if sum(1 for _, q in pairs if q == p) >= 2]
    if len(foci) < 2 or len(preds) >= len(foci) or not spanning:
        return None
    return Failure("multifocal_merged",
                   f"{n_truth} true foci, {len(foci)} of them found by only {len(preds)} "
                   f"predicted component{'s' if len(preds) > 1 else ''}")


def type_failure(true_type: str | None, predicted_type: str | None,
                 confidence: float | None = None) -> Failure | None:
    """"wrong type" when a known true type and a predicted type differ, else ``None``.

    >>> type_failure("glioma", "meningioma", 0.81).detail
    'glioma predicted as meningioma (confidence 0.81)'
    >>> type_failure("glioma", "glioma") is None, type_failure(None, "glioma") is None
    (True, True)
    """
    if not true_type or not predicted_type or true_type == predicted_type:
        return None
    sure = "" if confidence is None or _missing(confidence) else \
        f" (confidence {float(confidence):.2f})"
    return Failure("wrong_type", f"{true_type} predicted as {predicted_type}{sure}")


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def ordered(failures: Iterable[Failure]) -> tuple[Failure, ...]:
    """Failures in :data:`REASONS` order (most severe first), each reason once."""
    rank = {k: i for i, k in enumerate(REASONS)}
    seen: dict[str, Failure] = {}
    for failure in failures:
        seen.setdefault(failure.reason, failure)
    return tuple(sorted(seen.values(), key=lambda f: rank[f.reason]))


# --------------------------------------------------------------------------------------------
# 3-D: from the score tables


def lesion_failures(metric_rows: Iterable[Mapping[str, Any]],
                    lesion_rows: Iterable[Mapping[str, Any]], *, region: str = "WT",
                    scoring: str = "brats2023",
                    rules: FailureRules = DEFAULT_RULES) -> dict[str, tuple[Failure, ...]]:
    """Per case of a 3-D run, the reasons its ``region`` fails, from current ``metrics.csv``
    rows (Dice and volumes) and ``lesions.csv`` rows of ``scoring`` (each lesion TP, FN or
    FP with its volume and matched predicted components). Lesion rows must be current (the
    caller drops those whose hashes no current metric row has).

    >>> metrics = [{"case_id": "A", "region": "WT", "dice": 0.0, "volume_truth_ml": 0.4,
    ...             "volume_pred_ml": 0.0}]
    >>> lesion_failures(metrics, [])["A"][0].label
    'missed small tumour'
    """
    by_case: dict[str, list[Mapping[str, Any]]] = {}
    for row in lesion_rows:
        if row.get("region") == region and row.get("scoring") == scoring:
            by_case.setdefault(str(row["case_id"]), []).append(row)
    out: dict[str, tuple[Failure, ...]] = {}
    for row in metric_rows:
        if row.get("region") != region or _missing(row.get("dice")):
            continue
        case_id = str(row["case_id"])
        found = _volume_failures(row, rules)
        found += _lesion_row_failures(by_case.get(case_id, []), rules)
        if not any(f.reason.startswith("missed") or f.reason in ("false_positive_far",
                                                                  "multifocal_merged")
                   for f in found):
            found += _size_failures(row, rules)
        out[case_id] = ordered(found)
    return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _volume_failures(row: Mapping[str, Any], rules: FailureRules) -> list[Failure]:
    score, truth_ml = _number(row.get("dice")), _number(row.get("volume_truth_ml"))
    if not truth_ml > 0 or score > rules.missed_dice:
        return []
    small = truth_ml < rules.small_volume_ml
    return [Failure("missed_small" if small else "missed",
                    f"Dice {score:.2f} on a {'small ' if small else ''}tumour of "
                    f"{truth_ml:.2f} mL")]


def _size_failures(row: Mapping[str, Any], rules: FailureRules) -> list[Failure]:
    truth_ml, pred_ml = _number(row.get("volume_truth_ml")), _number(row.get("volume_pred_ml"))
    if not truth_ml > 0 or math.isnan(pred_ml) or _number(row.get("dice")) >= 1.0:
        return []
    ratio = pred_ml / truth_ml
    text = f"predicted {ratio:.0%} of the true volume ({pred_ml:.1f} of {truth_ml:.1f} mL)"
    if ratio < rules.under_ratio:
        return [Failure("under_segmented", text)]
    if ratio > rules.over_ratio:
        return [Failure("over_segmented", text)]
    return []


def _lesion_row_failures(rows: list[Mapping[str, Any]], rules: FailureRules) -> list[Failure]:
    out: list[Failure] = []
    missed = [r for r in rows if r.get("status") == "FN"]
    small = [r for r in missed if _number(r.get("volume_ml")) < rules.small_volume_ml]
    if small:
        sizes = ", ".join(f"{_number(r.get('volume_ml')):.2f}" for r in small[:3])
        out.append(Failure("missed_small",
                           f"{len(small)} small lesion{'s' if len(small) > 1 else ''} missed "
                           f"({sizes}{', ...' if len(small) > 3 else ''} mL)"))
    if len(missed) > len(small):
        out.append(Failure("missed", f"{len(missed) - len(small)} lesion(s) of "
                                     f"{rules.small_volume_ml:g} mL or more missed"))
    fps = [r for r in rows if r.get("status") == "FP"]
    if fps:
        total = sum(_number(r.get("volume_ml")) for r in fps)
        out.append(Failure("false_positive_far",
                           f"{len(fps)} predicted lesion{'s' if len(fps) > 1 else ''} "
                           f"({total:.2f} mL) matching no true lesion"))
    matched: dict[str, int] = {}
    for r in rows:
        if r.get("status") == "TP":
            for pid in str(r.get("matched") or "").split():
                matched[pid] = matched.get(pid, 0) + 1
    spanning = [p for p, n in matched.items() if n >= 2]
    true_lesions = [r for r in rows if r.get("status") in ("TP", "FN")]
    if spanning and len(true_lesions) >= 2:
        out.append(Failure("multifocal_merged",
                           f"{len(true_lesions)} true lesions; predicted component"
                           f"{'s' if len(spanning) > 1 else ''} {', '.join(spanning)} "
                           f"span{'' if len(spanning) > 1 else 's'} "
                           f"{max(matched[p] for p in spanning)} of them"))
    return out
