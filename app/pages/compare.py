"""Compare page: run B against run A patient by patient (paired table, A-vs-B scatter with the
identity line, per region the mean difference, its bootstrap interval and the Wilcoxon p)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from tumorscope.app import run_b, state, tables
from tumorscope.app.pages.overview import CHART_HEIGHT_PX, SCORING_LABELS, wrap_title
from tumorscope.app.state import Context
from tumorscope.core.errors import TumorscopeError
from tumorscope.core.scoring.compare import (
    Comparison,
    compare_rows,
    pair_records,
    pairs_csv,
    run_rows,
    scoring_metrics,
)
from tumorscope.core.scoring.distances import HD95_DEFINITIONS
from tumorscope.core.scoring.scorings import LESION_HD95, SCORINGS
from tumorscope.core.store import Run
from tumorscope.render import style

TITLE = "Compare runs"
METRIC_LABELS = {"dice": "Dice", "hd95": "HD95", "jaccard": "Jaccard (IoU)",
                 "sensitivity": "sensitivity", "specificity": "specificity",
                 "rq": "recognition quality RQ"}
SUMMARY_KEY = "cmp_summary"
PAIRS_KEY = "cmp_pairs"
CHART_KEY = "cmp_chart"
WIDGET_KEYS = ("cmp_a", "cmp_b", "cmp_scoring", "cmp_metric", "cmp_hd95", "cmp_pick",
               "cmp_open_in")
NAMES_KEY = "_cmp_names"
ROWS_KEY = "_cmp_rows"
POINTS_KEY = "_cmp_points"
"""Run names, table row order and scatter points of the last draw, for the callbacks."""
SAVED_KEY = "_cmp_saved"
"""The page's choices, kept while another page is shown (Streamlit drops the state of
widgets a rerun does not draw; a plain session key survives)."""
N_RESAMPLES = 10_000
SEED = 0


@dataclass(frozen=True)
class CompareView:
    """What the page compares, read from its widgets once per rerun."""

    run_a: str
    run_b: str
    scoring: str
    metric: str
    hd95: str


def render(ctx: Context) -> None:
    st.title(TITLE)
    names = [r.name for r in ctx.results.runs]
    if len(names) < 2:
        st.info("Comparing needs two runs: point the results folder (sidebar) at a folder "
                f"holding two run folders or more; `{ctx.results.root}` holds "
                f"{len(names)}.", icon=":material/compare_arrows:")
        return
    view = _controls(names)
    if view.run_a == view.run_b:
        st.warning("Run A and run B are the same run: pick two different runs.")
        return
    run_a, run_b = ctx.results.run(view.run_a), ctx.results.run(view.run_b)
    assert run_a is not None and run_b is not None
    try:
        comparison = comparison_of(run_a, run_b, view)
    except TumorscopeError as exc:
        st.error(f"Cannot compare these runs: {exc}", icon=":material/compare_arrows:")
        return
    st.session_state[NAMES_KEY] = (comparison.name_a, comparison.name_b)
    _left_out(comparison)
    st.subheader("Summary per region")
    st.dataframe(summary_frame(comparison), key=SUMMARY_KEY, hide_index=True,
                 column_config=_summary_config(comparison))
    st.caption(_summary_caption(comparison))
    _scatter(comparison)
    _pairs(comparison)


# --------------------------------------------------------------------------------------------
# choices


def _restore() -> None:
    for key, value in st.session_state.get(SAVED_KEY, {}).items():
        st.session_state.setdefault(key, value)


def _save() -> None:
    st.session_state[SAVED_KEY] = {k: st.session_state[k] for k in WIDGET_KEYS
                                   if k in st.session_state}


def _controls(names: list[str]) -> CompareView:
    """The two run pickers, the scoring, the metric and legacy's HD95 definition."""
    _restore()
    s = st.session_state
    if s.get("cmp_a") not in names:
        s["cmp_a"] = names[0]
    if s.get("cmp_b") not in names:
        s["cmp_b"] = next(n for n in names if n != s["cmp_a"])
    left, right = st.columns(2)
    left.selectbox("Run A (reference)", names, key="cmp_a",
                   help="Differences are B minus A.")
    right.selectbox("Run B (compared with A)", names, key="cmp_b")
    if s.get("cmp_scoring") not in SCORINGS:
        s["cmp_scoring"] = "legacy"
    scoring_col, metric_col, hd95_col = st.columns([4, 2, 3], vertical_alignment="bottom")
    scoring_col.segmented_control("Scores", list(SCORINGS), key="cmp_scoring", required=True,
                                  format_func=SCORING_LABELS.__getitem__)
    scoring = s["cmp_scoring"] or "legacy"
    metrics = list(scoring_metrics(scoring))
    if s.get("cmp_metric") not in metrics:
        s["cmp_metric"] = metrics[0]
    metric_col.selectbox("Metric", metrics, key="cmp_metric",
                         format_func=METRIC_LABELS.__getitem__)
    if s.get("cmp_hd95") not in HD95_DEFINITIONS:
        s["cmp_hd95"] = "monai"
    hd95_col.selectbox("HD95 definition (legacy)", list(HD95_DEFINITIONS), key="cmp_hd95",
                       format_func=HD95_DEFINITIONS.__getitem__,
                       disabled=scoring != "legacy",
                       help="Lesion-wise scorings measure HD95 their own way: "
                            + "; ".join(f"{k}: {v}" for k, v in LESION_HD95.items()) + ".")
    _save()
    return CompareView(s["cmp_a"], s["cmp_b"], scoring, s["cmp_metric"], s["cmp_hd95"])


# --------------------------------------------------------------------------------------------
# the comparison, cached until either run's scores change


@st.cache_data(show_spinner=False, max_entries=32)
def _comparison(path_a: str, path_b: str, stamps: tuple[object, ...], scoring: str,
                metric: str, hd95: str) -> Comparison:
    run_a, run_b = Run(Path(path_a)), Run(Path(path_b))
    return compare_rows(run_rows(run_a), run_rows(run_b), name_a=run_a.name,
                        name_b=run_b.name, metric=metric, scorings=(scoring,),  # type: ignore[arg-type]
                        hd95=hd95 if scoring == "legacy" else None,  # type: ignore[arg-type]
                        n_resamples=N_RESAMPLES, seed=SEED)


def comparison_of(run_a: Run, run_b: Run, view: CompareView) -> Comparison:
    """Run B against run A in ``view``; a score that turns stale (another prediction, image
    or truth) changes the key through the cached list of stale scores."""
    stamps = tuple((tables.run_stamp(r), tuple(sorted(tables.stale_scores(r).items())))
                   for r in (run_a, run_b))
    return _comparison(str(run_a.path), str(run_b.path), stamps, view.scoring, view.metric,
                       view.hd95)


# --------------------------------------------------------------------------------------------
# what was left out, the summary


def _left_out(c: Comparison) -> None:
    notes = []
    if c.stale_rows_a or c.stale_rows_b:
        notes.append(f"Stale scores left out: {c.stale_cases_a} patient(s) of A, "
                     f"{c.stale_cases_b} of B (their score is of another prediction, model, "
                     "image or truth than the run holds now).")
    for side, name, unpaired in (("A", c.name_a, c.only_a), ("B", c.name_b, c.only_b)):
        if unpaired:
            listed = "; ".join(f"{u.case_id} ({u.reason})" for u in unpaired[:8])
            more = f" (+{len(unpaired) - 8} more)" if len(unpaired) > 8 else ""
            notes.append(f"Scored only in {side} ({name}): {listed}{more}.")
    st.caption(f"**{len(c.shared_cases)}** patient(s) scored in both runs against the same "
               f"ground truth · B = **{c.name_b}**, A = **{c.name_a}**")
    if notes:
        st.warning(" ".join(notes), icon=":material/rule:")


def summary_frame(c: Comparison) -> pd.DataFrame:
    """One row per region: n, mean A, mean B, mean B - A, its interval, p, wins, exclusions."""
    return pd.DataFrame([{
        "region": s.region, "n": s.n, "mean A": s.mean_a, "mean B": s.mean_b,
        "mean B − A": s.mean_difference, "CI low": s.ci_low, "CI high": s.ci_high,
        "Wilcoxon p": s.p_value, "B better": s.b_better, "A better": s.a_better,
        "ties": s.ties, "excluded": s.n_excluded, "test": s.test} for s in c.summaries])


def _summary_config(c: Comparison) -> dict[str, object]:
    level = f"{c.confidence:.0%}"
    number = {k: st.column_config.NumberColumn(k, format="%.4f")
              for k in ("mean A", "mean B", "mean B − A")}
    return {**number,
            "CI low": st.column_config.NumberColumn(
                "CI low", format="%.4f", help=f"{level} percentile bootstrap interval of the "
                f"mean difference ({c.n_resamples} resamples, seed {c.seed})"),
            "CI high": st.column_config.NumberColumn("CI high", format="%.4f"),
            "Wilcoxon p": st.column_config.NumberColumn(
                "Wilcoxon p", format="%.4f", help="Two-sided Wilcoxon signed-rank test of "
                "the paired differences (scipy); empty with fewer than 2 pairs"),
            "excluded": st.column_config.NumberColumn(
                "excluded", help="Pairs with a value missing, infinite or undefined (NaN): "
                "in the paired table, out of the statistics")}


def _summary_caption(c: Comparison) -> str:
    (scoring, column), = c.columns
    direction = "higher" if c.higher_is_better else "lower"
    hd95 = c.hd95 if scoring == "legacy" else LESION_HD95.get(scoring)
    named = f" · {HD95_DEFINITIONS[hd95]}" if c.metric == "hd95" and hd95 else ""
    return (f"`{column}` ({SCORING_LABELS[scoring]}){named}; {direction} is better; "
            "B − A > 0 means B scored higher.")


# --------------------------------------------------------------------------------------------
# scatter and paired table


def paired_figure(c: Comparison) -> go.Figure:
    """A against B per patient, one trace per region in its colour, with the identity line;
    excluded pairs (a value not finite) are not drawn."""
    figure = go.Figure()
    drawn = [p for p in c.pairs if p.excluded is None]
    values = [v for p in drawn for v in (p.a, p.b) if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = 0.03 * (high - low or 1.0)
    figure.add_trace(go.Scatter(x=[low - pad, high + pad], y=[low - pad, high + pad],
                                mode="lines", name="identity (A = B)",
                                line={"color": style.REFERENCE_LINE_COLOUR.hex, "dash": "dash"},
                                hoverinfo="skip"))
    for region in dict.fromkeys(p.region for p in c.pairs):
        rows = [p for p in drawn if p.region == region]
        colour = style.REGION_COLOURS.get(region, style.REFERENCE_LINE_COLOUR).hex
        figure.add_trace(go.Scatter(
            x=[p.a for p in rows], y=[p.b for p in rows], mode="markers", name=region,
            customdata=[p.case_id for p in rows], text=[p.case_id for p in rows],
            marker={"color": colour, "size": 9,
                    "line": {"width": 0.5, "color": style.MARKER_EDGE_COLOUR.hex}},
            hovertemplate="%{text}<br>A %{x:.3f}<br>B %{y:.3f}<extra>" + region
                          + "</extra>"))
    (_, column), = c.columns
    title = wrap_title(f"{column} per patient: B ({c.name_b}) against A ({c.name_a}); above "
                       "the line B scored higher")
    figure.update_layout(title=title, height=CHART_HEIGHT_PX + 60,
                         xaxis_title=f"A: {c.name_a}", yaxis_title=f"B: {c.name_b}",
                         margin={"t": 50 + 20 * title.count("<br>"), "b": 30})
    return figure


def pairs_frame(c: Comparison) -> pd.DataFrame:
    """The paired table, the pairs where B did worst first (by the metric's direction)."""
    frame = pd.DataFrame(pair_records(c))
    if frame.empty:
        return frame
    sign = 1.0 if c.higher_is_better else -1.0
    frame = frame.assign(_key=frame["B_minus_A"].astype(float) * sign)
    frame = frame.sort_values(["_key", "case_id", "region"], na_position="last",
                              kind="stable").drop(columns="_key")
    return frame.rename(columns={"case_id": "patient", "B_minus_A": "B − A"}
                        ).reset_index(drop=True)


def _open(case_id: str) -> None:
    """Make ``case_id`` the sidebar's patient, in the run "in run" names, and open the
    patient page (the same way the overview opens one), compared with the other run."""
    name_a, name_b = st.session_state.get(NAMES_KEY, (None, None))
    open_b = st.session_state.get("cmp_open_in") == "B"
    run_name = name_b if open_b else name_a
    if run_name is None:
        return
    st.session_state["run_name"] = run_name
    st.session_state[run_b.AB_KEY] = name_a if open_b else name_b
    st.session_state["case_id"] = case_id
    state.request_page("patient")


def _open_picked() -> None:
    _open(st.session_state["cmp_pick"])


def _open_selected() -> None:
    """A row of the paired table clicked: open that patient."""
    table = st.session_state.get(PAIRS_KEY)
    rows = table.selection.rows if table is not None else []
    order = st.session_state.get(ROWS_KEY, [])
    if rows and rows[0] < len(order):
        _open(order[rows[0]])


def _open_point() -> None:
    """One point of the scatter clicked: open that patient (a box of several opens none)."""
    chart = st.session_state.get(CHART_KEY)
    points = chart.selection.points if chart is not None else []
    traces = st.session_state.get(POINTS_KEY, [])
    if len(points) != 1:
        return
    curve, index = points[0].get("curve_number"), points[0].get("point_index")
    if isinstance(curve, int) and isinstance(index, int) and curve < len(traces) and \
            index < len(traces[curve]):
        _open(traces[curve][index])


def _scatter(c: Comparison) -> None:
    st.subheader("Per patient")
    figure = paired_figure(c)
    st.session_state[POINTS_KEY] = [list(t.customdata) if t.customdata is not None else []
                                    for t in figure.data]
    st.plotly_chart(figure, key=CHART_KEY, on_select=_open_point, selection_mode="points")
    excluded = sum(1 for p in c.pairs if p.excluded)
    if excluded:
        st.caption(f"{excluded} pair(s) with a value missing, infinite or undefined are not "
                   "drawn; the table below says which and why.")


def _pairs(c: Comparison) -> None:
    frame = pairs_frame(c)
    st.session_state[ROWS_KEY] = frame["patient"].tolist() if not frame.empty else []
    ids = list(c.shared_cases)
    if st.session_state.get("cmp_pick") not in ids:
        st.session_state["cmp_pick"] = ids[0]
    if st.session_state.get("cmp_open_in") not in ("A", "B"):
        st.session_state["cmp_open_in"] = "B"
    pick, where, button, download = st.columns([3, 3, 2, 2], vertical_alignment="bottom")
    pick.selectbox("Open a patient", ids, key="cmp_pick",
                   help="Or click a row of the table, or a point of the scatter.")
    where.segmented_control("in run", ["A", "B"], key="cmp_open_in", required=True,
                            format_func=lambda side: f"{side}: "
                            f"{c.name_a if side == 'A' else c.name_b}")
    button.button("Open patient view", key="cmp_btn_open", on_click=_open_picked,
                  icon=":material/open_in_new:", type="primary")
    download.download_button("Paired table as CSV", data=pairs_csv(c).encode("utf-8"),
                             file_name=f"compare_{c.name_a}_vs_{c.name_b}.csv",
                             mime="text/csv", key="cmp_btn_csv", icon=":material/download:")
    _save()
    st.dataframe(frame, key=PAIRS_KEY, on_select=_open_selected, selection_mode="single-row",
                 hide_index=True, height=min(38 + 35 * max(len(frame), 1), 460),
                 column_config=_pairs_config())
    st.caption("The pairs where B did worst come first; a row, a point or the button opens "
               "the patient in the run chosen in *in run*, compared there with the other "
               "(its 3-D view and slices show where the two agree and differ).")


def _pairs_config() -> dict[str, object]:
    numbers = ("A", "B", "B − A", "dice_A", "dice_B", "hd95_A", "hd95_B", "volume_truth_ml")
    config: dict[str, object] = {
        k: st.column_config.NumberColumn(k, format="%.4f") for k in numbers}
    config["patient"] = st.column_config.TextColumn("patient", pinned=True)
    config["excluded"] = st.column_config.TextColumn(
        "excluded", help="Why the pair is out of the statistics (a value missing, infinite "
                         "or undefined), empty when it is in")
    return config

