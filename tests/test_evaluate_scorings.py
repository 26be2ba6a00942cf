"""tumorscope evaluate --scoring/--challenge/--hd95: every scoring's columns, lesions.csv and
summary.json written from one run, reused only when scored the same way."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import BRATS_AFFINE, write_case
from scipy import ndimage

from tumorscope.core.config import load_config
from tumorscope.core.scoring.distances import HD95_DEFINITIONS
from tumorscope.core.scoring.lesions import lesion_wise_scores
from tumorscope.core.scoring.scorings import SCORING_COLUMNS
from tumorscope.core.store import Run
from tumorscope.core.training.train import train

SHAPE = (36, 36, 28)
IDS = ["BraTS2021_00000", "BraTS2021_00001"]
TINY = [
    "model.features=[4, 8, 16]", "data.patch_size_vox=16", "data.spacing_mm=null",
    "data.batch_size=2", "train.steps_per_epoch=3", "train.threads=1", "optim.lr=0.01",
    "train.epochs=2",
]
PLANTED_HALF = 2  # a 5x5x5 (125 mm3) lesion ...
FAR_MM = 9.0  # ... farther from every predicted voxel than the matching dilations reach
MERGE_CLEAR_VOX = 14  # ground truth cleared around it, so no truth lesion merges with it


def cli(*args: str | Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUMORSCOPE_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "tumorscope.app.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A predicted run of two cases, and a copy of the cohort whose ground truth is each
    prediction plus a planted lesion far from it (so every case has a known miss)."""
    root = tmp_path_factory.mktemp("scorings")
    data, cache = root / "cohort", root / "cache"
    for i, case_id in enumerate(IDS):
        write_case(data, case_id, shape=SHAPE, seed=i)
    cfg = load_config("tiny-cpu", overrides=[*TINY, f"data.root={data}",
                                             f"data.cache_dir={cache}"])
    ckpt = train(cfg, root / "train", progress=False).checkpoint_path("best")
    run = root / "run"
    proc = cli("predict", "--checkpoint", ckpt, "--input", data, "--out", run, "--cache",
               cache, "-q", cache=cache)
    assert proc.returncode == 0, proc.stderr
    labels = root / "labels"
    shutil.copytree(data, labels)
    out: dict[str, Path] = {"run": run, "labels": labels, "cache": cache}
    for case_id in IDS:
        pred = np.asarray(nib.load(Run(run).prediction_path(case_id)).dataobj)
        # The planted lesion goes where the prediction is farthest away.
        distance = ndimage.distance_transform_edt(pred == 0)
        inner = np.zeros(pred.shape, bool)
        inner[(slice(PLANTED_HALF, -PLANTED_HALF),) * 3] = True
        centre = np.unravel_index(np.argmax(np.where(inner, distance, 0)), pred.shape)
        assert distance[centre] >= FAR_MM
        truth = pred.astype(np.uint8)
        # No other truth lesion near it either: BraTS 2023 merges truth lesions whose
        # 3-iteration dilations touch (up to about 2 x 3 x sqrt(2) voxels apart).
        grid = np.indices(pred.shape)
        near = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= MERGE_CLEAR_VOX ** 2
        truth[near] = 0
        truth[tuple(slice(c - PLANTED_HALF, c + PLANTED_HALF + 1) for c in centre)] = 2
        nib.save(nib.Nifti1Image(truth, BRATS_AFFINE), labels / case_id / f"{case_id}_seg.nii.gz")
        out[case_id] = Path(",".join(str(int(c)) for c in centre))  # the planted centre
    return out


def evaluate(world: dict[str, Path], *extra: str) -> subprocess.CompletedProcess:
    return cli("evaluate", world["run"], "--labels", world["labels"], "-q", *extra,
               cache=world["cache"])


def test_every_scoring_is_in_the_tables(world: dict[str, Path]) -> None:
    proc = evaluate(world)
    assert proc.returncode == 0, proc.stderr
    run = Run(world["run"])
    rows = run.current_metrics_rows()
    assert len(rows) == 2 * 3
    for columns in SCORING_COLUMNS.values():
        assert all(c in rows[0] for c in columns)
    assert all(f"hd95_{d}_mm" in rows[0] for d in HD95_DEFINITIONS)
    # The printed tables name their scoring and HD95 definition.
    for name in ("legacy (whole volume)", HD95_DEFINITIONS["monai"], "brats2023 lesion-wise "
                 "(challenge gli)", "brats2025 lesion-wise"):
        assert name in proc.stdout

    lesions = run.lesion_rows()
    for case_id in IDS:
        truth = np.asarray(nib.load(world["labels"] / case_id / f"{case_id}_seg.nii.gz").dataobj)
        pred = np.asarray(nib.load(run.prediction_path(case_id)).dataobj)
        expected = lesion_wise_scores(pred, truth, spacing_mm=(1, 1, 1), challenge="gli")
        for score in expected:
            row = next(r for r in rows if r["case_id"] == case_id and r["region"] == score.region)
            assert (row["brats2023_tp"], row["brats2023_fn"], row["brats2023_fp"]) == (
                score.tp, score.fn, score.fp)
            assert row["brats2023_dice"] == pytest.approx(score.dice, abs=1e-9)
            mine = [r for r in lesions if r["case_id"] == case_id and r["scoring"] == "brats2023"
                    and r["region"] == score.region]
            assert sum(r["status"] == "TP" for r in mine) == score.tp
            assert sum(r["status"] == "FN" for r in mine) == score.fn
            assert sum(r["status"] == "FP" for r in mine) == score.fp
            for r in mine:
                assert r["prediction_sha256"] == row["prediction_sha256"]
                assert r["truth_sha256"] == row["truth_sha256"]
        # The planted lesion is a miss of WT, 125 mm3, centred where the affine puts it.
        wt_fn = [r for r in lesions if r["case_id"] == case_id and r["region"] == "WT"
                 and r["status"] == "FN" and r["scoring"] == "brats2023"]
        assert len(wt_fn) == 1
        planted = [float(c) for c in str(world[case_id]).split(",")]
        centre = BRATS_AFFINE @ np.array([*planted, 1.0])
        assert [wt_fn[0][f"centroid_{a}_mm"] for a in "xyz"] == pytest.approx(list(centre[:3]))
        assert wt_fn[0]["volume_ml"] == pytest.approx(0.125)
        assert wt_fn[0]["hd95_mm"] == 374.0 and wt_fn[0]["dice"] == 0.0
        b25 = [r for r in lesions if r["case_id"] == case_id and r["scoring"] == "brats2025"
               and r["region"] == "WT" and r["status"] == "FN"]
        assert any(r["volume_ml"] == pytest.approx(0.125) for r in b25)

    summary = json.loads(run.summary_path.read_text())
    assert summary["cases"] == 2 and summary["challenge"] == "gli"
    assert set(summary["scorings"]) == {"legacy", "brats2023", "brats2025"}
    wt = [r for r in rows if r["region"] == "WT"]
    stat = summary["metrics"]["brats2023"]["WT"]["brats2023_dice"]
    assert stat["mean"] == pytest.approx(statistics.fmean(r["brats2023_dice"] for r in wt))
    assert summary["metrics"]["legacy"]["WT"]["hd95_pooled_mm"]["median"] == pytest.approx(
        statistics.median(r["hd95_pooled_mm"] for r in wt))
    assert summary["metrics"]["brats2023"]["WT"]["brats2023_fn"]["total"] == sum(
        r["brats2023_fn"] for r in wt)


def test_rows_are_reused_only_when_scored_the_same_way(world: dict[str, Path]) -> None:
    assert evaluate(world).returncode == 0
    again = evaluate(world)
    assert "scored 0, unchanged 2" in again.stdout
    # Lesion rows gone: the metric rows that list them are not reused.
    Run(world["run"]).lesions_path.unlink()
    assert "scored 2, unchanged 0" in evaluate(world).stdout
    assert len(Run(world["run"]).lesion_rows()) > 0
    # Another sub-challenge or another set of scorings is another scoring.
    met = evaluate(world, "--challenge", "met")
    assert "scored 2, unchanged 0" in met.stdout
    assert "challenge met" in met.stdout
    legacy = evaluate(world, "--scoring", "legacy", "--hd95", "pooled")
    assert "scored 2, unchanged 0" in legacy.stdout
    assert HD95_DEFINITIONS["pooled"] in legacy.stdout and "brats2023" not in legacy.stdout
    run = Run(world["run"])
    assert run.lesion_rows() == []
    assert all(r.get("brats2023_dice") is None for r in run.current_metrics_rows())
    assert set(json.loads(run.summary_path.read_text())["scorings"]) == {"legacy"}


@pytest.mark.parametrize(("args", "needle"), [
    (("--scoring", "brats2024"), "invalid choice: 'brats2024'"),
    (("--challenge", "xyz"), "invalid choice: 'xyz'"),
    (("--hd95", "max"), "invalid choice: 'max'"),
])
def test_unknown_options_are_one_line_errors(world: dict[str, Path], args: tuple[str, ...],
                                             needle: str) -> None:
    proc = evaluate(world, *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
