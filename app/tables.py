"""The pages' cohort tables, cached until a file they are built from changes: thin
``st.cache_data`` wrappers over :mod:`tumorscope.render.cohort` and the store."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from tumorscope.app.caches import stamp
from tumorscope.core.data.labels import LabelConvention
from tumorscope.core.fingerprint import stat_identity
from tumorscope.core.store import CaseRecord, Run
from tumorscope.render import cohort as tables_of


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


@st.cache_data(show_spinner=False, max_entries=16)
def _cohort(run_path: str, stamps: tuple[int, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return tables_of.cohort_tables(
        Run(Path(run_path)),
        volumes_ml=lambda path, convention: predicted_volumes_ml(str(path), stamp(path),
                                                                 convention))


@st.cache_data(show_spinner=False, max_entries=16)
def _stale(run_path: str, stamps: tuple[int, ...], inputs: int) -> dict[str, str]:
    return tables_of.stale_scores(Run(Path(run_path)))


def _inputs_stamp(run: Run) -> int:
    """Changes when any image or label a run's predictions and scores came from changes: one
    ``stat`` per file, so a scan replaced after the fact is noticed on the next rerun."""
    paths = []
    for record in run_cases(run).values():
        paths += [*record.images.values(), *([record.label] if record.label else [])]
    return hash(tuple(tuple(stat_identity(p) or ()) for p in paths))


def stale_scores(run: Run) -> dict[str, str]:
    """Patients without a current score -> why (:func:`tumorscope.render.cohort.stale_scores`),
    cached until the run's files or any of its images and labels change."""
    return _stale(str(run.path), run_stamp(run), _inputs_stamp(run))


def cohort(run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long metrics table, one-row-per-patient table) of a run, cached until a file changes."""
    return _cohort(str(run.path), run_stamp(run))


@st.cache_data(show_spinner=False, max_entries=256)
def predicted_volumes_ml(path: str, mtime_ns: int,
                         convention: LabelConvention) -> dict[str, float]:
    """Region volumes (mL) of one prediction file, for patients that metrics.csv leaves out."""
    return tables_of.region_volumes_ml(path, convention)


@st.cache_data(show_spinner=False, max_entries=16)
def _log(run_path: str, mtime_ns: int) -> pd.DataFrame:
    return tables_of.log_frame(Run(Path(run_path)))


def training_log(run: Run) -> pd.DataFrame:
    """log.csv (one row per epoch) with numbers parsed; empty when the run has no log."""
    return _log(str(run.path), stamp(run.log_path))


@st.cache_data(show_spinner=False, max_entries=16)
def _cases(run_path: str, mtime_ns: int) -> dict[str, CaseRecord]:
    return Run(Path(run_path)).case_records()


def run_cases(run: Run) -> dict[str, CaseRecord]:
    """The store's record of every case of a run, cached by the mtime of cases.json."""
    return _cases(str(run.path), stamp(run.cases_path))


def case_record(run: Run, case_id: str) -> CaseRecord:
    """The store's record of one case (an empty one when cases.json has none): what the
    pages know about a patient; no voxels."""
    return run_cases(run).get(case_id) or CaseRecord(case_id, {}, None)
