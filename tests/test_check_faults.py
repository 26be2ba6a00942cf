"""Fault battery for ``tumorscope check``: images that cannot be a brain scan, through the
real command line, and preprocessing that copes with intensity oddities.

Every fault is crafted from real NIfTI files written with nibabel (or raw header bytes
where nibabel refuses to write the fault), next to a good case of the same folder.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import (
    BRATS_AFFINE,
    SMALL_SHAPE,
    drop_root_file_access,
    small_image,
    small_label,
    write_case,
)

from tumorscope.core import errors
from tumorscope.core.data.cases import check_case, discover, load_case
from tumorscope.core.data.preprocess import preprocess_case
from tumorscope.core.data.volumes import brain_mask, zscore
from tumorscope.core.errors import UnreadableFileError

GOOD = "BraTS2021_00000"
BAD = "BraTS2021_00042"


def run_cli(*args: str | Path, timeout: float = 120,
            preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tumorscope.app.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=preexec_fn)


def _save(path: Path, data: np.ndarray, affine: np.ndarray = BRATS_AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _file(folder: Path, key: str, suffix: str = ".nii.gz") -> Path:
    return folder / f"{folder.name}_{key}{suffix}"


def _save_with_header(path: Path, data: np.ndarray, **fields: object) -> Path:
    """Save with raw header fields set after nibabel built the header (srow, codes)."""
    hdr = nib.Nifti1Image(data, BRATS_AFFINE).header
    for key, value in fields.items():
        hdr[key] = value
    nib.save(nib.Nifti1Image(data, None, header=hdr), path)
    return path


def _save_with_pixdim(path: Path, data: np.ndarray, pixdim: tuple[float, float, float]) -> Path:
    """nibabel fixes a zero or negative voxel size on save: patch the header bytes instead
    (pixdim[1:4] are three float32 at byte 80 of a NIfTI-1 header)."""
    raw = bytearray(nib.Nifti1Image(data, BRATS_AFFINE).to_bytes())
    raw[80:92] = struct.pack("<3f", *pixdim)
    with gzip.open(path, "wb") as fh:
        fh.write(bytes(raw))
    return path


def _volume(folder: Path, key: str) -> np.ndarray:
    return np.asarray(nib.load(_file(folder, key)).dataobj, dtype=np.float32)


# ---- errors: each breaker damages the case in ``folder`` and returns the file at fault and
# ---- the words the message must hold.

Breaker = Callable[[Path], tuple[Path, list[str]]]


def _all_zero(folder: Path) -> tuple[Path, list[str]]:
    path = _save(_file(folder, "t1ce"), np.zeros(SMALL_SHAPE, np.float32))
    return path, ["modality t1ce is constant (every voxel 0.0): not an MRI scan"]


def _constant(folder: Path) -> tuple[Path, list[str]]:
    path = _save(_file(folder, "flair"), np.full(SMALL_SHAPE, 7, np.int16))
    return path, ["modality flair is constant (every voxel 7.0)"]


def _practically_empty(folder: Path) -> tuple[Path, list[str]]:
    # Before: passed with an outlier warning "against a 99.9th percentile of 1e+30".
    data = np.zeros(SMALL_SHAPE, np.float32)
    data[12, 14, 12] = 1e30
    path = _save(_file(folder, "t1"), data)
    return path, [f"modality t1 is practically empty: 1 of {np.prod(SMALL_SHAPE):,} voxels "
                  "differ from the background 0.0: not an MRI scan"]


def _zero_affine(folder: Path) -> tuple[Path, list[str]]:
    path = _save_with_header(_file(folder, "t2"), _volume(folder, "t2"), qform_code=0,
                             srow_x=[0] * 4, srow_y=[0] * 4, srow_z=[0] * 4)
    return path, ["affine is all zero", "expected a positive voxel size"]


def _singular_affine(folder: Path) -> tuple[Path, list[str]]:
    path = _save_with_header(_file(folder, "t1"), _volume(folder, "t1"), qform_code=0,
                             srow_x=[-1, 0, -1, 0], srow_z=[0, 0, 0, 0])  # k parallel to i
    return path, ["affine is singular", "expected an invertible"]


def _zero_pixdim(folder: Path) -> tuple[Path, list[str]]:
    path = _save_with_pixdim(_file(folder, "t2"), _volume(folder, "t2"), (0.0, 1.0, 1.0))
    return path, ["voxel size (pixdim) is 0x1x1 mm", "expected a positive, finite size"]


def _negative_pixdim(folder: Path) -> tuple[Path, list[str]]:
    path = _save_with_pixdim(_file(folder, "t1"), _volume(folder, "t1"), (1.0, -1.0, 1.0))
    return path, ["voxel size (pixdim) is 1x-1x1 mm"]


def _nan_pixdim(folder: Path) -> tuple[Path, list[str]]:
    path = _save_with_pixdim(_file(folder, "flair"), _volume(folder, "flair"),
                             (1.0, 1.0, float("nan")))
    return path, ["voxel size (pixdim) is 1x1xnan mm"]


def _nii_beside_nii_gz(folder: Path) -> tuple[Path, list[str]]:
    path = _save(_file(folder, "t1", ".nii"), _volume(folder, "t1") * 2)
    return path, [f"2 files for modality t1 ({BAD}_t1.nii, {BAD}_t1.nii.gz)",
                  "expected exactly one"]


def _two_label_maps(folder: Path) -> tuple[Path, list[str]]:
    path = _save(_file(folder, "seg", ".nii"), small_label())
    return path, [f"2 files for the label map ({BAD}_seg.nii, {BAD}_seg.nii.gz)"]


def _rgb(folder: Path) -> tuple[Path, list[str]]:
    grey = _volume(folder, "t2").astype(np.uint8)
    rgb = np.zeros(SMALL_SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = rgb["G"] = rgb["B"] = grey
    path = _save(_file(folder, "t2"), rgb)
    return path, ["voxel data is RGB colour (3 bytes per voxel)",
                  "expected one grey-scale intensity per voxel"]


def _complex(folder: Path) -> tuple[Path, list[str]]:
    data = _volume(folder, "flair").astype(np.complex64) * (1 + 1j)
    path = _save(_file(folder, "flair"), data)
    return path, ["voxel data is complex (complex64)", "expected real intensities"]


def _folder_named_like_nifti(folder: Path) -> tuple[Path, list[str]]:
    path = _file(folder, "t1ce")
    path.unlink()
    path.mkdir()
    return path, ["is a folder, expected a NIfTI file"]


def _named_pipe(folder: Path) -> tuple[Path, list[str]]:
    path = _file(folder, "t2")
    path.unlink()
    os.mkfifo(path)  # opening it for reading would block forever
    return path, ["is a named pipe (FIFO), expected a NIfTI file"]


def _broken_symlink(folder: Path) -> tuple[Path, list[str]]:
    path = _file(folder, "flair")
    path.unlink()
    path.symlink_to(folder / "moved_away.nii.gz")
    return path, ["broken symbolic link"]


ERRORS: dict[str, tuple[Breaker, type[errors.TumorscopeError]]] = {
    "all-zero modality": (_all_zero, errors.VoxelValueError),
    "constant modality": (_constant, errors.VoxelValueError),
    "practically empty modality": (_practically_empty, errors.VoxelValueError),
    "zero affine": (_zero_affine, errors.GeometryError),
    "singular affine": (_singular_affine, errors.GeometryError),
    "zero pixdim": (_zero_pixdim, errors.GeometryError),
    "negative pixdim": (_negative_pixdim, errors.GeometryError),
    "nan pixdim": (_nan_pixdim, errors.GeometryError),
    ".nii beside .nii.gz": (_nii_beside_nii_gz, errors.LayoutError),
    "two label maps": (_two_label_maps, errors.LayoutError),
    "rgb": (_rgb, errors.VoxelValueError),
    "complex": (_complex, errors.VoxelValueError),
    "folder named like a nifti": (_folder_named_like_nifti, UnreadableFileError),
    "named pipe": (_named_pipe, UnreadableFileError),
    "broken symlink": (_broken_symlink, errors.CaseFileMissingError),
}


def _good_and_bad(root: Path, breaker: Breaker) -> tuple[Path, list[str]]:
    write_case(root, GOOD)
    return breaker(write_case(root, BAD, seed=1))


def _assert_reported(result: subprocess.CompletedProcess[str], bad_path: Path,
                     words: list[str]) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{GOOD}  ") and line.endswith("  ok") for line in lines), out
    assert any(line.startswith(f"{BAD}  ") and "BAD" in line for line in lines), out
    fault = next((line for line in lines if line.strip().startswith(f"fault: {bad_path}:")),
                 None)
    assert fault is not None, out
    for word in words:
        assert word in fault, (word, fault)
    assert lines[-1] == "2 case(s): 1 ok, 1 bad"


@pytest.mark.parametrize("kind", list(ERRORS))
def test_check_cli_reports_fault_and_keeps_good_case(tmp_path: Path, kind: str) -> None:
    breaker, _ = ERRORS[kind]
    bad_path, words = _good_and_bad(tmp_path, breaker)
    _assert_reported(run_cli("check", tmp_path), bad_path, words)


@pytest.mark.parametrize("kind", list(ERRORS))
def test_load_case_raises_the_fault_naming_the_file(tmp_path: Path, kind: str) -> None:
    breaker, error_type = ERRORS[kind]
    bad_path, words = breaker(write_case(tmp_path, BAD))
    (case,) = discover(tmp_path)
    with pytest.raises(error_type) as info:
        load_case(case)
    assert info.value.path == bad_path and words[0] in str(info.value)
    report = check_case(case)
    assert not report.ok and report.faults[0].path == bad_path


def test_duplicate_modality_no_longer_lets_nii_gz_win(tmp_path: Path) -> None:
    """Before, the .nii.gz silently replaced the .nii; now neither is read as t1."""
    _nii_beside_nii_gz(write_case(tmp_path, BAD))
    (case,) = discover(tmp_path)
    assert len(case.problems) == 1 and "modality t1" in case.problems[0].fault


def test_preprocess_skips_a_bad_case_with_one_line(tmp_path: Path) -> None:
    bad_path, words = _good_and_bad(tmp_path / "data", _all_zero)
    result = run_cli("preprocess", tmp_path / "data", "--cache", tmp_path / "cache", "-q")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert skipped == [f"skipped {BAD}: {bad_path}: {words[0]}"]
    assert "1 case(s) cached" in result.stdout and "1 skipped" in result.stdout


# ---- permission denied: real, also when the tests run as root ----

_drop_file_access_override = drop_root_file_access


def _denied_for_cli(path: Path) -> bool:
    """Whether a CLI child really gets "permission denied" on ``path`` (mode 000)."""
    try:
        probe = subprocess.run([sys.executable, "-c", f"import os; os.listdir({str(path)!r})"
                                if path.is_dir() else f"open({str(path)!r}, 'rb')"],
                               capture_output=True, text=True, timeout=60,
                               preexec_fn=_drop_file_access_override)
    except (OSError, subprocess.SubprocessError):
        return False
    return "PermissionError" in probe.stderr


@pytest.fixture
def denied(tmp_path: Path):  # type: ignore[no-untyped-def]
    """chmod 000 a path for one test; skip where the OS cannot refuse it to the CLI."""
    changed: list[Path] = []

    def deny(path: Path) -> Path:
        path.chmod(0)
        changed.append(path)
        if not _denied_for_cli(path):
            pytest.skip("cannot make a file unreadable here: running as root without "
                        "CAP_SETPCAP to drop CAP_DAC_OVERRIDE")
        return path

    yield deny
    for path in changed:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_permission_denied_file_says_so(tmp_path: Path, denied) -> None:  # type: ignore[no-untyped-def]
    bad_path = denied(_file(write_case(tmp_path, BAD, seed=1), "t1"))
    write_case(tmp_path, GOOD)
    result = run_cli("check", tmp_path, preexec_fn=_drop_file_access_override)
    _assert_reported(result, bad_path, ["cannot be read: permission denied"])
    assert "not a readable NIfTI file" not in result.stdout


def test_unlistable_case_folder_is_reported_not_dropped(tmp_path: Path, denied) -> None:  # type: ignore[no-untyped-def]
    folder = denied(write_case(tmp_path, BAD, seed=1))
    write_case(tmp_path, GOOD)
    result = run_cli("check", tmp_path, preexec_fn=_drop_file_access_override)
    _assert_reported(result, folder, ["case folder cannot be listed: permission denied"])


def test_unlistable_dataset_folder_is_a_command_error(tmp_path: Path, denied) -> None:  # type: ignore[no-untyped-def]
    write_case(tmp_path / "data", GOOD)
    root = denied(tmp_path / "data")
    result = run_cli("check", root, preexec_fn=_drop_file_access_override)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"tumorscope check: error: {root}: folder cannot be listed: permission denied")


# ---- warnings: the case is usable, ``check`` says what is odd about it ----

def _rewrite(folder: Path, change: Callable[[str, np.ndarray], np.ndarray]) -> None:
    for key in ("t1", "t1ce", "t2", "flair"):
        _save(_file(folder, key), change(key, _volume(folder, key)))


def _offset(key: str, data: np.ndarray) -> np.ndarray:
    return data + 500


def _background_only(key: str, data: np.ndarray) -> np.ndarray:
    return np.where(data == 0, np.float32(500), data) if key == "t2" else data


def _negative(key: str, data: np.ndarray) -> np.ndarray:
    return data - 1000


def _spike(key: str, data: np.ndarray) -> np.ndarray:
    if key == "t1":
        data = data.copy()
        data[12, 14, 12] = 1e30  # inside the brain
    return data


WARNINGS = {
    "+500 offset": (_offset, ["t1 background is 500.0, not 0"]),
    "+500 background only": (_background_only, ["t2 background is 500.0, not 0"]),
    "negative intensities": (_negative, ["t1 has", "negative voxel(s) (min -1000.0)",
                                         "t1 background is -1000.0"]),
    # The percentile is the brain's, which one voxel cannot set (before: "1e+30" for a
    # practically empty modality).
    "1e30 voxel": (_spike, ["t1 has 1 extreme outlier voxel(s) (up to 1e+30, more than 10 "
                            "times the 99.9th percentile of the brain voxels, 1"]),
}


@pytest.mark.parametrize("kind", list(WARNINGS))
def test_check_cli_warns_but_passes(tmp_path: Path, kind: str) -> None:
    change, words = WARNINGS[kind]
    write_case(tmp_path, GOOD)
    folder = write_case(tmp_path, BAD, seed=1)
    _rewrite(folder, change)
    result = run_cli("check", tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "2 case(s): 2 ok, 0 bad"
    warnings = [line.strip() for line in lines if line.strip().startswith("warning: ")]
    for word in words:
        assert any(word in w and str(folder) in w for w in warnings), (word, warnings)
    good_block = lines[:lines.index(next(x for x in lines if x.startswith(BAD)))]
    assert not any("warning" in x for x in good_block)


def test_clean_case_has_no_intensity_warning(tmp_path: Path) -> None:
    write_case(tmp_path, GOOD)
    (case,) = discover(tmp_path)
    assert check_case(case).warnings == () and load_case(case).warnings == ()


def _scaled(key: str, data: np.ndarray) -> np.ndarray:
    return data.astype(np.float64) * 1e6


def _scaled_int(key: str, data: np.ndarray) -> np.ndarray:
    return (data * 10_000_000).astype(np.int32)  # up to 1.5e9


@pytest.mark.parametrize("change", [_scaled, _scaled_int])
def test_data_in_large_units_is_no_outlier(tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Before: "16128 extreme outlier voxel(s)" for every voxel beyond an absolute 1e6."""
    write_case(tmp_path, GOOD)
    _rewrite(write_case(tmp_path, BAD, seed=1), change)
    result = run_cli("check", tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr
    assert "warning" not in result.stdout, result.stdout
    assert result.stdout.splitlines()[-1] == "2 case(s): 2 ok, 0 bad"


@pytest.mark.parametrize("share, empty", [(0.004, True), (0.006, False), (0.03, False)])
def test_a_modality_is_practically_empty_below_half_a_percent(
        tmp_path: Path, share: float, empty: bool) -> None:
    """A small brain on a big grid passes; a speck of signal does not (the share is of the
    voxels that differ from the background, whatever their values)."""
    shape = (60, 60, 40)
    folder = write_case(tmp_path, BAD, shape=shape)
    data = np.zeros(shape, np.float32)
    n = int(round(share * data.size))
    rng = np.random.default_rng(0)
    data.ravel()[:n] = rng.uniform(50, 150, n)
    data = np.roll(data, (20, 20, 10), axis=(0, 1, 2))  # off the border
    _save(_file(folder, "flair"), data)
    (case,) = discover(tmp_path)
    report = check_case(case)
    if empty:
        assert [f.message for f in report.faults] == [
            f"modality flair is practically empty: {n:,} of {data.size:,} voxels differ from "
            "the background 0.0: not an MRI scan"]
    else:
        assert report.ok and not report.warnings, (report.faults, report.warnings)


def test_a_spike_in_a_normal_scan_is_still_an_outlier_whatever_the_units(
        tmp_path: Path) -> None:
    folder = write_case(tmp_path, BAD)
    _rewrite(folder, lambda key, data: _spike(key, _scaled(key, data)))
    (case,) = discover(tmp_path)
    (warning,) = check_case(case).warnings
    assert "modality t1 has 1 extreme outlier voxel(s) (up to 1e+30" in warning
    assert "percentile of the brain voxels, 1.4" in warning  # ~150e6, not 1e+30


def test_preprocess_logs_the_warnings(tmp_path: Path) -> None:
    _rewrite(write_case(tmp_path / "data", BAD), _spike)
    result = run_cli("preprocess", tmp_path / "data", "--cache", tmp_path / "cache", "-q")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "extreme outlier" in result.stderr and BAD in result.stderr


# ---- robust preprocessing: the odd case normalises like the clean one ----

def _cached_pair(tmp_path: Path, change: Callable[[str, np.ndarray], np.ndarray]):  # type: ignore[no-untyped-def]
    clean = write_case(tmp_path / "clean", BAD)
    odd = write_case(tmp_path / "odd", BAD)
    _rewrite(odd, change)
    cache = tmp_path / "cache"
    (clean_case,), (odd_case,) = discover(clean.parent), discover(odd.parent)
    return preprocess_case(clean_case, cache), preprocess_case(odd_case, cache)


@pytest.mark.parametrize("kind", ["+500 offset", "+500 background only", "negative intensities"])
def test_offset_background_normalises_like_clean(tmp_path: Path, kind: str) -> None:
    clean, odd = _cached_pair(tmp_path, WARNINGS[kind][0])
    assert odd.box == clean.box
    np.testing.assert_allclose(np.asarray(odd.image), np.asarray(clean.image), atol=1e-3)


def test_1e30_voxel_normalises_like_clean(tmp_path: Path) -> None:
    clean, odd = _cached_pair(tmp_path, _spike)
    assert odd.box == clean.box
    a, b = np.asarray(clean.image), np.asarray(odd.image)
    assert np.isfinite(b).all() and np.abs(b).max() < 10
    spike = (0, *(np.array((12, 14, 12)) - np.array(clean.box.start)))
    diff = np.abs(a - b)
    diff[spike] = 0
    assert diff.max() < 0.02
    assert np.abs(b[spike]) < 3  # clipped to the 99.5th percentile, not 1e30


def test_without_clipping_one_voxel_would_wreck_the_channel() -> None:
    """The guard the clipping gives: unclipped, the 1e30 voxel flattens every other voxel."""
    image = small_image()[:1].astype(np.float64)
    image[0, 12, 14, 12] = 1e30
    mask = brain_mask(image)
    wrecked, _, _ = zscore(image, mask, clip_percentiles=None)
    robust, _, _ = zscore(image, mask)
    inside = mask.copy()
    inside[12, 14, 12] = False
    assert np.abs(wrecked[0][inside]).std() < 0.1
    assert abs(robust[0][inside].std() - 1) < 0.05


def test_brain_mask_of_clean_scan_is_its_non_zero_voxels() -> None:
    image = small_image()
    np.testing.assert_array_equal(brain_mask(image), np.any(image != 0, axis=0))
