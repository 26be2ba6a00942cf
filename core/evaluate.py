"""Scoring a run's predictions against ground truth into the run's metrics table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cases import discover
from .errors import TumorscopeError
from .metrics import region_metrics
from .nifti import read_label
from .store import Run

METADATA_COLUMNS = ("grade", "age", "synthetic")


def evaluate_run(run: Run, labels_dir: str | Path | None = None, *,
                 progress: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """Write ``metrics.csv``: one row per case x region, every metric plus case metadata.

    Ground truth comes from ``labels_dir`` (any BraTS layout) or, by default, from the
    label files recorded in the run's ``cases.json``. Cases without ground truth are
    left out of the table. Returns the rows and one-line reasons for skipped cases.
    """
    from tqdm import tqdm

    truth: dict[str, tuple[Path, str, dict[str, Any]]] = {}
    if labels_dir is not None:
        for case in discover(labels_dir):
            if case.label is not None:
                truth[case.case_id] = (case.label, case.label_convention, case.metadata)
    else:
        for case_id, record in run.case_records().items():
            if record.label is not None:
                truth[case_id] = (record.label, record.label_convention, record.metadata)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    ids = [c for c in run.case_ids() if c in truth]
    for case_id in tqdm(ids, desc="evaluate", unit="case", disable=not progress):
        label_path, convention, meta = truth[case_id]
        pred_path = run.prediction_path(case_id)
        try:
            gt = read_label(label_path, convention=convention)
            pr = read_label(pred_path, convention=convention)
            scores = region_metrics(pr.data, gt.data, spacing_mm=gt.spacing_mm)
        except TumorscopeError as exc:
            skipped.append(f"{case_id}: {exc}")
            continue
        extra = {k: meta.get(k) for k in METADATA_COLUMNS}
        rows += [{"case_id": case_id, **row, **extra} for row in scores]
    run.write_metrics(rows)
    return rows, skipped
