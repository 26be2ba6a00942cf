"""Reading the three BraTS layouts, metadata, and every kind of bad input."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import BRATS_AFFINE, SMALL_SHAPE, small_label, write_case

from tumorscope.app.cli import main
from tumorscope.core import errors
from tumorscope.core.data.cases import COHORT_FILE, MODALITIES, check_case, discover, load_case


def test_brats2020_layout_with_metadata_and_uncompressed(tmp_path: Path) -> None:
    root = tmp_path / "MICCAI_BraTS2020_TrainingData"
    write_case(root, "BraTS20_Training_001", layout="brats2020")
    write_case(root, "BraTS20_Training_002", layout="brats2020", suffix=".nii", seed=1)
    (root / "name_mapping.csv").write_text(
        "Grade,BraTS_2017_subject_ID,BraTS_2018_subject_ID,TCGA_TCIA_subject_ID,"
        "BraTS_2019_subject_ID,BraTS_2020_subject_ID\n"
        "HGG,Brats17_CBICA_AAB_1,Brats18_CBICA_AAB_1,NA,BraTS19_CBICA_AAB_1,BraTS20_Training_001\n"
        "LGG,NA,NA,TCGA-CS-4941,BraTS19_2013_0_1,BraTS20_Training_002\n")
    (root / "survival_info.csv").write_text(
        "Brats20ID,Age,Survival_days,Extent_of_Resection\nBraTS20_Training_001,60.463,289,GTR\n")
    cases = discover(root)
    assert [c.case_id for c in cases] == ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert {c.layout for c in cases} == {"brats2020"}
    assert cases[0].metadata["grade"] == "HGG"
    assert cases[0].metadata["age"] == pytest.approx(60.463)
    assert cases[1].metadata["grade"] == "LGG" and "age" not in cases[1].metadata
    assert cases[1].images["t1"].name == "BraTS20_Training_002_t1.nii"
    data = load_case(cases[1])
    assert data.image.shape == (4, *SMALL_SHAPE) and data.image.dtype == np.float32
    assert data.spacing_mm == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(data.affine, BRATS_AFFINE)
    np.testing.assert_array_equal(data.label, small_label())


def test_brats2020_stray_segm_file_is_used_with_warning(tmp_path: Path) -> None:
    folder = write_case(tmp_path, "BraTS20_Training_355", layout="brats2020", with_label=False)
    nib.save(nib.Nifti1Image(small_label(), BRATS_AFFINE), folder / "W39_1998.09.19_Segm.nii")
    (case,) = discover(tmp_path)
    assert case.label is not None and case.label.name == "W39_1998.09.19_Segm.nii"
    assert any("W39_1998.09.19_Segm.nii" in w for w in case.warnings)
    assert load_case(case).label is not None


def test_brats2021_layout(brats2021_root: Path) -> None:
    cases = discover(brats2021_root)
    assert [c.layout for c in cases] == ["brats2021", "brats2021"]
    data = load_case(cases[0])
    assert sorted(np.unique(data.label).tolist()) == [0, 1, 2, 4]
    # Channels follow MODALITIES whatever the order of files on disk.
    for c, m in enumerate(MODALITIES):
        np.testing.assert_array_equal(data.image[c], nib.load(cases[0].images[m]).get_fdata())


def test_brats2023_layout_enhancing_label_3_becomes_4(tmp_path: Path) -> None:
    write_case(tmp_path, "BraTS-GLI-00000-000", layout="brats2023")
    (case,) = discover(tmp_path)
    assert case.layout == "brats2023" and case.label_convention == "brats2023"
    assert case.images["flair"].name == "BraTS-GLI-00000-000-t2f.nii.gz"
    assert case.images["t1ce"].name == "BraTS-GLI-00000-000-t1c.nii.gz"
    data = load_case(case)
    np.testing.assert_array_equal(data.label, small_label(enhancing=4))


def test_case_without_label_is_valid(tmp_path: Path) -> None:
    write_case(tmp_path, "BraTS2021_00009", with_label=False)
    (case,) = discover(tmp_path)
    assert case.label is None
    data = load_case(case)
    assert data.label is None and data.image.shape[0] == 4
    assert check_case(case).ok


def test_flat_folder_and_single_case_folder(tmp_path: Path) -> None:
    folder = write_case(tmp_path, "BraTS2021_00001")
    for p in folder.iterdir():
        shutil.copy(p, tmp_path / p.name.replace("00001", "00002"))
    assert [c.case_id for c in discover(tmp_path)] == ["BraTS2021_00001", "BraTS2021_00002"]
    assert [c.case_id for c in discover(folder)] == ["BraTS2021_00001"]


def test_symlinked_case_folders_are_followed_once(tmp_path: Path) -> None:
    real = write_case(tmp_path / "release", "BraTS2021_00005")
    subset = tmp_path / "subset"
    subset.mkdir()
    (subset / "BraTS2021_00005").symlink_to(real)
    (subset / "loop").symlink_to(subset)  # a cycle must not hang discovery
    assert [c.case_id for c in discover(subset)] == ["BraTS2021_00005"]


def test_empty_or_missing_folder_is_layout_error(tmp_path: Path) -> None:
    with pytest.raises(errors.LayoutError, match="no BraTS case found"):
        discover(tmp_path)
    with pytest.raises(errors.LayoutError, match="does not exist"):
        discover(tmp_path / "nope")


# ---- bad input: each kind named with its file, through the Python API and the CLI ----

def _break_missing_modality(folder: Path) -> Path:
    path = next(folder.glob("*_flair.nii.gz"))
    path.unlink()
    return path


def _break_shape(folder: Path) -> Path:
    path = next(folder.glob("*_t2.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((24, 28, 23), np.float32), BRATS_AFFINE), path)
    return path


def _break_affine(folder: Path) -> Path:
    path = next(folder.glob("*_t1ce.nii.gz"))
    shifted = BRATS_AFFINE.copy()
    shifted[0, 3] += 5
    nib.save(nib.Nifti1Image(np.ones(SMALL_SHAPE, np.float32), shifted), path)
    return path


def _break_nan(folder: Path) -> Path:
    path = next(folder.glob("*_t1.nii.gz"))
    data = np.ones(SMALL_SHAPE, np.float32)
    data[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(data, BRATS_AFFINE), path)
    return path


def _break_label(folder: Path) -> Path:
    path = next(folder.glob("*_seg.nii.gz"))
    label = small_label()
    label[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(label, BRATS_AFFINE), path)
    return path


def _break_gzip(folder: Path) -> Path:
    path = next(folder.glob("*_t2.nii.gz"))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _break_4d(folder: Path) -> Path:
    path = next(folder.glob("*_flair.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((*SMALL_SHAPE, 2), np.float32), BRATS_AFFINE), path)
    return path


def _break_not_nifti(folder: Path) -> Path:
    path = next(folder.glob("*_t1.nii.gz"))
    with gzip.open(path, "wb") as fh:
        fh.write(b"this is not a NIfTI header" * 20)
    return path


BAD = {
    "missing modality": (_break_missing_modality, errors.CaseFileMissingError, "missing modality"),
    "shape": (_break_shape, errors.GeometryError, "shape"),
    "affine": (_break_affine, errors.GeometryError, "affine differs"),
    "non-finite": (_break_nan, errors.VoxelValueError, "non-finite"),
    "unknown label": (_break_label, errors.LabelError, r"\[7\]"),
    "corrupt gzip": (_break_gzip, errors.CorruptFileError, "truncated or corrupt"),
    "4-D": (_break_4d, errors.GeometryError, "3-D"),
    "not nifti": (_break_not_nifti, errors.CorruptFileError, "NIfTI"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_raises_error_naming_file(tmp_path: Path, kind: str) -> None:
    breaker, error_type, pattern = BAD[kind]
    folder = write_case(tmp_path, "BraTS2021_00042")
    bad_path = breaker(folder)
    (case,) = discover(tmp_path)
    with pytest.raises(error_type, match=pattern) as info:
        load_case(case)
    assert info.value.path == bad_path
    assert bad_path.name in str(info.value)
    report = check_case(case)
    assert not report.ok and report.faults[0].path == bad_path


def test_label_3_is_unknown_in_2021_layout(tmp_path: Path) -> None:
    folder = write_case(tmp_path, "BraTS2021_00007")
    nib.save(nib.Nifti1Image(small_label(enhancing=3), BRATS_AFFINE),
             folder / "BraTS2021_00007_seg.nii.gz")
    with pytest.raises(errors.LabelError, match=r"\[3\].*brats2020"):
        load_case(discover(tmp_path)[0])


def test_check_cli_reports_bad_cases_and_keeps_good_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(tmp_path, "BraTS2021_00000")
    bad_a = _break_gzip(write_case(tmp_path, "BraTS2021_00001"))
    bad_b = _break_label(write_case(tmp_path, "BraTS2021_00002"))
    write_case(tmp_path, "BraTS2021_00003", with_label=False)
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("BraTS2021_00000  brats2021  24x28x24") and line.endswith("ok")
               for line in lines)
    assert "labels 0,1,2,4" in out and "no label map" in out
    assert f"fault: {bad_a}: voxel data cannot be read" in out
    assert f"fault: {bad_b}: label value(s) [7]" in out
    assert lines[-1] == "4 case(s): 2 ok, 2 bad"
    assert "Traceback" not in out


def test_check_cli_all_good_exits_zero(brats2021_root: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(brats2021_root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 case(s): 2 ok, 0 bad"


def test_cli_error_is_one_line_without_traceback(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "missing: folder does not exist" in err and "Traceback" not in err


# ---- the cohort marker marks the cases it lists, not every case of its folder ----

def _marker(root: Path, **fields: object) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / COHORT_FILE).write_text(json.dumps({
        "synthetic": True, "generator": "tumorscope demo-data", "seed": 0, **fields}))


@pytest.mark.parametrize("fields, synthetic", [
    ({"n_cases": 1, "case_ids": ["TSDemo_00000"]}, {"TSDemo_00000"}),
    # A marker written before it listed its cases: the demo naming decides.
    ({"n_cases": 1}, {"TSDemo_00000", "TSDemo_00003"}),
    ({"case_ids": ["TSDemo_00000", "BraTS2021_00001"]}, {"TSDemo_00000", "BraTS2021_00001"}),
])
def test_cohort_marker_marks_only_its_cases(tmp_path: Path, fields: dict,
                                            synthetic: set[str]) -> None:
    root = tmp_path / "demo_data"
    _marker(root, **fields)
    for case_id in ("TSDemo_00000", "TSDemo_00003", "BraTS2021_00001"):
        write_case(root, case_id)
    found = discover(root)
    assert {c.case_id for c in found if c.synthetic} == synthetic
    assert all("synthetic" not in c.metadata for c in found if not c.synthetic)


def test_check_cli_does_not_call_a_copied_real_case_synthetic(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "demo_data"
    _marker(root, n_cases=1, case_ids=["TSDemo_00000"])
    write_case(root, "TSDemo_00000")
    write_case(root, "BraTS2021_00001", seed=1)  # a patient's scan, copied in later
    assert main(["check", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("BraTS2021_00001  ") and "synthetic" not in lines[0]
    assert lines[1].startswith("TSDemo_00000  ") and lines[1].endswith("  synthetic  ok")
