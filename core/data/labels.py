"""Labels and nested tumour regions: the one place where BraTS label values are interpreted.

Inside Tumorscope a label map always uses the BraTS 2020/2021 values::

    0 background, 1 necrotic / non-enhancing core (NCR), 2 peritumoral edema (ED),
    4 enhancing tumour (ET)

BraTS 2023 writes enhancing tumour as 3; readers convert 3 -> 4 on the way in
(:func:`to_canonical`) and writers convert back on the way out (:func:`from_canonical`).
Regions are the nested evaluation targets of the challenge::

    WT (whole tumour)  = 1 u 2 u 4
    TC (tumour core)   = 1 u 4
    ET (enhancing)     = 4
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tumorscope.core.errors import LabelError

REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
"""Region names in channel order of every region array and every model output."""

REGION_NAMES: dict[str, str] = {
    "WT": "whole tumour",
    "TC": "tumour core",
    "ET": "enhancing tumour",
}

CANONICAL_LABELS: tuple[int, ...] = (0, 1, 2, 4)
LABEL_NAMES: dict[int, str] = {
    0: "background",
    1: "necrotic / non-enhancing core",
    2: "edema",
    4: "enhancing tumour",
}

# Which canonical labels each region is made of.
REGION_LABELS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}

LabelConvention = Literal["brats2020", "brats2023"]


@dataclass(frozen=True)
class LabelSet:
    """The label values one challenge year writes to disk."""

    convention: LabelConvention
    values: tuple[int, ...]
    enhancing: int


LABEL_SETS: dict[str, LabelSet] = {
    "brats2020": LabelSet("brats2020", (0, 1, 2, 4), 4),
    "brats2023": LabelSet("brats2023", (0, 1, 2, 3), 3),
}


def label_set(convention: str) -> LabelSet:
    """Return the on-disk label set of ``convention`` ("brats2020" also covers 2021)."""
    try:
        return LABEL_SETS[convention]
    except KeyError:
        raise LabelError(
            f"unknown label convention {convention!r}; expected one of {sorted(LABEL_SETS)}"
        ) from None


def check_labels(
    label: np.ndarray, *, convention: str = "brats2020", path: str | None = None
) -> None:
    """Raise :class:`LabelError` naming ``path`` if ``label`` holds values outside the set.

    >>> check_labels(np.array([0, 1, 2, 4]))
    >>> check_labels(np.array([0, 3]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.LabelError: label value(s) [3] not in the brats2020 label set ...
    """
    allowed = label_set(convention).values
    if label.dtype.kind == "f":
        finite = np.isfinite(label)
        if not finite.all():
            raise LabelError("label map holds non-finite values", path=path)
        if not np.array_equal(label, np.round(label)):
            raise LabelError("label map holds non-integer values", path=path)
    low, high = (int(label.min()), int(label.max())) if label.size else (0, 0)
    if low >= 0 and high <= max(allowed):
        # Only the few values between 0 and the largest allowed one can be wrong: a pass
        # per such value is several times faster than np.unique over a whole volume.
        unknown = [v for v in range(high + 1) if v not in allowed and (label == v).any()]
    else:
        unknown = sorted(int(v) for v in np.unique(label) if int(v) not in allowed)
    if unknown:
        raise LabelError(
            f"label value(s) {unknown} not in the {convention} label set {list(allowed)}",
            path=path,
        )


def to_canonical(label: np.ndarray, *, convention: str = "brats2020") -> np.ndarray:
    """Return a uint8 copy of ``label`` with the canonical values {0, 1, 2, 4}.

    >>> to_canonical(np.array([0, 1, 2, 3]), convention="brats2023").tolist()
    [0, 1, 2, 4]
    """
    out = np.asarray(label).astype(np.uint8)
    enhancing = label_set(convention).enhancing
    if enhancing != 4:
        out[out == enhancing] = 4
    return out


def from_canonical(label: np.ndarray, *, convention: str = "brats2020") -> np.ndarray:
    """Inverse of :func:`to_canonical`: write canonical labels in ``convention``'s values.

    >>> from_canonical(np.array([0, 1, 2, 4]), convention="brats2023").tolist()
    [0, 1, 2, 3]
    """
    out = np.asarray(label).astype(np.uint8)
    enhancing = label_set(convention).enhancing
    if enhancing != 4:
        out[out == 4] = enhancing
    return out


def region_mask(label: np.ndarray, region: str) -> np.ndarray:
    """Boolean mask of ``region`` ("WT", "TC" or "ET") in a canonical label map.

    >>> region_mask(np.array([0, 1, 2, 4]), "TC").tolist()
    [False, True, False, True]
    """
    if region not in REGION_LABELS:
        raise LabelError(f"region must be one of {list(REGION_LABELS)}, got {region!r}")
    return np.isin(np.asarray(label), REGION_LABELS[region])


def labels_to_regions(label: np.ndarray) -> np.ndarray:
    """Canonical label map ``(X, Y, Z)`` -> boolean region stack ``(3, X, Y, Z)`` (WT, TC, ET).

    >>> labels_to_regions(np.array([0, 1, 2, 4])).astype(int).tolist()
    [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]
    """
    return np.stack([region_mask(label, r) for r in REGIONS])


def regions_to_labels(regions: np.ndarray) -> np.ndarray:
    """Boolean region stack ``(3, X, Y, Z)`` -> canonical uint8 label map ``(X, Y, Z)``.

    The nesting ET ⊂ TC ⊂ WT is enforced the way BraTS does it: a voxel is enhancing (4) if
    ET is on, else core (1) if TC is on, else edema (2) if WT is on. So region outputs that are
    not perfectly nested (TC outside WT) still give a valid label map.

    >>> regions_to_labels(labels_to_regions(np.array([0, 1, 2, 4]))).tolist()
    [0, 1, 2, 4]
    """
    regions = np.asarray(regions, dtype=bool)
    if regions.shape[0] != len(REGIONS):
        raise LabelError(
            f"region stack must have {len(REGIONS)} channels {REGIONS}, got shape {regions.shape}"
        )
    wt, tc, et = regions
    out = np.zeros(wt.shape, dtype=np.uint8)
    out[wt] = 2
    out[tc] = 1
    out[et] = 4
    return out


def agreement_label(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Canonical label map of where two label maps agree, region by region: each region of
    the result is the intersection of that region in ``a`` and in ``b`` (intersections of
    nested regions stay nested, so it is a valid label map).

    >>> agreement_label(np.array([0, 4, 4, 2, 1]), np.array([4, 4, 1, 1, 0])).tolist()
    [0, 4, 1, 2, 0]
    """
    if np.shape(a) != np.shape(b):
        raise LabelError(f"label maps to intersect have shapes {np.shape(a)} and "
                         f"{np.shape(b)}; expected the same grid")
    return regions_to_labels(labels_to_regions(a) & labels_to_regions(b))
