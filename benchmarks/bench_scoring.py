"""Time every Tumorscope scoring of a case against the official BraTS evaluator and MONAI.

Builds BraTS-sized (240x240x155, 1 mm) multi-lesion cases — a main tumour with nested core
and enhancing rim, a satellite lesion, a missed one and a false-positive blob — writes them
as NIfTI and, in one run, times per case:

- ours: reading both files and ``score_case`` with every scoring (legacy with all three HD95
  definitions, brats2023 lesion-wise, brats2025 one-to-one), WT/TC/ET;
- the official ``brats-evaluation`` package (panoptica, config ``gli``) on the same files;
- MONAI's ``compute_hausdorff_distance(percentile=95)`` of WT, TC and ET alone, against our
  HD95 of the same definition and regions (the same work).

It prints the agreement (brats2025 counts, RQ, SQ Dice and SQ HD95 against the official
package; our MONAI-definition HD95 against MONAI) and the ratios official/ours (every
scoring) and MONAI/ours (HD95 alone), best of ``--repeats``.

    python benchmarks/bench_scoring.py --cases 3 --repeats 2
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import torch  # imported before any timing: its import costs seconds
from monai.metrics import compute_hausdorff_distance
from scipy import ndimage

from tumorscope.core.data.labels import labels_to_regions
from tumorscope.core.scoring.distances import hd95_mm
from tumorscope.core.scoring.scorings import score_case

SHAPE = (240, 240, 155)
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])
REGIONS_OFFICIAL = {"WT": "wt", "TC": "tc", "ET": "et"}


def blob(centre: tuple[float, float, float], radii: tuple[float, float, float], *, seed: int,
         bumpiness: float = 5.0) -> np.ndarray:
    """A bumpy ellipsoid on the BraTS grid, cut to a box around it (smoothing is local)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(SHAPE, bool)
    lo = [max(int(c - 1.6 * r), 0) for c, r in zip(centre, radii, strict=True)]
    hi = [min(int(c + 1.6 * r) + 1, n) for c, r, n in zip(centre, radii, SHAPE, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    grids = np.ogrid[box]
    r = np.sqrt(sum(((g - c) / a) ** 2 for g, c, a in zip(grids, centre, radii, strict=True)))
    noise = ndimage.gaussian_filter(rng.standard_normal(r.shape).astype(np.float32), 3.0)
    out[box] = (r + bumpiness * noise) < 1.0
    return out


def tumour(centre, radii, *, seed: int) -> np.ndarray:
    """A label map: edema (2) around a core whose rim enhances (4) and centre is necrotic (1)."""
    label = np.zeros(SHAPE, np.uint8)
    label[blob(centre, radii, seed=seed)] = 2
    core = blob(centre, tuple(r * 0.55 for r in radii), seed=seed + 1)
    label[core] = 4
    label[ndimage.binary_erosion(core, iterations=3)] = 1
    return label


def case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, truth) canonical label maps of one multi-lesion case."""
    truth = tumour((120, 110, 70), (38, 32, 24), seed=seed)
    truth = np.maximum(truth, tumour((60, 170, 50), (10, 8, 7), seed=seed + 10))  # satellite
    truth = np.maximum(truth, tumour((190, 60, 100), (7, 6, 6), seed=seed + 20))  # to be missed
    pred = tumour((122, 108, 71), (40, 31, 23), seed=seed + 100)
    pred = np.maximum(pred, tumour((61, 169, 51), (9, 9, 6), seed=seed + 110))
    pred = np.maximum(pred, tumour((70, 60, 120), (5, 5, 4), seed=seed + 120))  # false positive
    return pred, truth


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, value = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def official_label(label: np.ndarray) -> np.ndarray:
    """BraTS 2023+ labels: enhancing tumour is 3 (4 is resection cavity there)."""
    out = label.copy()
    out[label == 4] = 3
    return out


def ours(pred_path: Path, truth_path: Path):
    pred = np.asarray(nib.load(pred_path).dataobj).astype(np.uint8)
    truth = np.asarray(nib.load(truth_path).dataobj).astype(np.uint8)
    pred[pred == 3] = 4
    truth[truth == 3] = 4
    return score_case(pred, truth, spacing_mm=(1.0, 1.0, 1.0))


def monai_hd95(pred: np.ndarray, truth: np.ndarray) -> list[float]:
    p = torch.from_numpy(labels_to_regions(pred))[None]
    t = torch.from_numpy(labels_to_regions(truth))[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = compute_hausdorff_distance(p, t, include_background=True, percentile=95,
                                           spacing=[1.0, 1.0, 1.0])
    return [float(v) for v in value[0]]


def ours_hd95(pred: np.ndarray, truth: np.ndarray) -> list[float]:
    """Our MONAI-definition HD95 of WT, TC and ET alone (the same work as ``monai_hd95``)."""
    return [hd95_mm(p, t, spacing_mm=(1.0, 1.0, 1.0))
            for p, t in zip(labels_to_regions(pred), labels_to_regions(truth), strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="runs per timing; best is kept")
    args = parser.parse_args(argv)
    from importlib.resources import files

    from brats_evaluation.evaluation import BUNDLED_CONFIGS  # noqa: F401  (the package is there)
    from panoptica import Panoptica_Evaluator

    config = Path(str(files("brats_evaluation").joinpath("configs", "config_gli.yaml")))
    evaluator = Panoptica_Evaluator.load_from_config(str(config))
    print(f"grid {SHAPE} at 1 mm, {args.cases} case(s), best of {args.repeats}, "
          f"{torch.get_num_threads()} torch thread(s)")
    ratios_official, ratios_monai, mismatches = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.cases):
            pred, truth = case(seed=7 * i)
            pred_path = Path(tmp) / f"pred-{i:05d}-000.nii.gz"
            truth_path = Path(tmp) / f"BraTS-GLI-{i:05d}-000.nii.gz"
            nib.save(nib.Nifti1Image(official_label(pred), AFFINE), pred_path)
            nib.save(nib.Nifti1Image(official_label(truth), AFFINE), truth_path)
            ours(pred_path, truth_path)  # untimed warm-up: lazy imports, lookup tables
            ours_s, mine = best_of(args.repeats, lambda a=pred_path, b=truth_path: ours(a, b))
            off_s, official = best_of(args.repeats, lambda a=pred_path, b=truth_path:
                                      evaluator.evaluate(str(a), str(b)))
            monai_s, monai = best_of(args.repeats, lambda p=pred, t=truth: monai_hd95(p, t))
            hd_s, hd = best_of(args.repeats, lambda p=pred, t=truth: ours_hd95(p, t))
            print(f"\ncase {i}: every scoring: ours {ours_s:.2f} s, official {off_s:.2f} s "
                  f"({off_s / ours_s:.2f}x); HD95 of WT/TC/ET alone: ours {hd_s:.3f} s, MONAI "
                  f"{monai_s:.3f} s ({monai_s / hd_s:.2f}x; MONAI HD95 / all our scorings "
                  f"{monai_s / ours_s:.2f}x)")
            ratios_official.append(off_s / ours_s)
            ratios_monai.append(monai_s / hd_s)
            mismatches += sum(abs(a - b) > 1e-3 for a, b in zip(hd, monai, strict=True))
            for row, monai_value in zip(mine.rows, monai, strict=True):
                region = row["region"]
                ref = official[REGIONS_OFFICIAL[region]].to_dict()
                pairs = [("tp", row["brats2025_tp"], ref["tp"]),
                         ("fp", row["brats2025_fp"], ref["fp"]),
                         ("fn", row["brats2025_fn"], ref["fn"]),
                         ("rq", row["brats2025_rq"], ref["rq"]),
                         ("sq_dsc", row["brats2025_sq_dice"], ref["sq_dsc"]),
                         ("sq_hd95", row["brats2025_sq_hd95_mm"], ref["sq_hd95"]),
                         ("monai hd95", row["hd95_monai_mm"], monai_value)]
                bad = [(n, a, b) for n, a, b in pairs
                       if not (a == b or abs(float(a) - float(b)) <= 1e-3)]
                mismatches += len(bad)
                print(f"  {region}: brats2025 tp/fp/fn {row['brats2025_tp']}/"
                      f"{row['brats2025_fp']}/{row['brats2025_fn']}, RQ {row['brats2025_rq']:.3f},"
                      f" SQ Dice {row['brats2025_sq_dice']:.4f}, SQ HD95 "
                      f"{row['brats2025_sq_hd95_mm']:.3f} mm; brats2023 Dice "
                      f"{row['brats2023_dice']:.4f}; HD95 monai/pooled/surfel "
                      f"{row['hd95_monai_mm']:.3f}/{row['hd95_pooled_mm']:.3f}/"
                      f"{row['hd95_surfel_mm']:.3f} mm — "
                      + ("agrees" if not bad else f"DISAGREES {bad}"))
    print(f"\nofficial brats-evaluation / ours (all scorings): min {min(ratios_official):.2f}x, "
          f"median {float(np.median(ratios_official)):.2f}x")
    print(f"MONAI HD95 / ours, same work (HD95 of WT/TC/ET): min {min(ratios_monai):.2f}x, "
          f"median {float(np.median(ratios_monai)):.2f}x")
    if mismatches:
        print(f"{mismatches} value(s) disagree with the references", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
