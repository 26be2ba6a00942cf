"""A 2-D run as its pages read it: the track test, the per-slice table and type scores, each
slice's pixels and failure reasons; cached until a file they come from changes."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from tumorscope.app import tables
from tumorscope.app.caches import stamp
from tumorscope.core.data.labels import region_mask
from tumorscope.core.data.nifti import read_nifti
from tumorscope.core.data.slice_datasets import read_slice
from tumorscope.core.data.slice_preprocess import CLASS_NAMES, region_names
from tumorscope.core.errors import CorruptFileError
from tumorscope.core.scoring.classification import ClassificationScores, classification_scores
from tumorscope.core.scoring.evaluate_slices import SliceSummary, is_slice_record, summarise_slices
from tumorscope.core.scoring.failures import (
    DEFAULT_RULES,
    Failure,
    FailureRules,
    mask_failures,
    ordered,
    type_failure,
)
from tumorscope.core.store import CaseRecord, Run

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
UNKNOWN_TYPE = "unknown"
"""What the charts call slices whose dataset gives no tumour type (LGG, BraTS slices)."""


def is_2d_run(run: Run) -> bool:
    """Whether ``run`` holds 2-D slices (its records say track "2d"), so its pages are the
    slice pages; cached with the run's records."""
    return any(is_slice_record(r) for r in tables.run_cases(run).values())


def threshold_of(record: CaseRecord) -> float:
    """The probability threshold the slice's saved prediction was made at."""
    settings = (record.provenance or {}).get("settings") or {}
    try:
        value = float(settings.get("threshold", DEFAULT_THRESHOLD))
    except (TypeError, ValueError):
        return DEFAULT_THRESHOLD
    return value if 0 < value < 1 else DEFAULT_THRESHOLD


# --------------------------------------------------------------------------------------------
# the per-slice table


def primary_region(regions: Sequence[str]) -> str:
    """The region a slice is ranked by: the whole tumour ("tumour", or WT of BraTS slices).

    >>> primary_region(["WT", "TC", "ET"]), primary_region(["tumour"])
    ('WT', 'tumour')
    """
    return "tumour" if "tumour" in regions or not regions else (
        "WT" if "WT" in regions else regions[0])


def _float(value: Any) -> float:
    try:
        return math.nan if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return math.nan


def slice_frame(rows: Sequence[Mapping[str, Any]], records: Mapping[str, CaseRecord],
                case_ids: Sequence[str], *, unit: str) -> pd.DataFrame:
    """One row per predicted slice: patient, dataset, true and predicted type, confidence,
    ``correct``, then Dice, IoU and HD95 in ``unit`` ("mm" or "px", as
    :attr:`SliceSummary.hd95_unit` says) of the primary region from the current metric
    ``rows`` (other regions' Dice after), areas where the pixel size is known. Slices
    without a current score keep their row with the scores empty (``scored`` False): an
    old score is never shown as current."""
    regions = list(dict.fromkeys(str(r["region"]) for r in rows))
    main = primary_region(regions)
    by_slice: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        by_slice.setdefault(str(row["case_id"]), {})[str(row["region"])] = row
    out = []
    for case_id in case_ids:
        record = records.get(case_id) or CaseRecord(case_id, {}, None)
        meta, pred = record.metadata, record.prediction or {}
        scored = by_slice.get(case_id, {})
        first = scored.get(main, {})
        true_type = meta.get("tumour_type") or None
        predicted = pred.get("predicted_type") or None
        entry: dict[str, Any] = {
            "slice": case_id, "patient": meta.get("patient_id"), "dataset": meta.get("dataset"),
            "true type": true_type, "predicted type": predicted,
            "confidence": _float(pred.get("confidence")),
            "correct": None if not (true_type and predicted) else true_type == predicted,
            "Dice": _float(first.get("dice")), "IoU": _float(first.get("jaccard")),
            f"HD95 ({unit})": _float(first.get("hd95_monai_mm" if unit == "mm"
                                               else "hd95_px")),
        }
        if unit == "mm":
            entry["true area (mm²)"] = _float(first.get("area_truth_mm2"))
            entry["predicted area (mm²)"] = _float(first.get("area_pred_mm2"))
        for region in regions:
            if region != main:
                entry[f"Dice {region}"] = _float(scored.get(region, {}).get("dice"))
        entry["scored"] = bool(first)
        entry["synthetic"] = bool(meta.get("synthetic", False))
        out.append(entry)
    columns = ["slice", "patient", "dataset", "true type", "predicted type", "confidence",
               "correct", "Dice", "IoU", f"HD95 ({unit})", "scored", "synthetic"]
    return pd.DataFrame(out, columns=list(out[0]) if out else columns)


def type_auc_scores(frame: pd.DataFrame,
                    records: Mapping[str, CaseRecord]) -> ClassificationScores | None:
    """Type scores with the one-vs-rest ROC-AUC, from the type probabilities predict
    recorded, over the scored slices with a known true and predicted type; ``None`` when
    some of them have no probabilities (the AUC needs every one)."""
    typed = frame[frame["scored"] & frame["true type"].notna() & frame["predicted type"].notna()]
    if typed.empty:
        return None
    probabilities = []
    for case_id in typed["slice"]:
        given = ((records.get(case_id) or CaseRecord(case_id, {}, None)).prediction or {}
                 ).get("type_probabilities")
        if not isinstance(given, Mapping):
            return None
        probabilities.append([_float(given.get(name)) for name in CLASS_NAMES])
    index = {n: i for i, n in enumerate(CLASS_NAMES)}
    return classification_scores([index.get(str(t), -1) for t in typed["true type"]],
                                 [index.get(str(p), -1) for p in typed["predicted type"]],
                                 np.asarray(probabilities), class_names=CLASS_NAMES)


@dataclass(frozen=True)
class SliceTable:
    """A 2-D run's scores as the pages show them: the per-slice table, the summary of the
    current rows (:func:`summarise_slices`), the type scores with ROC-AUC where the
    probabilities are recorded, and the HD95 unit."""

    frame: pd.DataFrame
    summary: SliceSummary
    auc: ClassificationScores | None
    unit: str


@st.cache_data(show_spinner=False, max_entries=16)
def _slice_table(run_path: str, stamps: tuple[Any, ...]) -> SliceTable:
    run = Run(Path(run_path))
    rows = run.current_metrics_rows()
    records = run.case_records()
    summary = summarise_slices(rows)
    frame = slice_frame(rows, records, run.case_ids(records), unit=summary.hd95_unit)
    return SliceTable(frame, summary, type_auc_scores(frame, records), summary.hd95_unit)


def slice_table(run: Run) -> SliceTable:
    """:class:`SliceTable` of ``run``, cached until predict or evaluate rewrites a file or a
    score turns stale (an image or truth changed)."""
    stale = tables.stale_scores(run)
    return _slice_table(str(run.path), (*tables.run_stamp(run), tuple(sorted(stale.items()))))


# --------------------------------------------------------------------------------------------
# one slice's pixels


@dataclass(frozen=True)
class SliceArrays:
    """What the pages draw of one slice: ``image`` (C, H, W) with ``channels``, ``truth`` and
    ``prediction`` label maps (H, W; ``truth`` None when unreadable), ``probabilities``
    (K, H, W) of ``regions`` (None when the run has no probability file of it)."""

    image: np.ndarray
    channels: tuple[str, ...]
    truth: np.ndarray | None
    prediction: np.ndarray
    probabilities: np.ndarray | None
    regions: tuple[str, ...]
    mask_kind: str
    spacing_mm: tuple[float, float] | None

    def _region(self, label: np.ndarray, region: str) -> np.ndarray:
        return label > 0 if self.mask_kind == "binary" else region_mask(label, region)

    def truth_mask(self, region: str) -> np.ndarray | None:
        return None if self.truth is None else self._region(self.truth, region)

    def prediction_mask(self, region: str) -> np.ndarray:
        return self._region(self.prediction, region)

    def probability(self, region: str) -> np.ndarray | None:
        if self.probabilities is None or region not in self.regions:
            return None
        return self.probabilities[self.regions.index(region)]

    @property
    def pixel_mm2(self) -> float | None:
        return self.spacing_mm[0] * self.spacing_mm[1] if self.spacing_mm else None


def read_probabilities(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """A slice's probability file (H, W, 1, K) as (K, H, W) float32; ``None`` when it is not
    there. A file of another grid or a damaged one is a :class:`CorruptFileError`."""
    import nibabel as nib

    if not path.is_file():
        return None
    try:
        data = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    except (OSError, EOFError, ValueError) as exc:
        raise CorruptFileError(f"probabilities cannot be read ({exc})", path=path) from None
    if data.ndim == 3:  # one region written without its own axis
        data = data[..., None]
    if data.ndim != 4 or data.shape[:3] != (*shape, 1):
        raise CorruptFileError(f"probabilities have shape {data.shape}, expected "
                               f"({shape[0]}, {shape[1]}, 1, K)", path=path)
    return np.moveaxis(data[:, :, 0, :], -1, 0)


def _files(run: Run, record: CaseRecord) -> tuple[Path, ...]:
    paths = [run.prediction_path(record.case_id), run.probabilities_path(record.case_id),
             *record.images.values()]
    return (*paths, *([record.label] if record.label else []))


@st.cache_resource(show_spinner=False, max_entries=48)
def _arrays(run_path: str, case_id: str, stamps: tuple[int, ...]) -> SliceArrays:
    run = Run(Path(run_path))
    record = tables.case_record(run, case_id)
    s = read_slice(record.slice_ref())
    prediction = read_nifti(run.prediction_path(case_id), dtype=np.uint8).data[..., 0]
    if prediction.shape != s.shape:
        raise CorruptFileError(f"prediction is {prediction.shape[0]}x{prediction.shape[1]}, "
                               f"the slice {s.shape[0]}x{s.shape[1]}",
                               path=run.prediction_path(case_id))
    return SliceArrays(s.image, tuple(s.channels), s.mask, prediction,
                       read_probabilities(run.probabilities_path(case_id), s.shape),
                       region_names(s.mask_kind), s.mask_kind, s.spacing_mm)


def slice_arrays(run: Run, record: CaseRecord) -> SliceArrays:
    """The pixels of one predicted slice, read once per change of any of its files (shared,
    read-only: callers must not write into the arrays)."""
    return _arrays(str(run.path), record.case_id, tuple(stamp(p) for p in _files(run, record)))


# --------------------------------------------------------------------------------------------
# why a slice failed


@st.cache_data(show_spinner=False, max_entries=1024)
def _failures(run_path: str, case_id: str, region: str, stamps: tuple[int, ...],
              rules: FailureRules) -> tuple[Failure, ...]:
    run = Run(Path(run_path))
    record = tables.case_record(run, case_id)
    arrays = slice_arrays(run, record)
    truth = arrays.truth_mask(region)
    found: list[Failure] = []
    if truth is not None:
        found += mask_failures(truth, arrays.prediction_mask(region),
                               probability=arrays.probability(region),
                               pixel_mm2=arrays.pixel_mm2,
                               rules=replace(rules, threshold=threshold_of(record)))
    pred = record.prediction or {}
    wrong = type_failure(record.metadata.get("tumour_type"), pred.get("predicted_type"),
                         _float(pred.get("confidence")))
    return ordered([*found, *([wrong] if wrong else [])])


def slice_failures(run: Run, record: CaseRecord, region: str, *,
                   rules: FailureRules = DEFAULT_RULES) -> tuple[Failure, ...]:
    """Why ``record``'s slice fails in ``region`` (:mod:`tumorscope.core.scoring.failures`),
    judged at the threshold its prediction was made at; cached per file change. A slice
    that cannot be read raises a ``TumorscopeError`` (the caller says so in one line)."""
    return _failures(str(run.path), record.case_id, region,
                     tuple(stamp(p) for p in _files(run, record)), rules)


def failures_text(failures: Sequence[Failure]) -> str:
    """The reasons as one line for a table cell.

    >>> failures_text([Failure("missed", "Dice 0.00")]), failures_text([])
    ('missed tumour', '—')
    """
    return "; ".join(f.label for f in failures) or "—"

