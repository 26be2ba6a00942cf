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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.core.data.nifti import (
    NIFTI_SUFFIXES,
    read_header,
    read_label,
    read_nifti,
    voxel_spacing_mm,
)
from tumorscope.core.data.volumes import background_level
from tumorscope.core.errors import (
    CaseFileMissingError,
    GeometryError,
    LayoutError,
    TumorscopeError,
    UnreadableFileError,
    VoxelValueError,
)
from tumorscope.core.oserrors import os_error_words

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

EXTREME_FACTOR = 10.0
"""A brain voxel this many times further from the background than the 99.9th percentile of
the brain voxels is an extreme outlier (a warning: normalisation clips it). The rule is
relative only, so data in large units (a scan scaled by 1e6) is not an outlier."""
MIN_BRAIN_SHARE = 0.005
"""A modality with fewer of its voxels than this share differing from the background is
practically empty: not an MRI scan. A skull-stripped BraTS brain fills 10-15 % of its
240x240x155 grid (an adult brain, ~1.2 l, in any field of view that holds a head: at least
~3 %); 0.5 % of the BraTS grid is a 35 mm cube."""

COHORT_FILE = "tumorscope_cohort.json"
"""Written beside generated cohorts: ``{"synthetic": true, "case_ids": [...], ...}`` marks the
listed cases synthetic, and only those (a real case copied in beside them stays real)."""
SYNTHETIC_ID_RE = re.compile(r"^TSDemo_\d{5}$")
"""Case ids of the demo cohort; an old cohort marker without ``case_ids`` marks only these."""

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
    without ground truth (valid input for prediction). ``problems`` are faults found while
    listing the case (two files for one modality, a case folder that cannot be listed):
    :func:`load_case` raises the first, :func:`check_case` reports them all.
    """

    case_id: str
    folder: Path
    layout: str
    images: dict[str, Path]
    label: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    problems: tuple[TumorscopeError, ...] = ()

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
    mapping voxel (i, j, k) to world mm, as in nibabel. ``warnings`` are intensity
    oddities that preprocessing copes with (non-zero background, negative values, extreme
    outliers), one line each naming the file."""

    case: Case
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    warnings: tuple[str, ...] = ()

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
    """What :func:`check_case` found: geometry, labels present, every fault, and warnings
    (those of :attr:`Case.warnings` then those of the voxels, see :attr:`CaseData.warnings`)."""

    case: Case
    shape: tuple[int, ...] | None
    spacing_mm: tuple[float, float, float] | None
    labels_present: tuple[int, ...] | None
    faults: tuple[Fault, ...]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.faults


def _nifti_files(folder: Path) -> list[Path]:
    """Entries of ``folder`` named like NIfTI files, sorted; raises :class:`OSError` if the
    folder cannot be listed. Entries that are not regular files (a folder or a named pipe
    called ``<id>_t1.nii.gz``) are kept, so that reading them reports what they are instead
    of the modality being reported missing."""
    entries = sorted(folder.iterdir())
    return [p for p in entries if p.name.lower().endswith(NIFTI_SUFFIXES)]


def _layout_of(case_id: str, keys: set[str]) -> str:
    if keys & _KEYS_2023:
        return "brats2023"
    if case_id.startswith("BraTS20_"):
        return "brats2020"
    return "brats2021"


_Group = tuple[str, str, dict[str, Path], list[Path], dict[str, list[Path]]]


def _cases_in_folder(folder: Path) -> list[_Group]:
    """Group a folder's NIfTI files by case id: (id, layout, key -> path, unmatched files,
    key -> every file found for it where there is more than one)."""
    groups: dict[str, dict[str, list[Path]]] = {}
    unmatched: list[Path] = []
    for path in _nifti_files(folder):
        m = _FILE_RE.match(path.name)
        if m is None:
            unmatched.append(path)
            continue
        groups.setdefault(m["id"], {}).setdefault(m["key"].lower(), []).append(path)
    out: list[_Group] = []
    for case_id, found in sorted(groups.items()):
        by_key = {key: paths[0] for key, paths in found.items()}
        twice = {key: paths for key, paths in found.items() if len(paths) > 1}
        out.append((case_id, _layout_of(case_id, set(by_key)), by_key, [], twice))
    if out:
        out[0][3].extend(unmatched)  # reported once per folder
    return out


def _duplicate_problems(layout: str, twice: dict[str, list[Path]]) -> list[TumorscopeError]:
    names = {key: m for m, key in LAYOUT_KEYS[layout].items()}
    out: list[TumorscopeError] = []
    for key, paths in sorted(twice.items()):
        what = "the label map" if key == "seg" else f"modality {names.get(key, key)}"
        listed = ", ".join(p.name for p in paths)
        out.append(LayoutError(
            f"{len(paths)} files for {what} ({listed}): expected exactly one; remove or "
            "rename the others", path=paths[0]))
    return out


def _unlisted_case(folder: Path, exc: OSError) -> Case:
    """A folder that cannot be listed, kept as a case whose one fault says so."""
    name = folder.name or str(folder)
    layout = "brats2023" if name.startswith("BraTS-") else _layout_of(name, set())
    problem = UnreadableFileError(
        f"case folder cannot be listed: {os_error_words(exc)}", path=folder)
    return Case(name, folder, layout, {}, None, problems=(problem,))


def _make_case(
    folder: Path, case_id: str, layout: str, by_key: dict[str, Path], unmatched: list[Path],
    single_case_in_folder: bool, twice: dict[str, list[Path]] | None = None,
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
    problems = _duplicate_problems(layout, twice or {})
    return Case(case_id, folder, layout, images, label, {}, tuple(warnings), tuple(problems))


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
            marked = _synthetic_ids(cohort)
            for c in cases:
                if (c.folder.parent == folder or c.folder == folder) and marked(c.case_id):
                    meta.setdefault(c.case_id, {})["synthetic"] = True
    return meta


def _synthetic_ids(cohort: Path) -> Any:
    """Which case ids the cohort marker ``cohort`` marks synthetic, as a predicate: those it
    lists under ``case_ids``; for a marker written before it listed them, the ids that follow
    the demo naming (:data:`SYNTHETIC_ID_RE`); none for a marker that cannot be read or does
    not say ``"synthetic": true``."""
    try:
        info = json.loads(cohort.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s: cohort file not read (%s)", cohort, exc)
        return lambda case_id: False
    if not isinstance(info, dict) or info.get("synthetic") is not True:
        return lambda case_id: False
    listed = info.get("case_ids")
    if isinstance(listed, list):
        ids = {i for i in listed if isinstance(i, str)}
        return lambda case_id: case_id in ids
    return lambda case_id: SYNTHETIC_ID_RE.match(case_id) is not None


def check_input_folder(root: str | Path) -> Path:
    """``root`` as a Path once it is a folder that can be listed, else a one-line error
    naming it (:class:`LayoutError` when missing or a file, :class:`UnreadableFileError`
    when it cannot be listed)."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError("not a folder" if root.exists() else "folder does not exist",
                          path=root)
    try:
        with os.scandir(root) as entries:
            next(entries, None)
    except OSError as exc:
        raise UnreadableFileError(f"folder cannot be listed: {os_error_words(exc)}",
                                  path=root) from exc
    return root


def discover(root: str | Path) -> list[Case]:
    """Find every case below ``root`` in any of the three BraTS layouts, sorted by id.

    ``root`` may be a dataset folder (the usual case), a single case folder, or a folder
    holding the files of many cases side by side. Metadata from ``name_mapping.csv``,
    ``survival_info.csv`` (any CSV beside the case folders whose rows name a case id) and
    ``tumorscope_cohort.json`` is attached to each case.

    A folder below ``root`` that cannot be listed (permission denied) becomes a case of
    that name whose one fault says so, so no command drops it silently.

    Raises :class:`LayoutError` naming ``root`` if it does not exist or holds no case, and
    :class:`~tumorscope.core.errors.UnreadableFileError` if ``root`` itself cannot be listed.

    >>> import tempfile, nibabel as nib
    >>> root = Path(tempfile.mkdtemp()) / "BraTS2021_00042"
    >>> root.mkdir()
    >>> brain = np.zeros((8, 8, 8), np.float32); brain[2:6, 2:6, 2:6] = 100
    >>> for key in ("t1", "t1ce", "t2", "flair"):
    ...     nib.save(nib.Nifti1Image(brain, np.eye(4)), root / f"BraTS2021_00042_{key}.nii.gz")
    >>> [(c.case_id, c.layout, sorted(c.images), c.label) for c in discover(root.parent)]
    [('BraTS2021_00042', 'brats2021', ['flair', 't1', 't1ce', 't2'], None)]
    >>> discover(root.parent / "nowhere")
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.LayoutError: .../nowhere: folder does not exist
    """
    root = check_input_folder(root)
    cases: list[Case] = []
    seen_dirs: set[str] = set()
    unlisted: list[tuple[Path, OSError]] = []

    def walk_error(exc: OSError) -> None:
        if exc.filename is not None:
            unlisted.append((Path(exc.filename), exc))

    # Symlinked case folders are common (a curated subset of a big release); follow them,
    # but visit each real folder once so a link cycle cannot loop.
    for dirpath, dirnames, _ in os.walk(root, followlinks=True, onerror=walk_error):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        try:
            found = _cases_in_folder(folder)
        except OSError as exc:
            unlisted.append((folder, exc))
            continue
        for case_id, layout, by_key, unmatched, twice in found:
            cases.append(_make_case(folder, case_id, layout, by_key, unmatched,
                                    len(found) == 1, twice))
    cases.extend(_unlisted_case(folder, exc) for folder, exc in unlisted)
    if not cases:
        raise LayoutError(
            "no BraTS case found: expected files like <id>_t1.nii.gz, <id>_t1ce.nii.gz, "
            "<id>_t2.nii.gz, <id>_flair.nii.gz (2020/2021) or <id>-t1n.nii.gz ... (2023)",
            path=root,
        )
    meta = _metadata_for(root, cases)
    cases = [replace(c, metadata=meta.get(c.case_id, {})) for c in cases]
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


def _fmt(value: float) -> str:
    return f"{value:.6g}" if not float(value).is_integer() or abs(value) >= 1e6 \
        else f"{float(value):.1f}"


def _intensity_problems(modality: str, path: Path,
                        data: np.ndarray) -> tuple[TumorscopeError | None, list[str]]:
    """The fault (a constant or practically empty modality) or the warnings (non-zero
    background, negative intensities, extreme outliers) of one modality's voxels.

    Levels are percentiles of the brain voxels (those that differ from the background), so
    neither the background nor a few extreme voxels set them."""
    lo, hi = float(data.min()), float(data.max())
    if lo == hi:
        return VoxelValueError(
            f"modality {modality} is constant (every voxel {_fmt(lo)}): not an MRI scan",
            path=path), []
    background, tolerance = background_level(data)
    # A skull-stripped scan (background 0, no negative voxel: every BraTS release) is its
    # own magnitude: no full-volume copies, and one percentile serves both levels below.
    plain = background == 0 and lo >= 0
    magnitude = data if plain else np.abs(data - background)
    brain = magnitude > tolerance if tolerance > 0 else data != background
    n_brain = int(np.count_nonzero(brain))
    if n_brain < MIN_BRAIN_SHARE * data.size:
        return VoxelValueError(
            f"modality {modality} is practically empty: {n_brain:,} of {data.size:,} voxels "
            f"differ from the background {_fmt(background)}: not an MRI scan", path=path), []
    warnings: list[str] = []
    above = magnitude[brain]
    scale = float(np.percentile(above, 99.9))
    level = scale if plain else max(scale, float(np.percentile(np.abs(data[brain]), 99.9)))
    if abs(background) > 0.01 * level:
        warnings.append(
            f"{path}: modality {modality} background is {_fmt(background)}, not 0 (the most "
            "common value on the volume's border): expected a skull-stripped scan with zeros "
            "outside the brain; the brain mask takes this value as background")
    # Interpolation leaves a few slightly negative voxels in real releases: not worth a word.
    # (Each count is skipped when the extremes already say it is 0.)
    negative = int(np.count_nonzero(data < -0.01 * scale)) if lo < -0.01 * scale else 0
    if negative:
        warnings.append(
            f"{path}: modality {modality} has {negative} negative voxel(s) (min {_fmt(lo)}): "
            "expected MRI intensities >= 0")
    farthest = max(abs(lo - background), abs(hi - background))
    outliers = (int(np.count_nonzero(above > EXTREME_FACTOR * scale))
                if farthest > EXTREME_FACTOR * scale else 0)
    if outliers:
        worst = lo if abs(lo - background) > abs(hi - background) else hi
        warnings.append(
            f"{path}: modality {modality} has {outliers} extreme outlier voxel(s) (up to "
            f"{_fmt(worst)}, more than {EXTREME_FACTOR:g} times the 99.9th percentile of the "
            f"brain voxels, {_fmt(background + scale)}): intensities are clipped to the "
            "0.5-99.5th percentiles before normalisation")
    return None, warnings


_Read = tuple[CaseData | None, list[Fault], tuple[int, ...] | None, list[str]]


def _read_case(case: Case, *, stop_at_first: bool) -> _Read:
    """(data or None, faults, shape of the first file read, intensity warnings)."""
    warnings: list[str] = []
    faults = [Fault(problem) for problem in case.problems]
    if faults and (stop_at_first or not (case.images or case.label)):
        return None, faults, None, warnings
    faults += _missing_modality_faults(case)
    if faults and stop_at_first:
        return None, faults, None, warnings
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
                fault, found = _intensity_problems(modality, path, vol.data)
                warnings += found
                if fault is not None:
                    faults.append(Fault(fault))
                else:
                    arrays[modality] = vol.data
        if faults and stop_at_first:
            return None, faults, None, warnings
    if case.label is not None:
        try:
            vol = read_label(case.label, convention=case.label_convention)
        except TumorscopeError as exc:
            faults.append(Fault(exc))
        else:
            if consistent(case.label, vol.data.shape, vol.affine):
                label = vol.data
    if faults or reference is None:
        return None, faults, None if reference is None else reference[1], warnings
    image = np.stack([arrays[m] for m in MODALITIES])
    return (CaseData(case, image, label, reference[2], tuple(warnings)), faults,
            reference[1], warnings)


def load_case(case: Case) -> CaseData:
    """Read and check a case; raise the first fault as a :class:`TumorscopeError`.

    Errors name the file: missing modality (:class:`CaseFileMissingError`), two files for
    one modality or a case folder that cannot be listed (:attr:`Case.problems`), a file
    that cannot be opened (permission denied, a folder or a pipe), corrupt or truncated
    file, 4-D file, non-positive voxel size, zero or singular affine, shapes or affines
    that differ between files (:class:`GeometryError`), RGB or complex voxels, non-finite
    voxels, a constant modality (:class:`VoxelValueError`), unknown label values
    (:class:`LabelError`). Intensity oddities that preprocessing copes with are logged as
    warnings and kept in :attr:`CaseData.warnings`.
    """
    data, faults, _, _ = _read_case(case, stop_at_first=True)
    if faults:
        raise faults[0].error
    assert data is not None  # no faults means every file was read
    for warning in data.warnings:
        log.warning("%s: %s", case.case_id, warning)
    return data


def check_case(case: Case) -> CaseReport:
    """Read every file of ``case`` and collect all faults (never raises for bad data)."""
    data, faults, shape, found = _read_case(case, stop_at_first=False)
    spacing = None
    if shape is None and case.files:
        try:
            shape, affine = read_header(case.files[0])
            spacing = voxel_spacing_mm(affine)
        except TumorscopeError:
            shape = None
    labels = None
    warnings = case.warnings + tuple(found)
    if data is not None:
        spacing = data.spacing_mm
        if data.label is not None:
            labels = tuple(int(v) for v in np.unique(data.label))
    return CaseReport(case, shape, spacing, labels, tuple(faults), warnings)
