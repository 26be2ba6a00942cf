"""Coil bias field estimated on white matter and divided out, before the z-score.

A receive coil's sensitivity multiplies every sequence of a session by a smooth field, up
to ±40 % across the brain on older or multi-channel coils. A small model reads such a
field as tissue contrast: a region bright on all four sequences looks like edema to it.
N4 (ITK) is the standard answer; this is a cheaper estimate of the same kind of field
(about half a second a BraTS case on one core):

1. The reference tissue is white matter, found on T1 (channel ``reference_channel``),
   where it is the brightest large tissue on every T1-weighted protocol: the upper half
   of the brain at first, then the voxels within ``window`` (log units) of the white
   matter's level once the field's first estimate has flattened the image.
2. Voxels that are unusual on any channel (tumour, edema, fluid: more than
   ``outlier_log`` from that channel's white-matter level) leave the reference.
3. Each channel's log field is the normalised convolution (a Gaussian of
   ``smoothing_mm``, over the reference voxels only) of its log intensity, on a grid of
   about ``grid_mm``; the field's mean over the brain is 0, so only the shape is removed.

The field is estimated per channel on the same reference voxels, so a field each sequence
has of its own is removed as well as the shared one.

The defaults are not the ones that fit a known field best: 5 mm smoothing, a 0.2 window and
8 iterations leave 0.12 of a known coil field's log-variation instead of 0.32 (better than
N4's 0.16, ``benchmarks/bench_bias.py``), but also flatten large lesions (T2/FLAIR contrast
down to 0.89 of itself), and the demo model trained on them lost mean Dice on the
out-of-distribution cohort (WT 0.84 -> 0.72). A model needs its lesions more than a flat
field.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from tumorscope.core.errors import GeometryError

BIAS_FIELD_VERSION = 1
"""Bumped whenever the estimate changes (method or defaults): cache entries made with an
older one are rebuilt, and predictions record it among their settings."""


def _blocks(shape: tuple[int, ...], factor: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(math.ceil(n / f) for n, f in zip(shape, factor, strict=True))


def _pad(a: np.ndarray, factor: tuple[int, ...]) -> np.ndarray:
    """``a`` (X, Y, Z) zero-padded to whole blocks and viewed as (Xb, fx, Yb, fy, Zb, fz)."""
    nb = _blocks(a.shape, factor)
    pad = [(0, b * f - n) for n, b, f in zip(a.shape, nb, factor, strict=True)]
    padded = np.pad(a, pad) if any(p[1] for p in pad) else a
    return padded.reshape(nb[0], factor[0], nb[1], factor[1], nb[2], factor[2])


def _coarse(field: np.ndarray) -> np.ndarray:
    """A (Xb, Yb, Zb) field broadcast against a block view (Xb, fx, Yb, fy, Zb, fz)."""
    return field[:, None, :, None, :, None]


def estimate_bias_field(
    image: np.ndarray, mask: np.ndarray, *, spacing_mm: tuple[float, float, float],
    smoothing_mm: float = 6.0, grid_mm: float = 4.0, reference_channel: int = 0,
    window: float = 0.12, outlier_log: float = 0.2, iterations: int = 4,
) -> np.ndarray:
    """The multiplicative bias field of each channel of ``image`` (C, X, Y, Z), float32,
    geometric mean 1 over the ``mask`` (X, Y, Z) voxels and 1 outside them.

    A channel without enough white matter to fit on (under 1 % of the brain) gets a flat
    field: the estimate never invents structure it has no voxels for.

    >>> x, y, z = np.mgrid[:40, :40, :40]
    >>> mask = (x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 < 18 ** 2
    >>> wm = np.where((x // 4 + y // 4 + z // 4) % 3 == 0, 0.6, 1.0)  # WM and "GM"
    >>> field = np.exp(0.3 * (x - 20) / 20)   # brighter towards +x, up to 1.35x
    >>> image = np.stack([wm * field, (2.0 - wm) * field]) * mask
    >>> est = estimate_bias_field(image, mask, spacing_mm=(2.0, 2.0, 2.0))
    >>> truth = field / np.exp(np.log(field[mask]).mean())
    >>> bool(np.abs(np.log(est[:, mask] / truth[mask])).mean() < 0.03)
    True
    """
    if image.ndim != 4 or image.shape[1:] != mask.shape:
        raise GeometryError(f"image of shape {image.shape} does not fit mask {mask.shape}; "
                            "expected (C, X, Y, Z) and (X, Y, Z)")
    if not 0 <= reference_channel < image.shape[0]:
        raise GeometryError(f"reference channel {reference_channel} of an image with "
                            f"{image.shape[0]} channel(s)")
    channels = image.shape[0]
    # The fit runs on every ``stride``-th voxel (about 2 mm): the field is smooth, and the
    # reference tissue is found as well there at an eighth of the cost.
    stride = tuple(max(1, round(2.0 / s)) for s in spacing_mm)
    sub = tuple(slice(None, None, k) for k in stride)
    inside = mask[sub] & np.all(image[(slice(None), *sub)] > 0, axis=0)
    if inside.sum() < 100:
        return np.ones(image.shape, np.float32)
    factor = tuple(max(1, round(grid_mm / (s * k)))
                   for s, k in zip(spacing_mm, stride, strict=True))
    sigma = [smoothing_mm / (f * s * k) for f, s, k in zip(factor, spacing_mm, stride,
                                                          strict=True)]
    nb = _blocks(inside.shape, factor)
    brain = _pad(inside, factor)
    logs = [_pad(np.log(np.where(inside, image[(c, *sub)], 1.0)).astype(np.float32), factor)
            for c in range(channels)]
    log_field = np.zeros((channels, *nb), np.float32)
    for it in range(iterations):
        flat = logs[reference_channel] - _coarse(log_field[reference_channel])
        values = flat[brain]
        if it == 0:
            ref = brain & (flat > np.median(values))
        else:
            # White matter's level: the middle of the upper half, where T1's largest
            # bright tissue sits once the field is (mostly) gone.
            level = float(np.percentile(values, 75))
            ref = brain & (np.abs(flat - level) < (2 * window if it == 1 else window))
        for c in range(channels):
            if c == reference_channel or not ref.any():
                continue
            flat_c = logs[c] - _coarse(log_field[c])
            level_c = float(np.median(flat_c[ref]))
            ref = ref & (np.abs(flat_c - level_c) < outlier_log)
        count = ref.sum(axis=(1, 3, 5)).astype(np.float32)
        if count.sum() < 0.01 * brain.sum():
            return np.ones(image.shape, np.float32)
        weight = ndi.gaussian_filter(count, sigma, mode="constant")
        tiny = weight < 1e-3 * weight.max()
        for c in range(channels):
            total = np.where(ref, logs[c], 0.0).sum(axis=(1, 3, 5)).astype(np.float32)
            smooth = ndi.gaussian_filter(total, sigma, mode="constant")
            # Far from any reference voxel the weight tends to 0: there the field is the
            # channel's mean level, not an extrapolation.
            level = float(total.sum() / count.sum())
            log_field[c] = np.where(tiny, level, smooth / np.maximum(weight, 1e-12))
    full_factor = tuple(f * k for f, k in zip(factor, stride, strict=True))
    full = log_field
    for axis, (n, f) in enumerate(zip(mask.shape, full_factor, strict=True)):
        full = np.moveaxis(np.tensordot(full, _linear_weights(n, f, full.shape[axis + 1]),
                                        axes=([axis + 1], [1])), -1, axis + 1)
    full -= full[:, mask].mean(axis=1)[:, None, None, None]
    np.exp(full, out=full)
    full[:, ~mask] = 1.0
    return np.ascontiguousarray(full, dtype=np.float32)


def _linear_weights(n: int, factor: int, blocks: int) -> np.ndarray:
    """(n, blocks) weights that interpolate block centres linearly onto ``n`` voxels
    (constant beyond the first and last centre): separable, so far cheaper than a zoom."""
    centres = np.arange(blocks) * factor + (factor - 1) / 2
    pos = np.clip(np.arange(n, dtype=np.float64), centres[0], centres[-1])
    weights = np.zeros((n, blocks), np.float32)
    if blocks == 1:
        weights[:, 0] = 1.0
        return weights
    lo = np.clip(np.searchsorted(centres, pos, side="right") - 1, 0, blocks - 2)
    t = (pos - centres[lo]) / factor
    rows = np.arange(n)
    weights[rows, lo] = 1.0 - t
    weights[rows, lo + 1] = t
    return weights


def correct_bias(image: np.ndarray, mask: np.ndarray, *,
                 spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """``image`` (C, X, Y, Z) divided by its :func:`estimate_bias_field`, float32; voxels
    outside ``mask`` unchanged."""
    field = estimate_bias_field(image, mask, spacing_mm=spacing_mm)
    return (image / field).astype(np.float32)
