"""A run's results as tables: the long metrics table (one row per case x region), the cohort
table (one row per patient), why scores are not current, the training log. Pure pandas over
the store; the app caches them (:mod:`tumorscope.app.tables`), scripts call them directly."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tumorscope.core.data.labels import REGIONS, LabelConvention, labels_to_regions
from tumorscope.core.data.nifti import read_label
from tumorscope.core.errors import LayoutError, TumorscopeError
from tumorscope.core.store import CaseRecord, Run

log = logging.getLogger(__name__)

METRIC_KEYS: tuple[str, ...] = ("dice", "hd95_mm", "volume_truth_ml", "volume_pred_ml")

VolumesOf = Callable[[Path, LabelConvention], Mapping[str, float]]
"""(prediction file, label convention) -> region -> mL."""


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


def region_volumes_ml(path: str | Path, convention: LabelConvention) -> dict[str, float]:
    """Region volumes (mL) of one label file: for patients that metrics.csv leaves out."""
    volume = read_label(path, convention=convention)
    regions = labels_to_regions(volume.data)
    voxel_ml = float(np.prod(volume.spacing_mm)) / 1000.0
    return {r: float(regions[i].sum()) * voxel_ml for i, r in enumerate(REGIONS)}


def cohort_tables(run: Run, *, volumes_ml: VolumesOf = region_volumes_ml
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long metrics table, one-row-per-patient table) of ``run``.

    Unscored patients' predicted volumes come from ``volumes_ml`` (the app passes a cached
    one); a prediction that cannot be read leaves its row empty (logged; the stale-score
    list says why).
    """
    metrics = metrics_frame(run)
    cases = run.case_records()
    unscored = [c for c in run.case_ids() if c not in set(metrics["case_id"])]
    predicted: dict[str, Mapping[str, float]] = {}
    for case_id in unscored:
        convention = cases[case_id].label_convention if case_id in cases else "brats2020"
        try:
            predicted[case_id] = volumes_ml(run.prediction_path(case_id), convention)
        except TumorscopeError as exc:  # one bad file: its row stays empty, said by stale
            log.warning("%s", exc)
    return metrics, cohort_table(metrics, cases, run.case_ids(), predicted)


def stale_scores(run: Run) -> dict[str, str]:
    """Patients that have no current score -> why: their score in metrics.csv is of another
    prediction, model, image or ground truth than the run holds now, or their prediction
    file is not one predict wrote."""
    records = run.case_records()
    problems = run.score_problems(records=records)
    for path in run.stray_files(records):
        problems.setdefault(path.name, "this file in predictions/ was not written by "
                                       "tumorscope predict (no record in cases.json); ignored")
    return problems


def log_frame(run: Run) -> pd.DataFrame:
    """log.csv (one row per epoch) with numbers parsed; empty when the run has no log."""
    frame = pd.DataFrame(run.log_rows())
    for column in frame:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame
