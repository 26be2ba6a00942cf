"""The Streamlit app's frame: session state, results folder, run and patient pickers, pages.

``streamlit run streamlit_app.py [-- --results DIR | --view DIR]`` calls :func:`main` on every
rerun; ``--view`` opens any image folder in the view-only slice viewer.
The results folder comes from the sidebar field, initialised from ``--results DIR``, else
``$TUMORSCOPE_RESULTS``, else ``runs/`` (where ``tumorscope demo`` writes ``runs/demo``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from tumorscope.app import results, slice_run, state, tables
from tumorscope.app.pages import (
    cohort2d,
    compare,
    failures,
    overview,
    patient,
    slices,
    slices2d,
    viewer,
)
from tumorscope.app.state import Context
from tumorscope.core.errors import TumorscopeError

log = logging.getLogger(__name__)

PAGE_TITLES = {"overview": "Cohort overview", "patient": "Patient 3D", "slices": "Slice viewer",
               "gallery": "Slice gallery", "failures": "Failure explorer",
               "compare": "Compare runs", "view": "Slice viewer (view only)"}
PAGE_ICON = "🧠"
PAGE_ICONS = {"overview": ":material/table_chart:", "patient": ":material/view_in_ar:",
              "slices": ":material/layers:", "gallery": ":material/grid_view:",
              "failures": ":material/troubleshoot:", "compare": ":material/compare_arrows:",
              "view": ":material/visibility:"}
SOURCES = {"results": "results", "folder": "image folder"}
"""What the sidebar opens: a results folder (runs), or any image folder, view only."""


def _sidebar(ctx: Context) -> None:
    with st.sidebar:
        st.segmented_control("Open", list(SOURCES), key="vw_source", required=True,
                             format_func=SOURCES.__getitem__)
        if st.session_state["vw_source"] == "folder":
            viewer.sidebar()
            return
        st.text_input(
            "Results folder", key="results_dir",
            help="A run folder, or a folder of runs. Also settable with "
                 "`streamlit run streamlit_app.py -- --results DIR` or $TUMORSCOPE_RESULTS.")
        ctx.results = results.find_results(st.session_state["results_dir"])
        if not ctx.results.runs:
            return
        names = [r.name for r in ctx.results.runs]
        if st.session_state.get("run_name") not in names:
            st.session_state["run_name"] = names[0]
        if len(names) > 1:
            st.selectbox("Run", names, key="run_name")
        else:
            st.caption(f"Run: **{names[0]}**")
        ctx.run = ctx.results.run(st.session_state["run_name"])
        assert ctx.run is not None  # names is not empty
        ids = ctx.run.case_ids(tables.run_cases(ctx.run))  # cases.json parsed once per mtime
        if not ids:
            return
        if st.session_state.get("case_id") not in ids:
            st.session_state["case_id"] = ids[0]
        cases = tables.run_cases(ctx.run)
        st.selectbox("Slice" if slice_run.is_2d_run(ctx.run) else "Patient", ids, key="case_id",
                     format_func=lambda c: c if c in cases and cases[c].label is not None
                     else f"{c} (no ground truth)")
        ctx.case_id = st.session_state["case_id"]


def guarded(render: Callable[[Context], None], ctx: Context, *,
            needs_case: bool) -> Callable[[], None]:
    """A page that shows a missing/broken results folder or a bad file as one clear line."""

    def page() -> None:
        problem = ctx.results.problem or ctx.problem
        if problem:
            st.title("Tumorscope")
            st.error(problem, icon=":material/folder_off:")
            if ctx.results.root == results.DEFAULT_RESULTS:
                st.code(results.BUILD_COMMAND, language="bash")
            return
        if needs_case and ctx.case_id is None:
            st.title(PAGE_TITLES["patient"])
            st.warning(f"Run `{ctx.run.name if ctx.run else '?'}` has no predictions yet: "
                       "make them with `tumorscope predict --checkpoint RUN/checkpoints/best.pt "
                       "--input DATA --out RUN`.")
            return
        try:
            render(ctx)
        except TumorscopeError as exc:
            st.error(f"Cannot show this page: {exc}", icon=":material/report:")
        except Exception as exc:  # the page's edge: a person sees one line, the log the rest
            log.exception("page failed")
            st.error(f"Cannot show this page ({type(exc).__name__}): {exc}",
                     icon=":material/report:")

    return page


def main() -> None:
    """Draw the app for one rerun."""
    # An emoji, not a :material/…: icon: the browser tab's icon of those is fetched from a
    # font server, which an offline machine cannot reach (the in-page ones are bundled).
    st.set_page_config(page_title="Tumorscope", page_icon=PAGE_ICON, layout="wide")
    state.init_state()
    ctx = Context(results=results.Results(results.DEFAULT_RESULTS))
    try:
        _sidebar(ctx)
    except TumorscopeError as exc:  # e.g. a damaged cases.json: say so on the page
        ctx.problem = f"Cannot read this run: {exc}"
    renderers: dict[str, tuple[Callable[[Context], None], bool]] = {
        "overview": (overview.render, False), "patient": (patient.render, True),
        "slices": (slices.render, True), "failures": (failures.render, False),
        "compare": (compare.render, False)}
    if st.session_state["vw_source"] == "folder":  # no run: the one view-only page
        renderers = {"view": (viewer.render, False)}
    elif ctx.problem is None and ctx.run is not None and slice_run.is_2d_run(ctx.run):
        # A 2-D run: the same frame and pages; its own cohort page, and a slice gallery in
        # place of the 3-D patient and slice views.
        renderers = {"overview": (cohort2d.render, False), "gallery": (slices2d.render, False),
                     "failures": (failures.render, False), "compare": (compare.render, False)}
    ctx.pages = {
        name: st.Page(guarded(fn, ctx, needs_case=needs), title=PAGE_TITLES[name],
                      icon=PAGE_ICONS[name], url_path=name,
                      default=name == next(iter(renderers)))
        for name, (fn, needs) in renderers.items()}
    navigation = st.navigation(list(ctx.pages.values()))
    goto = state.take_page_request()
    if goto in ctx.pages:
        ctx.open(goto)
    navigation.run()
