"""Bias-field correction: ours against SimpleITK's N4 on the same case and the same known field.

Usage: python benchmarks/bench_bias.py [--data DIR] [--shrink 4] [--n4-iterations 50]

A demo case (built in a temp folder unless --data names a cohort) is multiplied by a coil
field of the shifted style's kind (smooth, 70 % shared by the four sequences, plus a tilt;
up to about +-40 %). Each method estimates every channel's field on the brain; printed: how
much of the field's log-variation each leaves (residual std / field std: 0 is perfect,
1 is no correction) and N4's time as a multiple of ours. N4 runs as usual for brain MRI:
on an image shrunk by --shrink, 4 levels of --n4-iterations, inside the brain mask.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tumorscope.core.data.bias import estimate_bias_field
from tumorscope.core.data.cases import discover, load_case
from tumorscope.core.data.synthetic import _smooth_noise
from tumorscope.core.data.volumes import bounding_box, brain_mask, crop


def coil_field(shape: tuple[int, int, int], seed: int = 1) -> np.ndarray:
    """(4, *shape) multiplicative fields, as the shifted style's coil draws them."""
    rng = np.random.default_rng(seed)
    shared = _smooth_noise(rng, shape, step_vox=32, sigma_steps=0.7)
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    ramp = sum(direction[a] * np.linspace(-1, 1, n, dtype=np.float32).reshape(
        [n if d == a else 1 for d in range(3)]) for a, n in enumerate(shape))
    return np.stack([np.exp(0.3 * (0.7 * shared + 0.3 * _smooth_noise(
        rng, shape, step_vox=32, sigma_steps=0.7)) + 0.2 * ramp) for _ in range(4)])


def n4_field(image: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, ...], *,
             shrink: int, iterations: int) -> np.ndarray:
    """Each channel's field as SimpleITK's N4 estimates it, full resolution."""
    import SimpleITK as sitk

    fields = []
    for channel in image:
        # ITK orders axes k, j, i: transpose so both see the same voxels.
        img = sitk.GetImageFromArray(np.ascontiguousarray(channel.T, dtype=np.float32))
        img.SetSpacing(tuple(float(s) for s in spacing_mm))
        msk = sitk.GetImageFromArray(np.ascontiguousarray(mask.T.astype(np.uint8)))
        msk.CopyInformation(img)
        small = sitk.Shrink(img, [shrink] * 3)
        small_mask = sitk.Shrink(msk, [shrink] * 3)
        n4 = sitk.N4BiasFieldCorrectionImageFilter()
        n4.SetMaximumNumberOfIterations([iterations] * 4)
        n4.Execute(small, small_mask)
        log_field = n4.GetLogBiasFieldAsImage(img)
        fields.append(np.exp(sitk.GetArrayFromImage(log_field).T))
    return np.stack(fields).astype(np.float32)


def residual(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean over channels of std(log truth - log estimate) / std(log truth) in the brain."""
    out = []
    for e, t in zip(estimate, truth, strict=True):
        lt, le = np.log(t[mask]), np.log(e[mask])
        out.append(float(np.std(lt - le) / np.std(lt)))
    return float(np.mean(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--shrink", type=int, default=4)
    parser.add_argument("--n4-iterations", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tumorscope-bench-") as tmp:
        data = args.data
        if data is None:
            from tumorscope.core.data.synthetic import make_demo_cohort

            data = Path(tmp) / "demo"
            make_demo_cohort(data, n_cases=1, seed=0, progress=False)
        loaded = load_case(discover(data)[0])
    mask = brain_mask(loaded.image)
    box = bounding_box(mask, margin_vox=2)
    clean, mask = crop(loaded.image, box), crop(mask, box)
    truth = coil_field(mask.shape)
    image = clean * truth

    t0 = time.perf_counter()
    ours = estimate_bias_field(image, mask, spacing_mm=loaded.spacing_mm)
    t_ours = time.perf_counter() - t0
    # Our estimate on the clean case: the field the case already had (the demo's own mild
    # one) is part of what either method finds, so it is divided out of both estimates.
    base = estimate_bias_field(clean, mask, spacing_mm=loaded.spacing_mm)
    print(f"field to remove: +-{100 * (np.exp(2 * np.log(truth[:, mask]).std()) - 1):.0f} % "
          "(2 std), 4 channels")
    print(f"tumorscope white_matter: residual {residual(ours / base, truth, mask):.2f} of the "
          "field's log-variation")
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        print("SimpleITK is not installed (pip install SimpleITK): N4 not measured")
        return 0
    t0 = time.perf_counter()
    n4 = n4_field(image, mask, loaded.spacing_mm, shrink=args.shrink,
                  iterations=args.n4_iterations)
    t_n4 = time.perf_counter() - t0
    n4_base = n4_field(clean, mask, loaded.spacing_mm, shrink=args.shrink,
                       iterations=args.n4_iterations)
    print(f"SimpleITK N4 (shrink {args.shrink}, 4 x {args.n4_iterations} iterations): "
          f"residual {residual(n4 / n4_base, truth, mask):.2f}")
    print(f"time: N4 / ours = {t_n4 / t_ours:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
