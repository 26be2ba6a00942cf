"""Time Tumorscope's hd95_mm against MONAI's compute_hausdorff_distance on BraTS-sized masks.

Builds full-size 240x240x155 mask pairs (an irregular tumour and a perturbed copy; the same
tumour and a one-voxel dilation), checks that both implementations agree within 1e-3 mm and
prints each one's best time of ``--repeats`` runs and the ratio MONAI time / ours.

    python benchmarks/bench_hd95.py --repeats 5 --spacing-mm 1.0 1.2 2.0
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch  # imported before any timing: its import costs seconds
from monai.metrics import compute_hausdorff_distance
from scipy import ndimage

from tumorscope.core.scoring.metrics import hd95_mm

SHAPE = (240, 240, 155)
TOLERANCE_MM = 1e-3


def irregular_tumour(
    shape: tuple[int, int, int],
    *,
    centre: tuple[float, float, float],
    radii: tuple[float, float, float],
    seed: int,
    bumpiness: float = 6.0,
) -> np.ndarray:
    """A bumpy ellipsoid: smoothed noise added to the normalised radius, thresholded at 1."""
    rng = np.random.default_rng(seed)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    r = np.sqrt(sum(((g - c) / a) ** 2 for g, c, a in zip(grids, centre, radii, strict=True)))
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 4.0)
    return (r + bumpiness * noise) < 1.0


def mask_pairs(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named (prediction, truth) pairs on the BraTS grid."""
    truth = irregular_tumour(SHAPE, centre=(120, 110, 70), radii=(40, 34, 26), seed=seed)
    perturbed = irregular_tumour(SHAPE, centre=(122, 108, 71), radii=(42, 33, 25), seed=seed + 1)
    satellite = irregular_tumour(SHAPE, centre=(60, 170, 40), radii=(6, 5, 4), seed=seed + 2)
    return {
        "perturbed copy + false-positive satellite": (perturbed | satellite, truth),
        "one-voxel dilation": (ndimage.binary_dilation(truth), truth),
    }


def best_of(repeats: int, fn: Callable[[], float]) -> tuple[float, float]:
    """(best wall time in s, value) over ``repeats`` calls."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def monai_hd95(pred: np.ndarray, truth: np.ndarray, spacing_mm: tuple[float, ...]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's own deprecation notices
        value = compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None],
            torch.from_numpy(truth)[None, None],
            include_background=True,
            percentile=95,
            spacing=list(spacing_mm),
        )
    return float(value[0, 0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per timing; best is kept")
    parser.add_argument(
        "--spacing-mm", type=float, nargs=3, default=(1.0, 1.2, 2.0), metavar=("X", "Y", "Z")
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    spacing = tuple(args.spacing_mm)

    print(f"grid {SHAPE}, spacing {spacing} mm, best of {args.repeats}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")
    failures = 0
    ratios = []
    for name, (pred, truth) in mask_pairs(args.seed).items():
        # one untimed call each, so lazy imports and caches do not count
        hd95_mm(pred, truth, spacing_mm=spacing)
        monai_hd95(pred, truth, spacing)
        ours_s, ours = best_of(
            args.repeats, lambda p=pred, t=truth: hd95_mm(p, t, spacing_mm=spacing)
        )
        monai_s, monai = best_of(
            args.repeats, lambda p=pred, t=truth: monai_hd95(p, t, spacing)
        )
        agree = abs(ours - monai) <= TOLERANCE_MM
        failures += not agree
        ratios.append(monai_s / ours_s)
        print(f"\n{name}: pred {int(pred.sum())} voxels, truth {int(truth.sum())} voxels")
        print(f"  tumorscope hd95_mm   {ours:10.4f} mm  {ours_s * 1000:8.1f} ms")
        print(f"  monai (percentile=95){monai:10.4f} mm  {monai_s * 1000:8.1f} ms")
        print(f"  |difference| {abs(ours - monai):.2e} mm ({'ok' if agree else 'MISMATCH'}), "
              f"speed-up monai/ours = {monai_s / ours_s:.2f}x")
    print(f"\nspeed-up monai/ours: min {min(ratios):.2f}x, max {max(ratios):.2f}x")
    if failures:
        print(f"{failures} pair(s) disagree by more than {TOLERANCE_MM} mm", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
