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
from tumorscope.core.scoring.distances import HD95_DEFINITIONS, hd95_column
from tumorscope.core.scoring.scorings import SCORING_COLUMNS
from tumorscope.core.store import NUMERIC_METRIC_COLUMNS, CaseRecord, Run

from .lesions import SCORING_HD95

log = logging.getLogger(__name__)

HD95_KEYS: tuple[str, ...] = tuple(hd95_column(d) for d in HD95_DEFINITIONS)
"""The legacy HD95 columns, one per definition (``hd95_monai_mm`` ...)."""
METRIC_KEYS: tuple[str, ...] = ("dice", *HD95_KEYS, "volume_truth_ml", "volume_pred_ml")
"""The legacy metrics the cohort table always has a column of per region."""
REQUIRED_KEYS: tuple[str, ...] = ("dice", "volume_truth_ml", "volume_pred_ml")
LESION_KEYS: dict[str, tuple[str, ...]] = {s: tuple(c) for s, c in SCORING_COLUMNS.items()}
"""The metric columns of each lesion-wise scoring (``brats2023_dice`` ...)."""
LEGACY_HD95 = "hd95_mm"
"""The single HD95 column of tables from before every definition was kept: MONAI's."""

VolumesOf = Callable[[Path, LabelConvention], Mapping[str, float]]
"""(prediction file, label convention) -> region -> mL."""


def _check_columns(rows: list[dict[str, Any]], needed: Sequence[str], path: Path) -> None:
    if rows and (missing := [c for c in needed if c not in rows[0]]):
        raise LayoutError(f"missing column(s) {missing}; found {list(rows[0])}", path=path)


def metrics_frame(run: Run, rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """The current rows of metrics.csv as a long table (one row per case x region), numbers
    as floats. Rows that score another prediction than the run's (stale) are left out:
    :func:`stale_scores` says which and why. ``rows``: the current rows, by a caller that
    has read them already (:func:`scores_of`)."""
    rows = run.current_metrics_rows() if rows is None else rows
    _check_columns(rows, ("case_id", "region", *REQUIRED_KEYS), run.metrics_path)
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["case_id", "region",
                                                                    *METRIC_KEYS])
    if LEGACY_HD95 in frame and hd95_column("monai") not in frame:
        frame = frame.rename(columns={LEGACY_HD95: hd95_column("monai")})
    frame["case_id"] = frame["case_id"].astype(str)
    for key in (*METRIC_KEYS, *NUMERIC_METRIC_COLUMNS):
        if key in frame:
            frame[key] = pd.to_numeric(frame[key], errors="coerce")
        elif key in METRIC_KEYS:
            frame[key] = np.nan
    return frame


def lesion_scorings(metrics: pd.DataFrame) -> list[str]:
    """The lesion-wise scorings a metrics table holds scores of (some row has a value).

    >>> lesion_scorings(pd.DataFrame({"dice": [0.9], "brats2023_dice": [0.8]}))
    ['brats2023']
    """
    return [s for s, keys in LESION_KEYS.items()
            if keys[0] in metrics and metrics[keys[0]].notna().any()]


def hd95_definitions(metrics: pd.DataFrame) -> list[str]:
    """The HD95 definitions a metrics table holds values of, in HD95_DEFINITIONS order.

    >>> hd95_definitions(pd.DataFrame({"hd95_monai_mm": [1.0], "hd95_pooled_mm": [None]}))
    ['monai']
    """
    return [d for d in HD95_DEFINITIONS
            if hd95_column(d) in metrics and metrics[hd95_column(d)].notna().any()]


_LESION_TITLES: dict[str, str] = {
    "dice": "Dice", "hd95_mm": "HD95", "tp": "TP", "fn": "FN", "fp": "FP", "rq": "RQ",
    "sq_dice": "SQ Dice", "sq_hd95_mm": "SQ HD95"}
_TITLES: dict[str, str] = {"dice": "Dice", "jaccard": "Jaccard", "sensitivity": "sensitivity",
                           "specificity": "specificity"}
_VOLUME_TITLES: dict[str, str] = {"volume_truth_ml": "true", "volume_pred_ml": "pred",
                                  "volume_diff_ml": "pred − true"}


def metric_title(metric: str, region: str | None = None) -> str:
    """The one title of a metric column, in every table of the app: of one ``region`` in the
    cohort table (one row per patient), of no region in a patient's table (one row per
    region). An HD95 is always titled with its definition; a lesion-wise metric with its
    scoring; an unknown key stays as it is.

    >>> metric_title("dice", "WT"), metric_title("hd95_monai_mm", "ET")
    ('Dice WT', 'HD95 ET (monai, mm)')
    >>> metric_title("hd95_monai_mm"), metric_title("volume_pred_ml", "TC")
    ('HD95 (monai, mm)', 'TC pred (mL)')
    >>> metric_title("brats2023_hd95_mm", "TC"), metric_title("brats2025_fp")
    ('HD95 TC · brats2023 (surfel, mm)', 'FP · brats2025')
    """
    at = f" {region}" if region else ""
    for definition in HD95_DEFINITIONS:
        if metric == hd95_column(definition):
            return f"HD95{at} ({definition}, mm)"
    for scoring in LESION_KEYS:
        if metric.startswith(f"{scoring}_"):
            name = _LESION_TITLES[metric.removeprefix(f"{scoring}_")]
            unit = f" ({SCORING_HD95[scoring]}, mm)" if "HD95" in name else ""
            return f"{name}{at} · {scoring}{unit}"
    if metric in _VOLUME_TITLES:
        return f"{region + ' ' if region else ''}{_VOLUME_TITLES[metric]} (mL)"
    return f"{_TITLES[metric]}{at}" if metric in _TITLES else metric


def wide_column(metric: str, region: str) -> str:
    """Column title of one metric of one region in the cohort table (:func:`metric_title`).

    >>> wide_column("dice", "WT"), wide_column("brats2023_dice", "TC")
    ('Dice WT', 'Dice TC · brats2023')
    """
    return metric_title(metric, region)


def short_title(title: str) -> str:
    """A column title without its parenthesised definition and unit, for a narrow table
    header (the full title goes in the header's help).

    >>> short_title("HD95 WT (monai, mm)"), short_title("Dice ET")
    ('HD95 WT', 'Dice ET')
    """
    return title.split(" (", 1)[0]


def volume_text(true_ml: float, pred_ml: float) -> str:
    """True and predicted volume in one short cell, "true → pred" (mL): whole millilitres
    from 10 up, one decimal below; "–" for a missing one.

    >>> volume_text(45.24, 38.1), volume_text(0.42, float("nan"))
    ('45 → 38', '0.4 → –')
    """
    def ml(value: float) -> str:
        if value is None or not np.isfinite(value):
            return "–"
        return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"

    return f"{ml(true_ml)} → {ml(pred_ml)}"


def volume_title(region: str) -> str:
    """Title of the cohort table's one volume column of a region (:func:`volume_text`).

    >>> volume_title("WT")
    'WT mL'
    """
    return f"{region} mL"


def score_columns(scoring: str = "legacy", *, hd95: str = "monai") -> list[str]:
    """The cohort table's score titles for one view, per region side by side: legacy Dice
    next to the lesion-wise ``scoring``'s (BraTS 2025: its recognition quality and
    segmentation Dice), the missed (FN) and false-positive (FP) lesion counts, then the
    ``hd95`` definition's HD95 next to the scoring's own.

    >>> score_columns(hd95="pooled")
    ['Dice WT', 'Dice TC', 'Dice ET', 'HD95 WT (pooled, mm)', 'HD95 TC (pooled, mm)', \
'HD95 ET (pooled, mm)']
    >>> score_columns("brats2023")[:4]
    ['Dice WT', 'Dice WT · brats2023', 'Dice TC', 'Dice TC · brats2023']
    >>> score_columns("brats2023")[6:8], score_columns("brats2023")[-1]
    (['FN WT · brats2023', 'FP WT · brats2023'], 'HD95 ET · brats2023 (surfel, mm)')
    """
    legacy_hd95 = hd95_column(hd95)
    if scoring == "legacy":
        return [*(wide_column("dice", r) for r in REGIONS),
                *(wide_column(legacy_hd95, r) for r in REGIONS)]
    if scoring not in LESION_KEYS:
        raise ValueError(f"scoring must be one of {['legacy', *LESION_KEYS]}, got {scoring!r}")
    dice_like = {"brats2023": ("brats2023_dice",),
                 "brats2025": ("brats2025_rq", "brats2025_sq_dice")}[scoring]
    hd95_like = {"brats2023": "brats2023_hd95_mm", "brats2025": "brats2025_sq_hd95_mm"}[scoring]
    columns: list[str] = []
    for region in REGIONS:
        columns += [wide_column("dice", region), *(wide_column(k, region) for k in dice_like)]
    for region in REGIONS:
        columns += [wide_column(f"{scoring}_fn", region), wide_column(f"{scoring}_fp", region)]
    for region in REGIONS:
        columns += [wide_column(legacy_hd95, region), wide_column(hd95_like, region)]
    return columns


def volume_columns() -> list[str]:
    """The cohort table's volume titles: true and predicted mL per region."""
    return [wide_column(k, r) for r in REGIONS for k in ("volume_truth_ml", "volume_pred_ml")]


def cohort_table(metrics: pd.DataFrame, cases: Mapping[str, CaseRecord],
                 case_ids: Sequence[str],
                 predicted_ml: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """One row per patient: metadata, mean Dice, then every metric per region: Dice, each
    HD95 definition and volumes (always), each lesion-wise scoring's columns (when
    ``metrics`` has them). Pages show a choice of them (:func:`score_columns`).

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
    keys = [*METRIC_KEYS, *(k for s in lesion_scorings(metrics) for k in LESION_KEYS[s])]
    wide = (metrics.drop_duplicates(["case_id", "region"]).set_index(["case_id", "region"])
            [[k for k in keys if k in metrics]].unstack("region")
            if len(metrics) else pd.DataFrame())
    columns = {}
    for metric in keys:
        for region in REGIONS:
            values = wide[(metric, region)] if (metric, region) in wide else pd.Series(
                dtype=float)
            columns[wide_column(metric, region)] = table["patient"].map(values).astype(float)
    table = pd.concat([table, pd.DataFrame(columns, index=table.index)], axis=1)
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


def cohort_tables(run: Run, *, volumes_ml: VolumesOf = region_volumes_ml,
                  current: list[dict[str, Any]] | None = None,
                  records: Mapping[str, CaseRecord] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long metrics table, one-row-per-patient table) of ``run``.

    Unscored patients' predicted volumes come from ``volumes_ml`` (the app passes a cached
    one); a prediction that cannot be read leaves its row empty (logged; the stale-score
    list says why). ``current`` (the first of :func:`scores_of`) and ``records``
    (``run.case_records()``) may be passed by a caller that has them already.
    """
    records = run.case_records() if records is None else records
    metrics = metrics_frame(run, current)
    ids = run.case_ids(records)
    scored = set(metrics["case_id"])  # once: a set per id made 1,000 patients take seconds
    predicted: dict[str, Mapping[str, float]] = {}
    for case_id in (c for c in ids if c not in scored):
        convention = records[case_id].label_convention if case_id in records else "brats2020"
        try:
            predicted[case_id] = volumes_ml(run.prediction_path(case_id), convention)
        except TumorscopeError as exc:  # one bad file: its row stays empty, said by stale
            log.warning("%s", exc)
    return metrics, cohort_table(metrics, records, ids, predicted)


def scores_of(run: Run, records: Mapping[str, CaseRecord] | None = None
              ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(the current rows of metrics.csv, :func:`stale_scores`) from one read of cases.json
    (none when ``records`` are given) and of metrics.csv: at 1,000 patients each read is a
    noticeable part of a first paint."""
    records = run.case_records() if records is None else records
    rows = run.metrics_rows()
    problems = run.score_problems(rows, records)
    current = [r for r in rows if str(r["case_id"]) not in problems]
    for path in run.stray_files(records):
        problems.setdefault(path.name, "this file in predictions/ was not written by "
                                       "tumorscope predict (no record in cases.json); ignored")
    return current, problems


def stale_scores(run: Run) -> dict[str, str]:
    """Patients that have no current score -> why: their score in metrics.csv is of another
    prediction, model, image or ground truth than the run holds now, or their prediction
    file is not one predict wrote."""
    return scores_of(run)[1]


def log_frame(run: Run) -> pd.DataFrame:
    """log.csv (one row per epoch) with numbers parsed; empty when the run has no log."""
    frame = pd.DataFrame(run.log_rows())
    for column in frame:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame
