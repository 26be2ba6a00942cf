"""Sliding-window inference: window grid, Gaussian importance weights, batched windows, mirroring.

Whole cases and runs are predicted in :mod:`.predict`; this module works on tensors only.

The grid matches MONAI's ``sliding_window_inference`` (same starts for the same size, window
and overlap) so outputs can be compared one to one; the speed comes from running it on the
brain crop only and from batching windows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tumorscope.core.errors import ConfigError


def window_starts(size_vox: int, roi_vox: int, *, overlap: float) -> list[int]:
    """Start indices of windows of ``roi_vox`` covering ``size_vox`` voxels along one axis.

    Steps are ``int(roi * (1 - overlap))``; the last window is shifted back to end at the
    edge. ``size_vox`` must be at least ``roi_vox`` (pad first).

    >>> window_starts(10, 4, overlap=0.5)
    [0, 2, 4, 6]
    >>> window_starts(4, 4, overlap=0.5)
    [0]
    """
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap must be >= 0 and < 1, got {overlap}")
    if roi_vox > size_vox:
        raise ConfigError(f"window {roi_vox} larger than the axis {size_vox}; pad first")
    if roi_vox == size_vox:
        return [0]
    step = max(int(roi_vox * (1 - overlap)), 1)
    n = next(d for d in range(math.ceil(size_vox / step)) if d * step + roi_vox >= size_vox) + 1
    return [min(i * step, size_vox - roi_vox) for i in range(n)]


def window_grid(
    shape_vox: Sequence[int], roi_size_vox: Sequence[int], *, overlap: float
) -> list[tuple[int, int, int]]:
    """All window start corners (i, j, k) for a volume of ``shape_vox``.

    >>> len(window_grid((10, 4, 4), (4, 4, 4), overlap=0.5))
    4
    """
    per_axis = [window_starts(s, r, overlap=overlap) for s, r in zip(shape_vox, roi_size_vox,
                                                                     strict=True)]
    return list(itertools.product(*per_axis))


def gaussian_importance(roi_size_vox: Sequence[int], *, sigma_scale: float = 0.125) -> np.ndarray:
    """Gaussian weight of each voxel of a window (sigma = ``sigma_scale`` x size), floored
    at 1e-3 so no voxel is ignored.

    Windows overlap; weighting their outputs by this map before averaging fades out the
    less reliable window borders. Same values as MONAI's ``compute_importance_map(...,
    mode="gaussian")`` (not rescaled to a peak of 1, so the floor acts identically).

    >>> w = gaussian_importance((5, 5, 5))
    >>> float(w.max()), w.shape
    (1.0, (5, 5, 5))
    """
    weight = np.ones((), dtype=np.float64)
    for n in roi_size_vox:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        g = np.exp(-(x**2) / (2 * (sigma_scale * n) ** 2))
        weight = np.multiply.outer(weight, g)
    return np.maximum(weight, max(weight.min(), 1e-3)).astype(np.float32)


def _pad_to(image: torch.Tensor, roi: Sequence[int]) -> tuple[torch.Tensor, list[slice]]:
    """Pad the spatial axes symmetrically up to ``roi``; return the slices of the original."""
    pads, keep = [], []
    for size, r in zip(image.shape[-3:], roi, strict=True):
        total = max(r - size, 0)
        before = total // 2
        pads.append((before, total - before))
        keep.append(slice(before, before + size))
    flat = [p for pair in reversed(pads) for p in pair]
    if any(flat):
        image = F.pad(image, flat)
    return image, keep


Predictor = Callable[[torch.Tensor], torch.Tensor]

CPU_BATCH_VOXELS = 128**3
"""On the CPU at most this many window voxels run at once: batching windows buys a CPU no
speed, while each 128^3 window of the default UNet holds about 1 GB of activations (four
at once peaked at 8 GB on one BraTS case before the decoder ran layer by layer, one now
at 1.9 GB; measured by bench_memory.py)."""


def windows_per_batch(requested: int, roi_size_vox: Sequence[int],
                      device: torch.device) -> int:
    """How many windows run at once: ``requested`` on a GPU; on the CPU no more than fit
    in :data:`CPU_BATCH_VOXELS` (at least one). Results do not depend on it.

    >>> windows_per_batch(4, (128, 128, 128), torch.device("cpu"))
    1
    >>> windows_per_batch(4, (48, 48, 48), torch.device("cpu")), windows_per_batch(
    ...     4, (128, 128, 128), torch.device("cuda"))
    (4, 4)
    """
    if device.type != "cpu":
        return requested
    return max(1, min(requested, CPU_BATCH_VOXELS // math.prod(int(r) for r in roi_size_vox)))


@torch.no_grad()
def sliding_window_logits(
    predictor: Predictor,
    image: torch.Tensor,
    *,
    roi_size_vox: Sequence[int],
    overlap: float = 0.5,
    batch_windows: int = 4,
    mirror_axes: Sequence[int] = (),
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Gaussian-weighted sliding-window logits of ``predictor`` over a whole image.

    :func:`sliding_window_predict` with its logits only; see there for the arguments.
    """
    return sliding_window_predict(
        predictor, image, roi_size_vox=roi_size_vox, overlap=overlap,
        batch_windows=batch_windows, mirror_axes=mirror_axes, device=device,
        autocast_dtype=autocast_dtype, progress=progress).logits


@dataclass(frozen=True)
class WindowPrediction:
    """What :func:`sliding_window_predict` returns: ``logits`` (K, X, Y, Z); with
    ``tta_variance`` asked for and mirroring on, the variance across the mirrored passes of
    each region's sigmoid probability (K, X, Y, Z, 0..0.25), else ``None``."""

    logits: torch.Tensor
    tta_variance: torch.Tensor | None = None


@torch.no_grad()
def sliding_window_predict(
    predictor: Predictor,
    image: torch.Tensor,
    *,
    roi_size_vox: Sequence[int],
    overlap: float = 0.5,
    batch_windows: int = 4,
    mirror_axes: Sequence[int] = (),
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[int], None] | None = None,
    tta_variance: bool = False,
) -> WindowPrediction:
    """Gaussian-weighted sliding-window logits of ``predictor`` over a whole image.

    Args:
        predictor: maps a batch ``(B, C, *roi)`` to logits ``(B, K, *roi)`` (a model in
            eval mode).
        image: ``(C, X, Y, Z)`` float tensor, usually the brain crop of a case.
        roi_size_vox: window size (i, j, k).
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        batch_windows: windows run through ``predictor`` at once.
        mirror_axes: spatial axes (0, 1, 2) to mirror for test-time augmentation; every
            combination is run and the logits averaged (nnU-Net's mirroring).
        device: where windows run; accumulation stays there too. Default: ``image``'s.
        autocast_dtype: e.g. ``torch.bfloat16`` to run windows under autocast.
        progress: called with the number of windows finished after each batch.
        tta_variance: also return how much the mirrored passes disagree: per window the
            variance of the passes' sigmoid probabilities, blended across windows with the
            same Gaussian weights as the logits (``None`` without mirroring).

    Returns:
        :class:`WindowPrediction`: ``(K, X, Y, Z)`` float32 logits on ``device`` (and the
        variance).
    """
    if image.ndim != 4:
        raise ConfigError(f"image must be (C, X, Y, Z), got shape {tuple(image.shape)}")
    if batch_windows < 1:
        raise ConfigError(f"batch_windows must be >= 1, got {batch_windows}")
    bad_axes = [a for a in mirror_axes if a not in (0, 1, 2)]
    if bad_axes:
        raise ConfigError(f"mirror_axes must be spatial axes 0, 1, 2; got {list(mirror_axes)}")
    device = torch.device(device) if device is not None else image.device
    roi = tuple(int(r) for r in roi_size_vox)
    batch_windows = windows_per_batch(batch_windows, roi, device)
    padded, keep = _pad_to(image.to(device), roi)
    shape = padded.shape[1:]
    weight = torch.from_numpy(gaussian_importance(roi)).to(device)
    starts = window_grid(shape, roi, overlap=overlap)
    flips = [list(c) for n in range(len(mirror_axes) + 1)
             for c in itertools.combinations([a + 2 for a in mirror_axes], n)]
    acc: torch.Tensor | None = None
    var_acc: torch.Tensor | None = None
    spread = tta_variance and len(flips) > 1
    norm = torch.zeros(shape, device=device, dtype=torch.float32)
    done = 0
    for b in range(0, len(starts), batch_windows):
        batch_starts = starts[b: b + batch_windows]
        windows = torch.stack([
            padded[(slice(None), *(slice(s, s + r) for s, r in zip(st, roi, strict=True)))]
            for st in batch_starts
        ])
        out: torch.Tensor | None = None
        p_sum: torch.Tensor | None = None
        p_sq: torch.Tensor | None = None
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            for f in flips:
                o = (predictor(torch.flip(windows, f)).flip(f) if f else predictor(windows))
                out = o if out is None else out + o
                if spread:
                    # Moments of the passes' probabilities, not of their logits: the map
                    # reads as "how much the passes disagree" on the 0..1 scale shown.
                    p = torch.sigmoid(o.float())
                    p_sum = p if p_sum is None else p_sum + p
                    p_sq = p * p if p_sq is None else p_sq + p * p
        assert out is not None  # flips always holds the unmirrored pass
        out = out.float() / len(flips)
        var = None
        if p_sum is not None and p_sq is not None:
            mean = p_sum / len(flips)
            var = (p_sq / len(flips) - mean * mean).clamp_(min=0.0)
        if acc is None:
            acc = torch.zeros((out.shape[1], *shape), device=device, dtype=torch.float32)
            if spread:
                var_acc = torch.zeros_like(acc)
        for i, (st, o) in enumerate(zip(batch_starts, out, strict=True)):
            sl = tuple(slice(s, s + r) for s, r in zip(st, roi, strict=True))
            acc[(slice(None), *sl)] += o * weight
            norm[sl] += weight
            if var is not None and var_acc is not None:
                var_acc[(slice(None), *sl)] += var[i] * weight
        done += len(batch_starts)
        if progress is not None:
            progress(done)
    assert acc is not None  # there is always at least one window
    acc /= norm
    inside = (slice(None), *keep)
    if var_acc is None:
        return WindowPrediction(acc[inside])
    var_acc /= norm
    return WindowPrediction(acc[inside], var_acc[inside])
