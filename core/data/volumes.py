"""Preprocessing as pure array functions: brain crop, per-channel z-score, and their inverse.

Both steps cope with scans that are not the clean, skull-stripped BraTS kind: the brain
mask takes each channel's background from the volume's border instead of assuming zero,
and the z-score clips each channel to robust percentiles first, so a constant offset or a
single 1e30 voxel does not wreck the normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tumorscope.core.errors import GeometryError


@dataclass(frozen=True)
class CropBox:
    """A box in voxel indices, ``start`` inclusive and ``stop`` exclusive along (i, j, k).

    ``original_shape`` is the grid the box was cut from, kept so a crop can be undone.

    >>> box = CropBox((1, 2, 3), (4, 6, 8), (10, 10, 10))
    >>> box.shape
    (3, 4, 5)
    """

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    original_shape: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))

    def to_dict(self) -> dict[str, list[int]]:
        return {"start": list(self.start), "stop": list(self.stop),
                "original_shape": list(self.original_shape)}

    @classmethod
    def from_dict(cls, d: dict[str, list[int]]) -> CropBox:
        return cls(tuple(d["start"]), tuple(d["stop"]), tuple(d["original_shape"]))


BACKGROUND_SHARE = 0.25
"""A value that fills at least this share of the volume's border is its background."""

CLIP_PERCENTILES = (0.5, 99.5)
"""Each channel is clipped to these percentiles of its brain voxels before the z-score."""


def _border(channel: np.ndarray) -> np.ndarray:
    """The values on the faces of a 3-D channel (the edges of a 2-D slice)."""
    # Basic slicing (a view per face): np.take copies along the axis and is ~1000x slower.
    return np.concatenate([channel[(slice(None),) * axis + (i,)].ravel()
                           for axis in range(channel.ndim) for i in (0, -1)])


def background_level(channel: np.ndarray) -> tuple[float, float]:
    """Background value of one (X, Y, Z) channel or (H, W) slice and the tolerance around it.

    Skull-stripped scans (every BraTS release) have one exact background value on the
    border, 0 or a constant offset: it is returned with tolerance 0, so the brain mask of a
    clean scan is exactly its non-zero voxels. Without one dominant value (a noisy,
    unstripped background) the background is the border's median, give or take five
    robust standard deviations; if the border is busy too (the head touches it) nothing is
    taken as background but exact zeros.

    >>> vol = np.full((6, 6, 6), 500.0); vol[2:4, 2:4, 2:4] = 900
    >>> background_level(vol)
    (500.0, 0.0)
    """
    border = _border(np.asarray(channel))
    values, counts = np.unique(border, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] >= BACKGROUND_SHARE * border.size:
        return float(values[top]), 0.0
    median = float(np.median(border))
    spread = 1.4826 * float(np.median(np.abs(border - median)))
    high = float(np.percentile(channel, CLIP_PERCENTILES[1]))
    if 5 * spread < 0.25 * abs(high - median):
        return median, 5 * spread
    return 0.0, 0.0


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Voxels that differ from their channel's background in any channel.

    ``image`` is (C, X, Y, Z) or a (C, H, W) slice; returns the mask without the channel
    axis. The background of each channel comes from :func:`background_level`: 0 for
    skull-stripped BraTS images (so the mask is their non-zero voxels), a constant offset
    where a scanner or converter added one, the border's level for an unstripped scan.

    >>> img = np.zeros((2, 5, 5, 5)); img[:, 1:3, 1:3, 1:3] = 7; img[1] += 100
    >>> int(brain_mask(img).sum())
    8
    """
    mask = np.zeros(image.shape[1:], dtype=bool)
    for channel in image:
        level, tolerance = background_level(channel)
        if tolerance == 0:
            mask |= channel != level
        else:
            mask |= np.abs(channel - level) > tolerance
    return mask


def bounding_box(mask: np.ndarray, *, margin_vox: int = 0) -> CropBox:
    """Tight box around ``mask`` (X, Y, Z), grown by ``margin_vox`` and clipped to the grid.

    An empty mask gives the whole grid (nothing to crop away is a defined case).

    >>> m = np.zeros((10, 10, 10), bool); m[2:4, 3:5, 4:9] = True
    >>> bounding_box(m, margin_vox=1)
    CropBox(start=(1, 2, 3), stop=(5, 6, 10), original_shape=(10, 10, 10))
    """
    shape = tuple(int(s) for s in mask.shape)
    if not mask.any():
        return CropBox((0, 0, 0), shape, shape)
    start, stop = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        start.append(max(int(idx[0]) - margin_vox, 0))
        stop.append(min(int(idx[-1]) + 1 + margin_vox, shape[axis]))
    return CropBox(tuple(start), tuple(stop), shape)


def crop(array: np.ndarray, box: CropBox) -> np.ndarray:
    """Cut ``box`` out of the last three axes of ``array`` ((..., X, Y, Z))."""
    if tuple(array.shape[-3:]) != box.original_shape:
        raise GeometryError(
            f"array of shape {array.shape} does not match crop box grid {box.original_shape}")
    return array[(Ellipsis, *box.slices)]


def uncrop(array: np.ndarray, box: CropBox, *, fill: float = 0) -> np.ndarray:
    """Place ``array`` ((..., x, y, z) with the box's shape) back on the original grid.

    >>> box = CropBox((1, 1, 1), (2, 3, 2), (3, 3, 3))
    >>> uncrop(np.ones((1, 2, 1)), box).sum()
    np.float64(2.0)
    """
    if tuple(array.shape[-3:]) != box.shape:
        raise GeometryError(f"array of shape {array.shape} does not match crop box {box.shape}")
    out = np.full((*array.shape[:-3], *box.original_shape), fill, dtype=array.dtype)
    out[(Ellipsis, *box.slices)] = array
    return out


def zscore(
    image: np.ndarray, mask: np.ndarray, *,
    clip_percentiles: tuple[float, float] | None = CLIP_PERCENTILES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel z-score over ``mask`` voxels; voxels outside the mask are set to 0.

    ``image`` (C, X, Y, Z), ``mask`` (X, Y, Z) bool. Each channel's mask voxels are first
    clipped to ``clip_percentiles`` of themselves (``None``: no clipping), so a few
    extreme voxels neither dominate the std nor survive as huge inputs. Returns
    (normalised float32 image, means (C,), stds (C,)) of the clipped values. A constant
    channel gets std 1 so it maps to zeros, not NaN.

    >>> img = np.arange(1000.0).reshape(1, 10, 10, 10); img[0, 9, 9, 9] = 1e30
    >>> out, means, stds = zscore(img, np.ones((10, 10, 10), bool))
    >>> bool(np.abs(out).max() < 2)
    True
    """
    out = np.zeros(image.shape, dtype=np.float32)
    means = np.zeros(image.shape[0], dtype=np.float64)
    stds = np.ones(image.shape[0], dtype=np.float64)
    if not mask.any():
        return out, means, stds
    for c in range(image.shape[0]):
        values = image[c][mask].astype(np.float64)
        if clip_percentiles is not None:
            low, high = np.percentile(values, clip_percentiles)
            values = np.clip(values, low, high)
        means[c] = values.mean()
        std = values.std()
        stds[c] = std if std > 0 else 1.0
        out[c][mask] = ((values - means[c]) / stds[c]).astype(np.float32)
    return out, means, stds


def zoom_factors(
    spacing_mm: tuple[float, float, float], target_spacing_mm: float | None
) -> tuple[float, float, float]:
    """Per-axis zoom from ``spacing_mm`` to isotropic ``target_spacing_mm`` (1 if None).

    >>> zoom_factors((1.0, 1.0, 2.0), 2.0)
    (0.5, 0.5, 1.0)
    """
    if target_spacing_mm is None:
        return (1.0, 1.0, 1.0)
    return tuple(s / target_spacing_mm for s in spacing_mm)


def resample(array: np.ndarray, zoom: tuple[float, float, float], *, order: int) -> np.ndarray:
    """Resample the last three axes of ``array`` ((..., X, Y, Z)) by ``zoom`` per axis.

    ``order=1`` (trilinear) for images, ``order=0`` (nearest) for label maps, so labels
    stay labels.
    """
    from scipy.ndimage import zoom as nd_zoom

    if all(abs(z - 1) < 1e-6 for z in zoom):
        return array
    out_shape = tuple(max(int(round(s * z)), 1) for s, z in zip(array.shape[-3:], zoom,
                                                               strict=True))
    factors = [o / s for o, s in zip(out_shape, array.shape[-3:], strict=True)]
    if array.ndim == 3:
        return nd_zoom(array, factors, order=order, grid_mode=True, mode="grid-constant")
    return np.stack([resample(a, zoom, order=order) for a in array])
