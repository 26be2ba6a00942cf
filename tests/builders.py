"""Builders of small real NIfTI cases in each BraTS layout, shared by the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from tumorscope.core.data.cases import LAYOUT_KEYS, LAYOUT_SEPARATOR, MODALITIES

SMALL_SHAPE = (24, 28, 24)
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def small_label(shape: tuple[int, int, int] = SMALL_SHAPE, *, enhancing: int = 4) -> np.ndarray:
    """A nested tumour: edema ball, enhancing shell, necrotic centre."""
    idx = np.indices(shape).astype(float)
    centre = np.array(shape, dtype=float)[:, None, None, None] / 2
    r = np.sqrt(((idx - centre) ** 2).sum(0))
    label = np.zeros(shape, np.uint8)
    label[r < 7] = 2
    label[r < 4.5] = enhancing
    label[r < 2.5] = 1
    return label


def small_image(shape: tuple[int, int, int] = SMALL_SHAPE, *, seed: int = 0) -> np.ndarray:
    """Four channels, zero outside an ellipsoidal 'brain', positive inside."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape).astype(float)
    centre = np.array(shape, dtype=float)[:, None, None, None] / 2
    half = np.array(shape, dtype=float)[:, None, None, None] / 2 - 4
    inside = (((idx - centre) / half) ** 2).sum(0) < 1
    img = (rng.random((4, *shape)) * 100 + 50).astype(np.float32)
    return img * inside


def write_case(
    root: Path,
    case_id: str,
    *,
    layout: str = "brats2021",
    shape: tuple[int, int, int] = SMALL_SHAPE,
    with_label: bool = True,
    suffix: str = ".nii.gz",
    seed: int = 0,
) -> Path:
    """Write one case in ``layout`` naming under ``root/case_id``; return its folder."""
    folder = root / case_id
    folder.mkdir(parents=True, exist_ok=True)
    keys, sep = LAYOUT_KEYS[layout], LAYOUT_SEPARATOR[layout]
    image = small_image(shape, seed=seed)
    for c, m in enumerate(MODALITIES):
        path = folder / f"{case_id}{sep}{keys[m]}{suffix}"
        nib.save(nib.Nifti1Image(image[c], BRATS_AFFINE), path)
    if with_label:
        enh = 3 if layout == "brats2023" else 4
        nib.save(nib.Nifti1Image(small_label(shape, enhancing=enh), BRATS_AFFINE),
                 folder / f"{case_id}{sep}seg{suffix}")
    return folder


def drop_root_file_access() -> None:
    """For ``subprocess``'s ``preexec_fn``: in the child, take CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH out of the capability bounding set, so that even root is refused a
    file or folder whose mode denies it (the tests and CI run as root)."""
    import ctypes
    import os

    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def predict_from_truth(run: Any, data: Path, case_ids: Iterable[str],
                       transform: Callable[[str, np.ndarray], np.ndarray]) -> None:
    """A run whose prediction of each case is ``transform(case_id, truth)`` (a known error),
    written as real NIfTI beside a cases.json as ``predict`` writes it, then scored by the
    real ``evaluate``."""
    from tumorscope.core.data.cases import discover
    from tumorscope.core.scoring.evaluate import evaluate_run

    cases = {c.case_id: c for c in discover(data)}
    run.predictions_dir.mkdir(parents=True, exist_ok=True)
    records = {}
    for case_id in case_ids:
        case = cases[case_id]
        truth = nib.load(case.label)
        pred = transform(case_id, np.asarray(truth.dataobj).copy())
        nib.save(nib.Nifti1Image(pred.astype(np.uint8), truth.affine),
                 run.prediction_path(case_id))
        records[case_id] = {"images": {m: str(p) for m, p in case.images.items()},
                            "label": str(case.label), "label_convention": "brats2020",
                            "metadata": {"synthetic": True}}
    run.write_cases(records)
    evaluate_run(run, progress=False)


TINY_SHAPE = (36, 36, 28)
"""Cases of the tiny trained runs: big enough for a 16-voxel patch and a crop margin."""

TINY = ["model.features=[4, 8, 16]", "data.patch_size_vox=16", "data.spacing_mm=null",
        "data.batch_size=2", "train.steps_per_epoch=3", "train.epochs=1",
        "train.threads=1", "optim.lr=0.01", "data.val_fraction=0.34"]
"""Overrides of ``tiny-cpu`` that train a run in seconds: what tests train when they need a
real checkpoint, not a good one."""


def train_tiny(tmp_path_factory: Any, name: str, *, n_cases: int = 3,
               overrides: Iterable[str] = ()) -> tuple[Any, Path, Path]:
    """Train the :data:`TINY` run on ``n_cases`` cases of :data:`TINY_SHAPE`; return
    (run, cohort folder, cache folder), each a fresh folder named after ``name``."""
    from tumorscope.core.config import load_config
    from tumorscope.core.training.train import train

    root = tmp_path_factory.mktemp(f"{name}_cohort")
    for i in range(n_cases):
        write_case(root, f"BraTS2021_{i:05d}", shape=TINY_SHAPE, seed=i)
    cache = tmp_path_factory.mktemp(f"{name}_cache")
    cfg = load_config("tiny-cpu", overrides=[*TINY, *overrides, f"data.root={root}",
                                             f"data.cache_dir={cache}"])
    run = train(cfg, tmp_path_factory.mktemp(f"{name}_runs") / "run", progress=False)
    return run, root, cache
