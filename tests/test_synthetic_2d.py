"""The synthetic figshare-format folder: real v7.3 files the reader reads as the release's,
deterministic, with each tumour type in its place."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tumorscope.app.cli import main
from tumorscope.core.data import figshare
from tumorscope.core.data.matv73 import HEADER_PREFIX, file_kind
from tumorscope.core.data.patient_splits import split_by_folds
from tumorscope.core.data.slice_datasets import check_slices, discover_slices, read_slice
from tumorscope.core.data.synthetic_2d import (
    SIZE,
    PatientPlan,
    make_figshare_demo,
    plan_patients,
    render_patient,
)
from tumorscope.core.errors import ConfigError

SEED, N = 1, 3  # seed 1's first three patients hold all three types (21 slices)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fig2d") / "demo"
    make_figshare_demo(out, n_patients=N, seed=SEED, progress=False)
    return out


@pytest.fixture(scope="module")
def placed() -> list:
    """One patient of each type, one slice in each plane."""
    return [s for t in (1, 2, 3) for i in range(2)
            for s in render_patient(PatientPlan(i, f"T{t}{i}", t, ("axial", "coronal",
                                                                   "sagittal"), 1), seed=0)]


def test_folder_is_the_release_format_and_reads_back(folder: Path) -> None:
    plans = plan_patients(N, seed=SEED)
    assert {p.tumour_type for p in plans} == {1, 2, 3}
    n_slices = sum(len(p.planes) for p in plans)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([f"{i}.mat" for i in range(1, n_slices + 1)]
                           + ["cvind.mat", "tumorscope_cohort.json"])
    one = folder / "1.mat"
    assert file_kind(one) == "v7.3" and one.read_bytes()[:19] == HEADER_PREFIX
    with h5py.File(one, "r") as f:
        cj = f["cjdata"]
        assert cj.attrs["MATLAB_class"] == b"struct"
        assert cj["image"].dtype == np.int16 and cj["image"].shape == (SIZE, SIZE)
        assert cj["PID"].dtype == np.uint16 and cj["PID"].attrs["MATLAB_class"] == b"char"
        assert cj["tumorMask"].attrs["MATLAB_class"] == b"logical"
        assert cj["tumorBorder"].shape[0] == 1  # a 2N x 1 MATLAB vector
    ds = discover_slices(folder)
    assert ds.dataset == "figshare" and len(ds.slices) == n_slices
    assert ds.synthetic_ids == {str(i) for i in range(1, n_slices + 1)}
    report = check_slices(ds)
    assert report.ok and report.n_folds == N  # five folds; three patients fill three
    assert not report.warnings and not any(s.warnings for p in report.patients
                                           for s in p.slices)
    by_number = {n: p for p in plans for n in p.numbers}
    for ref in ds.slices:
        s = read_slice(ref)
        plan = by_number[int(ref.slice_id)]
        assert (s.patient_id, s.tumour_type) == (plan.pid, plan.tumour_type)
        assert s.image.shape == (1, SIZE, SIZE) and s.mask.any()
        assert figshare.border_distance_px(s.border_rc, s.mask.astype(bool)) <= 1.0
    folds = figshare.read_folds(ds.folds_path)
    patient_of = {r.slice_id: by_number[int(r.slice_id)].pid for r in ds.slices}
    split = split_by_folds(patient_of, {k: folds[int(k) - 1] for k in patient_of},
                           test_fold=1, source=ds.folds_path)
    assert len(split.patients["test"]) == 1  # patient-wise: each patient in one fold
    marker = json.loads((folder / "tumorscope_cohort.json").read_text())
    assert marker["synthetic"] is True and marker["track"] == "2d"


def test_same_seed_same_bytes(folder: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    make_figshare_demo(again, n_patients=1, seed=SEED, progress=False)
    first = plan_patients(1, seed=SEED)[0]
    for n in first.numbers:
        digest = [hashlib.sha256((f / f"{n}.mat").read_bytes()).hexdigest()
                  for f in (folder, again)]
        assert digest[0] == digest[1]
    other = render_patient(first, seed=SEED + 1)[0].image
    assert not np.array_equal(other, read_slice(discover_slices(again).slices[0]).image[0])
    # Rerunning on a finished folder rewrites nothing; another seed is refused.
    before = {p.name: p.stat().st_mtime_ns for p in again.iterdir()}
    make_figshare_demo(again, n_patients=1, seed=SEED, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == before
    with pytest.raises(ConfigError, match="seed"):
        make_figshare_demo(again, n_patients=1, seed=SEED + 1, progress=False)


def test_each_type_in_its_place(placed: list) -> None:
    for s in placed:
        mask, inside = s.mask, s.outline
        assert mask.sum() >= 60, (s.tumour_type, s.plane)
        outside = int((mask & ~inside).sum())
        rows, cols = np.nonzero(mask)
        if s.tumour_type == 1:  # extra-axial: reaches beyond the brain's surface
            assert outside >= 20, (s.plane, outside)
        elif s.tumour_type == 2:  # intra-axial
            assert outside <= 0.01 * mask.sum(), (s.plane, outside)
        else:  # sellar, midline, below the brain's centre
            x, _, z = s.tumour_mm
            assert abs(x) <= 3.0 and -40.0 <= z <= -15.0, s.tumour_mm
            if s.plane == "coronal":
                assert abs(cols.mean() - SIZE / 2) < 40 and rows.mean() > SIZE / 2
            if s.plane != "axial":
                assert outside >= 0.5 * mask.sum()  # in the sella, under the brain
    # A meningioma enhances brightly and evenly: brighter than the brain around it.
    for s in (s for s in placed if s.tumour_type == 1):
        assert np.percentile(s.image[s.mask], 10) > np.median(s.image[s.outline & ~s.mask])


def test_demo_data_command_2d(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fig"
    assert main(["demo-data", "--out", str(out), "--track", "2d", "--cases", "1", "-q"]) == 0
    n = len(plan_patients(1)[0].planes)
    assert f"{n} synthetic slice(s) of 1 patient(s), figshare format" in capsys.readouterr().out
    assert main(["check", str(out)]) == 0
    assert "TS2D_0000  figshare  " in capsys.readouterr().out
    assert main(["demo-data", "--out", str(tmp_path / "x"), "--track", "2d", "--style",
                 "shifted"]) == 2
    assert "--style shifted is for --track 3d" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["demo-data", "--out", str(foreign), "--track", "2d", "-q"]) == 2
    err = capsys.readouterr().err
    assert "not written by tumorscope demo-data --track 2d (notes.txt)" in err
    assert err.count("\n") == 1
