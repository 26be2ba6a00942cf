"""The 2-D track's readers, check and patient-wise splits, on real files built on the fly.

Figshare slices are MATLAB v7.3 files written here the way MATLAB writes them (h5py with
the 512-byte MATLAB user block, every array transposed, ``MATLAB_class`` attributes, PID as
uint16 character codes), independently of the project's own writer; LGG slices are TIFFs
written with Pillow; BraTS 2020 slices are HDF5 files written with h5py.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tumorscope.app.cli import main
from tumorscope.core.data import figshare
from tumorscope.core.data.patient_splits import read_split_csv, split_by_folds, split_patients
from tumorscope.core.data.slice2d import SliceRef
from tumorscope.core.data.slice_datasets import (
    check_slice,
    check_slices,
    discover_slices,
    patients_of,
    read_slice,
    slice_dataset_kind,
)
from tumorscope.core.errors import (
    ConfigError,
    CorruptFileError,
    GeometryError,
    LabelError,
    LayoutError,
    TumorscopeError,
)

MATLAB_HEADER = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Apr  3 10:00:00 2017 "
                 b"HDF5 schema 1.00 .").ljust(116) + b" " * 8 + b"\x00\x02IM"


# ---------------------------------------------------------------- builders

def write_v73(path: Path, fields: dict[str, tuple[object, str]], *, struct: str = "cjdata"
              ) -> Path:
    """A MAT-file as MATLAB ``save -v7.3`` writes it: arrays given in MATLAB orientation
    (rows x cols) are stored transposed; strings as 1 x n uint16 char codes."""
    with h5py.File(path, "w", userblock_size=512) as f:
        group = f.create_group(struct) if struct else f
        if struct:
            group.attrs["MATLAB_class"] = np.bytes_("struct")
        for name, (value, cls) in fields.items():
            if cls == "char":
                value = np.array([[ord(ch) for ch in str(value)]], dtype=np.uint16)
            data = np.asarray(value)
            data = data.reshape(1, 1) if data.ndim == 0 else data
            ds = group.create_dataset(name, data=np.ascontiguousarray(data.T))
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            if cls == "char":
                ds.attrs["MATLAB_int_decode"] = np.int32(2)
    with open(path, "r+b") as fh:
        fh.write(MATLAB_HEADER)
    return path


def rect_border_xy(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Outline of the pixel rectangle rows r0..r1, cols c0..c1 as MATLAB [x1 y1 x2 y2 ...]
    (x column, y row, 1-based), as a 2N x 1 vector."""
    pts = [(c, r0) for c in range(c0, c1 + 1, 2)] + [(c1, r) for r in range(r0, r1 + 1, 2)] + \
        [(c, r1) for c in range(c1, c0 - 1, -2)] + [(c0, r) for r in range(r1, r0 - 1, -2)]
    return (np.array(pts, dtype=np.float64) + 1.0).reshape(-1, 1)


def figshare_fields(shape: tuple[int, int] = (256, 256), *, label: object = 2.0,
                    pid: str = "100360", box: tuple[int, int, int, int] = (10, 20, 30, 40)
                    ) -> dict[str, tuple[object, str]]:
    rows, cols = np.indices(shape)
    image = (rows * 7 + cols * 3 + 100).astype(np.int16)  # no symmetry: a transpose shows
    mask = np.zeros(shape, np.uint8)
    r0, r1, c0, c1 = box
    mask[r0:r1 + 1, c0:c1 + 1] = 1
    return {"label": (np.array([[float(label)]]), "double"), "PID": (pid, "char"),
            "image": (image, "int16"), "tumorBorder": (rect_border_xy(*box), "double"),
            "tumorMask": (mask, "logical")}


def figshare_folder(root: Path, n: int = 4, **kw: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        write_v73(root / f"{i}.mat", figshare_fields(pid=f"P{(i - 1) // 2}", **kw))
    return root


def lgg_folder(root: Path, patients: tuple[str, ...] = ("TCGA_CS_4941_19960909",
                                                       "TCGA_DU_5851_19950428"),
               n: int = 10, tumour_slices: tuple[int, ...] = (4, 5, 10)) -> Path:
    rng = np.random.default_rng(0)
    for case in patients:
        folder = root / case
        folder.mkdir(parents=True)
        for k in range(1, n + 1):
            image = rng.integers(0, 255, size=(256, 256, 3), dtype=np.uint8)
            mask = np.zeros((256, 256), np.uint8)
            if k in tumour_slices:
                mask[100:120, 80:130] = 255
            image[0, 0] = (k, k, k)  # slice number readable from the pixels
            Image.fromarray(image).save(folder / f"{case}_{k}.tif")
            Image.fromarray(mask).save(folder / f"{case}_{k}_mask.tif")
    with open(root / "data.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Patient", "RNASeqCluster", "death01"])
        for case in patients:
            writer.writerow([case.rsplit("_", 1)[0], 2, 1])
    return root


def brats_slice(path: Path, *, mask: np.ndarray | None = None, shape=(240, 240)) -> Path:
    image = np.zeros((*shape, 4))
    for c in range(4):
        image[..., c] = c + 1.0  # FLAIR 1, T1 2, T1ce 3, T2 4
    image[60:180, 60:180] += 10
    if mask is None:
        mask = np.zeros((*shape, 3), np.uint8)
        mask[100:140, 100:140, 1] = 1  # ED
        mask[110:130, 110:130, 1] = 0
        mask[110:130, 110:130, 2] = 1  # ET
        mask[115:125, 115:125, 2] = 0
        mask[115:125, 115:125, 0] = 1  # NCR
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=image)
        f.create_dataset("mask", data=mask)
    return path


def brats_folder(root: Path, targets: dict[str, int] | None = None) -> Path:
    data = root / "BraTS2020_training_data" / "content" / "data"
    data.mkdir(parents=True)
    rows = []
    for v in (1, 2):
        for s in (0, 1, 60):
            name = f"volume_{v}_slice_{s}.h5"
            empty = np.zeros((240, 240, 3), np.uint8)
            brats_slice(data / name, mask=empty if s != 60 else None)
            rows.append([f"/input/brats2020-training-data/{name}",
                         (targets or {}).get(name, int(s == 60)), v, s])
    with open(data / "meta_data.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["slice_path", "target", "volume", "slice"])
        writer.writerows(rows)
    return root


def one_line(exc: BaseException, path: Path) -> None:
    text = str(exc)
    assert "\n" not in text and text.startswith(str(path)), text


# ---------------------------------------------------------------- figshare

def test_figshare_reads_matlab_orientation_and_lines_up(tmp_path: Path) -> None:
    shape, box = (64, 48), (10, 20, 30, 40)  # not square: a missing transpose cannot hide
    path = write_v73(tmp_path / "7.mat", figshare_fields(shape, box=box, pid="MR040129"))
    with h5py.File(path, "r") as f:  # HDF5 holds MATLAB's arrays transposed
        assert f["cjdata/image"].shape == (48, 64) and f["cjdata/PID"].dtype == np.uint16
    s = read_slice(SliceRef("7", "figshare", path))
    rows, cols = np.indices(shape)
    assert s.image.shape == (1, 64, 48) and s.channels == ("t1ce",)
    np.testing.assert_array_equal(s.image[0], rows * 7 + cols * 3 + 100)
    r0, r1, c0, c1 = box
    assert s.mask.dtype == np.uint8 and s.mask.sum() == (r1 - r0 + 1) * (c1 - c0 + 1)
    assert s.mask[r0, c0] == 1 and s.mask[r0 - 1, c0] == 0 and s.mask[r1, c1 + 1] == 0
    # The outline's points are the mask's edge pixels, as (row, column), 0-based.
    b = s.border_rc
    assert b[:, 0].min() == r0 and b[:, 0].max() == r1 and b[:, 1].min() == c0
    assert b[:, 1].max() == c1
    assert figshare.border_distance_px(b, s.mask.astype(bool)) == 0.0
    assert (s.patient_id, s.tumour_type, s.tumour_name, s.dataset) == \
        ("MR040129", 2, "glioma", "figshare")
    assert s.spacing_mm is None and s.regions()["tumour"].sum() == s.mask.sum()


def test_figshare_border_swapped_is_a_warning(tmp_path: Path) -> None:
    fields = figshare_fields((64, 48), box=(5, 40, 10, 20))
    xy = fields["tumorBorder"][0].reshape(-1, 2)[:, ::-1].reshape(-1, 1)  # x and y swapped
    fields["tumorBorder"] = (xy, "double")
    report = check_slice(SliceRef("1", "figshare", write_v73(tmp_path / "1.mat", fields)))
    assert report.ok
    assert any("only with x and y swapped" in w for w in report.warnings), report.warnings


def _damage(tmp_path: Path, how: str) -> Path:
    path = tmp_path / "3.mat"
    fields = figshare_fields()
    if how == "garbage":
        path.write_bytes(b"\x00not a mat file" * 40)
    elif how == "v5":
        path.write_bytes(b"MATLAB 5.0 MAT-file, Platform: PCWIN64".ljust(128) + b"\x00" * 64)
    elif how == "truncated":
        write_v73(path, fields)
        path.write_bytes(path.read_bytes()[:1200])
    elif how == "no_struct":
        write_v73(path, {"image": fields["image"]}, struct="other")
    elif how == "no_mask":
        del fields["tumorMask"]
        write_v73(path, fields)
    elif how == "label":
        write_v73(path, figshare_fields(label=7))
    elif how == "mask_size":
        fields["tumorMask"] = (np.ones((128, 128), np.uint8), "logical")
        write_v73(path, fields)
    elif how == "empty_mask":
        fields["tumorMask"] = (np.zeros((256, 256), np.uint8), "logical")
        write_v73(path, fields)
    elif how == "not_binary":
        mask = fields["tumorMask"][0].copy()
        mask[0, 0] = 5
        fields["tumorMask"] = (mask, "uint8")
        write_v73(path, fields)
    elif how == "3d":
        fields["image"] = (np.ones((16, 16, 3), np.int16), "int16")
        write_v73(path, fields)
    elif how == "no_pid":
        write_v73(path, figshare_fields(pid=""))
    elif how == "constant":
        fields["image"] = (np.full((256, 256), 9, np.int16), "int16")
        write_v73(path, fields)
    return path


FIGSHARE_FAULTS = {
    "garbage": (CorruptFileError, "not a MATLAB v7.3"),
    "v5": (CorruptFileError, "a MATLAB 5 MAT-file"),
    "truncated": (CorruptFileError, "truncated"),
    "no_struct": (CorruptFileError, "no struct 'cjdata'"),
    "no_mask": (CorruptFileError, "no field 'tumorMask'"),
    "label": (LabelError, "label is 7: expected 1 (meningioma)"),
    "mask_size": (GeometryError, "tumorMask is 128x128, image 256x256"),
    "empty_mask": (LabelError, "tumorMask is empty"),
    "not_binary": (LabelError, "tumorMask holds 0, 1, 5"),
    "3d": (GeometryError, "expected a 2-D slice"),
    "no_pid": (CorruptFileError, "PID is empty"),
    "constant": (Exception, "is constant"),
}


@pytest.mark.parametrize("how", sorted(FIGSHARE_FAULTS))
def test_figshare_faults_are_one_line_naming_the_file(tmp_path: Path, how: str) -> None:
    kind, words = FIGSHARE_FAULTS[how]
    path = _damage(tmp_path, how)
    ref = SliceRef("3", "figshare", path)
    report = check_slice(ref)
    assert not report.ok
    fault = report.faults[0]
    assert isinstance(fault, kind) and isinstance(fault, TumorscopeError)
    assert words in str(fault), str(fault)
    one_line(fault, path)
    with pytest.raises(TumorscopeError) as info:
        read_slice(ref)
    one_line(info.value, path)


def test_cvind_folds_are_read_and_a_split_honours_them(tmp_path: Path) -> None:
    root = figshare_folder(tmp_path / "fig", n=6)  # patients P0, P1, P2: two slices each
    write_v73(root / "cvind.mat", {"cvind": (np.array([[1.0], [1], [2], [2], [3], [3]]),
                                             "double")}, struct="")
    ds = discover_slices(root)
    assert ds.dataset == "figshare" and ds.folds_path == root / "cvind.mat"
    folds = figshare.read_folds(ds.folds_path)
    assert folds == (1, 1, 2, 2, 3, 3)
    patients = patients_of(ds)
    split = split_by_folds(patients, {s: folds[int(s) - 1] for s in patients}, test_fold=2,
                           val_fold=3, source=ds.folds_path)
    assert split.patients == {"train": ("P0",), "val": ("P2",), "test": ("P1",)}
    assert split.slices["test"] == ("3", "4") and split.source.startswith("cvind.mat")
    # Folds that split a patient are refused, naming the file and the patient.
    with pytest.raises(LayoutError, match=r"cvind.mat: patient P0 is in folds 1, 2"):
        split_by_folds(patients, {"1": 1, "2": 2, "3": 2, "4": 2, "5": 3, "6": 3},
                       test_fold=1, source=ds.folds_path)


# ---------------------------------------------------------------- LGG

def test_lgg_reads_slices_masks_and_metadata(tmp_path: Path) -> None:
    root = lgg_folder(tmp_path / "kaggle_3m")
    ds = discover_slices(root)
    assert ds.dataset == "lgg" and len(ds.slices) == 20
    first = [r for r in ds.slices if r.patient_id == "TCGA_CS_4941"]
    assert [r.slice_id.rsplit("_", 1)[1] for r in first] == [str(k) for k in range(1, 11)]
    assert first[0].metadata == {"rnaseqcluster": 2, "death01": 1}
    s = read_slice(first[9])  # slice 10: after 9, not after 1
    assert s.image.shape == (3, 256, 256) and s.channels == ("t1", "flair", "t1ce")
    assert s.image[:, 0, 0].tolist() == [10, 10, 10]
    assert s.mask.max() == 1 and s.mask.sum() == 20 * 50 and s.patient_id == "TCGA_CS_4941"
    report = check_slices(ds)
    assert report.ok and [p.patient_id for p in report.patients] == ["TCGA_CS_4941",
                                                                     "TCGA_DU_5851"]


def test_lgg_faults(tmp_path: Path) -> None:
    root = lgg_folder(tmp_path / "kaggle_3m")
    case = root / "TCGA_CS_4941_19960909"
    (case / "TCGA_CS_4941_19960909_2_mask.tif").unlink()
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(case / "TCGA_CS_4941_19960909_3_mask.tif")
    gray = np.zeros((256, 256), np.uint8)
    gray[5, 5] = 9
    Image.fromarray(gray).save(case / "TCGA_CS_4941_19960909_6.tif")
    half = np.zeros((256, 256), np.uint8)
    half[0, 0] = 7
    Image.fromarray(half).save(case / "TCGA_CS_4941_19960909_7_mask.tif")
    (case / "TCGA_CS_4941_19960909_8.tif").write_bytes(b"II*\x00garbage")
    other = root / "TCGA_DU_5851_19950428"
    for k in (4, 5, 10):
        Image.fromarray(np.zeros((256, 256), np.uint8)).save(
            other / f"TCGA_DU_5851_19950428_{k}_mask.tif")
    report = check_slices(discover_slices(root))
    faults = {str(f.path.name) if f.path else "": str(f) for p in report.patients
              for s in p.slices for f in s.faults}
    assert "no mask for this slice" in faults["TCGA_CS_4941_19960909_2_mask.tif"]
    assert "mask is 128 x 128, image 256 x 256" in faults["TCGA_CS_4941_19960909_3_mask.tif"]
    assert "expected 3 channels" in faults["TCGA_CS_4941_19960909_6.tif"]
    assert "mask holds 0, 7" in faults["TCGA_CS_4941_19960909_7_mask.tif"]
    assert "not a readable TIFF image" in faults["TCGA_CS_4941_19960909_8.tif"]
    du = next(p for p in report.patients if p.patient_id == "TCGA_DU_5851")
    assert du.n_bad == 0 and not du.ok
    assert "no slice of patient TCGA_DU_5851 shows tumour" in str(du.faults[0])
    for text in faults.values():
        assert "\n" not in text


# ---------------------------------------------------------------- BraTS 2020 slices

def test_brats_slices_map_onto_regions(tmp_path: Path) -> None:
    root = brats_folder(tmp_path / "brats")
    ds = discover_slices(root)
    assert ds.dataset == "brats2020-slices" and len(ds.slices) == 6
    assert [r.slice_id for r in ds.slices][:3] == ["volume_1_slice_0", "volume_1_slice_1",
                                                  "volume_1_slice_60"]
    ref = next(r for r in ds.slices if r.slice_id == "volume_2_slice_60")
    assert ref.patient_id == "volume_2" and ref.metadata["target"] == 1
    s = read_slice(ref)
    assert s.channels == ("t1", "t1ce", "t2", "flair") and s.spacing_mm == (1.0, 1.0)
    assert s.image[:, 0, 0].tolist() == [2.0, 3.0, 4.0, 1.0]  # on disk: FLAIR, T1, T1ce, T2
    assert sorted(np.unique(s.mask).tolist()) == [0, 1, 2, 4] and s.mask_kind == "brats"
    regions = s.regions()
    assert regions["WT"].sum() == 40 * 40 and regions["TC"].sum() == 20 * 20
    assert regions["ET"].sum() == 20 * 20 - 10 * 10
    assert check_slices(ds).ok


def test_brats_slice_faults(tmp_path: Path) -> None:
    root = brats_folder(tmp_path / "brats", targets={"volume_1_slice_1.h5": 1})
    data = root / "BraTS2020_training_data" / "content" / "data"
    overlap = np.zeros((240, 240, 3), np.uint8)
    overlap[10:20, 10:20, :2] = 1
    brats_slice(data / "volume_2_slice_1.h5", mask=overlap)
    brats_slice(data / "volume_2_slice_0.h5", mask=np.zeros((200, 240, 3), np.uint8))
    (data / "volume_2_slice_60.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)
    report = check_slices(discover_slices(root))
    faults = {f.path.name: str(f) for p in report.patients for s in p.slices for f in s.faults}
    assert "mask is empty but meta_data.csv says this slice holds tumour" in \
        faults["volume_1_slice_1.h5"]
    assert "in two or more channels" in faults["volume_2_slice_1.h5"]
    assert "mask is 200x240x3, image 240x240x4" in faults["volume_2_slice_0.h5"]
    assert "damaged or truncated HDF5 file" in faults["volume_2_slice_60.h5"]
    assert not report.ok


# ---------------------------------------------------------------- discovery

def test_discovery_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(LayoutError) as info:
        discover_slices(tmp_path)
    one_line(info.value, tmp_path)
    assert "no 2-D slice dataset found: expected figshare <n>.mat" in str(info.value)
    figshare_folder(tmp_path / "mixed", n=1)
    brats_slice(tmp_path / "mixed" / "volume_1_slice_0.h5")
    with pytest.raises(LayoutError, match="more than one dataset"):
        discover_slices(tmp_path / "mixed")
    nifti = tmp_path / "nifti"
    nifti.mkdir()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), nifti / "a_t1.nii.gz")
    (nifti / "1.mat").write_bytes(b"")
    assert slice_dataset_kind(nifti) is None and slice_dataset_kind(tmp_path / "no") is None
    assert slice_dataset_kind(tmp_path / "mixed") in ("figshare", "brats2020-slices")


# ---------------------------------------------------------------- tumorscope check

def test_check_command_on_each_layout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folders = {"figshare": figshare_folder(tmp_path / "fig"),
               "lgg": lgg_folder(tmp_path / "lgg"),
               "brats2020-slices": brats_folder(tmp_path / "brats")}
    for name, folder in folders.items():
        assert main(["check", str(folder)]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"{name}  ") and " 0 bad; 0 patient(s) bad" in out, out
    assert main(["check", str(folders["figshare"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("figshare  2 patient(s), 4 slice(s)  ")
    assert lines[1] == "P0  figshare  2 slice(s)  256x256  glioma  ok"
    assert main(["check", str(folders["lgg"])]) == 0
    assert "TCGA_CS_4941  lgg  10 slice(s)  256x256  tumour in 3  ok" in capsys.readouterr().out


def test_check_command_reports_faults_in_one_line(tmp_path: Path) -> None:
    root = figshare_folder(tmp_path / "fig")
    write_v73(root / "2.mat", figshare_fields(label=5, pid="P0"))
    (root / "3.mat").write_bytes(b"junk")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "tumorscope.app.cli", "check", str(root)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    out = result.stdout
    assert f"    fault: {root / '2.mat'}: label is 5: expected 1 (meningioma)" in out
    assert f"    fault: {root / '3.mat'}: not a MATLAB v7.3 (HDF5) file" in out
    assert "3 patient(s), 4 slice(s): 2 ok, 2 bad; 2 patient(s) bad" in out  # P0, P1, ?


# ---------------------------------------------------------------- patient-wise splits

def _cohort(n_patients: int = 30) -> tuple[dict[str, str], dict[str, int]]:
    rng = np.random.default_rng(3)
    patient_of, types = {}, {}
    k = 0
    for p in range(n_patients):
        pid = f"pat{p:03d}"
        types[pid] = int(rng.integers(1, 4))
        for _ in range(int(rng.integers(1, 20))):
            k += 1
            patient_of[str(k)] = pid
    return patient_of, types


def test_split_is_patient_wise_deterministic_and_stratified() -> None:
    patient_of, types = _cohort()
    a = split_patients(patient_of, seed=5, strata=types)
    b = split_patients(dict(reversed(list(patient_of.items()))), seed=5, strata=types)
    assert a.patients == b.patients and a == split_patients(patient_of, seed=5, strata=types)
    assert {k: set(v) for k, v in a.slices.items()} == {k: set(v) for k, v in b.slices.items()}
    assert a != split_patients(patient_of, seed=6, strata=types)
    sides = [set(v) for v in a.patients.values()]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sorted(s for v in a.slices.values() for s in v) == sorted(patient_of)
    for part, slices in a.slices.items():
        assert {patient_of[s] for s in slices} == set(a.patients[part])
    assert [len(v) for v in a.patients.values()] == [21, 5, 4]  # largest remainders
    for t in (1, 2, 3):  # every part gets its share of every type, to within one patient
        n_t = sum(v == t for v in types.values())
        for part, share in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
            got = sum(types[p] == t for p in a.patients[part])
            assert abs(got - share * n_t) <= 1.5, (t, part, got, n_t)
    with pytest.raises(ConfigError, match="fractions"):
        split_patients(patient_of, fractions={"train": 0.9, "test": 0.2})
    with pytest.raises(ConfigError, match="no patient id"):
        split_patients({"1": "?"})


def test_split_csv_is_honoured_and_checked(tmp_path: Path) -> None:
    patient_of = {"1": "a", "2": "a", "3": "b", "4": "c"}
    good = tmp_path / "split.csv"
    good.write_text("patient,split\na,train\nb,test\nc,val\n")
    split = read_split_csv(good, patient_of)
    assert split.patients == {"train": ("a",), "test": ("b",), "val": ("c",)}
    by_slice = tmp_path / "slices.csv"
    by_slice.write_text("slice_id,split\n1,train\n2,test\n3,test\n4,test\n")
    with pytest.raises(ConfigError) as info:
        read_split_csv(by_slice, patient_of)
    assert "row 3: patient a is in 'train' and 'test'" in str(info.value)
    one_line(info.value, by_slice)
    missing = tmp_path / "missing.csv"
    missing.write_text("patient,split\na,train\n")
    with pytest.raises(ConfigError, match=r"2 patient\(s\) not in the split file \(b, c\)"):
        read_split_csv(missing, patient_of)
