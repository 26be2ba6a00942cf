"""Checks and crops shared by every scoring: spacing in mm, mask pairs, bounding boxes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tumorscope.core.errors import ConfigError, GeometryError

__all__ = ["bounding_box", "check_pair", "check_percentile", "check_spacing_mm"]


def check_spacing_mm(spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    """``spacing_mm`` as 3 positive finite floats, or a :class:`ConfigError` saying so.

    >>> check_spacing_mm([1, 1, 2.5])
    (1.0, 1.0, 2.5)
    """
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


def check_percentile(percentile: float) -> float:
    """``percentile`` as a float within [0, 100], or a :class:`ConfigError` saying so."""
    try:
        value = float(percentile)
    except (TypeError, ValueError):
        raise ConfigError(f"percentile must be a number within [0, 100], "
                          f"got {percentile!r}") from None
    if not 0.0 <= value <= 100.0:
        raise ConfigError(f"percentile must be within [0, 100], got {percentile!r}")
    return value


def check_pair(pred: np.ndarray, truth: np.ndarray, what: str = "masks"
               ) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``truth`` as arrays of one 3-D shape, or a :class:`GeometryError`.

    ``what`` names them in the message ("masks", "label maps").
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise GeometryError(
            f"prediction and truth {what} must have the same shape, "
            f"got {pred.shape} and {truth.shape}"
        )
    if pred.ndim != 3:
        raise GeometryError(f"prediction and truth {what} must be 3-D (X, Y, Z), "
                            f"got shape {pred.shape}")
    return pred, truth


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Tightest slices around ``mask``'s True voxels, grown by ``margin`` voxels and clipped
    to the array; ``None`` when the mask is empty.

    >>> m = np.zeros((6, 6, 6), bool); m[2, 3:5, 1] = True
    >>> bounding_box(m)
    (slice(2, 3, None), slice(3, 5, None), slice(1, 2, None))
    >>> bounding_box(m, margin=2)[1]
    slice(1, 6, None)
    """
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0),
                         min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)
