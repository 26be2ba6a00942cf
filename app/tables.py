"""The pages' cohort tables, cached until a file they are built from changes: thin
``st.cache_data`` (and, for what is large and only read, ``st.cache_resource``) wrappers
over :mod:`tumorscope.render.cohort` and the store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    # config.yaml names the model the predictions must be of (a stale score's other cause).
    return (stamp(run.metrics_path), stamp(run.cases_path), stamp(run.log_path),
            stamp(folder), preds, stamp(run.config_path))


@st.cache_resource(show_spinner=False, max_entries=8)
def _scores(run_path: str, stamps: tuple[int, ...], inputs: int
            ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    # One read of the run for the tables and the stale list (a resource: never handed out,
    # only read by the two below, so 3,000 rows are not unpickled on every call).
    run = Run(Path(run_path))
    return tables_of.scores_of(run, run_cases(run))


@st.cache_data(show_spinner=False, max_entries=16)
def _cohort(run_path: str, stamps: tuple[int, ...], inputs: int
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Keyed by the inputs too: a score whose image or truth changed leaves the table as it
    # joins the stale list (keyed by the run's files alone, the table kept showing it).
    run = Run(Path(run_path))
    return tables_of.cohort_tables(
        run, current=_scores(run_path, stamps, inputs)[0], records=run_cases(run),
        volumes_ml=lambda path, convention: predicted_volumes_ml(str(path), stamp(path),
                                                                 convention))


@st.cache_resource(show_spinner=False, max_entries=16)
def _input_paths(run_path: str, mtime_ns: int, _cases: dict[str, CaseRecord]
                 ) -> tuple[str, ...]:
    return tuple(str(p) for r in _cases.values()
                 for p in (*r.images.values(), *([r.label] if r.label else [])))


def _inputs_stamp(run: Run) -> int:
    """Changes when any image or label a run's predictions and scores came from changes: one
    ``stat`` per file (its full identity: inode, size, mtime, ctime), so a scan replaced or
    rewritten in place after the fact is noticed on the next rerun. The paths are listed
    once per cases.json, so 1,000 patients cost ~5,000 bare ``os.stat`` calls (~20 ms)."""
    paths = _input_paths(str(run.path), stamp(run.cases_path), run_cases(run))
    return hash(tuple(tuple(stat_identity(p) or ()) for p in paths))


def _key(run: Run) -> tuple[str, tuple[int, ...], int]:
    return str(run.path), run_stamp(run), _inputs_stamp(run)


@dataclass(frozen=True)
class CohortView:
    """What the overview draws of a run, and the key it was read under (the cache key of
    the figures made of it)."""

    key: tuple[str, tuple[int, ...], int]
    metrics: pd.DataFrame
    table: pd.DataFrame
    stale: dict[str, str]


def cohort_view(run: Run) -> CohortView:
    """:func:`cohort` and :func:`stale_scores` of a run for the price of one key: the key
    stats every input file, so a page that needs both asks once."""
    key = _key(run)
    metrics, table = _cohort(*key)
    return CohortView(key, metrics, table, dict(_scores(*key)[1]))


def stale_scores(run: Run) -> dict[str, str]:
    """Patients without a current score -> why (:func:`tumorscope.render.cohort.stale_scores`),
    cached until the run's files or any of its images and labels change."""
    return dict(_scores(*_key(run))[1])


def cohort(run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long metrics table, one-row-per-patient table) of a run, cached until a file of the
    run or any of its images and labels changes (a score turned stale leaves the table)."""
    return _cohort(*_key(run))


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


@st.cache_resource(show_spinner=False, max_entries=16)
def _cases(run_path: str, mtime_ns: int) -> dict[str, CaseRecord]:
    # A resource, not data: 1,000 records took ~80 ms to unpickle on each of a rerun's calls.
    return Run(Path(run_path)).case_records()


def run_cases(run: Run) -> dict[str, CaseRecord]:
    """The store's record of every case of a run, cached by the mtime of cases.json: one
    shared object (records are frozen), so callers must not change the dict."""
    return _cases(str(run.path), stamp(run.cases_path))


def case_record(run: Run, case_id: str) -> CaseRecord:
    """The store's record of one case (an empty one when cases.json has none): what the
    pages know about a patient; no voxels."""
    return run_cases(run).get(case_id) or CaseRecord(case_id, {}, None)
