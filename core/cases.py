"""Finding BraTS cases on disk (2020, 2021 and 2023 layouts), reading them, and checking them.

A :class:`Case` is what :func:`discover` finds: ids, paths, layout and metadata, no voxels.
:func:`load_case` reads it into a :class:`CaseData` (4-channel image, canonical label map,
affine, spacing); :func:`check_case` reads it too but collects every fault instead of
raising on the first, for ``tumorscope check``.

Layouts, as the challenge ships them::

    brats2020  BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii[.gz]
    brats2021  BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz
    brats2023  BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz

Any folder whose files follow the 2020/2021 suffixes (``<id>_t1ce.nii.gz``) is read as
brats2021, so cohorts written by ``tumorscope demo-data`` load the same way.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (
    CaseFileMissingError,
    GeometryError,
    LayoutError,
    TumorscopeError,
)
from .nifti import NIFTI_SUFFIXES, read_header, read_label, read_nifti, voxel_spacing_mm

log = logging.getLogger(__name__)

MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
"""Channel order of every image array in Tumorscope."""

LAYOUTS: tuple[str, ...] = ("brats2020", "brats2021", "brats2023")

# File-name key of each modality (and the label map) per layout.
LAYOUT_KEYS: dict[str, dict[str, str]] = {
    "brats2020": {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"},
    "brats2021": {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"},
    "brats2023": {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"},
}
LAYOUT_SEPARATOR = {"brats2020": "_", "brats2021": "_", "brats2023": "-"}
LAYOUT_LABELS = {"brats2020": "brats2020", "brats2021": "brats2020", "brats2023": "brats2023"}

COHORT_FILE = "tumorscope_cohort.json"
"""Written beside generated cohorts; ``{"synthetic": true, ...}`` marks every case synthetic."""

# Longer keys first so that "t1ce" is not read as "t1" + "ce".
_FILE_RE = re.compile(
    r"^(?P<id>.+?)(?P<sep>[_-])(?P<key>t1ce|t1c|t1n|t1|t2w|t2f|t2|flair|seg)\.nii(\.gz)?$",
    re.IGNORECASE,
)
_KEYS_2023 = {"t1n", "t1c", "t2w", "t2f"}
# The real BraTS 2020 release has one label file named like "W39_1998.09.19_Segm.nii".
_STRAY_SEG_RE = re.compile(r"(seg|segm)", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    """A case found on disk: its files and metadata; voxels are read by :func:`load_case`.

    ``images`` maps each modality in :data:`MODALITIES` to its file; a missing modality is
    simply absent here and reported by :func:`check_case`. ``label`` is ``None`` for cases
    without ground truth (valid input for prediction).
    """

    case_id: str
    folder: Path
    layout: str
    images: dict[str, Path]
    label: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def label_convention(self) -> str:
        """Label values on disk: "brats2020" (ET = 4) or "brats2023" (ET = 3)."""
        return LAYOUT_LABELS[self.layout]

    @property
    def files(self) -> list[Path]:
        """Every file of the case, images in modality order then the label map."""
        return [self.images[m] for m in MODALITIES if m in self.images] + (
            [self.label] if self.label is not None else []
        )

    @property
    def synthetic(self) -> bool:
        return bool(self.metadata.get("synthetic", False))


@dataclass(frozen=True)
class CaseData:
    """A case's voxels: ``image`` (4, X, Y, Z) float32 in :data:`MODALITIES` order, ``label``
    (X, Y, Z) uint8 with canonical values {0, 1, 2, 4} or ``None``, ``affine`` (4, 4)
    mapping voxel (i, j, k) to world mm, as in nibabel."""

    case: Case
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray

    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return voxel_spacing_mm(self.affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape[1:])


@dataclass(frozen=True)
class Fault:
    """One thing wrong with a case: the error raised for it, naming the file and the fault."""

    error: TumorscopeError

    @property
    def path(self) -> Path:
        assert self.error.path is not None  # every case fault is tied to a file
        return self.error.path

    @property
    def message(self) -> str:
        return self.error.fault

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class CaseReport:
    """What :func:`check_case` found: geometry, labels present, and every fault."""

    case: Case
    shape: tuple[int, ...] | None
    spacing_mm: tuple[float, float, float] | None
    labels_present: tuple[int, ...] | None
    faults: tuple[Fault, ...]

    @property
    def ok(self) -> bool:
        return not self.faults


def _nifti_files(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES)]


def _layout_of(case_id: str, keys: set[str]) -> str:
    if keys & _KEYS_2023:
        return "brats2023"
    if case_id.startswith("BraTS20_"):
        return "brats2020"
    return "brats2021"


def _cases_in_folder(folder: Path) -> list[tuple[str, str, dict[str, Path], list[Path]]]:
    """Group a folder's NIfTI files by case id: (id, layout, key -> path, unmatched files)."""
    groups: dict[str, dict[str, Path]] = {}
    unmatched: list[Path] = []
    for path in _nifti_files(folder):
        m = _FILE_RE.match(path.name)
        if m is None:
            unmatched.append(path)
            continue
        groups.setdefault(m["id"], {})[m["key"].lower()] = path
    out = []
    for case_id, by_key in sorted(groups.items()):
        out.append((case_id, _layout_of(case_id, set(by_key)), by_key, []))
    if out:
        out[0][3].extend(unmatched)  # reported once per folder
    return out


def _make_case(
    folder: Path, case_id: str, layout: str, by_key: dict[str, Path], unmatched: list[Path],
    single_case_in_folder: bool,
) -> Case:
    keys = LAYOUT_KEYS[layout]
    images = {m: by_key[keys[m]] for m in MODALITIES if keys[m] in by_key}
    label = by_key.get("seg")
    warnings: list[str] = []
    stray = [p for p in unmatched if _STRAY_SEG_RE.search(p.name)]
    if label is None and single_case_in_folder and len(stray) == 1:
        label = stray[0]
        warnings.append(f"label map taken from {stray[0].name!r}, which does not follow the "
                        f"{layout} naming")
        unmatched = [p for p in unmatched if p != stray[0]]
    for p in unmatched:
        warnings.append(f"ignored {p.name!r}: not a {layout} modality or label file")
    for key, path in by_key.items():
        if key not in keys.values():
            warnings.append(f"ignored {path.name!r}: {key!r} is not a {layout} file key")
    return Case(case_id, folder, layout, images, label, {}, tuple(warnings))


def _read_csv_metadata(path: Path, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Rows of a CSV keyed by whichever cell holds a known case id (column names vary by year)."""
    out: dict[str, dict[str, Any]] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                hit = next((v for v in row.values() if isinstance(v, str) and v in ids), None)
                if hit is None:
                    continue
                meta = out.setdefault(hit, {})
                for key, value in row.items():
                    if key is None or value is None or value == hit or value == "":
                        continue
                    meta[key.strip().lower()] = _parse_value(value.strip())
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        log.warning("%s: metadata not read (%s)", path, exc)
    return out


def _parse_value(value: str) -> Any:
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value else number


def _metadata_for(root: Path, cases: list[Case]) -> dict[str, dict[str, Any]]:
    ids = {c.case_id for c in cases}
    folders = {root} | {c.folder.parent for c in cases}
    meta: dict[str, dict[str, Any]] = {}
    for folder in sorted(folders):
        for csv_path in sorted(folder.glob("*.csv")):
            for case_id, values in _read_csv_metadata(csv_path, ids).items():
                meta.setdefault(case_id, {}).update(values)
        cohort = folder / COHORT_FILE
        if cohort.is_file():
            try:
                info = json.loads(cohort.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                log.warning("%s: cohort file not read (%s)", cohort, exc)
                continue
            for c in cases:
                if c.folder.parent == folder or c.folder == folder:
                    meta.setdefault(c.case_id, {})["synthetic"] = bool(info.get("synthetic"))
    return meta


def discover(root: str | Path) -> list[Case]:
    """Find every case below ``root`` in any of the three BraTS layouts, sorted by id.

    ``root`` may be a dataset folder (the usual case), a single case folder, or a folder
    holding the files of many cases side by side. Metadata from ``name_mapping.csv``,
    ``survival_info.csv`` (any CSV beside the case folders whose rows name a case id) and
    ``tumorscope_cohort.json`` is attached to each case.

    Raises :class:`LayoutError` naming ``root`` if it does not exist or holds no case.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError("not a folder" if root.exists() else "folder does not exist",
                          path=root)
    cases: list[Case] = []
    seen_dirs: set[str] = set()
    # Symlinked case folders are common (a curated subset of a big release); follow them,
    # but visit each real folder once so a link cycle cannot loop.
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        found = _cases_in_folder(folder)
        for case_id, layout, by_key, unmatched in found:
            cases.append(_make_case(folder, case_id, layout, by_key, unmatched, len(found) == 1))
    if not cases:
        raise LayoutError(
            "no BraTS case found: expected files like <id>_t1.nii.gz, <id>_t1ce.nii.gz, "
            "<id>_t2.nii.gz, <id>_flair.nii.gz (2020/2021) or <id>-t1n.nii.gz ... (2023)",
            path=root,
        )
    meta = _metadata_for(root, cases)
    cases = [
        Case(c.case_id, c.folder, c.layout, c.images, c.label, meta.get(c.case_id, {}),
             c.warnings)
        for c in cases
    ]
    seen: dict[str, Case] = {}
    for c in cases:
        if c.case_id in seen:
            raise LayoutError(
                f"case id {c.case_id!r} found twice, in {seen[c.case_id].folder} and {c.folder}",
                path=root,
            )
        seen[c.case_id] = c
    return sorted(cases, key=lambda c: c.case_id)


def _missing_modality_faults(case: Case) -> list[Fault]:
    keys = LAYOUT_KEYS[case.layout]
    sep = LAYOUT_SEPARATOR[case.layout]
    return [
        Fault(CaseFileMissingError(
            f"missing modality {m}: no {case.case_id}{sep}{keys[m]}.nii.gz in {case.folder}",
            path=case.folder / f"{case.case_id}{sep}{keys[m]}.nii.gz"))
        for m in MODALITIES
        if m not in case.images
    ]


def _read_case(case: Case, *, stop_at_first: bool) -> tuple[CaseData | None, list[Fault],
                                                            tuple[int, ...] | None]:
    faults = _missing_modality_faults(case)
    if faults and stop_at_first:
        return None, faults, None
    arrays: dict[str, np.ndarray] = {}
    reference: tuple[Path, tuple[int, ...], np.ndarray] | None = None
    label: np.ndarray | None = None

    def consistent(path: Path, shape: tuple[int, ...], affine: np.ndarray) -> bool:
        nonlocal reference
        if reference is None:
            reference = (path, shape, affine)
            return True
        ref_path, ref_shape, ref_affine = reference
        if shape != ref_shape:
            faults.append(Fault(GeometryError(
                f"shape {shape} differs from {ref_shape} of {ref_path.name}", path=path)))
            return False
        if not np.allclose(affine, ref_affine, atol=1e-3):
            faults.append(Fault(GeometryError(
                f"affine differs from that of {ref_path.name} "
                f"(max difference {np.abs(affine - ref_affine).max():.4g} mm)", path=path)))
            return False
        return True

    for modality in MODALITIES:
        path = case.images.get(modality)
        if path is None:
            continue
        try:
            vol = read_nifti(path)
        except TumorscopeError as exc:
            faults.append(Fault(exc))
        else:
            if consistent(path, vol.data.shape, vol.affine):
                arrays[modality] = vol.data
        if faults and stop_at_first:
            return None, faults, None
    if case.label is not None:
        try:
            vol = read_label(case.label, convention=case.label_convention)
        except TumorscopeError as exc:
            faults.append(Fault(exc))
        else:
            if consistent(case.label, vol.data.shape, vol.affine):
                label = vol.data
    if faults or reference is None:
        return None, faults, None if reference is None else reference[1]
    image = np.stack([arrays[m] for m in MODALITIES])
    return CaseData(case, image, label, reference[2]), faults, reference[1]


def load_case(case: Case) -> CaseData:
    """Read and check a case; raise the first fault as a :class:`TumorscopeError`.

    Errors name the file: missing modality (:class:`CaseFileMissingError`), corrupt or
    truncated file, 4-D file, shapes or affines that differ between files
    (:class:`GeometryError`), non-finite voxels, unknown label values (:class:`LabelError`).
    """
    data, faults, _ = _read_case(case, stop_at_first=True)
    if faults:
        raise faults[0].error
    assert data is not None  # no faults means every file was read
    return data


def check_case(case: Case) -> CaseReport:
    """Read every file of ``case`` and collect all faults (never raises for bad data)."""
    data, faults, shape = _read_case(case, stop_at_first=False)
    spacing = None
    if shape is None and case.files:
        try:
            shape, affine = read_header(case.files[0])
            spacing = voxel_spacing_mm(affine)
        except TumorscopeError:
            shape = None
    labels = None
    if data is not None:
        spacing = data.spacing_mm
        if data.label is not None:
            labels = tuple(int(v) for v in np.unique(data.label))
    return CaseReport(case, shape, spacing, labels, tuple(faults))
