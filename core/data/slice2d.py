"""A 2-D slice of a slice dataset (figshare, LGG, BraTS 2020 slices): what is found, what is read.

A :class:`SliceRef` is what discovery finds (files and ids, no pixels); a format's reader
turns it into a :class:`Slice2D`. Axis order everywhere is the image's as displayed: ``image``
is ``(C, H, W)`` (channels, rows top to bottom, columns left to right), ``mask`` ``(H, W)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tumorscope.core.data.labels import REGIONS, region_mask
from tumorscope.core.errors import TumorscopeError, VoxelValueError

Dataset2D = Literal["figshare", "lgg", "brats2020-slices"]
DATASETS_2D: tuple[Dataset2D, ...] = ("figshare", "lgg", "brats2020-slices")

TUMOUR_TYPES: dict[int, str] = {1: "meningioma", 2: "glioma", 3: "pituitary"}
"""Tumour types as the figshare ``label`` codes them."""

MaskKind = Literal["binary", "brats"]
"""``binary``: 0 background, 1 tumour (figshare, LGG). ``brats``: canonical BraTS labels
{0, 1, 2, 4} (see :mod:`tumorscope.core.data.labels`), so WT/TC/ET are defined as in 3-D."""


@dataclass(frozen=True)
class SliceRef:
    """A slice found on disk. ``mask_path`` is the separate mask file (LGG) or ``None`` where
    the mask is in ``path``; ``patient_id`` is ``None`` where only the file knows it
    (figshare's ``PID``); ``metadata`` holds what a table beside the files says of it."""

    slice_id: str
    dataset: Dataset2D
    path: Path
    mask_path: Path | None = None
    patient_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path,) if self.mask_path is None else (self.path, self.mask_path)


@dataclass(frozen=True)
class Slice2D:
    """A slice's pixels and what is known of it.

    image : (C, H, W) float32, channels named by ``channels``
    mask : (H, W) uint8, values as ``mask_kind`` says
    tumour_type : 1 meningioma, 2 glioma, 3 pituitary (:data:`TUMOUR_TYPES`), or ``None``
        where the dataset does not say
    spacing_mm : (row, column) pixel size, or ``None`` where the file does not record it
    border_rc : (N, 2) float64 outline points (row, column; 0-based pixel centres) where the
        dataset ships one (figshare's ``tumorBorder``), else ``None``
    """

    slice_id: str
    patient_id: str
    dataset: Dataset2D
    image: np.ndarray
    channels: tuple[str, ...]
    mask: np.ndarray
    mask_kind: MaskKind
    path: Path
    tumour_type: int | None = None
    spacing_mm: tuple[float, float] | None = None
    border_rc: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.mask.shape[0]), int(self.mask.shape[1]))

    @property
    def tumour_name(self) -> str | None:
        return None if self.tumour_type is None else TUMOUR_TYPES.get(self.tumour_type)

    def regions(self) -> dict[str, np.ndarray]:
        """Boolean (H, W) masks by region: ``{"tumour": ...}`` for a binary mask, WT/TC/ET
        for BraTS labels.

        >>> s = Slice2D("1", "p", "lgg", np.zeros((3, 2, 2), np.float32), ("t1", "flair", "t1ce"),
        ...             np.array([[0, 1], [0, 0]], np.uint8), "binary", Path("1.tif"))
        >>> {k: int(v.sum()) for k, v in s.regions().items()}
        {'tumour': 1}
        """
        if self.mask_kind == "binary":
            return {"tumour": self.mask > 0}
        return {r: region_mask(self.mask, r) for r in REGIONS}


@dataclass(frozen=True)
class Inspected:
    """A slice as read, with every fault found in it (each a :class:`TumorscopeError` naming
    the file) and warnings (one line each, naming the file). A reader returns the slice
    even when it has faults, so that a check can report them all."""

    slice: Slice2D
    faults: tuple[TumorscopeError, ...] = ()
    warnings: tuple[str, ...] = ()


def constant_fault(image: np.ndarray, what: str, path: Path) -> TumorscopeError | None:
    """A :class:`VoxelValueError` for non-finite pixels or a constant image, else ``None``."""
    finite = np.isfinite(image)
    if not finite.all():
        return VoxelValueError(f"{what} has {int((~finite).sum())} non-finite pixel(s) (NaN or "
                               "inf): expected finite intensities", path=path)
    if image.size and float(image.min()) == float(image.max()):
        return VoxelValueError(f"{what} is constant (every pixel {float(image.min()):g}): not "
                               "an MRI slice", path=path)
    return None


def values_text(values: np.ndarray, limit: int = 6) -> str:
    """Distinct values of an array, for a message: ``0, 1, 7`` or ``0, 1, 2, ... (9 values)``.

    >>> values_text(np.array([3, 0, 3, 1]))
    '0, 1, 3'
    """
    found = np.unique(values)
    shown = ", ".join(f"{v:g}" for v in found[:limit].astype(float))
    return shown if len(found) <= limit else f"{shown}, ... ({len(found)} values)"


def as_slice2d(inspected: Inspected) -> Slice2D:
    """The slice, or its first fault raised."""
    if inspected.faults:
        raise inspected.faults[0]
    return inspected.slice
