"""Benchmark: cropped VTK region meshing vs skimage marching cubes, and one full scene render.

Run ``python benchmarks/bench_mesh.py`` (add ``--repeat N``). It builds a realistic irregular
tumour on the full BraTS grid (240 x 240 x 155, 1 mm, BraTS' flipped affine), meshes its three
regions both ways, and prints times and the speed-up ratio, then the time to build a comparison
scene (truth, prediction, brain context, legend) and take a screenshot.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

BRATS_SHAPE = (240, 240, 155)
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def synthetic_case(
    *, shape: tuple[int, int, int] = BRATS_SHAPE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A brain-like T1, a nested irregular tumour label and a plausible imperfect prediction.

    Returns ``(t1, truth, prediction)``, each ``(X, Y, Z)``; labels canonical {0, 1, 2, 4}:
    lobulated edema (2) around an enhancing rim (4) around a necrotic centre (1), plus a small
    satellite lesion. The prediction is the truth's field with different noise and a shift,
    so it over- and under-segments in places, and it adds one false-positive blob.
    """
    rng = np.random.default_rng(seed)
    idx = np.indices(shape, dtype=np.float32)
    centre = np.array(shape, dtype=np.float32) / 2
    half = np.array([0.36, 0.42, 0.42], dtype=np.float32) * np.array(shape, dtype=np.float32)
    ell = sum(((idx[a] - centre[a]) / half[a]) ** 2 for a in range(3))
    brain = ell < 1
    t1 = np.where(brain, 400 + 150 * (ell < 0.55) + rng.normal(0, 20, shape), 0)
    t1[brain & (ell < 0.04)] = 150  # ventricle-like dark core, so context is not a solid blob
    t1 = t1.astype(np.float32)

    def field(noise_seed: int, shift: tuple[float, float, float]) -> np.ndarray:
        noise = ndimage.gaussian_filter(
            np.random.default_rng(noise_seed).standard_normal(shape).astype(np.float32), 6
        )
        noise /= noise.std()
        c = centre + np.array([-38, 20, 8], dtype=np.float32) + np.array(shift, np.float32)
        lobes = [(c, (24, 20, 17)), (c + [10, -12, 6], (15, 17, 13)),
                 (c + [-12, 8, -8], (13, 11, 15))]
        f = np.full(shape, -10, dtype=np.float32)
        for lc, radii in lobes:
            d = sum(((idx[a] - lc[a]) / radii[a]) ** 2 for a in range(3))
            f = np.maximum(f, 1 - np.sqrt(d))
        sat = c + [22, 26, -10]
        f = np.maximum(f, 1 - np.sqrt(sum((idx[a] - sat[a]) ** 2 for a in range(3))) / 5)
        return f + 0.18 * noise

    def labels_from(f: np.ndarray) -> np.ndarray:
        lab = np.zeros(shape, np.uint8)
        lab[f > 0] = 2
        lab[f > 0.42] = 4
        lab[f > 0.62] = 1
        return lab * brain

    truth = labels_from(field(seed + 1, (0, 0, 0)))
    pred_field = field(seed + 2, (2.0, -1.5, 1.0)) + 0.03
    fp = centre + np.array([30, -30, 20], dtype=np.float32)
    pred_field = np.maximum(
        pred_field, 1 - np.sqrt(sum((idx[a] - fp[a]) ** 2 for a in range(3))) / 6)
    prediction = labels_from(pred_field)
    return t1, truth, prediction


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from skimage.measure import marching_cubes

    from tumorscope.core.data.labels import REGIONS, labels_to_regions
    from tumorscope.core.data.nifti import voxel_spacing_mm
    from tumorscope.core.data.volumes import bounding_box
    from tumorscope.render.layers import SceneOptions
    from tumorscope.render.mesh import brain_surface, region_meshes
    from tumorscope.render.scene import comparison_scene, screenshot

    t1, truth, prediction = synthetic_case()
    print(f"grid {truth.shape}, tumour voxels: "
          + ", ".join(f"{r}={int(m.sum())}" for r, m in zip(REGIONS, labels_to_regions(truth),
                                                              strict=True)))

    spacing = voxel_spacing_mm(BRATS_AFFINE)
    regions = labels_to_regions(truth)
    box = bounding_box(truth != 0, margin_vox=1)

    def skimage_full() -> list:
        # The straightforward route: marching cubes on each full-size region mask.
        return [marching_cubes(m.astype(np.float32), 0.5, spacing=spacing) for m in regions]

    def skimage_cropped() -> list:
        # Same algorithm on our crop: separates the cropping gain from the algorithm's.
        return [marching_cubes(m[box.slices].astype(np.float32), 0.5, spacing=spacing)
                for m in regions]

    rows = [
        ("skimage marching_cubes, full grid", skimage_full),
        ("skimage marching_cubes, cropped box", skimage_cropped),
        ("tumorscope region_meshes, no smoothing",
         lambda: region_meshes(truth, BRATS_AFFINE, smooth_iterations=0)),
        ("tumorscope region_meshes, default (smoothed, normals)",
         lambda: region_meshes(truth, BRATS_AFFINE)),
    ]
    print(f"\nmeshing WT, TC, ET of one case, median of {args.repeat}:")
    times = {}
    for label, fn in rows:
        times[label], result = _time(fn, args.repeat)
        baseline = times[rows[0][0]]
        print(f"  {label:<54s} {times[label] * 1000:8.1f} ms   {baseline / times[label]:5.1f}x")
    t_ours, meshes = times[rows[-1][0]], result
    print(f"  speed-up of the default meshing over skimage on the full grid: "
          f"{baseline / t_ours:.1f}x (aim >= 5x)")

    t_brain, brain = _time(lambda: brain_surface(t1, BRATS_AFFINE), args.repeat)
    t_pred, pred_meshes = _time(lambda: region_meshes(prediction, BRATS_AFFINE), args.repeat)
    dice = {"WT": 0.87, "TC": 0.81, "ET": 0.74}

    def shot(**options: object) -> np.ndarray:
        plotter = comparison_scene(meshes, pred_meshes, brain=brain, dice=dice,
                                   options=SceneOptions(**options))
        try:
            return screenshot(plotter, window_size=(1024, 768))
        finally:
            plotter.close()

    shot()  # the first render of a process compiles shaders; not part of a case's cost
    t_scene, _ = _time(shot, args.repeat)
    t_dist, _ = _time(lambda: shot(colour_by="signed_distance", regions=("WT",)), args.repeat)
    t_side, _ = _time(lambda: shot(layout="side_by_side"), args.repeat)
    total = t_ours + t_pred + t_brain + t_scene
    print(f"\none comparison scene, 1024x768, llvmpipe (CPU) rendering, median of {args.repeat}:")
    print(f"  truth + prediction meshes       {(t_ours + t_pred) * 1000:8.1f} ms")
    print(f"  brain context surface           {t_brain * 1000:8.1f} ms")
    print(f"  scene + screenshot, overlay     {t_scene * 1000:8.1f} ms")
    print(f"  scene + screenshot, distance    {t_dist * 1000:8.1f} ms")
    print(f"  scene + screenshot, side by side{t_side * 1000:8.1f} ms")
    print(f"  whole case from label arrays to PNG-ready pixels: {total * 1000:.0f} ms; "
          f"meshing is {100 * (t_ours + t_pred) / total:.0f}% of it "
          f"(with skimage on the full grid it would be "
          f"{100 * 2 * baseline / (total - t_ours - t_pred + 2 * baseline):.0f}%)")


if __name__ == "__main__":
    main()
