"""Finding 2-D slice datasets on disk (figshare, LGG, BraTS 2020 slices), reading and checking them.

:func:`discover_slices` says which dataset a folder holds, from its files, and lists its
slices (:class:`SliceDataset`, no pixels); :func:`read_slice` reads one through its format's
reader (:mod:`~tumorscope.core.data.figshare`, :mod:`~tumorscope.core.data.lgg`,
:mod:`~tumorscope.core.data.brats_slices`); :func:`check_slices` reads them all and collects
every fault, slice by slice and patient by patient, for ``tumorscope check``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.core.data import brats_slices, figshare, lgg
from tumorscope.core.data.cases import COHORT_FILE, check_input_folder
from tumorscope.core.data.nifti import NIFTI_SUFFIXES
from tumorscope.core.data.slice2d import (
    DATASETS_2D,
    TUMOUR_TYPES,
    Dataset2D,
    Inspected,
    Slice2D,
    SliceRef,
    as_slice2d,
)
from tumorscope.core.errors import (
    CaseFileMissingError,
    LabelError,
    LayoutError,
    TumorscopeError,
)

log = logging.getLogger(__name__)

EXPECTED = ("expected figshare <n>.mat files (MATLAB v7.3), LGG <case>_<n>.tif slices with "
            "<case>_<n>_mask.tif, or BraTS 2020 volume_<v>_slice_<s>.h5 slices")
_INSPECT: dict[str, Callable[[SliceRef], Inspected]] = {
    "figshare": figshare.inspect_figshare,
    "lgg": lgg.inspect_lgg,
    "brats2020-slices": brats_slices.inspect_brats_slice,
}


@dataclass(frozen=True)
class SliceDataset:
    """A slice dataset found below ``root``: its slices in dataset order (file number; case
    then slice number; volume then slice), ``folds_path`` (figshare's ``cvind.mat``) where
    there is one, ``patients`` (LGG ``data.csv`` rows by patient id), the slice ids the
    synthetic marker lists, and ``problems`` found while listing (a mask without its image,
    a slice id twice)."""

    dataset: Dataset2D
    root: Path
    slices: tuple[SliceRef, ...]
    folds_path: Path | None = None
    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    synthetic_ids: frozenset[str] = frozenset()
    problems: tuple[TumorscopeError, ...] = ()
    warnings: tuple[str, ...] = ()


def _walk(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """(folder, visible file names) below ``root``, sorted, each real folder once."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), sorted(f for f in filenames if not f.startswith("."))


def _kind_of(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if figshare.SLICE_RE.match(name):
        return "figshare"
    if lgg.IMAGE_RE.match(name) or lgg.MASK_RE.match(name):
        return "lgg"
    if brats_slices.SLICE_RE.match(name):
        return "brats2020-slices"
    return None


def slice_dataset_kind(root: str | Path) -> Dataset2D | None:
    """Which 2-D dataset ``root`` holds, judged from file names alone; ``None`` when it is not
    a folder, holds NIfTI files (a 3-D dataset) or no slice file. Cheap: stops at the first
    NIfTI file. The first kind found is returned; :func:`discover_slices` refuses a mix.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "1.mat").write_bytes(b"")
    >>> slice_dataset_kind(root)
    'figshare'
    """
    root = Path(root)
    if not root.is_dir():
        return None
    found: Dataset2D | None = None
    try:
        for _, names in _walk(root):
            for name in names:
                kind = _kind_of(name)
                if kind == "nifti":
                    return None
                if found is None and kind is not None:
                    found = next(d for d in DATASETS_2D if d == kind)
    except OSError:
        return None
    return found


def _read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [{(k or "").strip(): (v or "").strip() for k, v in row.items()}
                    for row in csv.DictReader(fh)]
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        log.warning("%s: metadata not read (%s)", path, exc)
        return []


def _number(text: str) -> int | float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


def _synthetic_ids(folders: set[Path]) -> frozenset[str]:
    ids: set[str] = set()
    for folder in folders:
        marker = folder / COHORT_FILE
        if not marker.is_file():
            continue
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("%s: cohort file not read (%s)", marker, exc)
            continue
        if isinstance(info, dict) and info.get("synthetic") is True \
                and isinstance(info.get("slice_ids"), list):
            ids |= {str(i) for i in info["slice_ids"]}
    return frozenset(ids)


def _figshare(root: Path, files: list[Path], others: dict[str, list[Path]]) -> SliceDataset:
    by_number: dict[int, list[Path]] = {}
    for p in files:
        by_number.setdefault(int(figshare.SLICE_RE.match(p.name)["n"]), []).append(p)
    problems = [LayoutError(f"slice {n} found {len(ps)} times ({', '.join(map(str, ps))}): "
                            "expected one file per slice number", path=ps[1])
                for n, ps in sorted(by_number.items()) if len(ps) > 1]
    refs = tuple(SliceRef(str(n), "figshare", ps[0]) for n, ps in sorted(by_number.items()))
    folds = others.get(figshare.FOLDS_FILE, [])
    warnings = [f"{p}: a second {figshare.FOLDS_FILE}, ignored (using {folds[0]})"
                for p in folds[1:]]
    return SliceDataset("figshare", root, refs, folds[0] if folds else None,
                        problems=tuple(problems), warnings=tuple(warnings))


def _lgg(root: Path, files: list[Path], others: dict[str, list[Path]]) -> SliceDataset:
    images: dict[tuple[Path, str, int], Path] = {}
    masks: dict[tuple[Path, str, int], Path] = {}
    for p in files:
        m = lgg.MASK_RE.match(p.name)
        if m:
            masks[(p.parent, m["case"], int(m["n"]))] = p
        elif m := lgg.IMAGE_RE.match(p.name):
            images[(p.parent, m["case"], int(m["n"]))] = p
    problems: list[TumorscopeError] = [
        CaseFileMissingError(f"mask without its image: expected {key[1]}_{key[2]}{p.suffix} "
                             "beside it", path=p)
        for key, p in sorted(masks.items()) if key not in images]
    rows = [row for p in others.get(lgg.METADATA_FILE, []) for row in _read_rows(p)]
    patients = {row["Patient"]: {k.lower(): _number(v) for k, v in row.items()
                                 if k and k != "Patient" and v}
                for row in rows if row.get("Patient")}
    refs: list[SliceRef] = []
    seen: dict[str, Path] = {}
    for (folder, case, n), path in sorted(images.items(), key=lambda kv: (kv[0][1], kv[0][2],
                                                                          kv[0][0])):
        slice_id = f"{case}_{n}"
        if slice_id in seen:
            problems.append(LayoutError(f"slice {slice_id} found twice ({seen[slice_id]} and "
                                        f"{path}): expected one file per slice", path=path))
            continue
        seen[slice_id] = path
        patient = lgg.patient_of(case)
        refs.append(SliceRef(slice_id, "lgg", path, masks.get((folder, case, n)), patient,
                             patients.get(patient, {})))
    return SliceDataset("lgg", root, tuple(refs), patients=patients, problems=tuple(problems))


def _brats(root: Path, files: list[Path], others: dict[str, list[Path]]) -> SliceDataset:
    meta: dict[str, dict[str, Any]] = {}
    for name in brats_slices.METADATA_FILES:
        for p in others.get(name, []):
            for row in _read_rows(p):
                where = row.get("slice_path", "")
                if where:
                    meta[Path(where.replace("\\", "/")).name] = {
                        k: _number(v) for k, v in row.items() if k and k != "slice_path"}
    refs: list[SliceRef] = []
    problems: list[TumorscopeError] = []
    seen: dict[str, Path] = {}
    keyed = sorted(files, key=lambda p: (int(brats_slices.SLICE_RE.match(p.name)["volume"]),
                                         int(brats_slices.SLICE_RE.match(p.name)["slice"]),
                                         str(p)))
    for path in keyed:
        m = brats_slices.SLICE_RE.match(path.name)
        if path.stem in seen:
            problems.append(LayoutError(f"slice {path.stem} found twice ({seen[path.stem]} and "
                                        f"{path}): expected one file per slice", path=path))
            continue
        seen[path.stem] = path
        refs.append(SliceRef(path.stem, "brats2020-slices", path, None,
                             brats_slices.patient_of(m["volume"]), meta.get(path.name, {})))
    return SliceDataset("brats2020-slices", root, tuple(refs), problems=tuple(problems))


_BUILD = {"figshare": _figshare, "lgg": _lgg, "brats2020-slices": _brats}
_KIND_WORDS = {"figshare": "figshare .mat", "lgg": "LGG .tif", "brats2020-slices": "BraTS .h5",
               "nifti": "NIfTI"}


def discover_slices(root: str | Path) -> SliceDataset:
    """Find the 2-D slice dataset below ``root`` and list its slices (no pixels read).

    The dataset is told by its files: ``<n>.mat`` (figshare; ``cvind.mat`` folds beside
    them), ``<case>_<n>.tif`` + ``<case>_<n>_mask.tif`` (LGG; ``data.csv``),
    ``volume_<v>_slice_<s>.h5`` (BraTS 2020 slices; ``meta_data.csv``), in ``root`` or any
    folder below it. Hidden files (an atomic write's temporaries) are skipped. Raises
    :class:`LayoutError` naming ``root`` when it is no folder, holds none of these or holds
    files of more than one dataset (or NIfTI files), and :class:`UnreadableFileError` when
    it cannot be listed.

    >>> import tempfile
    >>> discover_slices(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.LayoutError: ...: no 2-D slice dataset found: expected figshare ...
    """
    root = check_input_folder(root)
    by_kind: dict[str, list[Path]] = {}
    others: dict[str, list[Path]] = {}
    folders: set[Path] = set()
    for folder, names in _walk(root):
        for name in names:
            kind = _kind_of(name)
            if kind is None:
                others.setdefault(name, []).append(folder / name)
            else:
                by_kind.setdefault(kind, []).append(folder / name)
                folders.add(folder)
    if len(by_kind) > 1:
        counts = ", ".join(f"{len(v)} {_KIND_WORDS[k]}" for k, v in sorted(by_kind.items()))
        raise LayoutError(f"holds files of more than one dataset ({counts}): expected one "
                          "dataset per folder; check them one at a time", path=root)
    if not by_kind or "nifti" in by_kind:
        raise LayoutError(f"no 2-D slice dataset found: {EXPECTED}", path=root)
    (kind, files), = by_kind.items()
    found = _BUILD[kind](root, files, others)
    marked = _synthetic_ids(folders | {root})
    return SliceDataset(found.dataset, found.root, found.slices, found.folds_path,
                        found.patients, marked, found.problems, found.warnings)


def inspect_slice(ref: SliceRef) -> Inspected:
    """Read ``ref`` with its format's reader: the slice and every fault in it. Raises (one
    line naming the file) when the file cannot be read at all."""
    return _INSPECT[ref.dataset](ref)


def read_slice(ref: SliceRef) -> Slice2D:
    """Read ``ref`` into a :class:`Slice2D`; raise its first fault (one line naming the
    file). Warnings are logged."""
    found = inspect_slice(ref)
    for warning in found.warnings:
        log.warning("%s", warning)
    return as_slice2d(found)


def patients_of(ds: SliceDataset) -> dict[str, str]:
    """Patient id of every slice (slice id -> patient id). Figshare's are read from each
    file's ``PID`` (a few milliseconds a file); raises the first file's fault."""
    if ds.dataset != "figshare":
        return {r.slice_id: str(r.patient_id) for r in ds.slices}
    return {r.slice_id: figshare.read_pid(r.path) for r in ds.slices}


# ---------------------------------------------------------------- checking

@dataclass(frozen=True)
class SliceReport:
    """What reading one slice found: its patient, size, type, labels and every fault."""

    ref: SliceRef
    patient_id: str
    shape: tuple[int, int] | None
    tumour_type: int | None
    labels_present: tuple[int, ...]
    faults: tuple[TumorscopeError, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.faults


@dataclass(frozen=True)
class PatientReport:
    """A patient's slices as checked, with the faults only the whole patient shows (an LGG
    patient none of whose slices shows tumour)."""

    patient_id: str
    slices: tuple[SliceReport, ...]
    faults: tuple[TumorscopeError, ...] = ()
    warnings: tuple[str, ...] = ()
    synthetic: bool = False

    @property
    def ok(self) -> bool:
        return not self.faults and all(s.ok for s in self.slices)

    @property
    def n_bad(self) -> int:
        return sum(not s.ok for s in self.slices)

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple(sorted({s.shape for s in self.slices if s.shape is not None}))

    @property
    def tumour_types(self) -> tuple[int, ...]:
        return tuple(sorted({s.tumour_type for s in self.slices if s.tumour_type is not None}))


@dataclass(frozen=True)
class SliceDatasetReport:
    """Every patient's report, and the faults and warnings of the dataset as a whole (what
    listing found, the folds file)."""

    dataset: SliceDataset
    patients: tuple[PatientReport, ...]
    faults: tuple[TumorscopeError, ...] = ()
    warnings: tuple[str, ...] = ()
    n_folds: int | None = None

    @property
    def ok(self) -> bool:
        return not self.faults and all(p.ok for p in self.patients)

    @property
    def n_slices(self) -> int:
        return sum(len(p.slices) for p in self.patients)

    @property
    def n_bad_slices(self) -> int:
        return sum(p.n_bad for p in self.patients)


def check_slice(ref: SliceRef) -> SliceReport:
    """Read ``ref`` and collect its faults (never raises for bad data)."""
    try:
        found = inspect_slice(ref)
    except TumorscopeError as exc:
        patient = ref.patient_id or "?"
        return SliceReport(ref, patient, None, None, (), (exc,), ())
    s = found.slice
    labels = tuple(int(v) for v in np.unique(s.mask))
    return SliceReport(ref, s.patient_id, s.shape, s.tumour_type, labels, found.faults,
                       found.warnings)


def _fold_problems(ds: SliceDataset, reports: list[SliceReport]
                   ) -> tuple[list[TumorscopeError], list[str], int | None]:
    if ds.folds_path is None:
        return [], [], None
    try:
        folds = figshare.read_folds(ds.folds_path)
    except TumorscopeError as exc:
        return [exc], [], None
    numbers = [int(r.ref.slice_id) for r in reports]
    if len(folds) < max(numbers, default=0):
        return [LayoutError(f"cvind has {len(folds)} entries, but the folder has slices up to "
                            f"{max(numbers)}.mat: expected one fold per image", path=ds.folds_path)
                ], [], len(set(folds))
    warnings: list[str] = []
    if len(folds) > len(numbers):
        warnings.append(f"{ds.folds_path}: cvind has {len(folds)} entries for "
                        f"{len(numbers)} slice file(s)")
    seen: dict[str, set[int]] = {}
    for r in reports:
        if r.patient_id != "?":
            seen.setdefault(r.patient_id, set()).add(folds[int(r.ref.slice_id) - 1])
    split = {p: f for p, f in seen.items() if len(f) > 1}
    if split:
        shown = ", ".join(f"{p} (folds {', '.join(map(str, sorted(f)))})"
                          for p, f in sorted(split.items())[:3])
        warnings.append(f"{ds.folds_path}: {len(split)} patient(s) in more than one fold: "
                        f"{shown}: a split on these folds would put a patient on both sides")
    return [], warnings, len(set(folds))


def check_slices(ds: SliceDataset, *, progress: Callable[[int, int], None] | None = None
                 ) -> SliceDatasetReport:
    """Read every slice of ``ds`` and collect every fault, grouped by patient (sorted).

    Slice faults are those of the format's reader (see :func:`inspect_slice`); a patient
    fault is an LGG patient none of whose slices shows tumour; dataset faults are what
    listing found (:attr:`SliceDataset.problems`) and a ``cvind.mat`` that cannot be read or
    has fewer entries than images. Never raises for bad data."""
    reports = []
    for i, ref in enumerate(ds.slices):
        reports.append(check_slice(ref))
        if progress is not None:
            progress(i + 1, len(ds.slices))
    faults, warnings, n_folds = _fold_problems(ds, reports) if ds.dataset == "figshare" \
        else ([], [], None)
    by_patient: dict[str, list[SliceReport]] = {}
    for r in reports:
        by_patient.setdefault(r.patient_id, []).append(r)
    patients = []
    for pid, slices in sorted(by_patient.items()):
        p_faults: list[TumorscopeError] = []
        p_warnings: list[str] = []
        readable = [s for s in slices if s.shape is not None]
        if ds.dataset == "lgg" and readable and len(readable) == len(slices) \
                and not any(1 in s.labels_present for s in readable):
            p_faults.append(LabelError(
                f"no slice of patient {pid} shows tumour (all {len(slices)} masks empty): every "
                "LGG patient has one", path=slices[0].ref.path.parent))
        types = {s.tumour_type for s in slices if s.tumour_type is not None}
        if len(types) > 1:
            named = ", ".join(TUMOUR_TYPES[t] for t in sorted(types))
            p_warnings.append(f"patient {pid} has slices of {len(types)} tumour types ({named})")
        synthetic = all(s.ref.slice_id in ds.synthetic_ids for s in slices)
        patients.append(PatientReport(pid, tuple(slices), tuple(p_faults), tuple(p_warnings),
                                      synthetic))
    return SliceDatasetReport(ds, tuple(patients), tuple(ds.problems) + tuple(faults),
                              tuple(ds.warnings) + tuple(warnings), n_folds)
