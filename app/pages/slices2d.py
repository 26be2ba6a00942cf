"""Slice gallery of a 2-D run: thumbnails (worst Dice first) with the true and predicted
outlines, filtered by true type, predicted type or misclassification; one slice large with its
probability heat map and a threshold slider that redraws the predicted outline."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from tumorscope.app import legend, slice_run, tables
from tumorscope.app.caches import stamp
from tumorscope.app.slice_run import SliceArrays
from tumorscope.app.state import Context
from tumorscope.core.errors import TumorscopeError
from tumorscope.core.scoring.metrics import dice, jaccard
from tumorscope.core.store import CaseRecord, Run
from tumorscope.render import slices2d, style
from tumorscope.render.export import png_bytes

TITLE = "Slice gallery"
SORTS = ("worst Dice first", "best Dice first", "least confident first", "slice id")
PAGE_SIZES = (15, 30, 60, 120)
COLUMNS = 5
OPEN_PREFIX = "g2_open_"
"""Key prefix of each thumbnail's "Open" button (then the slice id)."""
DEFAULTS = {"sl_2d_true": [], "sl_2d_pred": [], "sl_2d_wrong": False,
            "sl_2d_sort": SORTS[0], "sl_2d_per_page": PAGE_SIZES[1], "sl_2d_page": 1,
            "sl_2d_heat": True, "sl_2d_heat_opacity": style.HEAT_OPACITY,
            "sl_2d_truth": True, "sl_2d_prediction": True}


def _natural(text: str) -> tuple[object, ...]:
    """Sort key that puts slice "2" before "10"."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(text)))


def filter_slices(frame: pd.DataFrame, *, true_types: Sequence[str] = (),
                  predicted_types: Sequence[str] = (), misclassified_only: bool = False,
                  sort: str = SORTS[0]) -> pd.DataFrame:
    """The gallery's slices: of the chosen true and predicted types (none chosen: all),
    only those whose predicted type is not the true one if asked, in ``sort`` order; slices
    without a current score go last.

    >>> f = pd.DataFrame({"slice": ["1", "2", "10"], "true type": ["glioma"] * 3,
    ...                   "predicted type": ["glioma", "pituitary", "glioma"],
    ...                   "correct": [True, False, True], "Dice": [0.8, 0.9, None],
    ...                   "confidence": [0.9, 0.6, 0.7]})
    >>> filter_slices(f)["slice"].tolist(), filter_slices(f, misclassified_only=True)[
    ...     "slice"].tolist()
    (['1', '2', '10'], ['2'])
    >>> filter_slices(f, sort="slice id", predicted_types=["glioma"])["slice"].tolist()
    ['1', '10']
    """
    shown = frame
    if true_types:
        shown = shown[shown["true type"].isin(true_types)]
    if predicted_types:
        shown = shown[shown["predicted type"].isin(predicted_types)]
    if misclassified_only:
        shown = shown[shown["correct"].eq(False)]  # unknown types (None) are not wrong
    if sort == "slice id":
        return shown.sort_values("slice", key=lambda s: s.map(_natural)).reset_index(drop=True)
    column, ascending = {"worst Dice first": ("Dice", True), "best Dice first": ("Dice", False),
                         "least confident first": ("confidence", True)}[sort]
    return shown.sort_values(column, ascending=ascending, na_position="last",
                             kind="stable").reset_index(drop=True)


def render(ctx: Context) -> None:
    assert ctx.run is not None
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    table = slice_run.slice_table(ctx.run)
    frame = table.frame
    st.title(TITLE)
    if frame.empty:
        st.warning("This run has no predicted slices yet: make them with `tumorscope predict`.")
        return
    records = tables.run_cases(ctx.run)
    region = _region_picker(ctx.run, records)
    shown = _filters(frame)
    _legend()
    _grid(ctx.run, records, shown, region)
    chosen = ctx.case_id if ctx.case_id in records else None
    if chosen is None and len(shown):
        chosen = str(shown["slice"].iloc[0])
    if chosen is not None:
        st.divider()
        _large(ctx.run, records[chosen], frame[frame["slice"] == chosen].iloc[0], region)


def _region_picker(run: Run, records: dict[str, CaseRecord]) -> str:
    kinds = {r.metadata.get("mask_kind") for r in records.values()}
    regions = ["WT", "TC", "ET"] if "brats" in kinds else ["tumour"]
    if len(regions) == 1:
        return regions[0]
    if st.session_state.get("sl_2d_region") not in regions:
        st.session_state["sl_2d_region"] = regions[0]
    st.segmented_control("Region", regions, key="sl_2d_region", required=True)
    return st.session_state["sl_2d_region"] or regions[0]


def _keep(key: str, options: Sequence[str]) -> None:
    """Drop chosen values this run does not have (the widget would raise on them)."""
    st.session_state[key] = [v for v in st.session_state.get(key, []) if v in options]


def _filters(frame: pd.DataFrame) -> pd.DataFrame:
    true_options = sorted(frame["true type"].dropna().unique())
    pred_options = sorted(frame["predicted type"].dropna().unique())
    _keep("sl_2d_true", true_options)
    _keep("sl_2d_pred", pred_options)
    true_col, pred_col, wrong_col, sort_col, size_col = st.columns([3, 3, 2, 2, 1],
                                                                   vertical_alignment="bottom")
    true_col.multiselect("True type", true_options, key="sl_2d_true", placeholder="all types")
    pred_col.multiselect("Predicted type", pred_options, key="sl_2d_pred",
                         placeholder="all types")
    wrong_col.toggle("Misclassified only", key="sl_2d_wrong",
                     disabled=not frame["correct"].notna().any(),
                     help="Slices whose predicted tumour type is not the true one.")
    sort_col.selectbox("Order", SORTS, key="sl_2d_sort")
    size_col.selectbox("Per page", PAGE_SIZES, key="sl_2d_per_page")
    s = st.session_state
    shown = filter_slices(frame, true_types=s["sl_2d_true"], predicted_types=s["sl_2d_pred"],
                          misclassified_only=bool(s["sl_2d_wrong"]), sort=s["sl_2d_sort"])
    pages = max(1, math.ceil(len(shown) / int(s["sl_2d_per_page"])))
    s["sl_2d_page"] = min(max(1, int(s["sl_2d_page"])), pages)
    if pages > 1:
        st.number_input(f"Page (of {pages})", 1, pages, key="sl_2d_page")
    first = (int(s["sl_2d_page"]) - 1) * int(s["sl_2d_per_page"])
    page = shown.iloc[first:first + int(s["sl_2d_per_page"])]
    st.caption(f"Showing {len(page)} of {len(shown)} slices"
               + (f" (filtered from {len(frame)})" if len(shown) != len(frame) else "")
               + f" · {s['sl_2d_sort']}.")
    return page


def _legend(*, heat: bool = False) -> None:
    chips = [legend.line(style.TRUTH_OUTLINE_COLOUR, "ground truth (solid)"),
             legend.line(style.PREDICTION_OUTLINE_COLOUR, "prediction (dashed)", dashed=True)]
    if heat:
        chips.append("<span style='margin-left:0.9em'>heat: tumour probability, red (low) "
                     "to yellow (1)</span>")
    st.markdown(" ".join(chips), unsafe_allow_html=True)


def display_channel(arrays: SliceArrays) -> int:
    """The channel a slice is shown in: T1ce (contrast-enhanced, what the types are told
    apart on) when the slice has it, else its first."""
    return arrays.channels.index("t1ce") if "t1ce" in arrays.channels else 0


@st.cache_data(show_spinner=False, max_entries=512)
def _thumbnail(run_path: str, case_id: str, region: str, stamps: tuple[int, ...],
               display_px: int) -> bytes:
    run = Run(Path(run_path))
    record = tables.case_record(run, case_id)
    arrays = slice_run.slice_arrays(run, record)
    image = slices2d.compose_slice(
        arrays.image[display_channel(arrays)], truth=arrays.truth_mask(region),
        prediction=arrays.prediction_mask(region), display_px=display_px,
        spacing_mm=arrays.spacing_mm)
    return png_bytes(image)


def thumbnail(run: Run, record: CaseRecord, region: str,
              display_px: int = slices2d.THUMBNAIL_PX) -> bytes:
    """A slice's thumbnail PNG (image, truth and prediction outlines), cached per file."""
    paths = [run.prediction_path(record.case_id), *record.images.values(),
             *([record.label] if record.label else [])]
    return _thumbnail(str(run.path), record.case_id, region,
                      tuple(stamp(p) for p in paths), display_px)


def _open(case_id: str) -> None:
    st.session_state["case_id"] = case_id


def thumbnail_caption(row: pd.Series) -> str:
    """What a thumbnail says: slice, Dice, true and predicted type, confidence.

    >>> thumbnail_caption(pd.Series({"slice": "7", "Dice": 0.5, "true type": "glioma",
    ...     "predicted type": "pituitary", "confidence": 0.61, "correct": False}))
    '**7** · Dice 0.50  \\nglioma → **pituitary** (61%) ✗'
    """
    score = "no current score" if pd.isna(row["Dice"]) else f"Dice {row['Dice']:.2f}"
    head = f"**{row['slice']}** · {score}"
    if not row["predicted type"] or pd.isna(row["predicted type"]):
        return head
    true = row["true type"] if row["true type"] and not pd.isna(row["true type"]) else "?"
    sure = "" if pd.isna(row["confidence"]) else f" ({row['confidence']:.0%})"
    mark = {True: " ✓", False: " ✗"}.get(row["correct"], "")
    return f"{head}  \n{true} → **{row['predicted type']}**{sure}{mark}"


def _grid(run: Run, records: dict[str, CaseRecord], page: pd.DataFrame, region: str) -> None:
    if page.empty:
        st.info("No slice matches these filters.")
        return
    for start in range(0, len(page), COLUMNS):
        columns = st.columns(COLUMNS)
        for column, (_, row) in zip(columns, page.iloc[start:start + COLUMNS].iterrows(),
                                    strict=False):
            case_id = str(row["slice"])
            with column:
                try:
                    st.image(thumbnail(run, records[case_id], region), output_format="PNG")
                except TumorscopeError as exc:
                    st.warning(f"{case_id}: {exc}", icon=":material/broken_image:")
                st.markdown(thumbnail_caption(row))
                st.button("Open", key=f"{OPEN_PREFIX}{case_id}", on_click=_open,
                          args=(case_id,), icon=":material/open_in_full:",
                          type="primary" if case_id == st.session_state.get("case_id")
                          else "secondary")


# --------------------------------------------------------------------------------------------
# one slice, large


def _large(run: Run, record: CaseRecord, row: pd.Series, region: str) -> None:
    st.subheader(f"Slice {record.case_id}")
    meta = record.metadata
    st.caption(" · ".join(str(p) for p in (
        f"patient {meta.get('patient_id')}", meta.get("dataset"),
        f"true type {meta.get('tumour_type') or 'not given'}",
        "synthetic demo slice, not a patient" if meta.get("synthetic") else None) if p))
    try:
        arrays = slice_run.slice_arrays(run, record)
    except TumorscopeError as exc:
        st.error(f"Cannot show slice {record.case_id}: {exc}", icon=":material/broken_image:")
        return
    picture, side = st.columns([3, 2])
    probability = arrays.probability(region)
    saved = arrays.prediction_mask(region)
    with side:
        threshold = _threshold_controls(record, probability is not None)
    predicted = saved if probability is None else probability >= threshold
    truth = arrays.truth_mask(region)
    s = st.session_state
    image = slices2d.compose_slice(
        arrays.image[display_channel(arrays)],
        truth=truth if s["sl_2d_truth"] else None,
        prediction=predicted if s["sl_2d_prediction"] else None,
        probability=probability if s["sl_2d_heat"] else None,
        heat_opacity=float(s["sl_2d_heat_opacity"]), display_px=slices2d.LARGE_PX,
        spacing_mm=arrays.spacing_mm, outline_px=2 * style.OUTLINE_WIDTH_PX)
    with picture:
        st.image(image, output_format="PNG")
        _legend(heat=bool(s["sl_2d_heat"]) and probability is not None)
    with side:
        _readout(truth, predicted, saved, threshold, probability is not None, arrays, record)
        _type_readout(record)
        _reasons(run, record, region)
        st.download_button("Slice (PNG)", data=png_bytes(image), mime="image/png",
                           file_name=f"{record.case_id}_t{threshold:.2f}.png",
                           key="btn_slice2d_png", icon=":material/image:")


def _threshold_controls(record: CaseRecord, has_probability: bool) -> float:
    saved = slice_run.threshold_of(record)
    s = st.session_state
    if s.get("sl_2d_threshold_for") != record.case_id:  # a new slice starts at its own
        s["sl_2d_threshold_for"] = record.case_id
        s["sl_2d_threshold"] = saved
    st.slider("Threshold (probability)", 0.05, 0.95, step=0.05, key="sl_2d_threshold",
              disabled=not has_probability,
              help=f"The predicted outline is where the tumour probability is at least this; "
                   f"the saved prediction used {saved:.2f}." if has_probability else
                   "This slice has no probability file, so only the saved prediction is "
                   "shown.")
    heat, truth, pred = st.columns(3)
    heat.toggle("Heat map", key="sl_2d_heat", disabled=not has_probability)
    truth.toggle("Truth", key="sl_2d_truth")
    pred.toggle("Prediction", key="sl_2d_prediction")
    st.slider("Heat opacity", 0.1, 1.0, step=0.05, key="sl_2d_heat_opacity",
              disabled=not has_probability or not s["sl_2d_heat"])
    return float(s["sl_2d_threshold"]) if has_probability else saved


def _area(pixels: int, arrays: SliceArrays) -> str:
    mm2 = arrays.pixel_mm2
    return f"{pixels * mm2:.0f} mm²" if mm2 else f"{pixels} px"


def _readout(truth: np.ndarray | None, predicted: np.ndarray, saved: np.ndarray,
             threshold: float, has_probability: bool, arrays: SliceArrays,
             record: CaseRecord) -> None:
    at = f"p ≥ {threshold:.2f}" if has_probability else "saved"
    parts = [f"Prediction at {at}: {_area(int(predicted.sum()), arrays)}"]
    if truth is not None:
        parts.append(f"Dice {dice(predicted, truth):.3f} · IoU {jaccard(predicted, truth):.3f}")
        parts.append(f"truth {_area(int(truth.sum()), arrays)}")
    st.markdown("**" + parts[0] + "**  \n" + " · ".join(parts[1:]))
    if has_probability and truth is not None:
        st.caption(f"Saved prediction (p ≥ {slice_run.threshold_of(record):.2f}): Dice "
                   f"{dice(saved, truth):.3f}.")


def _type_readout(record: CaseRecord) -> None:
    pred = record.prediction or {}
    if not pred.get("predicted_type"):
        return
    true = record.metadata.get("tumour_type")
    mark = "" if not true else (" ✓" if true == pred["predicted_type"] else " ✗ (true: "
                                f"{true})")
    confidence = pred.get("confidence")
    st.markdown(f"Predicted type **{pred['predicted_type']}**"
                + (f" · confidence {float(confidence):.2f}" if confidence is not None else "")
                + mark)
    for name, p in (pred.get("type_probabilities") or {}).items():
        st.progress(min(max(float(p), 0.0), 1.0), text=f"{name} {float(p):.2f}")


def _reasons(run: Run, record: CaseRecord, region: str) -> None:
    try:
        found = slice_run.slice_failures(run, record, region)
    except TumorscopeError as exc:
        st.caption(f"Failure reasons unavailable: {exc}")
        return
    if not found:
        st.caption("No failure pattern found in this slice.")
        return
    st.markdown("**Why it fails**  \n" + "  \n".join(f"- **{f.label}**: {f.detail}"
                                                    for f in found))
