"""Sliding-window inference: window grid, Gaussian importance weights, batched windows, mirroring.

The grid matches MONAI's ``sliding_window_inference`` (same starts for the same size, window
and overlap) so outputs can be compared one to one; the speed comes from running it on the
brain crop only and from batching windows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cache import CachedCase, default_cache_dir, preprocess_case
from .cases import discover
from .config import config_from_dict
from .errors import ConfigError, TumorscopeError
from .labels import from_canonical, regions_to_labels
from .nifti import read_nifti, write_nifti
from .preprocess import uncrop
from .store import Run


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

    Returns:
        ``(K, X, Y, Z)`` float32 logits on ``device``.
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
    padded, keep = _pad_to(image.to(device), roi)
    shape = padded.shape[1:]
    weight = torch.from_numpy(gaussian_importance(roi)).to(device)
    starts = window_grid(shape, roi, overlap=overlap)
    flips = [list(c) for n in range(len(mirror_axes) + 1)
             for c in itertools.combinations([a + 2 for a in mirror_axes], n)]
    acc: torch.Tensor | None = None
    norm = torch.zeros(shape, device=device, dtype=torch.float32)
    done = 0
    for b in range(0, len(starts), batch_windows):
        batch_starts = starts[b: b + batch_windows]
        windows = torch.stack([
            padded[(slice(None), *(slice(s, s + r) for s, r in zip(st, roi, strict=True)))]
            for st in batch_starts
        ])
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            out = sum(
                (predictor(torch.flip(windows, f)).flip(f) if f else predictor(windows))
                for f in flips
            )
        out = out.float() / len(flips)
        if acc is None:
            acc = torch.zeros((out.shape[1], *shape), device=device, dtype=torch.float32)
        for st, o in zip(batch_starts, out, strict=True):
            sl = tuple(slice(s, s + r) for s, r in zip(st, roi, strict=True))
            acc[(slice(None), *sl)] += o * weight
            norm[sl] += weight
        done += len(batch_starts)
        if progress is not None:
            progress(done)
    assert acc is not None  # there is always at least one window
    acc /= norm
    return acc[(slice(None), *keep)]


# ---------------------------------------------------------------- whole cases and runs

def predict_case(
    model: torch.nn.Module,
    cached: CachedCase,
    *,
    roi_size_vox: Sequence[int],
    overlap: float = 0.5,
    batch_windows: int = 4,
    mirror_axes: Sequence[int] = (),
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment one preprocessed case and map it back to its source grid.

    Returns ``(label, probabilities)``: the canonical label map (X, Y, Z) uint8 on the
    source grid, and region probabilities (3, X, Y, Z) float32 on the same grid (zero
    outside the brain crop).
    """
    image = torch.from_numpy(np.array(cached.image, dtype=np.float32))
    logits = sliding_window_logits(model, image, roi_size_vox=roi_size_vox, overlap=overlap,
                                   batch_windows=batch_windows, mirror_axes=mirror_axes,
                                   device=device, autocast_dtype=autocast_dtype)
    if tuple(logits.shape[1:]) != cached.box.shape:
        # Trained on a resampled grid: logits go back to the crop's voxel grid first.
        logits = F.interpolate(logits[None], size=cached.box.shape, mode="trilinear",
                               align_corners=False)[0]
    prob = torch.sigmoid(logits).cpu().numpy()
    label = regions_to_labels(prob > 0.5)
    return uncrop(label, cached.box), uncrop(prob.astype(np.float32), cached.box)


def predict_run(
    checkpoint: str | Path,
    input_dir: str | Path,
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    overlap: float | None = None,
    mirror: bool = False,
    save_probabilities: bool = False,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    case_ids: Sequence[str] | None = None,
) -> tuple[Run, list[str]]:
    """Predict every case of ``input_dir`` into the run ``out_dir``.

    Predictions are NIfTI files on each source grid, with the source's affine and header,
    in the case's own label values (3 for enhancing tumour in BraTS 2023 inputs).
    Finished cases are skipped unless ``force``. Bad cases are skipped and returned as
    one-line reasons; the good ones are still predicted. ``case_ids`` limits the run to
    those cases (e.g. the held-out split of a training run).
    """
    from tqdm import tqdm

    from .train import autocast_dtype as amp_dtype
    from .train import load_checkpoint, model_from_checkpoint, resolve_device

    ckpt = load_checkpoint(checkpoint)
    cfg = config_from_dict(ckpt["config"])
    run = Run(Path(out_dir))
    run.path.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    amp = amp_dtype(cfg.train.amp, dev)
    cases = discover(input_dir)
    if case_ids is not None:
        cases = [c for c in cases if c.case_id in set(case_ids)]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    recorded = run.cases()
    failed: list[str] = []
    for case in tqdm(cases, desc="predict", unit="case", disable=not progress):
        out_path = run.prediction_path(case.case_id)
        recorded[case.case_id] = {
            "images": {m: str(p.resolve()) for m, p in case.images.items()},
            "label": str(case.label.resolve()) if case.label else None,
            "layout": case.layout,
            "label_convention": case.label_convention,
            "metadata": case.metadata,
        }
        if out_path.is_file() and not force:
            continue
        try:
            cached = preprocess_case(case, cache, spacing_mm=cfg.data.spacing_mm)
            label, prob = predict_case(
                model, cached, roi_size_vox=cfg.data.patch_size_vox,
                overlap=cfg.train.overlap if overlap is None else overlap,
                batch_windows=cfg.train.sw_batch_size, mirror_axes=(0, 1, 2) if mirror else (),
                device=dev, autocast_dtype=amp)
        except TumorscopeError as exc:
            failed.append(f"{case.case_id}: {exc}")
            recorded.pop(case.case_id)
            continue
        header = read_nifti(case.images["t1"], check_finite=False).header
        write_nifti(out_path, from_canonical(label, convention=case.label_convention),
                    cached.affine, header=header)
        if save_probabilities:
            write_nifti(run.probabilities_path(case.case_id),
                        np.moveaxis(prob, 0, -1).astype(np.float32), cached.affine)
    run.write_cases(recorded)
    if not run.config_path.is_file():
        run.write_config({**cfg.to_dict(), "predict": {
            "checkpoint": str(Path(checkpoint).resolve()), "input": str(Path(input_dir)),
            "mirror": mirror, "overlap": overlap if overlap is not None else cfg.train.overlap}})
    return run, failed
