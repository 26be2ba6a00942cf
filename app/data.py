"""Where the results are, and the pages' loaders (runs, tables, volumes, meshes), cached by mtime.

Every loader here goes through :mod:`tumorscope.core.store` for paths; the cached ones take a
file's ``mtime_ns`` as part of their key, so a file rewritten by ``tumorscope predict`` is read
again and an unchanged one never is. Volumes and meshes are large and read-only, so they are
kept with ``st.cache_resource`` (one shared object, no pickling copy per rerun); small tables
use ``st.cache_data``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import streamlit as st

from tumorscope.core.data.cases import MODALITIES
from tumorscope.core.data.labels import REGIONS, labels_to_regions
from tumorscope.core.data.nifti import read_label, read_nifti, voxel_spacing_mm
from tumorscope.core.errors import GeometryError, LayoutError, TumorscopeError
from tumorscope.core.fingerprint import stat_identity
from tumorscope.core.store import CaseRecord, Run, open_runs

log = logging.getLogger(__name__)

DEFAULT_RESULTS = Path("runs")
"""Where ``tumorscope demo`` writes (``runs/demo``), relative to the working directory."""
RESULTS_ENV = "TUMORSCOPE_RESULTS"
BUILD_COMMAND = "tumorscope demo"

METRIC_KEYS: tuple[str, ...] = ("dice", "hd95_mm", "volume_truth_ml", "volume_pred_ml")
DISPLAY_MAX_TRIANGLES = 60_000
"""Meshes above this are simplified for the browser; a trained model's WT is ~20-60k."""


# --------------------------------------------------------------------------------------------
# locating the results


def results_arg(argv: Sequence[str]) -> str | None:
    """The value of ``--results DIR`` or ``--results=DIR`` in ``argv`` (the args after ``--``).

    Scanned by hand rather than with argparse: Streamlit and pytest put their own arguments
    in ``sys.argv`` and argparse would exit on ones it does not know.

    >>> results_arg(["--results", "out/runs"]), results_arg(["--results=R"]), results_arg([])
    ('out/runs', 'R', None)
    """
    for i, arg in enumerate(argv):
        if arg == "--results" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--results="):
            return arg.split("=", 1)[1]
    return None


def initial_results_dir(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, str]:
    """The folder to open first and where it came from: ``--results``, then the env, then runs/.

    >>> initial_results_dir([], {})
    ('runs', 'default')
    >>> initial_results_dir(["--results", "R"], {"TUMORSCOPE_RESULTS": "E"})
    ('R', '--results')
    """
    from_arg = results_arg(argv)
    if from_arg:
        return from_arg, "--results"
    if environ.get(RESULTS_ENV):
        return environ[RESULTS_ENV], RESULTS_ENV
    return str(DEFAULT_RESULTS), "default"


@dataclass(frozen=True)
class Results:
    """The runs found in a results folder, or the one-line reason there are none."""

    root: Path
    runs: tuple[Run, ...] = ()
    problem: str | None = None

    def run(self, name: str | None) -> Run | None:
        return next((r for r in self.runs if r.name == name), self.runs[0] if self.runs else None)


def find_results(folder: str) -> Results:
    """Open ``folder`` (one run or a folder of runs); never raises, the problem is a sentence."""
    text = folder.strip()
    if not text:
        return Results(Path("."), problem="Enter a results folder in the sidebar.")
    root = Path(text).expanduser()
    if not root.exists() and root == DEFAULT_RESULTS:
        return Results(root, problem=(
            f"No results yet: the default folder `{root}/` does not exist in {Path.cwd()}. "
            f"Build the demo results with `{BUILD_COMMAND}`, or enter another folder in the "
            "sidebar."))
    try:
        runs = open_runs(root)
    except TumorscopeError as exc:
        return Results(root, problem=f"Cannot open results `{root}`: {exc.fault}.")
    except OSError as exc:  # permission denied and the like
        return Results(root, problem=f"Cannot read results `{root}`: {exc.strerror or exc}.")
    return Results(root, tuple(runs))


# --------------------------------------------------------------------------------------------
# tables


def stamp(path: str | Path) -> int:
    """``mtime_ns`` of ``path`` for cache keys; -1 when it is not there."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def run_stamp(run: Run) -> tuple[int, ...]:
    """Changes whenever predict or evaluate rewrites something the tables are built from,
    and when a prediction file is changed in place (its score must then show as stale)."""
    folder = run.predictions_dir
    try:
        with os.scandir(folder) as entries:
            preds = hash(tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size)
                                      for e in entries if e.name.endswith(".nii.gz"))))
    except OSError:
        preds = -1
    return (stamp(run.metrics_path), stamp(run.cases_path), stamp(run.log_path),
            stamp(folder), preds)


def _check_columns(rows: list[dict[str, Any]], needed: Sequence[str], path: Path) -> None:
    if rows and (missing := [c for c in needed if c not in rows[0]]):
        raise LayoutError(f"missing column(s) {missing}; found {list(rows[0])}", path=path)


def metrics_frame(run: Run) -> pd.DataFrame:
    """The current rows of metrics.csv as a long table (one row per case x region), numbers
    as floats. Rows that score another prediction than the run's (stale) are left out:
    :func:`stale_scores` says which and why."""
    rows = run.current_metrics_rows()
    _check_columns(rows, ("case_id", "region", *METRIC_KEYS), run.metrics_path)
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["case_id", "region",
                                                                    *METRIC_KEYS])
    frame["case_id"] = frame["case_id"].astype(str)
    for key in (*METRIC_KEYS, "jaccard", "sensitivity", "specificity", "volume_diff_ml"):
        if key in frame:
            frame[key] = pd.to_numeric(frame[key], errors="coerce")
    return frame


def wide_column(metric: str, region: str) -> str:
    """Column title of one metric of one region in the cohort table.

    >>> wide_column("dice", "WT"), wide_column("hd95_mm", "ET")
    ('Dice WT', 'HD95 ET (mm)')
    """
    return {"dice": f"Dice {region}", "hd95_mm": f"HD95 {region} (mm)",
            "volume_truth_ml": f"{region} true (mL)",
            "volume_pred_ml": f"{region} pred (mL)"}[metric]


def cohort_table(metrics: pd.DataFrame, cases: Mapping[str, CaseRecord],
                 case_ids: Sequence[str],
                 predicted_ml: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """One row per patient: metadata, then Dice, HD95 and volumes per region, mean Dice.

    Patients without ground truth keep their row (metrics empty, ``ground truth`` False);
    their predicted volumes come from ``predicted_ml`` (case -> region -> mL) when given.
    """
    ids = sorted(set(case_ids) | set(metrics["case_id"]))
    table = pd.DataFrame({"patient": ids})
    records = [cases.get(i) for i in ids]
    meta = [dict(r.metadata) if r else {} for r in records]
    table["grade"] = [m.get("grade") for m in meta]
    table["age"] = pd.to_numeric(pd.Series([m.get("age") for m in meta]), errors="coerce")
    table["synthetic"] = [bool(m.get("synthetic", False)) for m in meta]
    scored = set(metrics["case_id"])
    table["ground truth"] = [i in scored or bool(r and r.label) for i, r in zip(ids, records,
                                                                               strict=True)]
    for metric in METRIC_KEYS:
        wide = metrics.pivot_table(index="case_id", columns="region", values=metric,
                                   aggfunc="first") if len(metrics) else pd.DataFrame()
        for region in REGIONS:
            values = wide[region] if region in wide else pd.Series(dtype=float)
            table[wide_column(metric, region)] = table["patient"].map(values).astype(float)
    for case_id, volumes in (predicted_ml or {}).items():
        for region, ml in volumes.items():
            column = wide_column("volume_pred_ml", region)
            table.loc[(table["patient"] == case_id) & table[column].isna(), column] = ml
    table.insert(5, "mean Dice", table[[wide_column("dice", r) for r in REGIONS]].mean(
        axis=1, skipna=False))
    return table


@st.cache_data(show_spinner=False, max_entries=16)
def _cohort(run_path: str, stamps: tuple[int, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    run = Run(Path(run_path))
    metrics = metrics_frame(run)
    cases = run.case_records()
    unscored = [c for c in run.case_ids() if c not in set(metrics["case_id"])]
    predicted = {}
    for case_id in unscored:
        convention = cases[case_id].label_convention if case_id in cases else "brats2020"
        try:
            predicted[case_id] = predicted_volumes_ml(str(run.prediction_path(case_id)),
                                                      stamp(run.prediction_path(case_id)),
                                                      convention)
        except TumorscopeError as exc:  # one bad file: its row stays empty, said by stale
            log.warning("%s", exc)
    return metrics, cohort_table(metrics, cases, run.case_ids(), predicted)


@st.cache_data(show_spinner=False, max_entries=16)
def _stale(run_path: str, stamps: tuple[int, ...], inputs: int) -> dict[str, str]:
    run = Run(Path(run_path))
    records = run.case_records()
    problems = run.score_problems(records=records)
    for case_id in run.case_ids():
        if case_id not in records:
            problems.setdefault(case_id, "its prediction file was not written by tumorscope "
                                         "predict (no record in cases.json)")
    return problems


def _inputs_stamp(run: Run) -> int:
    """Changes when any image or label a run's predictions and scores came from changes: one
    ``stat`` per file, so a scan replaced after the fact is noticed on the next rerun."""
    paths = []
    for record in run_cases(run).values():
        paths += [*record.images.values(), *([record.label] if record.label else [])]
    return hash(tuple(tuple(stat_identity(p) or ()) for p in paths))


def stale_scores(run: Run) -> dict[str, str]:
    """Patients that have no current score -> why: their score in metrics.csv is of another
    prediction, model, image or ground truth than the run holds now, or their prediction
    file is not one predict wrote."""
    return _stale(str(run.path), run_stamp(run), _inputs_stamp(run))


def cohort(run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long metrics table, one-row-per-patient table) of a run, cached until a file changes."""
    return _cohort(str(run.path), run_stamp(run))


@st.cache_data(show_spinner=False, max_entries=256)
def predicted_volumes_ml(path: str, mtime_ns: int, convention: str) -> dict[str, float]:
    """Region volumes (mL) of one prediction file, for patients that metrics.csv leaves out."""
    volume = read_label(path, convention=convention)
    regions = labels_to_regions(volume.data)
    voxel_ml = float(np.prod(volume.spacing_mm)) / 1000.0
    return {r: float(regions[i].sum()) * voxel_ml for i, r in enumerate(REGIONS)}


@st.cache_data(show_spinner=False, max_entries=16)
def _log(run_path: str, mtime_ns: int) -> pd.DataFrame:
    rows = Run(Path(run_path)).log_rows()
    frame = pd.DataFrame(rows)
    for column in frame:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def training_log(run: Run) -> pd.DataFrame:
    """log.csv (one row per epoch) with numbers parsed; empty when the run has no log."""
    return _log(str(run.path), stamp(run.log_path))


@st.cache_data(show_spinner=False, max_entries=16)
def _cases(run_path: str, mtime_ns: int) -> dict[str, CaseRecord]:
    return Run(Path(run_path)).case_records()


def run_cases(run: Run) -> dict[str, CaseRecord]:
    """The store's record of every case of a run, cached by the mtime of cases.json."""
    return _cases(str(run.path), stamp(run.cases_path))


# --------------------------------------------------------------------------------------------
# one patient


@dataclass(frozen=True)
class Patient:
    """What the pages need to know about one case of a run (the store's record); no voxels."""

    run: Run
    record: CaseRecord

    @property
    def case_id(self) -> str:
        return self.record.case_id

    @property
    def images(self) -> dict[str, Path]:
        """Recorded modalities in the fixed t1, t1ce, t2, flair order."""
        return {m: self.record.images[m] for m in MODALITIES if m in self.record.images}

    @property
    def label_path(self) -> Path | None:
        return self.record.label

    @property
    def has_truth(self) -> bool:
        return self.record.has_truth

    @property
    def prediction_path(self) -> Path:
        return self.run.prediction_path(self.case_id)

    @property
    def convention(self) -> str:
        return self.record.label_convention

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.record.metadata)

    @property
    def synthetic(self) -> bool:
        return self.record.synthetic


def patient(run: Run, case_id: str) -> Patient:
    return Patient(run, run_cases(run).get(case_id) or CaseRecord(case_id, {}, None))


# --------------------------------------------------------------------------------------------
# volumes for the slice viewer


@dataclass(frozen=True)
class RasVolume:
    """A volume turned to the closest canonical (RAS+) axis order for display.

    ``data`` ``(X, Y, Z)``: index increases towards the patient's Right, Anterior, Superior;
    ``spacing_mm`` along those axes; ``affine`` maps these indices to the same world mm as
    the source file; ``source_axcodes`` the file's own orientation (e.g. ``('L', 'P', 'S')``
    for BraTS files).
    """

    data: np.ndarray
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray
    source_axcodes: tuple[str, str, str]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)


def to_ras(data: np.ndarray, affine: np.ndarray) -> RasVolume:
    """Flip and permute ``data`` ``(X, Y, Z)`` so its axes point R, A, S (no resampling).

    >>> v = to_ras(np.arange(8).reshape(2, 2, 2), np.diag([-1.0, -1.0, 2.0, 1.0]))
    >>> v.source_axcodes, v.spacing_mm, v.data[:, :, 0].tolist()
    (('L', 'P', 'S'), (1.0, 1.0, 2.0), [[6, 4], [2, 0]])
    """
    ornt = nib.orientations.io_orientation(affine)
    ras = np.ascontiguousarray(nib.orientations.apply_orientation(data, ornt))
    spacing_in = voxel_spacing_mm(affine)
    spacing = [0.0, 0.0, 0.0]
    for axis_in, (axis_out, _) in enumerate(ornt):
        spacing[int(axis_out)] = spacing_in[axis_in]
    ras_affine = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    return RasVolume(ras, tuple(spacing), ras_affine,
                     tuple(nib.orientations.aff2axcodes(affine)))


@st.cache_resource(show_spinner=False, max_entries=12)
def load_image(path: str, mtime_ns: int) -> RasVolume:
    """One modality, RAS-ordered, float32; cached per file and mtime."""
    volume = read_nifti(path)
    return to_ras(volume.data, volume.affine)


@st.cache_resource(show_spinner=False, max_entries=12)
def load_label(path: str, mtime_ns: int, convention: str) -> RasVolume:
    """A label map (truth or prediction), checked, canonical uint8 {0, 1, 2, 4}, RAS-ordered."""
    volume = read_label(path, convention=convention)
    return to_ras(volume.data, volume.affine)


@st.cache_data(show_spinner=False, max_entries=64)
def auto_window(path: str, mtime_ns: int) -> tuple[float, float]:
    """(level, width) spanning the 0.5-99.5th percentiles of the brain voxels (nonzero)."""
    # Every 8th voxel: plenty for a percentile, 8x faster on a 9-Mvoxel volume.
    data = load_image(path, mtime_ns).data[::2, ::2, ::2]
    brain = data[data != 0]
    if brain.size == 0:
        brain = data.ravel()
    low, high = (float(v) for v in np.percentile(brain, [0.5, 99.5]))
    if high <= low:
        high = low + 1.0
    return (low + high) / 2.0, high - low


@st.cache_data(show_spinner=False, max_entries=64)
def intensity_range(path: str, mtime_ns: int) -> tuple[float, float]:
    """Full intensity range of an image, for the window sliders' bounds."""
    data = load_image(path, mtime_ns).data
    low, high = float(data.min()), float(data.max())
    return low, max(high, low + 1.0)


@dataclass(frozen=True)
class CaseVolumes:
    """The voxels the slice viewer needs for one patient and modality, on one RAS grid."""

    image: RasVolume
    truth: RasVolume | None
    prediction: RasVolume


def case_volumes(pat: Patient, modality: str) -> CaseVolumes:
    """Image, truth (if any) and prediction of ``pat``, checked to lie on one grid."""
    if modality not in pat.images:
        raise LayoutError(f"case {pat.case_id} has no {modality} image recorded "
                          f"(has {list(pat.images)})", path=pat.run.cases_path)
    image_path = pat.images[modality]
    image = load_image(str(image_path), stamp(image_path))
    pred = load_label(str(pat.prediction_path), stamp(pat.prediction_path), pat.convention)
    truth = None
    if pat.has_truth:
        assert pat.label_path is not None  # has_truth checked it
        truth = load_label(str(pat.label_path), stamp(pat.label_path), pat.convention)
    for what, vol, path in (("prediction", pred, pat.prediction_path),
                            ("ground truth", truth, pat.label_path)):
        if vol is not None and vol.shape != image.shape:
            raise GeometryError(f"{what} has shape {vol.shape} but the {modality} image "
                                f"{image.shape}", path=path)
    return CaseVolumes(image, truth, pred)


# --------------------------------------------------------------------------------------------
# meshes for the 3-D view


def mesh_cache_dir(pat: Patient, which: str = "") -> Path:
    """``RUN/meshes/<case>/<which>``, or a temp folder when the run is read-only."""
    folder = pat.run.mesh_dir(pat.case_id) / which
    probe = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if probe is not None and os.access(probe, os.W_OK):
        return folder
    key = hashlib.blake2b(str(pat.run.path.resolve()).encode(), digest_size=8).hexdigest()
    return Path(tempfile.gettempdir()) / "tumorscope-meshes" / key / pat.case_id / which


@st.cache_resource(show_spinner=False, max_entries=24)
def label_meshes(path: str, mtime_ns: int, cache_dir: str, convention: str) -> dict[str, Any]:
    """WT/TC/ET surfaces of a label file via render's disk cache, simplified for display."""
    from tumorscope.render.mesh import cached_region_meshes, simplify_to

    meshes = cached_region_meshes(path, cache_dir, convention=convention)
    return {name: simplify_to(mesh, max_triangles=DISPLAY_MAX_TRIANGLES)
            for name, mesh in meshes.items()}


def truth_meshes(pat: Patient) -> dict[str, Any] | None:
    if not pat.has_truth:
        return None
    assert pat.label_path is not None
    return label_meshes(str(pat.label_path), stamp(pat.label_path),
                        str(mesh_cache_dir(pat, "truth")), pat.convention)


def prediction_meshes(pat: Patient) -> dict[str, Any]:
    return label_meshes(str(pat.prediction_path), stamp(pat.prediction_path),
                        str(mesh_cache_dir(pat, "prediction")), pat.convention)


@st.cache_resource(show_spinner=False, max_entries=12)
def _brain(path: str, mtime_ns: int, cache_dir: str) -> Any:
    from tumorscope.render.case import cached_brain_surface

    return cached_brain_surface(path, cache_dir)


def brain_mesh(pat: Patient) -> Any | None:
    """Outer brain surface of the T1 (else first) image, cached in ``RUN/meshes/<case>/``."""
    path = pat.record.brain_image
    if path is None:
        return None
    return _brain(str(path), stamp(path), str(mesh_cache_dir(pat)))


@st.cache_resource(show_spinner=False, max_entries=24)
def _distance(pred_key: tuple[str, int], truth_key: tuple[str, int], region: str,
              _pred: Any, _truth: Any) -> Any:
    from tumorscope.render.mesh import signed_distance_mm

    return signed_distance_mm(_pred, _truth)


def distance_meshes(pat: Patient) -> dict[str, Any]:
    """Prediction surfaces carrying ``signed_distance_mm`` to the truth surface per region."""
    truth = truth_meshes(pat)
    if truth is None:
        return {}
    pred = prediction_meshes(pat)
    assert pat.label_path is not None
    pred_key = (str(pat.prediction_path), stamp(pat.prediction_path))
    truth_key = (str(pat.label_path), stamp(pat.label_path))
    return {r: _distance(pred_key, truth_key, r, pred[r], truth[r]) for r in REGIONS
            if r in pred}


@st.cache_resource(show_spinner=False, max_entries=24)
def _errors(pred_key: tuple[str, int], truth_key: tuple[str, int], convention: str,
            region: str) -> dict[str, Any]:
    from tumorscope.render.mesh import error_meshes, simplify_to

    pred = load_label(*pred_key, convention)
    truth = load_label(*truth_key, convention)
    if pred.shape != truth.shape:
        raise GeometryError(f"prediction has shape {pred.shape} but the ground truth "
                            f"{truth.shape}", path=pred_key[0])
    meshes = error_meshes(pred.data, truth.data, truth.affine, name=region)
    return {name: simplify_to(mesh, max_triangles=DISPLAY_MAX_TRIANGLES)
            for name, mesh in meshes.items()}


def error_meshes_of(pat: Patient, region: str) -> dict[str, Any]:
    """False-positive / false-negative voxel surfaces of one region; empty without truth."""
    if not pat.has_truth:
        return {}
    assert pat.label_path is not None
    return _errors((str(pat.prediction_path), stamp(pat.prediction_path)),
                   (str(pat.label_path), stamp(pat.label_path)), pat.convention, region)


def clear_caches() -> None:
    """Forget every cached table, volume and mesh (benchmarks time cold loads with it)."""
    st.cache_data.clear()
    st.cache_resource.clear()
