"""Failure explorer: a run's worst cases, each with why it failed (missed small tumour, multifocal
merged, under-confident, wrong type, false positive away from the tumour). 2-D slices are read
from their pixels; 3-D patients from metrics.csv and lesions.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from tumorscope.app import slice_run, state, tables
from tumorscope.app.caches import stamp
from tumorscope.app.pages.slices2d import thumbnail
from tumorscope.app.state import Context
from tumorscope.core.errors import TumorscopeError
from tumorscope.core.scoring.failures import REASONS, Failure, lesion_failures
from tumorscope.core.store import Run
from tumorscope.render import lesions as lesion_tables

TITLE = "Failure explorer"
TABLE_KEY = "failures_table"
ROWS_KEY = "_ov_fx_rows"
"""Case ids of the table as last drawn, for the row-click callback."""
PICTURES = 6
"""Thumbnails of the worst failing slices shown above the table."""
LESION_SCORING = "brats2023"
"""The lesion-wise scoring a 3-D run's missed and false-positive lesions are read from."""


def render(ctx: Context) -> None:
    assert ctx.run is not None
    st.title(TITLE)
    st.session_state.setdefault("ov_fx_n", 30)
    st.session_state.setdefault("ov_fx_reasons", [])
    if slice_run.is_2d_run(ctx.run):
        _slices(ctx)
    else:
        _patients(ctx)
    with st.expander("How the reasons are judged"):
        st.markdown(REASON_DOCS)


REASON_DOCS = "\n".join([
    "- **missed small tumour / missed tumour**: Dice 0.1 or less on a true tumour; small is "
    "under 300 mm² on a slice (0.5 % of the image when the file records no pixel size), "
    "under 1 mL in 3-D (or a missed lesion that small).",
    "- **wrong type**: the predicted tumour type is not the true one.",
    "- **false positive away from the tumour**: a predicted component (5 pixels or more) that "
    "does not touch the true tumour; in 3-D a false-positive lesion of lesions.csv.",
    "- **multifocal merged**: two or more true foci, fewer predicted components over them, "
    "one spanning several.",
    "- **under-confident**: mean probability inside the true tumour below the threshold the "
    "prediction was made at (2-D, where the probability map is saved).",
    "- **under- / over-segmented**: said when nothing above is, the prediction under 60 % or "
    "over 160 % of the true size.",
])


def _reason_filter(found: pd.DataFrame) -> pd.DataFrame:
    present = [REASONS[k] for k in REASONS if found["reasons"].str.contains(
        REASONS[k], regex=False).any()]
    st.session_state["ov_fx_reasons"] = [r for r in st.session_state["ov_fx_reasons"]
                                         if r in present]
    st.multiselect("Reason", present, key="ov_fx_reasons", placeholder="every reason")
    chosen = st.session_state["ov_fx_reasons"]
    if not chosen:
        return found
    return found[found["reasons"].map(lambda text: any(r in text.split("; ")
                                                       for r in chosen))]


def _counts(found: pd.DataFrame, of: str) -> None:
    labels = [REASONS[k] for k in REASONS]
    counts = {r: int(found["reasons"].map(lambda t, r=r: r in t.split("; ")).sum())
              for r in labels}
    shown = {r: n for r, n in counts.items() if n}
    if not shown:
        return
    for column, (reason, n) in zip(st.columns(len(shown)), shown.items(), strict=True):
        column.metric(reason, str(n), help=f"{of} with this reason among those listed.")


def _clamp(key: str, top: int) -> None:
    """Keep a stored count inside this run's range (a number input outside it raises)."""
    st.session_state[key] = min(max(1, int(st.session_state[key])), max(1, top))


def _open_selected(page: str) -> None:
    table_state = st.session_state.get(TABLE_KEY)
    rows = table_state.selection.rows if table_state is not None else []
    order = st.session_state.get(ROWS_KEY, [])
    if rows and rows[0] < len(order):
        st.session_state["case_id"] = order[rows[0]]
        state.request_page(page)


def _table(found: pd.DataFrame, *, id_column: str, page: str) -> None:
    st.session_state[ROWS_KEY] = found[id_column].tolist()
    st.dataframe(found, key=TABLE_KEY, on_select=lambda: _open_selected(page),
                 selection_mode="single-row", hide_index=True,
                 height=min(38 + 35 * max(len(found), 1), 460),
                 column_config={
                     "Dice": st.column_config.ProgressColumn("Dice", min_value=0.0,
                                                             max_value=1.0, format="%.3f"),
                     "reasons": st.column_config.TextColumn("reasons", width="medium"),
                     "details": st.column_config.TextColumn("details", width="large")})


# --------------------------------------------------------------------------------------------
# 2-D


def slice_failure_frame(ctx_run: Run, frame: pd.DataFrame, region: str, n: int) -> pd.DataFrame:
    """The ``n`` worst scored slices by Dice, and every misclassified one, with their
    reasons (read from the pixels) and the numbers behind them; worst first."""
    scored = frame[frame["scored"]].sort_values("Dice", kind="stable")
    chosen = pd.concat([scored.head(n), scored[scored["correct"].eq(False)]])
    chosen = chosen[~chosen["slice"].duplicated()]
    records = tables.run_cases(ctx_run)
    out = []
    for _, row in chosen.iterrows():
        try:
            found: tuple[Failure, ...] = slice_run.slice_failures(
                ctx_run, records[str(row["slice"])], region)
            details = " · ".join(f.detail for f in found)
        except TumorscopeError as exc:
            found, details = (), f"cannot be read: {exc}"
        out.append({"slice": row["slice"], "patient": row["patient"],
                    "true type": row["true type"], "predicted type": row["predicted type"],
                    "Dice": row["Dice"], "reasons": slice_run.failures_text(found),
                    "details": details})
    columns = ["slice", "patient", "true type", "predicted type", "Dice", "reasons", "details"]
    return pd.DataFrame(out, columns=columns)


def _slices(ctx: Context) -> None:
    assert ctx.run is not None
    table = slice_run.slice_table(ctx.run)
    frame = table.frame
    unscored = int((~frame["scored"]).sum()) if len(frame) else 0
    st.caption(f"Run **{ctx.run.name}** · 2-D slices · the worst slices by Dice and every "
               "misclassified one, each with why it fails"
               + (f" · {unscored} slice(s) without a current score are left out (see the "
                  "cohort page)" if unscored else ""))
    if not frame["scored"].any():
        st.info("No slice has a current score: run `tumorscope evaluate RUN` first.")
        return
    regions = list(table.summary.regions)
    region = slice_run.primary_region(regions)
    count, reasons = st.columns([1, 3], vertical_alignment="bottom")
    _clamp("ov_fx_n", len(frame))
    with count:
        st.number_input("Worst slices", 1, max(1, len(frame)), key="ov_fx_n",
                        help="How many of the lowest-Dice slices are examined (misclassified "
                             "slices are always listed).")
    found = slice_failure_frame(ctx.run, frame, region, int(st.session_state["ov_fx_n"]))
    with reasons:
        found = _reason_filter(found)
    _counts(found, "Slices")
    _pictures(ctx.run, found, region)
    _table(found, id_column="slice", page="gallery")
    st.caption("Tick a row to open the slice in the gallery. —: no failure pattern found (the "
               "outline is a little off, nothing more specific).")


def _pictures(run: Run, found: pd.DataFrame, region: str) -> None:
    failing = found[found["reasons"] != "—"].head(PICTURES)
    if failing.empty:
        return
    records = tables.run_cases(run)
    for column, (_, row) in zip(st.columns(PICTURES), failing.iterrows(), strict=False):
        with column:
            try:
                st.image(thumbnail(run, records[str(row["slice"])], region),
                         output_format="PNG")
            except TumorscopeError as exc:
                st.caption(f"{row['slice']}: {exc}")
            st.markdown(f"**{row['slice']}** · Dice {row['Dice']:.2f}  \n{row['reasons']}")


# --------------------------------------------------------------------------------------------
# 3-D


@st.cache_data(show_spinner=False, max_entries=8)
def _patient_failures(run_path: str, stamps: tuple[object, ...]) -> pd.DataFrame:
    run = Run(Path(run_path))
    metrics, table = tables.cohort(run)
    lesions = lesion_tables.lesions_frame(run)
    if len(lesions) and len(metrics):
        scored = set(zip(metrics["case_id"].astype(str), metrics["prediction_sha256"].astype(str),
                         metrics["truth_sha256"].astype(str), strict=True)) \
            if {"prediction_sha256", "truth_sha256"} <= set(metrics) else set()
        current = [(c, p, t) in scored for c, p, t in zip(
            lesions["case_id"], lesions["prediction_sha256"], lesions["truth_sha256"],
            strict=True)]
        lesions = lesions[current]
    found = lesion_failures(metrics.to_dict("records"), lesions.to_dict("records"),
                            scoring=LESION_SCORING)
    out = []
    for _, row in table[table["patient"].isin(list(found))].iterrows():
        reasons = found[str(row["patient"])]
        out.append({"patient": row["patient"], "mean Dice": row["mean Dice"],
                    "Dice": row["Dice WT"], "reasons": slice_run.failures_text(reasons),
                    "details": " · ".join(f.detail for f in reasons)})
    frame = pd.DataFrame(out, columns=["patient", "mean Dice", "Dice", "reasons", "details"])
    return frame.sort_values("mean Dice", kind="stable").reset_index(drop=True)


def _patients(ctx: Context) -> None:
    assert ctx.run is not None
    run = ctx.run
    stamps = (*tables.run_stamp(run), stamp(run.lesions_path),
              tuple(sorted(tables.stale_scores(run))))
    found = _patient_failures(str(run.path), stamps)
    st.caption(f"Run **{run.name}** · 3-D · patients worst mean Dice first; reasons from the "
               f"whole-tumour (WT) scores and the {LESION_SCORING} lesions of lesions.csv "
               "(Dice column: WT)")
    if found.empty:
        st.info("No patient has a current score: run `tumorscope evaluate RUN` first.")
        return
    count, reasons = st.columns([1, 3], vertical_alignment="bottom")
    _clamp("ov_fx_n", len(found))
    with count:
        st.number_input("Worst patients", 1, max(1, len(found)), key="ov_fx_n")
    shown = found.head(int(st.session_state["ov_fx_n"]))
    with reasons:
        shown = _reason_filter(shown)
    _counts(shown, "Patients")
    _table(shown, id_column="patient", page="patient")
    st.caption("Tick a row to open the patient's 3-D view. —: no failure pattern found.")
