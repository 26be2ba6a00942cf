"""Scoring a 2-D run: per slice and region Dice, IoU, HD95 and area, and the tumour type it chose.

Rows go through the same store as the 3-D scores (``metrics.csv``, one row per slice x
region, with the hashes of the prediction and truth they scored), so a changed prediction or
truth shows as stale in the same way. Rows are reused when both hashes are unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tumorscope.core.data.labels import REGIONS, region_mask
from tumorscope.core.data.nifti import read_nifti
from tumorscope.core.data.slice_datasets import read_slice
from tumorscope.core.data.slice_preprocess import CLASS_NAMES
from tumorscope.core.errors import TumorscopeError
from tumorscope.core.fingerprint import fingerprint
from tumorscope.core.scoring.classification import ClassificationScores, classification_scores
from tumorscope.core.scoring.distances import hd95_slice_mm
from tumorscope.core.scoring.metrics import dice, jaccard, sensitivity, specificity
from tumorscope.core.store import CaseRecord, Run, format_stat, parse_stat

log = logging.getLogger(__name__)

SLICE_SCORING_VERSION = 2  # 2: type probabilities per row (ROC-AUC)


def is_slice_record(record: CaseRecord) -> bool:
    return record.is_slice


def _masks(label: np.ndarray, binary: bool) -> dict[str, np.ndarray]:
    if binary:
        return {"tumour": label > 0}
    return {r: region_mask(label, r) for r in REGIONS}


def slice_rows(record: CaseRecord, prediction: np.ndarray) -> list[dict[str, Any]]:
    """One row per region of a slice: overlap, distance and area of ``prediction`` (H, W)
    against the truth its record names, with the true and predicted tumour types."""
    truth = read_slice(record.slice_ref())
    if prediction.shape != truth.shape:
        raise TumorscopeError(f"prediction is {prediction.shape[0]}x{prediction.shape[1]} but "
                              f"the slice is {truth.shape[0]}x{truth.shape[1]}",
                              path=record.images["image"])
    binary = truth.mask_kind == "binary"
    spacing = truth.spacing_mm
    pixel_mm2 = spacing[0] * spacing[1] if spacing else None
    pred_typed = record.prediction or {}
    rows = []
    truth_masks, pred_masks = _masks(truth.mask, binary), _masks(prediction, binary)
    for region, t in truth_masks.items():
        p = pred_masks[region]
        row: dict[str, Any] = {
            "region": region, "dice": dice(p, t), "jaccard": jaccard(p, t),
            "sensitivity": sensitivity(p, t), "specificity": specificity(p, t),
            "patient_id": truth.patient_id, "dataset": truth.dataset,
            "true_type": truth.tumour_name or "",
            "predicted_type": pred_typed.get("predicted_type", ""),
            "confidence": pred_typed.get("confidence"),
            **{f"p_{n}": (pred_typed.get("type_probabilities") or {}).get(n)
               for n in CLASS_NAMES if pred_typed.get("type_probabilities")},
            "synthetic": bool(record.metadata.get("synthetic", False)),
        }
        if spacing:
            row["hd95_monai_mm"] = hd95_slice_mm(p, t, spacing_mm=spacing)
            row["area_truth_mm2"] = round(float(t.sum()) * pixel_mm2, 3)
            row["area_pred_mm2"] = round(float(p.sum()) * pixel_mm2, 3)
        else:  # the file records no pixel size: say pixels, never pretend mm
            row["hd95_px"] = hd95_slice_mm(p, t, spacing_mm=(1.0, 1.0))
        rows.append(row)
    return rows


@dataclass
class SliceEvaluation:
    """What one evaluation of a 2-D run did."""

    scored: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)


def evaluate_slice_run(run: Run, *, on_case: Callable[[str, str], None] | None = None
                       ) -> SliceEvaluation:
    """Score every predicted slice of ``run`` into ``metrics.csv``; a slice whose prediction
    and truth are unchanged keeps its rows; a bad slice is named and keeps its old rows,
    marked stale."""
    report = SliceEvaluation()
    previous: dict[str, list[dict[str, Any]]] = {}
    for row in run.metrics_rows():
        previous.setdefault(str(row["case_id"]), []).append(row)
    scored: dict[str, list[dict[str, Any]]] = {}
    unscored: dict[str, str] = {}
    for case_id, record in sorted(run.case_records().items()):
        if not is_slice_record(record) or not run.prediction_path(case_id).is_file():
            continue
        try:
            pred_fp = fingerprint(run.prediction_path(case_id), record.prediction)
            old = previous.get(case_id, [])
            truth_fp = fingerprint(record.label, {
                "path": old[0].get("truth_path"), "stat": parse_stat(old[0].get("truth_stat")),
                "sha256": old[0].get("truth_sha256")} if old else None)
            if old and all(r.get("prediction_sha256") == pred_fp["sha256"]
                           and r.get("truth_sha256") == truth_fp["sha256"]
                           and r.get("scoring_version") == SLICE_SCORING_VERSION
                           and r.get("status") == "ok" for r in old):
                report.reused.append(case_id)
                continue
            volume = read_nifti(run.prediction_path(case_id), dtype=np.uint8)
            prediction = volume.data[..., 0]  # a slice is written as (H, W, 1)
            keys = {"prediction_sha256": pred_fp["sha256"], "truth_sha256": truth_fp["sha256"],
                    "truth_path": truth_fp["path"], "truth_size": truth_fp["size"],
                    "truth_stat": format_stat(truth_fp["stat"]),
                    "scoring_version": SLICE_SCORING_VERSION}
            scored[case_id] = [{**r, **keys} for r in slice_rows(record, prediction)]
            report.scored.append(case_id)
            if on_case:
                on_case(case_id, "scored")
        except TumorscopeError as exc:
            report.failed[case_id] = str(exc)
            unscored[case_id] = str(exc)
            if on_case:
                on_case(case_id, "failed")
    if scored or unscored:
        report.rows = run.merge_metrics(scored, unscored)
    else:
        report.rows = run.metrics_rows()
    return report


@dataclass(frozen=True)
class SliceSummary:
    """A 2-D run's scores over its current rows: per region the slice count, mean Dice and
    IoU and median HD95 (mm, or pixels where no pixel size is known), per patient mean Dice,
    and the tumour-type scores where the model predicts types."""

    regions: dict[str, dict[str, float]]
    patients: dict[str, float]
    types: ClassificationScores | None
    hd95_unit: str


def summarise_slices(rows: list[dict[str, Any]]) -> SliceSummary:
    """Summarise current 2-D metric rows (``status`` ok ones; stale rows must be left out by
    the caller, e.g. :meth:`Run.current_metrics_rows`)."""
    by_region: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_region.setdefault(str(row["region"]), []).append(row)
    unit = "mm" if any(r.get("hd95_monai_mm") not in (None, "") for r in rows) else "px"
    column = "hd95_monai_mm" if unit == "mm" else "hd95_px"
    regions = {}
    for region, rs in by_region.items():
        hd = [float(r[column]) for r in rs if r.get(column) not in (None, "")]
        regions[region] = {"n": len(rs), "dice": float(np.mean([float(r["dice"]) for r in rs])),
                           "jaccard": float(np.mean([float(r["jaccard"]) for r in rs])),
                           "hd95_median": float(np.median(hd)) if hd else math.nan}
    first = next(iter(by_region.values()), [])
    per_patient: dict[str, list[float]] = {}
    for r in first:
        per_patient.setdefault(str(r.get("patient_id")), []).append(float(r["dice"]))
    types = None
    typed = [r for r in first if r.get("predicted_type") not in (None, "")]
    if typed:
        index = {n: i for i, n in enumerate(CLASS_NAMES)}
        probs = None
        if all(r.get(f"p_{n}") not in (None, "") for r in typed for n in CLASS_NAMES):
            probs = np.array([[float(r[f"p_{n}"]) for n in CLASS_NAMES] for r in typed])
        types = classification_scores(
            [index.get(str(r.get("true_type")), -1) for r in typed],
            [index[str(r["predicted_type"])] for r in typed], probs, class_names=CLASS_NAMES)
    return SliceSummary(regions, {p: float(np.mean(v)) for p, v in per_patient.items()},
                        types, unit)
