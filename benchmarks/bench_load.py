"""Cached .npy (memory-mapped) load of a case vs nibabel .nii.gz load, ratio printed.

Usage: python benchmarks/bench_load.py [--data DIR] [--repeats N]
Builds a 1-case demo cohort in a temp folder when --data is not given.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from tumorscope.core.data.cases import discover
from tumorscope.core.data.preprocess import preprocess_case


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tumorscope-bench-"))
    data = args.data
    if data is None:
        from tumorscope.core.data.synthetic import make_demo_cohort

        data = tmp / "demo"
        make_demo_cohort(data, n_cases=1, seed=0, progress=False)
    case = discover(data)[0]
    preprocess_case(case, tmp / "cache")

    def load_nibabel() -> float:
        arrays = [np.asarray(nib.load(str(p)).dataobj, dtype=np.float32) for p in case.files]
        return float(sum(a[0, 0, 0] for a in arrays))

    def load_cache() -> float:
        # Touch every voxel, as training does: a lazy memmap alone would be an unfair win.
        cached = preprocess_case(case, tmp / "cache")
        image = np.array(cached.image)
        label = np.array(cached.label) if cached.label is not None else None
        return float(image[0, 0, 0, 0]) + (0.0 if label is None else float(label[0, 0, 0]))

    def load_patch() -> float:
        # What training does: open the memory-mapped cache and read one 128^3 patch.
        cached = preprocess_case(case, tmp / "cache")
        patch = np.array(cached.image[:, :128, :128, :128])
        return float(patch[0, 0, 0, 0])

    t_nib = _best(load_nibabel, args.repeats)
    t_npy = _best(load_cache, args.repeats)
    t_patch = _best(load_patch, args.repeats)
    crop_shape = preprocess_case(case, tmp / "cache").box.shape
    print(f"case {case.case_id}: {len(case.files)} files, cached crop {crop_shape}")
    print(f"nibabel .nii.gz load (all voxels): {t_nib * 1e3:8.1f} ms")
    print(f"cached .npy load (all voxels)    : {t_npy * 1e3:8.1f} ms")
    print(f"cached memmap + one 128^3 patch  : {t_patch * 1e3:8.1f} ms")
    print(f"ratio nibabel / cache, all voxels   : {t_nib / t_npy:.1f}x")
    print(f"ratio nibabel / cache, training read: {t_nib / t_patch:.1f}x (aim >= 10x)")


if __name__ == "__main__":
    main()
