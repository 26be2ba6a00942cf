"""Cohort page of a 2-D run: segmentation and tumour-type scores, the confusion matrix, Dice and
IoU per true type, the per-slice table (a row opens the slice gallery) and training curves."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from tumorscope.app import slice_run, state, tables
from tumorscope.app.pages.overview import CHART_HEIGHT_PX, wrap_title
from tumorscope.app.slice_run import UNKNOWN_TYPE, SliceTable
from tumorscope.app.state import Context
from tumorscope.core.scoring.classification import ClassificationScores
from tumorscope.core.scoring.evaluate_slices import SliceSummary
from tumorscope.render import style
from tumorscope.render.export import csv_bytes

TITLE = "Cohort overview"
SYNTHETIC_NOTE = ("Synthetic demo slices: tumours drawn into the ICBM152 brain template, "
                  "not patients.")
TABLE_KEY = "cohort2d_table"
ROWS_KEY = "_ov_2d_rows"
"""Slice ids of the table as last drawn, in its order, for the row-click callback."""
METRIC_TITLES = {"dice": "Dice", "jaccard": "IoU"}


def number(value: float, spec: str = ".3f") -> str:
    """A score as the page prints it; "n/a" where it is undefined.

    >>> number(0.12345), number(float("nan")), number(8.485, ".1f")
    ('0.123', 'n/a', '8.5')
    """
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:{spec}}"


def render(ctx: Context) -> None:
    assert ctx.run is not None
    table = slice_run.slice_table(ctx.run)
    frame = table.frame
    st.title(TITLE)
    scored = int(frame["scored"].sum()) if len(frame) else 0
    st.caption(f"Run **{ctx.run.name}** in `{ctx.run.path.parent}` · 2-D slices · "
               f"{len(frame)} slices of {frame['patient'].nunique() if len(frame) else 0} "
               f"patients, {scored} with a current score · HD95 in {table.unit}"
               + (" (the files record no pixel size)" if table.unit == "px" else ""))
    if len(frame) and frame["synthetic"].any():
        st.info(SYNTHETIC_NOTE, icon=":material/science:")
    stale = tables.stale_scores(ctx.run)
    if stale:
        listed = "; ".join(f"{case}: {why}" for case, why in list(stale.items())[:5])
        more = f" (+{len(stale) - 5} more)" if len(stale) > 5 else ""
        st.warning(f"{len(stale)} slice(s) have no current score, so none is shown for them: "
                   f"{listed}{more}.", icon=":material/history:")
    _links()
    if frame.empty:
        st.warning("This run has no predictions yet: make them with `tumorscope predict`.")
        return
    _segmentation(table)
    _types(table)
    if scored:
        _distributions(frame, table.unit)
    else:
        st.info("No slice has a current score, so there is nothing to plot.")
    _slices(ctx, frame)
    _patients(table.summary, frame)
    _training(ctx)


def _links() -> None:
    gallery, failures, _ = st.columns([2, 2, 5])
    gallery.button("Slice gallery", key="btn_open_gallery", icon=":material/grid_view:",
                   on_click=state.request_page, args=("gallery",))
    failures.button("Failure explorer", key="btn_open_failures", icon=":material/troubleshoot:",
                    on_click=state.request_page, args=("failures",))


# --------------------------------------------------------------------------------------------
# summaries


def _segmentation(table: SliceTable) -> None:
    st.subheader("Segmentation")
    regions = table.summary.regions
    if not regions:
        st.info("No slice has a current score.")
        return
    for region, scores in regions.items():
        n = int(scores["n"])
        dice, iou, hd = st.columns(3)
        dice.metric(f"mean Dice {region}", number(scores["dice"]),
                    help=f"Mean over {n} slices with a current score.")
        iou.metric(f"mean IoU {region}", number(scores["jaccard"]),
                   help=f"Jaccard index, mean over {n} slices.")
        hd.metric(f"median HD95 {region} ({table.unit})", number(scores["hd95_median"], ".1f"),
                  help="95th-percentile Hausdorff distance between the outlines (MONAI's "
                       "definition, 2-D), in " + ("millimetres" if table.unit == "mm" else
                                                  "pixels: the files record no pixel size"))


def class_table(types: ClassificationScores, auc: ClassificationScores | None) -> pd.DataFrame:
    """Per tumour type: precision, recall, F1, ROC-AUC (from ``auc``, the scores computed
    with the recorded type probabilities) and support."""
    rows = []
    for name in types.class_names:
        scores = types.per_class[name]
        rows.append({"type": name, "precision": scores["precision"],
                     "recall": scores["recall"], "F1": scores["f1"],
                     "ROC-AUC": auc.per_class[name]["roc_auc"] if auc else math.nan,
                     "support": int(scores["support"])})
    return pd.DataFrame(rows)


def confusion_figure(types: ClassificationScores) -> go.Figure:
    """Confusion matrix heatmap: true type down, predicted type across, counts written in."""
    names = list(types.class_names)
    figure = go.Figure(go.Heatmap(
        z=[list(row) for row in types.confusion], x=names, y=names,
        colorscale=style.CONFUSION_COLOURSCALE, texttemplate="%{z}", showscale=False,
        hovertemplate="true %{y}<br>predicted %{x}<br>%{z} slices<extra></extra>"))
    figure.update_layout(title=f"Confusion matrix ({types.n} slices)", height=CHART_HEIGHT_PX,
                         xaxis_title="predicted type", yaxis_title="true type",
                         yaxis_autorange="reversed", margin={"t": 50, "b": 30})
    return figure


def _types(table: SliceTable) -> None:
    st.subheader("Tumour type")
    types = table.summary.types
    if types is None:
        st.info("This run's model predicts no tumour type (no type head), or no scored slice "
                "has one.")
        return
    accuracy, macro, n, _ = st.columns([1, 1, 1, 1])
    accuracy.metric("accuracy", number(types.accuracy),
                    help="Share of slices of a known type predicted as that type.")
    macro.metric("macro F1", number(types.macro_f1),
                 help="Mean F1 over the types present in the truth.")
    n.metric("slices typed", str(types.n))
    left, right = st.columns([3, 2])
    with left:
        st.dataframe(class_table(types, table.auc), hide_index=True, key="cohort2d_classes",
                     column_config={k: st.column_config.NumberColumn(k, format="%.3f")
                                    for k in ("precision", "recall", "F1", "ROC-AUC")})
        st.caption("ROC-AUC: one type against the rest, from the type probabilities predict "
                   "recorded." if table.auc else
                   "ROC-AUC needs the type probabilities of every slice; this run does not "
                   "record them all.")
    right.plotly_chart(confusion_figure(types), key="chart_2d_confusion")


def type_distribution_figure(frame: pd.DataFrame, column: str, *, title: str,
                             axis: str) -> go.Figure:
    """``column`` of the scored slices per true type, each slice a point (hover: its id)."""
    figure = go.Figure()
    scored = frame[frame["scored"]]
    kinds = scored["true type"].fillna(UNKNOWN_TYPE)
    for kind in [*(k for k in style.TUMOUR_TYPE_COLOURS if k in set(kinds)),
                 *([UNKNOWN_TYPE] if UNKNOWN_TYPE in set(kinds) else [])]:
        rows = scored[kinds == kind]
        colour = style.TUMOUR_TYPE_COLOURS.get(kind, style.REFERENCE_LINE_COLOUR).hex
        figure.add_trace(go.Box(
            y=rows[column], name=f"{kind} ({len(rows)})", text=rows["slice"],
            boxpoints="all", jitter=0.4, pointpos=0, marker={"color": colour, "size": 7},
            line={"color": colour},
            hovertemplate="slice %{text}<br>%{y:.3f}<extra>" + kind + "</extra>"))
    wrapped = wrap_title(title)
    figure.update_layout(title=wrapped, height=CHART_HEIGHT_PX, showlegend=False,
                         yaxis_title=axis, margin={"t": 50 + 20 * wrapped.count("<br>"),
                                                   "b": 30})
    return figure


def _distributions(frame: pd.DataFrame, unit: str) -> None:
    st.subheader("Scores per true type")
    hd95 = f"HD95 ({unit})"
    left, middle, right = st.columns(3)
    left.plotly_chart(type_distribution_figure(frame, "Dice", title="Dice per true type",
                                               axis="Dice"), key="chart_2d_dice")
    middle.plotly_chart(type_distribution_figure(frame, "IoU", title="IoU per true type",
                                                 axis="IoU (Jaccard)"), key="chart_2d_iou")
    right.plotly_chart(type_distribution_figure(
        frame, hd95, title=f"HD95 per true type ({'mm' if unit == 'mm' else 'pixels'})",
        axis=hd95), key="chart_2d_hd95")


# --------------------------------------------------------------------------------------------
# tables


def worst_first(frame: pd.DataFrame) -> pd.DataFrame:
    """Slices by Dice, worst first; slices without a current score last.

    >>> worst_first(pd.DataFrame({"slice": ["a", "b", "c"], "Dice": [0.9, None, 0.1]}))[
    ...     "slice"].tolist()
    ['c', 'a', 'b']
    """
    return frame.sort_values("Dice", ascending=True, na_position="last",
                             kind="stable").reset_index(drop=True)


def _open_selected() -> None:
    """A row clicked: make it the chosen slice and open the gallery on it."""
    table_state = st.session_state.get(TABLE_KEY)
    rows = table_state.selection.rows if table_state is not None else []
    order = st.session_state.get(ROWS_KEY, [])
    if rows and rows[0] < len(order):
        st.session_state["case_id"] = order[rows[0]]
        state.request_page("gallery")


def _slices(ctx: Context, frame: pd.DataFrame) -> None:
    st.subheader("Slices")
    shown = worst_first(frame)
    st.session_state[ROWS_KEY] = shown["slice"].tolist()
    config: dict[str, object] = {
        "slice": st.column_config.TextColumn("slice", pinned=True),
        "Dice": st.column_config.ProgressColumn("Dice", min_value=0.0, max_value=1.0,
                                                format="%.3f"),
        "IoU": st.column_config.NumberColumn("IoU", format="%.3f"),
        **{c: st.column_config.NumberColumn(c, format="%.1f") for c in frame
           if str(c).startswith(("HD95", "true area", "predicted area"))},
        "confidence": st.column_config.NumberColumn(
            "confidence", format="%.2f", help="Probability of the predicted type."),
        "correct": st.column_config.CheckboxColumn("correct type"),
        "scored": st.column_config.CheckboxColumn(
            "scored", help="Has a current score (unticked: not scored, or its score is "
                           "stale and not shown)."),
    }
    st.dataframe(shown, key=TABLE_KEY, on_select=_open_selected, selection_mode="single-row",
                 hide_index=True, column_config=config,
                 height=min(38 + 35 * max(len(shown), 1), 420))
    st.caption("Worst Dice first; tick a row to open the slice in the gallery.")
    st.download_button("Table as CSV", data=csv_bytes(shown), mime="text/csv",
                       file_name=f"{ctx.run.name if ctx.run else 'run'}_slices.csv",
                       key="btn_slices_csv", icon=":material/download:")


def _patients(summary: SliceSummary, frame: pd.DataFrame) -> None:
    if not summary.patients:
        return
    with st.expander(f"Per patient ({len(summary.patients)})"):
        counts = frame[frame["scored"]].groupby("patient")["slice"].count()
        kinds = frame.groupby("patient")["true type"].first()
        table = pd.DataFrame({"patient": list(summary.patients),
                              "mean Dice": list(summary.patients.values())})
        table["slices"] = table["patient"].map(counts).astype("Int64")
        table["true type"] = table["patient"].map(kinds)
        st.dataframe(table.sort_values("mean Dice", kind="stable"), hide_index=True,
                     key="cohort2d_patients",
                     column_config={"mean Dice": st.column_config.NumberColumn(format="%.3f")})


def training_figure(log: pd.DataFrame) -> go.Figure:
    """Loss per epoch; validation Dice per region and the type accuracy and macro F1."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Training loss",
                                                           "Validation scores"))
    if "loss" in log:
        figure.add_trace(go.Scatter(x=log["epoch"], y=log["loss"], mode="lines+markers",
                                    name="loss", line={"color": style.LOSS_COLOUR.hex}),
                         row=1, col=1)
    curves = [(c, f"Dice {c.removeprefix('dice_')}",
               style.REGION_COLOURS.get(c.removeprefix("dice_"),
                                        style.REGION_COLOURS["WT"]).hex, "solid")
              for c in log if str(c).startswith("dice_") and c != "dice_mean"]
    curves += [(k, "type accuracy" if k == "accuracy" else "type macro F1", colour.hex, "dash")
               for k, colour in style.TYPE_SCORE_COLOURS.items()]
    for column, name, colour, dash in curves:
        if column in log and log[column].notna().any():
            rows = log[log[column].notna()]
            figure.add_trace(go.Scatter(x=rows["epoch"], y=rows[column], mode="lines+markers",
                                        name=name, line={"color": colour, "dash": dash}),
                             row=1, col=2)
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(title_text="score", range=[0, 1], row=1, col=2)
    figure.update_layout(height=CHART_HEIGHT_PX, margin={"t": 50, "b": 30})
    return figure


def _training(ctx: Context) -> None:
    assert ctx.run is not None
    st.subheader("Training")
    log = tables.training_log(ctx.run)
    if log.empty or "epoch" not in log:
        st.caption("This run has no training log (log.csv): it only holds predictions.")
        return
    st.plotly_chart(training_figure(log), key="chart_2d_training")
