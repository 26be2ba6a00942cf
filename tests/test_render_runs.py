"""Rendering a run's cases through the store: cached meshes, and the ``render`` command."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import write_case
from PIL import Image

from tumorscope.app.cli import main
from tumorscope.core.data.cases import discover
from tumorscope.core.errors import ConfigError
from tumorscope.core.scoring.evaluate import evaluate_run
from tumorscope.core.store import Run
from tumorscope.render.runs import case_meshes, render_run

SHAPE = (40, 40, 32)


@pytest.fixture
def run_with_predictions(tmp_path: Path) -> Run:
    data = tmp_path / "data"
    write_case(data, "BraTS2021_00000", shape=SHAPE)
    write_case(data, "BraTS2021_00001", shape=SHAPE, with_label=False, seed=1)
    run = Run(tmp_path / "run")
    cases = {}
    for case in discover(data):
        src = nib.load(case.images["t1"])
        if case.label is not None:
            label = np.roll(np.asarray(nib.load(case.label).dataobj), 2, axis=0)
        else:
            label = np.zeros(SHAPE, np.uint8)
            label[15:25, 15:25, 10:20] = 2
        (run.path / "predictions").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(label.astype(np.uint8), src.affine),
                 run.prediction_path(case.case_id))
        cases[case.case_id] = {"images": {m: str(p) for m, p in case.images.items()},
                               "label": str(case.label) if case.label else None,
                               "label_convention": "brats2020",
                               "metadata": {"synthetic": True}}
    run.write_cases(cases)
    evaluate_run(run, progress=False)
    return run


def test_case_meshes_are_cached_in_the_run(run_with_predictions: Run) -> None:
    run = run_with_predictions
    first = case_meshes(run, "BraTS2021_00000")
    assert first.truth is not None and first.truth["WT"].n_points > 0
    assert first.brain is not None and first.brain.n_points > 0
    assert 0 < first.dice["WT"] < 1 and first.synthetic
    cached = sorted(p.relative_to(run.mesh_dir("BraTS2021_00000")).as_posix()
                    for p in run.mesh_dir("BraTS2021_00000").rglob("*.vtp"))
    # One folder per source, one keying scheme: brain/brain-<key>.vtp beside truth/, prediction/
    assert any(n.startswith("brain/brain-") for n in cached) and len(cached) >= 7
    mtimes = {p: p.stat().st_mtime_ns for p in run.mesh_dir("BraTS2021_00000").rglob("*")}
    again = case_meshes(run, "BraTS2021_00000")
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    np.testing.assert_array_equal(again.prediction["WT"].points, first.prediction["WT"].points)
    unlabeled = case_meshes(run, "BraTS2021_00001")
    assert unlabeled.truth is None and unlabeled.prediction["WT"].n_points > 0


def test_render_command_writes_pngs_per_case_and_camera(
    run_with_predictions: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "png"
    code = main(["render", str(run_with_predictions.path), "--out", str(out), "--camera",
                 "axial", "--camera", "sagittal", "--width", "320", "--height", "240", "-q"])
    assert code == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["BraTS2021_00000_axial.png", "BraTS2021_00000_sagittal.png",
                     "BraTS2021_00001_axial.png", "BraTS2021_00001_sagittal.png"]
    axial = np.asarray(Image.open(out / "BraTS2021_00000_axial.png"))
    sagittal = np.asarray(Image.open(out / "BraTS2021_00000_sagittal.png"))
    assert axial.shape[:2] == (240, 320) and axial.std() > 5
    assert not np.array_equal(axial, sagittal)
    assert "4 screenshot(s)" in capsys.readouterr().out


def test_render_skips_a_bad_case_and_draws_the_others(
    run_with_predictions: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_with_predictions
    bad = run.prediction_path("BraTS2021_00001")
    bad.write_bytes(bad.read_bytes()[:200])  # truncated gzip
    out = tmp_path / "png"
    args = ["render", str(run.path), "--out", str(out), "--width", "160", "--height", "120",
            "-q"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("*.png")) == ["BraTS2021_00000_oblique.png"]
    assert "skipped BraTS2021_00001" in captured.err and str(bad) in captured.err
    assert "Traceback" not in captured.err
    assert main([*args, "--case", "nope"]) == 1
    assert "no prediction for case 'nope'" in capsys.readouterr().err


def test_unwritable_output_is_a_one_line_error(
    run_with_predictions: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["demo-data", "--out", str(blocker / "sub"), "--cases", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err
    assert f"{blocker} is a file; --out needs a folder" in err
    assert main(["render", str(run_with_predictions.path), "--out", str(blocker), "-q"]) == 2
    assert f"{blocker} is a file; --out needs a folder" in capsys.readouterr().err
    assert not run_with_predictions.mesh_dir("BraTS2021_00000").exists()
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("flag, value", [("--width", "0"), ("--width", "-300"),
                                         ("--height", "100000")])
def test_render_size_is_refused_before_any_meshing(
    run_with_predictions: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    flag: str, value: str,
) -> None:
    out = tmp_path / "png"
    assert main(["render", str(run_with_predictions.path), "--out", str(out), flag, value,
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err == (f"tumorscope render: error: {flag} must be a pixel count in 16..8192, "
                   f"got {value}\n")
    assert not out.exists()
    assert not run_with_predictions.mesh_dir("BraTS2021_00000").exists()
    with pytest.raises(ConfigError, match="window_size width"):
        render_run(run_with_predictions, out, window_size=(0, 768))
    assert not run_with_predictions.mesh_dir("BraTS2021_00000").exists()
