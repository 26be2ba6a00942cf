"""Slices made ready for a 2-D model: head mask, percentile clip and z-score, one square size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tumorscope.core.data.labels import REGIONS
from tumorscope.core.data.slice2d import TUMOUR_TYPES, MaskKind, Slice2D
from tumorscope.core.data.volumes import brain_mask, zscore

CLASS_NAMES: tuple[str, ...] = tuple(TUMOUR_TYPES[k] for k in sorted(TUMOUR_TYPES))
"""Class index i of a type head is tumour type ``i + 1`` (figshare's 1, 2, 3)."""


def region_names(mask_kind: MaskKind) -> tuple[str, ...]:
    """The output channels a 2-D model predicts for a dataset's masks.

    >>> region_names("binary"), region_names("brats")
    (('tumour',), ('WT', 'TC', 'ET'))
    """
    return ("tumour",) if mask_kind == "binary" else REGIONS


@dataclass(frozen=True)
class PreparedSlice:
    """A slice as a 2-D model sees it.

    image : (C, S, S) float32, z-scored inside the head mask, 0 outside
    target : (K, S, S) uint8, one channel per region of :func:`region_names`
    class_index : tumour type - 1 (0 meningioma, 1 glioma, 2 pituitary), or -1 when unknown
    source_shape : (H, W) of the slice as read (predictions are resized back to it)
    """

    slice_id: str
    patient_id: str
    image: np.ndarray
    target: np.ndarray
    class_index: int
    source_shape: tuple[int, int]
    regions: tuple[str, ...]


def head_mask(image: np.ndarray) -> np.ndarray:
    """Pixels of the head in a (C, H, W) slice: those differing from the border's background
    (an unstripped slice has noisy air around the head, a stripped one exact zeros), holes
    filled, so dark tissue inside the skull is kept.

    >>> img = np.zeros((1, 9, 9)); img[0, 2:7, 2:7] = 5; img[0, 4, 4] = 0
    >>> int(head_mask(img).sum())
    25
    """
    return ndimage.binary_fill_holes(brain_mask(image))


def resize_square(array: np.ndarray, size_px: int, *, order: int) -> np.ndarray:
    """``array`` (C, H, W) resized to (C, size_px, size_px); ``order`` 1 for images, 0 for
    labels (labels stay labels).

    >>> resize_square(np.ones((2, 4, 8)), 16, order=1).shape
    (2, 16, 16)
    """
    h, w = array.shape[-2:]
    if (h, w) == (size_px, size_px):
        return array
    return ndimage.zoom(array, (1, size_px / h, size_px / w), order=order, grid_mode=True,
                        mode="grid-constant")


def prepare_slice(s: Slice2D, *, size_px: int) -> PreparedSlice:
    """Normalise and resize ``s`` for a model working at ``size_px`` x ``size_px``.

    Each channel is clipped to its 0.5-99.5 percentiles inside the head and z-scored
    there (:func:`tumorscope.core.data.volumes.zscore`), so scanners' dynamic ranges and a
    few extreme pixels do not matter; region masks are resized by area (the share of a
    new pixel covered, kept when >= 0.5) so thin tumours are neither grown nor dropped.
    """
    image = np.asarray(s.image, dtype=np.float32)
    normalised, _, _ = zscore(image, head_mask(image))
    regions = region_names(s.mask_kind)
    masks = s.regions()
    target = np.stack([masks[r] for r in regions]).astype(np.float32)
    target = resize_square(target, size_px, order=1) >= 0.5
    return PreparedSlice(
        slice_id=s.slice_id, patient_id=s.patient_id,
        image=resize_square(normalised, size_px, order=1).astype(np.float32),
        target=target.astype(np.uint8),
        class_index=-1 if s.tumour_type is None else int(s.tumour_type) - 1,
        source_shape=s.shape, regions=regions)
