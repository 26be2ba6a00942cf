"""Predictions made by another tool (nnU-Net, a BraTS submission) brought into a run.

Each file of the folder is matched to a case of the data folder by name (``<case>.nii.gz``,
or ``<case>_<anything>.nii.gz``), its labels are mapped to the canonical convention, its grid
is checked against the case's ground truth (or first image), and it is written into the run
through the store as ``tumorscope predict`` writes its own: on the case's grid, in the
case's label values, recorded in ``cases.json`` with where it came from (the folder, the
label convention, the file's SHA-256; no checkpoint). ``tumorscope evaluate RUN`` then
scores it and the app browses it.

Label conventions of the files::

    brats    1 necrotic core, 2 edema, 4 enhancing (BraTS 2020/2021); a file holding 3 and
             no 4 is BraTS 2023's, 3 enhancing
    nnunet   nnU-Net's internal BraTS numbering: 1 edema, 2 necrotic / non-enhancing core,
             3 enhancing
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from tumorscope.core.data.cases import Case, discover
from tumorscope.core.data.geometry import conform_to
from tumorscope.core.data.labels import from_canonical, to_canonical
from tumorscope.core.data.nifti import (
    NIFTI_SUFFIXES,
    is_temp_file,
    nifti_stem,
    read_header,
    read_nifti,
    write_nifti,
)
from tumorscope.core.errors import (
    ConfigError,
    GeometryError,
    LabelError,
    LayoutError,
    TumorscopeError,
    check_choice,
)
from tumorscope.core.fingerprint import fingerprint
from tumorscope.core.store import CaseRecord, Run

log = logging.getLogger(__name__)

ForeignConvention = Literal["brats", "nnunet"]
FOREIGN_CONVENTIONS: tuple[str, ...] = get_args(ForeignConvention)

NNUNET_TO_CANONICAL: dict[int, int] = {0: 0, 1: 2, 2: 1, 3: 4}
"""nnU-Net's BraTS dataset conversion (Dataset137_BraTS2021): 1 edema, 2 non-enhancing /
necrotic core, 3 enhancing; canonical: 1 core, 2 edema, 4 enhancing."""

IMPORT_KEY = "imported"
"""Key of a record's provenance (and of the run's ``predict`` claim) for imported files."""


def foreign_to_canonical(label: np.ndarray, *, convention: ForeignConvention,
                         path: str | Path | None = None) -> tuple[np.ndarray, str]:
    """A foreign label map as canonical uint8 values {0, 1, 2, 4}, and the numbering it was
    read as ("brats2020", "brats2023" or "nnunet"). Values outside it raise
    :class:`LabelError` naming ``path``.

    >>> foreign_to_canonical(np.array([0, 1, 2, 3]), convention="nnunet")[0].tolist()
    [0, 2, 1, 4]
    >>> foreign_to_canonical(np.array([0, 1, 3]), convention="brats")
    (array([0, 1, 4], dtype=uint8), 'brats2023')
    """
    check_choice("convention", convention, FOREIGN_CONVENTIONS)
    data = np.asarray(label)
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise LabelError("label map holds non-finite values", path=path)
        if not np.array_equal(data, np.round(data)):
            raise LabelError("label map holds non-integer values", path=path)
    values = {int(v) for v in np.unique(data)}
    if convention == "nnunet":
        unknown = sorted(values - set(NNUNET_TO_CANONICAL))
        if unknown:
            raise LabelError(f"label value(s) {unknown} not in nnU-Net's BraTS labels "
                             f"{sorted(NNUNET_TO_CANONICAL)} (1 edema, 2 core, 3 enhancing)",
                             path=path)
        lookup = np.zeros(max(NNUNET_TO_CANONICAL) + 1, np.uint8)
        for old, new in NNUNET_TO_CANONICAL.items():
            lookup[old] = new
        return lookup[data.astype(np.intp)], "nnunet"
    if {3, 4} <= values:
        raise LabelError("label map holds both 3 and 4: neither BraTS 2020/2021 (4 enhancing) "
                         "nor BraTS 2023 (3 enhancing); is it nnU-Net's numbering "
                         "(--convention nnunet)?", path=path)
    year = "brats2023" if 3 in values else "brats2020"
    allowed = {0, 1, 2, 3} if year == "brats2023" else {0, 1, 2, 4}
    unknown = sorted(values - allowed)
    if unknown:
        raise LabelError(f"label value(s) {unknown} not in the BraTS labels (0, 1, 2 and 4, "
                         "or 3 for enhancing in BraTS 2023)", path=path)
    return to_canonical(data, convention=year), year


@dataclass
class ImportReport:
    """What one import did: the cases written, one line per file refused, the cases of the
    data folder the prediction folder has no file for."""

    run: Run
    imported: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    without_file: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"imported {len(self.imported)}"
        if self.failed:
            text += f", failed {len(self.failed)}"
        if self.without_file:
            names = ", ".join(self.without_file[:5]) + (" ..." if len(self.without_file) > 5
                                                        else "")
            text += f"; {len(self.without_file)} case(s) without a file ({names})"
        return text


def _prediction_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise LayoutError("prediction folder does not exist" if not folder.exists()
                          else "is not a folder; expected a folder of NIfTI predictions",
                          path=folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and not is_temp_file(p.name) and p.name.endswith(NIFTI_SUFFIXES))


def match_files(files: Sequence[Path], case_ids: Sequence[str]
                ) -> tuple[dict[str, Path], list[str]]:
    """Files by case: a file named ``<case>`` or ``<case>_...``/``<case>-...`` (the longest
    such case id wins), and one line per file that names no case or a case twice.

    >>> found, bad = match_files([Path("A_1.nii.gz"), Path("A_1_seg.nii.gz"), Path("B.nii")],
    ...                          ["A_1", "A"])
    >>> sorted(found.items()), len(bad)
    ([('A_1', PosixPath('A_1.nii.gz'))], 2)
    """
    ids = sorted(case_ids, key=len, reverse=True)
    found: dict[str, Path] = {}
    bad: list[str] = []
    for path in files:
        stem = nifti_stem(path)
        case_id = stem if stem in case_ids else next(
            (c for c in ids if stem.startswith(c) and stem[len(c)] in "_-"), None)
        if case_id is None:
            bad.append(f"{path}: names no case of the data folder (expected <case id>.nii.gz)")
        elif case_id in found:
            bad.append(f"{path}: a second file for case {case_id} (the first is "
                       f"{found[case_id].name}); not imported")
        else:
            found[case_id] = path
    return found, bad


def _claim(folder: Path, data_root: Path, convention: str) -> dict[str, Any]:
    return {IMPORT_KEY: {"folder": str(folder.resolve()), "convention": convention},
            "input": str(data_root.resolve())}


def _check_run(run: Run, claim: Mapping[str, Any]) -> None:
    """A run holds one model's predictions: refuse a Tumorscope model's run, and a run of
    files imported from another folder or with another convention."""
    if run.path.exists() and not run.path.is_dir():
        raise ConfigError("is a file; --out needs a folder", path=run.path)
    old = run.predict_claim() or {}
    if old.get("checkpoint_sha256") or any(
            r.checkpoint_sha256 for r in run.case_records().values()):
        raise ConfigError("holds predictions of a Tumorscope checkpoint; import into a new "
                          "--out", path=run.path)
    if old.get(IMPORT_KEY) and old[IMPORT_KEY] != claim[IMPORT_KEY]:
        before = old[IMPORT_KEY]
        raise ConfigError(f"holds predictions imported from {before.get('folder')} "
                          f"(convention {before.get('convention')}); import into a new --out",
                          path=run.path)


def _reference(case: Case) -> tuple[Path, str]:
    """The file whose grid a prediction of ``case`` must be on: its truth, else an image."""
    if case.label is not None:
        return case.label, "ground truth"
    images = [case.images[m] for m in ("t1", "t1ce", "t2", "flair") if m in case.images]
    if not images:
        raise LayoutError(f"case {case.case_id} has no image to check a prediction against")
    return images[0], "image"


def _import_one(path: Path, case: Case, run: Run, convention: ForeignConvention,
                claim: Mapping[str, Any]) -> None:
    import nibabel as nib

    source = read_nifti(path, dtype=None)
    canonical, numbering = foreign_to_canonical(source.data, convention=convention, path=path)
    ref, ref_kind = _reference(case)
    ref_shape, ref_affine = read_header(ref)
    if sorted(canonical.shape) != sorted(ref_shape[:3]):
        raise GeometryError(f"shape {tuple(canonical.shape)} does not match the {ref_kind} "
                            f"{ref.name} of case {case.case_id}, {tuple(ref_shape[:3])}",
                            path=path)
    on_grid = conform_to(canonical, source.affine, tuple(ref_shape[:3]), ref_affine, path=path,
                         ref_path=ref)
    provenance = {
        "sources": {m: fingerprint(p) for m, p in case.images.items()},
        IMPORT_KEY: {**claim[IMPORT_KEY], "file": fingerprint(path), "read_as": numbering},
    }
    out = run.prediction_path(case.case_id)
    write_nifti(out, from_canonical(on_grid, convention=case.label_convention), ref_affine,
                header=nib.load(str(ref)).header)
    run.record_case(CaseRecord.of_case(
        case, provenance=provenance,
        prediction={**fingerprint(out), "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))


def import_predictions(
    folder: str | Path,
    data_root: str | Path,
    out: str | Path,
    *,
    convention: ForeignConvention,
    progress: bool = True,
) -> ImportReport:
    """Import every NIfTI prediction of ``folder`` for the cases of ``data_root`` into the
    run ``out``. A bad file (no such case, unknown labels, another grid than its case's) is
    one line of the report; the other files are still imported. Importing the same folder
    again replaces its cases' files."""
    from tqdm import tqdm

    check_choice("convention", convention, FOREIGN_CONVENTIONS)
    folder, data_root, run = Path(folder), Path(data_root), Run(Path(out))
    files = _prediction_files(folder)
    if not files:
        raise LayoutError("holds no NIfTI prediction (.nii.gz or .nii)", path=folder)
    cases = {c.case_id: c for c in discover(data_root)}
    claim = _claim(folder, data_root, convention)
    run.path.mkdir(parents=True, exist_ok=True)
    with run.lock():  # checked and claimed at once, as predict claims a run
        _check_run(run, claim)
        run.write_config({**(run.config() or {}), "predict": claim})
    run.clean_temp_files()
    found, bad = match_files(files, list(cases))
    report = ImportReport(run, failed=bad,
                          without_file=sorted(set(cases) - set(found)))
    for case_id, path in tqdm(sorted(found.items()), desc="import", unit="file",
                              disable=not progress):
        try:
            _import_one(path, cases[case_id], run, convention, claim)
        except TumorscopeError as exc:
            kept = " (previous import kept)" if run.prediction_path(case_id).is_file() else ""
            line = str(exc) if exc.path is not None else f"{path}: {exc}"
            report.failed.append(f"{line}{kept}")
            continue
        report.imported.append(case_id)
        log.info("%s: imported %s", case_id, path)
    return report
