"""Cohort overview page: patients table (sort, filter, open), score plots, training curves;
legacy scores alone or beside a lesion-wise scoring, HD95 by a named definition."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from tumorscope.app import state, tables
from tumorscope.app.caches import stamp
from tumorscope.app.state import Context
from tumorscope.core.data.labels import REGION_NAMES, REGIONS
from tumorscope.core.scoring.distances import HD95_DEFINITIONS, hd95_column
from tumorscope.core.scoring.metrics import METRIC_DOCS
from tumorscope.core.scoring.scorings import SCORING_COLUMNS, SCORING_DOCS
from tumorscope.core.store import Run
from tumorscope.render import style
from tumorscope.render.cohort import (
    HD95_KEYS,
    LESION_KEYS,
    hd95_definitions,
    lesion_scorings,
    score_columns,
    short_title,
    volume_columns,
    volume_text,
    volume_title,
    wide_column,
)
from tumorscope.render.export import csv_bytes
from tumorscope.render.lesions import SCORING_HD95

SYNTHETIC_NOTE = ("Synthetic demo data: tumours grown inside the ICBM152 brain template, "
                  "not patients.")
META_COLUMNS = ("patient", "grade", "age", "synthetic", "ground truth", "mean Dice")
TABLE_KEY = "overview_table"
CHART_HEIGHT_PX = 360
ALL_POINTS_MAX = 300
"""Patients a region up to which a box or violin draws every patient as a point."""
WEBGL_POINTS_FROM = 1500
"""Points (patients x regions) from which the scatter plots are drawn with WebGL."""
SCORING_LABELS = {"legacy": "legacy (whole volume)", "brats2023": "lesion-wise BraTS 2023",
                  "brats2025": "lesion-wise BraTS 2025"}
LESION_PLOTS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "brats2023": (("brats2023_dice", "Lesion-wise Dice (brats2023)"),
                  ("brats2023_hd95_mm", f"Lesion-wise {HD95_DEFINITIONS['surfel']}, "
                                        "brats2023")),
    "brats2025": (("brats2025_rq", "Recognition quality RQ (brats2025)"),
                  ("brats2025_sq_hd95_mm", f"Segmentation quality {HD95_DEFINITIONS['pooled']},"
                                           " brats2025")),
}
"""The two distributions shown per lesion-wise scoring: (metric, title), HD95 by name."""


@dataclass(frozen=True)
class ScoreView:
    """Which scores the page shows: legacy alone or beside a lesion-wise scoring, and which
    legacy HD95 definition (read from the widgets once per rerun)."""

    scoring: str
    hd95: str

    @property
    def hd95_key(self) -> str:
        return hd95_column(self.hd95)


def sortable(view: ScoreView) -> list[str]:
    """What the table can be sorted by in ``view``.

    >>> sortable(ScoreView("legacy", "surfel"))[:2], sortable(ScoreView("legacy", "surfel"))[-3]
    (['mean Dice', 'Dice WT'], 'HD95 ET (surfel, mm)')
    """
    return ["mean Dice", *score_columns(view.scoring, hd95=view.hd95), "patient", "age"]


def render(ctx: Context) -> None:
    assert ctx.run is not None
    cohort = tables.cohort_view(ctx.run)
    metrics, table, stale = cohort.metrics, cohort.table, cohort.stale
    st.title("Cohort overview")
    scored = int(table["ground truth"].sum())
    caption = st.empty()
    if table["synthetic"].any():
        st.info(SYNTHETIC_NOTE, icon=":material/science:")
    if stale:
        listed = "; ".join(f"{case}: {why}" for case, why in list(stale.items())[:5])
        more = f" (+{len(stale) - 5} more)" if len(stale) > 5 else ""
        st.warning(f"{len(stale)} patient(s) have no current score, so none is shown for "
                   f"them: {listed}{more}.",
                   icon=":material/history:")
    view = _score_controls(metrics)
    caption.caption(f"Run **{ctx.run.name}** in `{state.shown_path(ctx.run.path.parent)}` · "
                    f"{len(table)} "
                    f"patients, {scored} with ground truth · {HD95_DEFINITIONS[view.hd95]}"
                    + (f" · {SCORING_DOCS[view.scoring]}" if view.scoring != "legacy" else ""))
    if table.empty:
        st.warning("This run has no predictions yet: make them with `tumorscope predict`.")
    else:
        _summary(metrics, view)
        _patients(ctx, table, view)
    if len(metrics):
        _score_plots(metrics, view, cohort.key)
    elif not table.empty:
        st.info("No patient has ground truth, so there are no scores to plot.")
    _training(ctx)
    _docs(ctx)


# --------------------------------------------------------------------------------------------
# summary and table


def _score_controls(metrics: pd.DataFrame) -> ScoreView:
    """The scoring toggle and the HD95-definition picker; options only of what the run has."""
    scorings = ["legacy", *lesion_scorings(metrics)]
    definitions = hd95_definitions(metrics) or list(HD95_DEFINITIONS)
    s = st.session_state
    if s.get("ov_scoring") not in scorings:
        s["ov_scoring"] = "legacy"
    if s.get("ov_hd95") not in definitions:
        s["ov_hd95"] = definitions[0]
    left, right = st.columns([3, 3], vertical_alignment="bottom")
    left.segmented_control(
        "Scores", scorings, key="ov_scoring", required=True,
        format_func=SCORING_LABELS.__getitem__,
        help="Legacy: one Dice and HD95 per region over the whole volume. Lesion-wise: each "
             "tumour component scored on its own, shown beside the legacy score, with the "
             "missed (FN) and false-positive (FP) lesions of each patient."
             + ("" if len(scorings) > 1 else " This run has no lesion-wise scores: run "
                "`tumorscope evaluate RUN --scoring brats2023 brats2025`."))
    right.selectbox("HD95 definition (legacy columns)", definitions, key="ov_hd95",
                    format_func=HD95_DEFINITIONS.__getitem__,
                    help="The three references define HD95 differently (see the columns' "
                         "meanings below); every table, card and plot names the one it shows.")
    return ScoreView(s["ov_scoring"] or "legacy", s["ov_hd95"])


def _number(value: float, spec: str, unit: str = "") -> str:
    return "n/a" if pd.isna(value) else f"{value:{spec}}{unit}"


def _summary(metrics: pd.DataFrame, view: ScoreView) -> None:
    if metrics.empty:
        return
    columns = st.columns(len(REGIONS) * 2)
    for i, region in enumerate(REGIONS):
        rows = metrics[metrics["region"] == region]
        columns[i].metric(f"mean Dice {region}", _number(rows["dice"].mean(), ".3f"),
                          help=f"{REGION_NAMES[region]}, legacy, over {len(rows)} patients")
        columns[len(REGIONS) + i].metric(
            f"median HD95 {region} ({view.hd95})",
            _number(rows[view.hd95_key].median(), ".1f", " mm"),
            help=HD95_DEFINITIONS[view.hd95])
    if view.scoring == "legacy":
        return
    scoring = view.scoring
    first = {"brats2023": "brats2023_dice", "brats2025": "brats2025_rq"}[scoring]
    name = {"brats2023": "Dice", "brats2025": "RQ"}[scoring]
    columns = st.columns(len(REGIONS) * 2)
    for i, region in enumerate(REGIONS):
        rows = metrics[metrics["region"] == region]
        columns[i].metric(f"mean {name} {region} · {scoring}",
                          _number(rows[first].mean(), ".3f"),
                          help=SCORING_COLUMNS[scoring][first])
        fn, fp = (int(rows[f"{scoring}_{k}"].fillna(0).sum()) for k in ("fn", "fp"))
        columns[len(REGIONS) + i].metric(
            f"FN / FP lesions {region}", f"{fn} / {fp}",
            help=f"Missed / false-positive {region} lesions over {len(rows)} patients "
                 f"({scoring}).")


def worst_first_ascending(column: str) -> bool:
    """Sort direction that puts the worst patients first: low Dice or RQ, high HD95, many
    missed or false-positive lesions.

    >>> worst_first_ascending("Dice WT"), worst_first_ascending("HD95 ET (monai, mm)")
    (True, False)
    >>> worst_first_ascending("FP WT · brats2023"), worst_first_ascending("SQ HD95 TC · b")
    (False, False)
    """
    return not column.startswith(("HD95", "SQ HD95", "FN ", "FP "))


def filter_and_sort(table: pd.DataFrame, *, search: str, grades: list[str], sort_by: str,
                    order: str) -> pd.DataFrame:
    """Rows matching the search text and grades, worst or best first; unscored rows last."""
    shown = table
    if search.strip():
        shown = shown[shown["patient"].str.contains(search.strip(), case=False, regex=False)]
    if grades:
        shown = shown[shown["grade"].isin(grades)]
    ascending = True
    if sort_by not in ("patient", "age"):
        ascending = worst_first_ascending(sort_by) == (order == "worst first")
    return shown.sort_values(sort_by, ascending=ascending, na_position="last",
                             kind="stable").reset_index(drop=True)


def column_docs() -> dict[str, str]:
    """What each metric column means: legacy (HD95 by definition) and lesion-wise."""
    docs = dict(METRIC_DOCS)
    for key, definition in zip(HD95_KEYS, HD95_DEFINITIONS, strict=True):
        docs[key] = HD95_DEFINITIONS[definition] + (
            f". {METRIC_DOCS[key]}" if key in METRIC_DOCS else "")
    for columns in SCORING_COLUMNS.values():
        docs.update(columns)
    return docs


# Widths (px) that fit the legacy view's table in the main column of a 1400-px window:
# each is its short header's width (14 px Source Sans) plus the grid's 2 x 8 px padding.
META_PX: dict[str, int] = {"patient": 108, "grade": 50, "age": 40, "synthetic": 74,
                           "ground truth": 50, "mean Dice": 80}
SCORE_PX = 63
HD95_PX = 70
VOLUME_PX = 74


def _column_config() -> dict[str, object]:
    config: dict[str, object] = {
        "patient": st.column_config.TextColumn("patient", pinned=True,
                                               width=META_PX["patient"]),
        "grade": st.column_config.TextColumn("grade", width=META_PX["grade"]),
        "age": st.column_config.NumberColumn("age", format="%.0f", width=META_PX["age"]),
        "synthetic": st.column_config.CheckboxColumn("synthetic",
                                                     width=META_PX["synthetic"]),
        "ground truth": st.column_config.CheckboxColumn(
            "truth", width=META_PX["ground truth"], help="The patient has ground truth."),
        "mean Dice": st.column_config.ProgressColumn(
            "mean Dice", min_value=0.0, max_value=1.0, format="%.3f",
            width=META_PX["mean Dice"], help="Mean of the WT, TC and ET legacy Dice."),
    }
    docs = column_docs()
    keys = ("dice", *HD95_KEYS, *(k for ks in LESION_KEYS.values() for k in ks))
    for region in REGIONS:
        for key in keys:
            title = wide_column(key, region)
            count = key.endswith(("_tp", "_fn", "_fp"))
            fine = "dice" in key or key.endswith("_rq")
            config[title] = st.column_config.NumberColumn(
                short_title(title), format="%d" if count else "%.3f" if fine else "%.1f",
                width=HD95_PX if "hd95" in key else SCORE_PX,
                help=f"{title}: {docs[key]}" if key in docs else title)
        config[volume_title(region)] = st.column_config.TextColumn(
            volume_title(region), width=VOLUME_PX,
            help=f"{REGION_NAMES[region]} volume, true → predicted, in mL (both are in the "
                 f"CSV as {wide_column('volume_truth_ml', region)} and "
                 f"{wide_column('volume_pred_ml', region)}).")
    return config


def shown_columns(view: ScoreView) -> list[str]:
    """The patients table's columns in ``view``: metadata, scores, volumes."""
    return [*META_COLUMNS, *score_columns(view.scoring, hd95=view.hd95), *volume_columns()]


def constant_columns(table: pd.DataFrame) -> dict[str, object]:
    """Metadata columns with one value for every patient of the run (column -> value): the
    grid leaves them out (a caption states them), so the scores fit beside the volumes.

    >>> constant_columns(pd.DataFrame({"grade": ["HGG", "HGG"], "synthetic": [True, False],
    ...                                "ground truth": [True, True], "age": [60, 61]}))
    {'grade': 'HGG', 'ground truth': True}
    """
    constant: dict[str, object] = {}
    for column in ("grade", "synthetic", "ground truth"):
        if column in table and len(table) and table[column].nunique(dropna=False) == 1:
            value = table[column].iloc[0]
            constant[column] = value.item() if isinstance(value, np.generic) else value
    return constant


def grid_view(shown: pd.DataFrame, hidden: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The rows ``shown`` as the grid draws them: one "true → pred" volume cell per region
    beside the numbers (:func:`~tumorscope.render.cohort.volume_text`), and the columns it
    shows in order (scores, then volumes; ``hidden`` left out, the numbers kept)."""
    frame = shown.copy()
    for region in REGIONS:
        frame[volume_title(region)] = [
            volume_text(t, p) for t, p in zip(shown[wide_column("volume_truth_ml", region)],
                                               shown[wide_column("volume_pred_ml", region)],
                                               strict=True)]
    numbers = set(volume_columns())
    order = [c for c in shown if c not in numbers and c not in hidden]
    return frame, [*order, *(volume_title(r) for r in REGIONS)]


def _same_for_all(constant: dict[str, object]) -> str:
    parts = []
    if "grade" in constant:
        parts.append(f"grade {constant['grade'] if constant['grade'] else 'unknown'}")
    if "synthetic" in constant:
        parts.append("synthetic" if constant["synthetic"] else "not synthetic")
    if "ground truth" in constant:
        parts.append("with ground truth" if constant["ground truth"] else "no ground truth")
    return f"Every patient here: {', '.join(parts)}. " if parts else ""


def _open_selected() -> None:
    """Row clicked in the table: make it the patient and open the patient page."""
    table_state = st.session_state.get(TABLE_KEY)
    rows = table_state.selection.rows if table_state is not None else []
    order = st.session_state.get("_ov_rows", [])
    if rows and rows[0] < len(order):
        st.session_state["case_id"] = order[rows[0]]
        state.request_page("patient")


def _pick_patient() -> None:
    """The overview's patient picker and the sidebar's are one choice."""
    st.session_state["case_id"] = st.session_state["ov_pick"]


def _open_picked() -> None:
    _pick_patient()
    state.request_page("patient")


def _patients(ctx: Context, table: pd.DataFrame, view: ScoreView) -> None:
    st.subheader("Patients")
    table = table[[c for c in shown_columns(view) if c in table]]
    options = [c for c in sortable(view) if c in table]
    sort_key = st.session_state.get("ov_sort")
    if sort_key not in options:
        # Another HD95 definition or scoring: keep sorting by the same region's HD95.
        same = [c for c in options if sort_key and c.split(" (")[0] == sort_key.split(" (")[0]]
        st.session_state["ov_sort"] = same[0] if same else "mean Dice"
    search, grades, sort_by, order = st.columns([2, 2, 2, 2])
    search.text_input("Search patient", key="ov_search", placeholder="id contains…")
    grade_options = sorted(g for g in table["grade"].dropna().unique())
    # A grade kept from another run would make the widget raise: keep only this run's.
    st.session_state["ov_grades"] = [g for g in st.session_state["ov_grades"]
                                     if g in grade_options]
    grades.multiselect("Grade", grade_options, key="ov_grades", placeholder="all grades")
    sort_by.selectbox("Sort by", options, key="ov_sort")
    order.segmented_control("Order", ["worst first", "best first"], key="ov_order",
                            required=True)
    shown = filter_and_sort(table, search=st.session_state["ov_search"],
                            grades=st.session_state["ov_grades"],
                            sort_by=st.session_state["ov_sort"],
                            order=st.session_state["ov_order"] or "worst first")
    st.session_state["_ov_rows"] = shown["patient"].tolist()
    constant = constant_columns(table)
    frame, order = grid_view(shown, list(constant))
    st.dataframe(frame, key=TABLE_KEY, on_select=_open_selected, selection_mode="single-row",
                 hide_index=True, column_config=_column_config(), column_order=order,
                 height=min(38 + 35 * max(len(shown), 1), 420))
    st.caption(f"{_same_for_all(constant)}Volumes: true → predicted, mL. Hover a column "
               "title for its full name and meaning.")
    pick, button, download = st.columns([3, 2, 2], vertical_alignment="bottom")
    ids = shown["patient"].tolist() or table["patient"].tolist()
    # One patient for the whole app: the picker shows the sidebar's (else the first row).
    current = st.session_state.get("case_id")
    st.session_state["ov_pick"] = current if current in ids else ids[0]
    pick.selectbox("Open a patient", ids, key="ov_pick", on_change=_pick_patient,
                   help="The same patient as the sidebar's. Or click a row's checkbox in "
                        "the table.")
    button.button("Open patient view", key="btn_open_patient", on_click=_open_picked,
                  icon=":material/open_in_new:", type="primary")
    # Made when clicked, not on every rerun (1,000 patients: a 1.5-MB CSV each time).
    download.download_button("Table as CSV", data=lambda: csv_bytes(shown),
                             file_name=f"{ctx.run.name if ctx.run else 'run'}_patients.csv",
                             mime="text/csv", key="btn_table_csv",
                             icon=":material/download:")


# --------------------------------------------------------------------------------------------
# plots


def distribution_figure(metrics: pd.DataFrame, metric: str, *, kind: str = "box",
                        title: str) -> go.Figure:
    """Per-region distribution of ``metric`` with every patient as a point (hover: id); above
    :data:`ALL_POINTS_MAX` patients a region only the outliers are points (the box or
    violin is of every patient): thousands of jittered dots hide the shape they make."""
    figure = go.Figure()
    for region in REGIONS:
        rows = metrics[metrics["region"] == region]
        points = "all" if len(rows) <= ALL_POINTS_MAX else "outliers"
        common = {"y": rows[metric], "name": region, "text": rows["case_id"],
                  "marker": {"color": style.REGION_COLOURS[region].hex, "size": 7},
                  "line": {"color": style.REGION_COLOURS[region].hex},
                  "hovertemplate": "%{text}<br>%{y:.3f}<extra>" + region + "</extra>"}
        if kind == "violin":
            figure.add_trace(go.Violin(points=points, box={"visible": True}, pointpos=0,
                                       jitter=0.4, **common))
        else:
            figure.add_trace(go.Box(boxpoints=points, jitter=0.4, pointpos=0, **common))
    wrapped = wrap_title(title)
    figure.update_layout(title=wrapped, height=CHART_HEIGHT_PX, showlegend=False,
                         margin={"t": 50 + 20 * wrapped.count("<br>"), "b": 30})
    return figure


def wrap_title(title: str, *, width: int = 62) -> str:
    """A chart title broken into lines of at most ``width`` characters (plotly's ``<br>``),
    so a long HD95 definition is read whole in a half-width chart.

    >>> wrap_title("Dice"), wrap_title("a b c", width=3)
    ('Dice', 'a b<br>c')
    """
    import textwrap

    return "<br>".join(textwrap.wrap(title, width=width)) or title


def _marker(region: str) -> dict[str, object]:
    return {"color": style.REGION_COLOURS[region].hex, "size": 9,
            "line": {"width": 0.5, "color": style.MARKER_EDGE_COLOUR.hex}}


def _points_trace(metrics: pd.DataFrame) -> type[go.Scatter] | type[go.Scattergl]:
    """WebGL points for a large cohort (SVG draws thousands of markers slowly in the
    browser); SVG otherwise, which is crisper and spends none of the page's WebGL contexts."""
    return go.Scattergl if len(metrics) > WEBGL_POINTS_FROM else go.Scatter


def volume_figure(metrics: pd.DataFrame) -> go.Figure:
    """Predicted against true volume per patient and region, with the identity line."""
    figure = go.Figure()
    top = float(pd.concat([metrics["volume_truth_ml"], metrics["volume_pred_ml"]]).max())
    top = top * 1.05 if top > 0 else 1.0
    figure.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="identity",
                                line={"color": style.REFERENCE_LINE_COLOUR.hex, "dash": "dash"}))
    points = _points_trace(metrics)
    for region in REGIONS:
        rows = metrics[metrics["region"] == region]
        figure.add_trace(points(
            x=rows["volume_truth_ml"], y=rows["volume_pred_ml"], mode="markers", name=region,
            text=rows["case_id"], marker=_marker(region),
            hovertemplate="%{text}<br>true %{x:.1f} mL<br>pred %{y:.1f} mL<extra>"
                          + region + "</extra>"))
    figure.update_layout(title="Predicted vs true volume", height=CHART_HEIGHT_PX,
                         xaxis_title="true volume (mL)", yaxis_title="predicted volume (mL)",
                         margin={"t": 50, "b": 30})
    return figure


def fitted_range(values: pd.Series, *, low: float = 0.0, high: float = 1.0,
                 margin: float = 0.1, least: float = 0.1) -> list[float]:
    """An axis range around ``values`` with ``margin`` of their spread (at least ``least``
    wide) on each side, kept within ``low``..``high`` (plus a sliver, so points on a bound
    are not cut in half); the whole range when there is no value.

    >>> fitted_range(pd.Series([0.9, 0.95])), fitted_range(pd.Series([0.2, 1.0]))
    ([0.875, 0.975], [0.12, 1.01])
    >>> fitted_range(pd.Series([], dtype=float))
    [-0.01, 1.01]
    """
    finite = values[pd.notna(values)]
    pad = 0.01 * (high - low)
    if finite.empty:
        return [low - pad, high + pad]
    lo, hi = float(finite.min()), float(finite.max())
    extra = max(margin * (hi - lo), (least - (hi - lo)) / 2, 0.0)
    return [round(max(low - pad, lo - extra), 4), round(min(high + pad, hi + extra), 4)]


def dice_volume_figure(metrics: pd.DataFrame) -> go.Figure:
    """Dice of each region against that region's true volume: are small tumours harder? The
    Dice axis fits the points (within 0-1): a fixed 0-1 axis squashed a good cohort flat."""
    figure = go.Figure()
    points = _points_trace(metrics)
    for region in REGIONS:
        rows = metrics[metrics["region"] == region]
        figure.add_trace(points(
            x=rows["volume_truth_ml"], y=rows["dice"], mode="markers", name=region,
            text=rows["case_id"], marker=_marker(region),
            hovertemplate="%{text}<br>%{x:.1f} mL<br>Dice %{y:.3f}<extra>" + region
                          + "</extra>"))
    figure.update_layout(title="Dice vs tumour volume", height=CHART_HEIGHT_PX,
                         xaxis_title="true volume of the region (mL)", yaxis_title="Dice",
                         yaxis_range=fitted_range(metrics["dice"]), margin={"t": 50, "b": 30})
    return figure


def training_figure(log: pd.DataFrame) -> go.Figure:
    """Loss (training, and validation where logged: ``val_loss``) and validation Dice (per
    region and mean) per epoch, from the run's log; each chart with its own legend."""
    has_val_loss = "val_loss" in log and log["val_loss"].notna().any()
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        "Loss" if has_val_loss else "Training loss", "Validation Dice"))
    losses = [("loss", "training loss", "solid"), ("val_loss", "validation loss", "dash")]
    for column, name, dash in losses:
        if column in log and log[column].notna().any():
            rows = log[log[column].notna()]
            # legend (the first) sits by the loss chart, legend2 by the Dice chart.
            figure.add_trace(go.Scatter(x=rows["epoch"], y=rows[column], mode="lines+markers",
                                        name=name, legend="legend",
                                        line={"color": style.LOSS_COLOUR.hex, "dash": dash}),
                             row=1, col=1)
    curves = [*((f"dice_{r}", style.REGION_COLOURS[r].hex, "solid") for r in REGIONS),
              ("dice_mean", style.REFERENCE_LINE_COLOUR.hex, "dash")]
    for column, colour, dash in curves:
        if column in log and log[column].notna().any():
            rows = log[log[column].notna()]
            figure.add_trace(go.Scatter(x=rows["epoch"], y=rows[column], mode="lines+markers",
                                        name=column.replace("dice_", "Dice "),
                                        legend="legend2",
                                        line={"color": colour, "dash": dash}), row=1, col=2)
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(title_text="loss", row=1, col=1)
    figure.update_yaxes(title_text="Dice", range=[0, 1], row=1, col=2)
    # Each legend at the top right inside its own chart (the subplot domains' right ends).
    left, right = (figure.layout[f"xaxis{n}"].domain for n in ("", "2"))
    boxed = {"yanchor": "top", "y": 0.99, "xanchor": "right",
             "bgcolor": "rgba(255,255,255,0.7)", "font": {"size": 11}}
    figure.update_layout(height=CHART_HEIGHT_PX, margin={"t": 50, "b": 30},
                         legend={**boxed, "x": left[1] - 0.01},
                         legend2={**boxed, "x": right[1] - 0.01})
    return figure


@st.cache_resource(show_spinner=False, max_entries=64)
def _figure(name: str, key: Hashable, _build: Callable[[], go.Figure]) -> go.Figure:
    """The figure ``name`` of the data ``key`` names, built once: at 1,000 patients making
    the five figures took longer than the rest of a rerun. One shared object: plotly_chart
    copies a figure before it themes it."""
    return _build()


def _score_plots(metrics: pd.DataFrame, view: ScoreView, key: Hashable) -> None:
    head, kind = st.columns([4, 2], vertical_alignment="bottom")
    head.subheader("Scores per region")
    kind.segmented_control("Distribution as", ["box", "violin"], key="ov_dist", required=True)
    dist = st.session_state["ov_dist"] or "box"

    def distribution(metric: str, title: str) -> go.Figure:
        return _figure(f"{dist} {metric} {title}", key, lambda: distribution_figure(
            metrics, metric, kind=dist, title=title))

    left, right = st.columns(2)
    left.plotly_chart(distribution("dice", "Dice (legacy)"), key="chart_dice")
    right.plotly_chart(distribution(view.hd95_key, HD95_DEFINITIONS[view.hd95]),
                       key="chart_hd95")
    if view.scoring in LESION_PLOTS:
        left, right = st.columns(2)
        for column, (metric, title), chart in zip((left, right), LESION_PLOTS[view.scoring],
                                                  ("chart_lw_dice", "chart_lw_hd95"),
                                                  strict=True):
            column.plotly_chart(distribution(metric, title), key=chart)
    if metrics["region"].value_counts().max() > ALL_POINTS_MAX:
        st.caption(f"Over {ALL_POINTS_MAX} patients a region: the points are the outliers "
                   "(beyond 1.5 × the box's height); the boxes and violins are of everyone.")
    st.subheader("Volumes")
    left, right = st.columns(2)
    left.plotly_chart(_figure("volume", key, lambda: volume_figure(metrics)),
                      key="chart_volume")
    right.plotly_chart(_figure("dice volume", key, lambda: dice_volume_figure(metrics)),
                       key="chart_dice_volume")


def _training(ctx: Context) -> None:
    assert ctx.run is not None
    st.subheader("Training")
    log = tables.training_log(ctx.run)
    if log.empty or "epoch" not in log:
        st.caption("This run has no training log (log.csv): it only holds predictions.")
        return
    key = (str(ctx.run.path), stamp(ctx.run.log_path))  # what training_log is cached by
    st.plotly_chart(_figure("training", key, lambda: training_figure(log)),
                    key="chart_training")


@st.cache_data(show_spinner=False, max_entries=16)
def _run_config(run_path: str, mtime_ns: int) -> dict[str, Any] | None:
    # Parsed once per file version, not on every rerun (~20 ms of YAML).
    return Run(Path(run_path)).config()


def _docs(ctx: Context) -> None:
    assert ctx.run is not None
    with st.expander("What the columns mean"):
        st.markdown("\n".join(f"- **{key}**: {text}" for key, text in column_docs().items()))
        st.markdown("\n".join(f"- **{name}**: {text}" for name, text in SCORING_DOCS.items()))
        st.caption("Lesion-wise HD95 definitions: " + "; ".join(
            f"{s}: {HD95_DEFINITIONS[d]}" for s, d in SCORING_HD95.items()))
    config = _run_config(str(ctx.run.path), stamp(ctx.run.config_path))
    if config:
        with st.expander("Run configuration"):
            st.json(config, expanded=1)
